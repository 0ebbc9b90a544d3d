package replication

import (
	"sort"
	"time"

	"github.com/outpost-edge/outpost"
)

func countChanges(gs []outpost.Group) int {
	n := 0
	for _, g := range gs {
		n += len(g.Changes)
	}
	return n
}

// LinkStatus is the state of one direction of sync with one peer.
type LinkStatus struct {
	Peer          string  `json:"peer"`
	Role          string  `json:"role"`
	Farm          string  `json:"farm,omitempty"`
	Direction     string  `json:"direction"` // pull or push
	Connected     bool    `json:"connected"`
	Standby       bool    `json:"standby,omitempty"` // an edge's pull from a hub it uses only while its preferred hub is unavailable
	Incarnation   string  `json:"incarnation,omitempty"`
	Cursor        int64   `json:"cursor"`          // pull: the peer's db_version applied here (protocol 2: log entries applied from this link); push: ours acknowledged there
	PeerDBVersion int64   `json:"peer_db_version"` // pull: the peer's latest db_version seen (protocol 2: entries received, = cursor once caught up); push: ours
	LagChanges    int64   `json:"lag_db_versions"`
	LagSeconds    float64 `json:"lag_seconds"`
	Applied       int64   `json:"changes"`
	Refused       int64   `json:"refused"`
	Held          int64   `json:"held"`
	Errors        int64   `json:"errors"`
	LastError     string  `json:"last_error,omitempty"`

	behindSince time.Time
}

// behind updates the lag clock: how long the cursor has trailed the peer.
func (s *LinkStatus) behind(now time.Time) {
	switch {
	case s.Cursor >= s.PeerDBVersion:
		s.behindSince = time.Time{}
	case s.behindSince.IsZero():
		s.behindSince = now
	}
}

// Status returns every link, sorted by peer and direction.
func (r *Replicator) Status() []LinkStatus {
	r.mu.Lock()
	loops := make([]*loop, 0, len(r.loops))
	for _, l := range r.loops {
		loops = append(loops, l)
	}
	r.mu.Unlock()
	now := time.Now()
	out := make([]LinkStatus, 0, len(loops))
	for _, l := range loops {
		l.mu.Lock()
		s := l.st
		l.mu.Unlock()
		s.LagChanges = max(0, s.PeerDBVersion-s.Cursor)
		if !s.behindSince.IsZero() {
			s.LagSeconds = now.Sub(s.behindSince).Seconds()
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Peer != out[j].Peer {
			return out[i].Peer < out[j].Peer
		}
		return out[i].Direction < out[j].Direction
	})
	return out
}
