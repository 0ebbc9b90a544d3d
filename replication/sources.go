package replication

import (
	"hash/fnv"
	"slices"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/policy"
)

// sourceGrace is how long a direct source may be down (or not yet up)
// before its origins are asked of another peer.
const sourceGrace = 3 * time.Second

// sourceFilter chooses which origins (by node name) the pull loop l asks
// its peer for, so that each origin reaches this node by one path
// (docs/PROTOCOL2.md, "Sources"):
//
//   - an edge asks a farm sibling for the sibling's own writes, and its hub
//     for everything else (all origins but the siblings it pulls directly
//     and that are up);
//   - a hub (master or node) asks every peer for that peer's own writes,
//     except one other hub, its fallback, which it asks for everything but
//     the origins it pulls directly and that are up.
//
// A direct source down for sourceGrace moves to the hub (or fallback); the
// pull asks again when the choice changes (watchSources).
func (r *Replicator) sourceFilter(l *loop) (only, except []string) {
	self := r.cfg.Self
	p := l.peer
	if self.Role == outpost.RoleEdge {
		if !isHub(p) {
			return []string{p.Name}, nil
		}
		return nil, r.directUp(l, func(o *loop) bool { return !isHub(o.peer) })
	}
	if !isHub(p) || r.fallbackHub() != p.Name {
		return []string{p.Name}, nil
	}
	return nil, r.directUp(l, func(*loop) bool { return true })
}

// directUp returns the sorted names of the other pull loops (those direct
// says are direct sources) that are up or down for less than sourceGrace.
func (r *Replicator) directUp(except *loop, direct func(*loop) bool) []string {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	var names []string
	for _, o := range r.loops {
		if o == except || o.action != policy.Pull || !direct(o) {
			continue
		}
		o.mu.Lock()
		up := o.st.Connected || now.Sub(o.lostAt) < sourceGrace
		o.mu.Unlock()
		if up {
			names = append(names, o.peer.Name)
		}
	}
	slices.Sort(names)
	return names
}

// fallbackHub is the hub a hub asks for the origins it cannot pull
// directly: the first hub that is up in an order of its own (a hash of
// this node's name), so hubs spread the load.
func (r *Replicator) fallbackHub() string {
	now := time.Now()
	r.mu.Lock()
	var hubs []*loop
	for _, o := range r.loops {
		if o.action == policy.Pull && isHub(o.peer) {
			hubs = append(hubs, o)
		}
	}
	r.mu.Unlock()
	if len(hubs) == 0 {
		return ""
	}
	slices.SortFunc(hubs, func(a, b *loop) int {
		ha, hb := hubRank(r.cfg.Self.Name, a.peer.Name), hubRank(r.cfg.Self.Name, b.peer.Name)
		if ha != hb {
			if ha < hb {
				return -1
			}
			return 1
		}
		return cmpString(a.peer.Name, b.peer.Name)
	})
	for _, o := range hubs {
		o.mu.Lock()
		up := o.st.Connected || now.Sub(o.lostAt) < sourceGrace
		o.mu.Unlock()
		if up {
			return o.peer.Name
		}
	}
	return hubs[0].peer.Name
}

func hubRank(self, hub string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(self + "\x00" + hub))
	return h.Sum32()
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
