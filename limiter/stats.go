package limiter

import (
	"sync"
	"sync/atomic"
)

// Stats count the limiter's work since start (metrics).
type Stats struct {
	Local, Owner, Forwarded, Fallback atomic.Int64 // allowed or not, by path
	Refused                           atomic.Int64 // decisions that did not allow (any path)
	Blocked                           atomic.Int64 // refused because the key is blocked
	Claims                            atomic.Int64 // claims this node sent (or made as arbiter)
	Owned                             atomic.Int64 // keys this node became owner of
	Announces                         atomic.Int64 // announces sent
	AnnounceFailed                    atomic.Int64 // announces unanswered (the member's share stays reserved)
	Handovers                         atomic.Int64 // non-zero counts received from other members
	CallFailed                        atomic.Int64 // calls to an owner that failed (fallback)
	Full                              atomic.Int64 // new keys refused: table full

	mu          sync.Mutex
	peerRefused map[string]int64 // by reason
}

func (s *Stats) refusePeer(reason string) {
	s.mu.Lock()
	if s.peerRefused == nil {
		s.peerRefused = map[string]int64{}
	}
	s.peerRefused[reason]++
	s.mu.Unlock()
}

// PeerRefused returns the refused peer calls by reason (not_member,
// not_arbiter, forged_owner, count_out_of_range, bad_request, table_full).
func (s *Stats) PeerRefused() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int64, len(s.peerRefused))
	for k, v := range s.peerRefused {
		out[k] = v
	}
	return out
}
