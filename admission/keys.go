package admission

import (
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/outpost-edge/outpost/identity"
	"github.com/outpost-edge/outpost/store"
)

// Keys signs this node's log entries with its key and verifies other
// origins' against the keys of the trust list (protocol 2); it is the
// store's LogKeys.
type Keys struct {
	Self  string           // this node's name
	Key   *identity.Key    // this node's key
	Trust func() Directory // the trust list; nil: only this node's own entries verify
}

// Sign returns this node's signature of msg.
func (k Keys) Sign(msg []byte) []byte { return ed25519.Sign(k.Key.Private(), msg) }

// Verify checks sig over msg against the key the trust list gives the node
// named name; a name it does not list wraps store.ErrUnknownOrigin (asked
// again after a reload, not refused).
func (k Keys) Verify(name string, msg, sig []byte) error {
	pub := k.Key.Public()
	if name != k.Self {
		var dir Directory
		if k.Trust != nil {
			dir = k.Trust()
		}
		if dir == nil {
			return fmt.Errorf("origin %s: %w", name, store.ErrUnknownOrigin)
		}
		p, ok := dir.ByName(name)
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

var _ store.LogKeys = Keys{}
