package peer

import (
	"sync"
	"time"
)

// Seen records, per peer name, when this node last heard from the peer
// (an authenticated request it served, an answer to a request it made) and
// the last hello the peer answered with (its versions). It is safe for
// concurrent use; the zero value is ready.
type Seen struct {
	mu sync.Mutex
	m  map[string]SeenPeer
}

// SeenPeer is what a Seen knows of one peer.
type SeenPeer struct {
	At      time.Time // last request or answer; zero if never
	Hello   *Hello    // the peer's last hello answer; nil if none yet
	HelloAt time.Time
}

func (s *Seen) update(name string, fn func(*SeenPeer)) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]SeenPeer{}
	}
	p := s.m[name]
	fn(&p)
	s.m[name] = p
}

// Touch records that name was heard from now.
func (s *Seen) Touch(name string) {
	now := time.Now()
	s.update(name, func(p *SeenPeer) { p.At = now })
}

func (s *Seen) hello(name string, h Hello) {
	now := time.Now()
	s.update(name, func(p *SeenPeer) { p.At, p.HelloAt, p.Hello = now, now, &h })
}

// Get returns what is known of name.
func (s *Seen) Get(name string) SeenPeer {
	if s == nil {
		return SeenPeer{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[name]
}
