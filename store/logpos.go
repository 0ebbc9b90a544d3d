package store

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// positions remembers, for the latest local transactions, where they are
// in this node's log (the origin and the sequence of the entry that holds
// them), so a write's answer can say it (read-your-writes, docs/API.md).
type positions struct {
	mu   sync.Mutex
	m    map[int64]logPos // by db_version
	keep int64
}

type logPos struct {
	origin string
	seq    int64
}

const keepPositions = 1 << 16

func (p *positions) put(dbv int64, pos logPos) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[int64]logPos{}
	}
	p.m[dbv] = pos
	if dbv > p.keep {
		p.keep = dbv
	}
	if len(p.m) > keepPositions {
		for v := range p.m {
			if v <= p.keep-keepPositions/2 {
				delete(p.m, v)
			}
		}
	}
}

// LogPosition returns the origin and log sequence that hold the local
// transaction committed as db_version dbv: a peer holding that origin's
// log through seq holds the write. ok is false for a db_version that is
// not a recent local write.
func (s *Store) LogPosition(dbv int64) (origin string, seq int64, ok bool) {
	s.pos.mu.Lock()
	defer s.pos.mu.Unlock()
	p, ok := s.pos.m[dbv]
	return p.origin, p.seq, ok
}

// NotReachedError reports the origins a WaitKnown gave up on.
type NotReachedError struct {
	Want, Have Knowledge // only the origins not reached
}

func (e *NotReachedError) Error() string {
	var parts []string
	for o, n := range e.Want {
		parts = append(parts, fmt.Sprintf("%s: want %d, have %d", o, n, e.Have[o]))
	}
	sort.Strings(parts)
	return "this node does not hold yet: " + strings.Join(parts, "; ")
}

// WaitKnown waits until this node holds every origin's log through
// want[origin] (the writes read-your-writes asks for), or ctx ends: then
// it returns a *NotReachedError naming what is missing.
func (s *Store) WaitKnown(ctx context.Context, want Knowledge) error {
	for {
		changed := s.Changed()
		have, err := s.Knowledge(ctx)
		if err != nil {
			return err
		}
		missing := &NotReachedError{Want: Knowledge{}, Have: Knowledge{}}
		for o, n := range want {
			if have[o] < n {
				missing.Want[o], missing.Have[o] = n, have[o]
			}
		}
		if len(missing.Want) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return missing
		case <-changed:
		}
	}
}
