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
