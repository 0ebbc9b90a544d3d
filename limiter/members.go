package limiter

import (
	"slices"
	"sync"
)

// Member is one node that decides requests (every node of the fleet).
// Core members (masters and nodes) may be arbiters: they own claimed keys.
type Member struct {
	Name string
	Core bool
}

// membership is an immutable view of the members.
type membership struct {
	list       []Member
	byName     map[string]int
	candidates []string // arbiter candidates: the core members, or everyone without a core
}

func newMembership(self string, ms []Member) *membership {
	m := &membership{byName: map[string]int{}}
	for _, x := range ms {
		if _, dup := m.byName[x.Name]; dup || x.Name == "" {
			continue
		}
		m.byName[x.Name] = len(m.list)
		m.list = append(m.list, x)
	}
	if _, ok := m.byName[self]; !ok {
		m.byName[self] = len(m.list)
		m.list = append(m.list, Member{Name: self})
	}
	for _, x := range m.list {
		if x.Core {
			m.candidates = append(m.candidates, x.Name)
		}
	}
	if len(m.candidates) == 0 {
		for _, x := range m.list {
			m.candidates = append(m.candidates, x.Name)
		}
	}
	slices.Sort(m.candidates)
	return m
}

func (m *membership) isMember(name string) bool { _, ok := m.byName[name]; return ok }

func (m *membership) isCandidate(name string) bool {
	_, ok := slices.BinarySearch(m.candidates, name)
	return ok
}

// score is the rendezvous hash of (name, key): FNV-1a 64, the same on every
// node. The candidate of highest score is the key's arbiter.
func score(name, key string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(name); i++ {
		h ^= uint64(name[i])
		h *= 1099511628211
	}
	h ^= 0
	h *= 1099511628211
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= 1099511628211
	}
	// A final mix, so that names differing in their last byte spread.
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return h
}

// outranks reports whether a is a better owner of key than b.
func outranks(a, b, key string) bool {
	sa, sb := score(a, key), score(b, key)
	return sa > sb || (sa == sb && a < b)
}

// names interns member names as uint16 ids for compact counters; ids are
// never reused.
type names struct {
	mu   sync.RWMutex
	list []string
	ids  map[string]uint16
}

func (n *names) id(name string) uint16 {
	n.mu.RLock()
	id, ok := n.ids[name]
	n.mu.RUnlock()
	if ok {
		return id
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if id, ok := n.ids[name]; ok {
		return id
	}
	if n.ids == nil {
		n.ids = map[string]uint16{}
	}
	if len(n.list) >= 1<<16-1 {
		return 0 // never: a fleet of 65,535 names
	}
	id = uint16(len(n.list))
	n.list = append(n.list, name)
	n.ids[name] = id
	return id
}

func (n *names) name(id uint16) string {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if int(id) < len(n.list) {
		return n.list[id]
	}
	return ""
}
