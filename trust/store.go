package trust

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/identity"
)

// Diff is what a Reload changed. Peers are told apart by key, since the key
// is what is trusted: a name whose key changed is its old entry in Removed
// and its new one in Added.
type Diff struct {
	Added   []identity.Peer // keys newly trusted, in the new file's order
	Removed []identity.Peer // keys no longer trusted, as they were listed, in the old file's order
	Changed []identity.Peer // same key with another name, role, farm, location, code or addr: the new entries, in the new file's order
}

// Empty reports whether the reload changed no peer.
func (d Diff) Empty() bool {
	return len(d.Added) == 0 && len(d.Removed) == 0 && len(d.Changed) == 0
}

// String summarises the diff for a log line, e.g.
// "added EDGE03; removed EDGE02; changed EDGE01", or "no change".
func (d Diff) String() string {
	if d.Empty() {
		return "no change"
	}
	var parts []string
	for _, g := range []struct {
		verb  string
		peers []identity.Peer
	}{{"added", d.Added}, {"removed", d.Removed}, {"changed", d.Changed}} {
		if len(g.peers) == 0 {
			continue
		}
		names := make([]string, len(g.peers))
		for i, p := range g.peers {
			names[i] = p.Name
		}
		parts = append(parts, g.verb+" "+strings.Join(names, ", "))
	}
	return strings.Join(parts, "; ")
}

// diff returns what changed from old to new.
func diff(old, new *List) Diff {
	var d Diff
	for _, p := range new.peers {
		i, ok := old.byKey[string(p.Key)]
		switch {
		case !ok:
			d.Added = append(d.Added, clonePeer(p))
		case !samePeer(old.peers[i], p):
			d.Changed = append(d.Changed, clonePeer(p))
		}
	}
	for _, p := range old.peers {
		if _, ok := new.byKey[string(p.Key)]; !ok {
			d.Removed = append(d.Removed, clonePeer(p))
		}
	}
	return d
}

// samePeer reports whether a and b are equal in every field.
func samePeer(a, b identity.Peer) bool {
	return a.Identity == b.Identity && a.Addr == b.Addr && bytes.Equal(a.Key, b.Key)
}

// Store holds the current trust list of a node and replaces it on Reload.
// It is safe for concurrent use.
type Store struct {
	path    string
	self    outpost.Identity
	selfKey ed25519.PublicKey

	cur atomic.Pointer[List]

	reloadMu sync.Mutex // serialises Reload, and so the callbacks' calls
	cbMu     sync.Mutex // guards cbs
	cbs      []func(Diff)
}

// NewStore loads the trust list at path for the node with identity self and
// public key selfKey (see Load) and returns a Store holding it. It fails if
// the file cannot be read or is invalid.
func NewStore(path string, self outpost.Identity, selfKey ed25519.PublicKey) (*Store, error) {
	l, err := Load(path, self, selfKey)
	if err != nil {
		return nil, err
	}
	s := &Store{path: path, self: self, selfKey: slices.Clone(selfKey)}
	s.cur.Store(l)
	return s, nil
}

// List returns the current trust list. It takes no lock; the List is
// immutable, so a caller may keep it for as long as one decision takes and
// call List again for the next.
func (s *Store) List() *List {
	return s.cur.Load()
}

// Reload reads the file again. If it cannot be read or is invalid, the
// current list stays in force and the error is returned (an invalid file's
// wraps ErrInvalid). Otherwise the new list replaces the current one
// atomically, the callbacks registered with OnChange run with the Diff if
// it is not empty, and the Diff is returned.
func (s *Store) Reload() (Diff, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	l, err := Load(s.path, s.self, s.selfKey)
	if err != nil {
		return Diff{}, fmt.Errorf("reload kept the previous trust list: %w", err)
	}
	d := diff(s.cur.Swap(l), l)
	if !d.Empty() {
		s.cbMu.Lock()
		cbs := slices.Clone(s.cbs)
		s.cbMu.Unlock()
		for _, f := range cbs {
			f(d)
		}
	}
	return d, nil
}

// OnChange registers f to run after every Reload that changes the list,
// with the change. Callbacks run synchronously in the goroutine that called
// Reload, in the order they were registered and one reload after the other,
// after the new list is in place (List returns it). They share the Diff and
// must not modify it, and must not call Reload, which would deadlock; they
// may call List and OnChange.
func (s *Store) OnChange(f func(Diff)) {
	s.cbMu.Lock()
	defer s.cbMu.Unlock()
	s.cbs = append(s.cbs, f)
}
