package replication

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/policy"
	"github.com/outpost-edge/outpost/store"
	"github.com/outpost-edge/outpost/wire"
)

func group(dbv int64, pks ...string) *outpost.Group {
	g := &outpost.Group{DBV: dbv}
	for _, pk := range pks {
		g.Changes = append(g.Changes, change(pk, "t"))
	}
	return g
}

// TestPull_ResumesFromCursorAfterReconnect: a stream that ends is dialed
// again from the cursor its applies moved.
func TestPull_ResumesFromCursorAfterReconnect(t *testing.T) {
	st := newFakeStore()
	tr := newScript(peerHello("p1", 3))
	r := testReplicator(t, selfID, st, tr, nil)
	runLoop(r, peer1, policy.Pull)
	s := tr.next(t)
	s.send(t, wire.GroupFrame(group(1, "a")), wire.GroupFrame(group(3, "b")), wire.ProgressFrame(3))
	eventually(t, "the batch applied", func() bool { return len(st.applied()) == 1 })
	s.pw.Close() // the stream ends
	tr.next(t)
	dials := tr.dials()
	if len(dials) != 2 || dials[0].Get("since") != "0" || dials[1].Get("since") != "3" {
		t.Fatalf("dials %v: want since=0 then since=3", dials)
	}
	if dials[1].Get("origin") != "SELF/s1" || dials[1].Get("incarnation") != "p1" || dials[1].Get("parts") != "1" {
		t.Fatalf("dial query %v", dials[1])
	}
}

// TestPull_NewIncarnationResetsCursor: a cursor kept for an earlier
// incarnation of the peer is not used; the pull starts from 0.
func TestPull_NewIncarnationResetsCursor(t *testing.T) {
	st := newFakeStore()
	st.cursors["PEER1/pull"] = [2]any{int64(10), "old"}
	tr := newScript(peerHello("new", 4))
	r := testReplicator(t, selfID, st, tr, nil)
	runLoop(r, peer1, policy.Pull)
	s := tr.next(t)
	s.send(t, wire.GroupFrame(group(2, "a")), wire.ProgressFrame(4))
	eventually(t, "applied", func() bool { return len(st.applied()) == 1 })
	if q := tr.dials()[0]; q.Get("since") != "0" {
		t.Fatalf("since=%s, want 0 for a new incarnation", q.Get("since"))
	}
	if a := st.applied()[0]; a.inc != "new" || a.through != 4 {
		t.Fatalf("applied %+v: want the cursor under the new incarnation", a)
	}
}

// TestPull_HeartbeatAppliesThroughSharedPath (item 17): a batch applied
// when a heartbeat arrives moves the link's cursor, counters and
// caught-up state like any other.
func TestPull_HeartbeatAppliesThroughSharedPath(t *testing.T) {
	st := newFakeStore()
	tr := newScript(peerHello("p1", 2))
	var caught atomic.Bool
	r := testReplicator(t, selfID, st, tr, func(c *Config) {
		c.OnCaughtUp = func() { caught.Store(true) }
		c.Heartbeat = time.Hour // no watchdog or hellos in the way
	})
	l := runLoop(r, peer1, policy.Pull)
	s := tr.next(t)
	// Arriving together, the progress frame finds more buffered and waits
	// to extend its batch; the heartbeat then applies it.
	s.send(t, wire.GroupFrame(group(2, "a", "b")), wire.ProgressFrame(2), wire.HeartbeatFrame(2))
	eventually(t, "applied", func() bool { return len(st.applied()) == 1 })
	eventually(t, "status updated", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.st.Cursor == 2 && l.st.Applied == 2
	})
	if !caught.Load() {
		t.Fatal("caught-up state not set by a batch applied on a heartbeat")
	}
	if got := r.Status()[0]; got.LagChanges != 0 || got.Cursor != 2 {
		t.Fatalf("status %+v: want cursor 2, no lag", got)
	}
}

