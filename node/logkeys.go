package node

import (
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/outpost-edge/outpost/api"
	"github.com/outpost-edge/outpost/identity"
	"github.com/outpost-edge/outpost/store"
	"github.com/outpost-edge/outpost/trust"
)

// logKeys signs this node's log entries with its key and verifies other
// origins' against the keys of the trust list (protocol 2).
type logKeys struct {
	self string
	key  *identity.Key
	ts   *trust.Store // nil: no peers, only this node's own entries verify
}

func (k logKeys) Sign(msg []byte) []byte { return ed25519.Sign(k.key.Private(), msg) }

func (k logKeys) Verify(name string, msg, sig []byte) error {
	pub := k.key.Public()
	if name != k.self {
		if k.ts == nil {
			return fmt.Errorf("origin %s: %w", name, store.ErrUnknownOrigin)
		}
		p, ok := k.ts.List().ByName(name)
		if !ok {
			return fmt.Errorf("origin %s is not on the trust list: %w", name, store.ErrUnknownOrigin)
		}
		pub = p.Key
	}
	if !ed25519.Verify(pub, msg, sig) {
		return errors.New("the signature is not the origin's")
	}
	return nil
}

// holders lists the peers known to hold origin's log through seq (wait_for).
func (n *Node) holders(origin string, seq int64) []api.Holder {
	if n.Repl == nil {
		return nil
	}
	var out []api.Holder
	for _, h := range n.Repl.HoldersOf(origin, seq) {
		out = append(out, api.Holder{Name: h.Name, Role: h.Role})
	}
	return out
}
