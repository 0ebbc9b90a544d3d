package relay

import (
	"context"
	"strings"
	"time"
)

// reorderWait bounds how long a forward waits for an earlier one of its
// stream (Forward.Seq) before it is delivered anyway: the earlier one may
// be lost or retried (its messages then arrive late, or by replication,
// and are deduplicated).
const reorderWait = 200 * time.Millisecond

// orderState is what the target knows of one forward stream.
type orderState struct {
	next uint64        // the forwards before next were delivered (or given up on)
	wake chan struct{} // closed when next moves
	used time.Time
}

// maxStreams bounds the streams remembered; idle ones are dropped beyond it.
const maxStreams = 256

// inOrder waits until the forwards of f's stream before f were delivered
// (reorderWait at most) and returns the function to call once f's are. A
// forward without a sequence, or whose stream does not name the edge that
// signed its messages, is not ordered.
func (r *Relay) inOrder(ctx context.Context, f *Forward) (done func()) {
	if f.Seq == 0 || !r.ownStream(f) {
		return func() {}
	}
	now := time.Now()
	r.ordMu.Lock()
	st := r.order[f.Stream]
	if st == nil {
		if len(r.order) >= maxStreams {
			for k, o := range r.order {
				if now.Sub(o.used) > time.Minute {
					delete(r.order, k)
				}
			}
		}
		// A stream seen for the first time: from its start if f is
		// one of its first forwards, else (this node restarted) from f.
		st = &orderState{next: f.Seq, wake: make(chan struct{})}
		if f.Seq <= forwardWindow {
			st.next = 1
		}
		if len(r.order) < maxStreams {
			r.order[f.Stream] = st
		}
	}
	st.used = now
	if f.Seq > st.next {
		timer := time.NewTimer(reorderWait)
		defer timer.Stop()
	wait:
		for f.Seq > st.next {
			wake := st.wake
			r.ordMu.Unlock()
			select {
			case <-wake:
				r.ordMu.Lock()
			case <-timer.C:
				r.ordMu.Lock()
				break wait
			case <-ctx.Done():
				r.ordMu.Lock()
				break wait
			}
		}
	}
	r.ordMu.Unlock()
	return func() {
		r.ordMu.Lock()
		defer r.ordMu.Unlock()
		if f.Seq+1 > st.next {
			st.next = f.Seq + 1
			close(st.wake)
			st.wake = make(chan struct{})
		}
	}
}

// ownStream reports whether every message of f was signed by the edge its
// stream names (so a peer cannot stall another edge's stream).
func (r *Relay) ownStream(f *Forward) bool {
	origin, _, ok := strings.Cut(f.Stream, "/")
	if !ok {
		return false
	}
	for i := range f.Msgs {
		if f.Msgs[i].Node != origin {
			return false
		}
	}
	return true
}
