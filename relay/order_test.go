package relay

import (
	"context"
	"testing"
	"time"
)

func TestRelay_ForwardOrder(t *testing.T) {
	r := New(Config{Self: "EDGE02", Keys: newTestKeys(t, "EDGE02")})
	fw := func(seq uint64) *Forward {
		return &Forward{Target: "EDGE02", Stream: "EDGE01/abc", Seq: seq, Msgs: []Message{{Node: "EDGE01"}}}
	}
	ctx := context.Background()
	// 2 arrives before 1: it waits for 1 to be delivered.
	got := make(chan uint64, 3)
	go func() {
		done := r.inOrder(ctx, fw(2))
		got <- 2
		done()
	}()
	time.Sleep(20 * time.Millisecond)
	select {
	case <-got:
		t.Fatal("forward 2 delivered before forward 1")
	default:
	}
	done := r.inOrder(ctx, fw(1))
	got <- 1
	done()
	if a, b := <-got, <-got; a != 1 || b != 2 {
		t.Fatalf("order %d, %d", a, b)
	}
	// A missing forward (3) holds 4 back reorderWait at most.
	t0 := time.Now()
	r.inOrder(ctx, fw(4))()
	if d := time.Since(t0); d < reorderWait-10*time.Millisecond || d > reorderWait+time.Second {
		t.Errorf("forward 4 waited %v for the missing 3, want about %v", d, reorderWait)
	}
	// 3 arriving late is delivered at once (its messages are deduplicated).
	t0 = time.Now()
	r.inOrder(ctx, fw(3))()
	if d := time.Since(t0); d > 50*time.Millisecond {
		t.Errorf("late forward 3 waited %v", d)
	}
	// A stream that does not name its messages' edge is not ordered.
	f := fw(100)
	f.Stream = "EDGE09/x"
	t0 = time.Now()
	r.inOrder(ctx, f)()
	if d := time.Since(t0); d > 50*time.Millisecond {
		t.Errorf("foreign stream waited %v", d)
	}
	// A stream first seen mid-way (this node restarted) starts there.
	t0 = time.Now()
	r.inOrder(ctx, &Forward{Stream: "EDGE03/y", Seq: 500, Msgs: []Message{{Node: "EDGE03"}}})()
	if d := time.Since(t0); d > 50*time.Millisecond {
		t.Errorf("new stream at 500 waited %v", d)
	}
}

func TestPresenceCache(t *testing.T) {
	var c presenceCache
	now := time.Now()
	_, gen, ok := c.get("u\x00bob", now)
	if ok {
		t.Fatal("hit on an empty cache")
	}
	c.put("u\x00bob", []string{"EDGE02"}, gen, now)
	if n, _, ok := c.get("u\x00bob", now); !ok || len(n) != 1 {
		t.Fatalf("get = %v, %v", n, ok)
	}
	if _, _, ok := c.get("u\x00bob", now.Add(presenceTTL)); ok {
		t.Error("hit after the TTL")
	}
	// A lookup that began before an invalidation is not cached.
	_, gen, _ = c.get("u\x00carol", now)
	c.observe(7)
	c.put("u\x00carol", nil, gen, now)
	if _, _, ok := c.get("u\x00carol", now); ok {
		t.Error("cached an answer older than the invalidation")
	}
	if _, _, ok := c.get("u\x00bob", now); ok {
		t.Error("a version change kept the entries")
	}
	_, gen, _ = c.get("x", now)
	c.put("u\x00bob", []string{"EDGE03"}, gen, now)
	c.observe(7) // same version: kept
	if _, _, ok := c.get("u\x00bob", now); !ok {
		t.Error("the same version emptied the cache")
	}
	c.invalidate()
	if _, _, ok := c.get("u\x00bob", now); ok {
		t.Error("invalidate kept the entries")
	}
}

func TestConn_QueueStartsWriterOnDemand(t *testing.T) {
	var st Stats
	c := newConn("bob", "d", 2, func(bool) {})
	wakes := 0
	c.wake = func() { wakes++ }
	c.push([]byte("1"), &st)
	c.push([]byte("2"), &st)
	if wakes != 1 {
		t.Fatalf("wakes = %d, want 1 (one writer for the two frames)", wakes)
	}
	// A full queue makes pushWait wait until the writer takes a frame.
	done := make(chan error, 1)
	go func() { done <- c.pushWait(context.Background(), []byte("3"), "", &st) }()
	time.Sleep(20 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("pushWait did not wait on a full queue")
	default:
	}
	var got []string
	for {
		f, ok := c.next()
		if !ok {
			break
		}
		got = append(got, string(f.b))
		if len(got) == 1 {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(got) != 3 || got[0] != "1" || got[1] != "2" || got[2] != "3" {
		t.Fatalf("frames %q", got)
	}
	if c.queue != nil || c.writing {
		t.Error("an empty queue kept its array or its writer")
	}
	c.push([]byte("4"), &st)
	if wakes != 2 {
		t.Errorf("wakes = %d after the writer ended, want 2", wakes)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c.push([]byte("5"), &st)
	if err := c.pushWait(ctx, []byte("6"), "", &st); err == nil {
		t.Error("pushWait on a full queue ignored its context")
	}
}