// TestPull_SlowApplyIsNotSilence (item 11): an apply that takes many
// heartbeats does not make the watchdog drop the stream.
func TestPull_SlowApplyIsNotSilence(t *testing.T) {
	st := newFakeStore()
	release := make(chan struct{})
	var applying atomic.Bool
	st.onApply = func() {
		applying.Store(true)
		<-release
	}
	tr := newScript(peerHello("p1", 1))
	r := testReplicator(t, selfID, st, tr, func(c *Config) { c.Heartbeat = 10 * time.Millisecond })
	runLoop(r, peer1, policy.Pull)
	s := tr.next(t)
	s.send(t, wire.GroupFrame(group(1, "a")), wire.ProgressFrame(1))
	eventually(t, "apply started", applying.Load)
	// Stay in the apply for many watchdog periods (limit: 4 heartbeats).
	time.Sleep(40 * 10 * time.Millisecond)
	if s.ctx.Err() != nil {
		t.Fatal("the watchdog dropped the stream during a slow apply")
	}
	close(release)
	eventually(t, "applied", func() bool { return len(st.applied()) == 1 })
	s.send(t, wire.HeartbeatFrame(1))
	if s.ctx.Err() != nil || len(tr.dials()) != 1 {
		t.Fatalf("stream dropped after the slow apply (%d dials)", len(tr.dials()))
	}
}

// TestPull_WatchdogDropsSilentStream: a stream that shows nothing for four
// heartbeats (and is not applying) is dropped and dialed again.
func TestPull_WatchdogDropsSilentStream(t *testing.T) {
	st := newFakeStore()
	tr := newScript(peerHello("p1", 0))
	r := testReplicator(t, selfID, st, tr, func(c *Config) { c.Heartbeat = 10 * time.Millisecond })
	runLoop(r, peer1, policy.Pull)
	s := tr.next(t)
	<-s.ctx.Done()
	tr.next(t)
}

// TestLoop_Backoff: failures back off with jitter, doubling up to the
// maximum.
func TestLoop_Backoff(t *testing.T) {
	st := newFakeStore()
	tr := newScript(peerHello("p1", 0))
	tr.helloErr = errors.New("peer down")
	var waits []time.Duration
	done := make(chan struct{})
	r := testReplicator(t, selfID, st, tr, func(c *Config) {
		c.MinBackoff, c.MaxBackoff = 100*time.Millisecond, 800*time.Millisecond
	})
	r.sleep = func(ctx context.Context, d time.Duration) bool {
		waits = append(waits, d)
		if len(waits) == 8 {
			close(done)
			return false
		}
		return true
	}
	runLoop(r, peer1, policy.Pull)
	<-done
	backoff := 100 * time.Millisecond
	for i, w := range waits {
		if w < backoff/2 || w >= backoff+backoff/2 {
			t.Fatalf("wait %d = %v, want in [%v, %v)", i, w, backoff/2, backoff+backoff/2)
		}
		backoff = min(backoff*2, 800*time.Millisecond)
	}
	if waits[7] < 400*time.Millisecond {
		t.Fatalf("waits %v did not grow", waits)
	}
}

// TestPull_ApplyErrorReconnects: a failing apply ends the stream (and moves
// no cursor); the loop dials again from the old cursor.
func TestPull_ApplyErrorReconnects(t *testing.T) {
	st := newFakeStore()
	st.applyErr = store.ErrHeldFull
	tr := newScript(peerHello("p1", 1))
	r := testReplicator(t, selfID, st, tr, nil)
	runLoop(r, peer1, policy.Pull)
	s := tr.next(t)
	s.send(t, wire.GroupFrame(group(1, "a")), wire.ProgressFrame(1))
	tr.next(t)
	if q := tr.dials()[1]; q.Get("since") != strconv.Itoa(0) {
		t.Fatalf("redial since=%s, want 0", q.Get("since"))
	}
}
