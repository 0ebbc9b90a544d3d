package replication

import (
	"context"
	"fmt"
	"net/http"
	"sync"

	"github.com/outpost-edge/outpost/peer"
)

// DefaultMaxStreams is the default bound on the sync requests served at
// once. A hub of a large fleet serves a stream to every edge that prefers
// it (hundreds), and an idle stream costs little: memory is bounded by
// MaxServeBatches instead.
const DefaultMaxStreams = 4096

// streamLimiter bounds the sync requests (pull streams and pushes) served
// at once, per peer and in total.
type streamLimiter struct {
	mu       sync.Mutex
	perPeer  map[string]int
	total    int
	maxPeer  int
	maxTotal int
}

func newStreamLimiter(maxPeer, maxTotal int) *streamLimiter {
	return &streamLimiter{perPeer: map[string]int{}, maxPeer: maxPeer, maxTotal: maxTotal}
}

// acquire takes a slot for name; it answers the refusal itself (429 when
// the peer has too many, 503 when the node has) and returns ok=false.
func (r *Replicator) acquire(w http.ResponseWriter, name string) (release func(), ok bool) {
	s := r.streams
	s.mu.Lock()
	switch {
	case s.perPeer[name] >= s.maxPeer:
		s.mu.Unlock()
		r.refuse("too_many_streams", name)
		w.Header().Set("Retry-After", "1")
		peer.WriteError(w, http.StatusTooManyRequests, "too_many_streams", fmt.Sprintf("%s already has %d sync requests open here (limit %d)", name, s.maxPeer, s.maxPeer))
		return nil, false
	case s.total >= s.maxTotal:
		s.mu.Unlock()
		r.refuse("server_busy", name)
		w.Header().Set("Retry-After", "1")
		peer.WriteError(w, http.StatusServiceUnavailable, "server_busy", fmt.Sprintf("this node serves %d sync requests already (limit %d)", s.maxTotal, s.maxTotal))
		return nil, false
	}
	s.perPeer[name]++
	s.total++
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			if s.perPeer[name]--; s.perPeer[name] <= 0 {
				delete(s.perPeer, name)
			}
			s.total--
			s.mu.Unlock()
		})
	}, true
}

// refuse counts a refusal (and a group or push that could not be taken).
func (r *Replicator) refuse(kind, detail string) {
	if r.cfg.Refusals != nil {
		r.cfg.Refusals.Add(kind, detail)
	}
}

// batchSlot takes one of the MaxServeBatches slots, waiting for one; false
// when ctx ends first.
func (r *Replicator) batchSlot(ctx context.Context) (release func(), ok bool) {
	select {
	case r.batches <- struct{}{}:
		return func() { <-r.batches }, true
	case <-ctx.Done():
		return nil, false
	}
}
