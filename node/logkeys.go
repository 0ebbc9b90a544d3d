package node

import (
	"crypto/ed25519"
	"errors"
	"fmt"

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
