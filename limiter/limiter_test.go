package limiter

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// A key far from its limit is decided where it arrives, with no calls.
func TestFastPath_NoRemoteCalls(t *testing.T) {
	cl := newCluster(t, 2, 4, nil) // P = 6
	for _, at := range cl.order {
		for i := 0; i < 16; i++ { // share = 100/6 = 16
			if d := cl.decide(t, at, "ip:1", 100, time.Minute); !d.Allowed || d.Path != PathLocal {
				t.Fatalf("%s request %d: %+v; want allowed locally", at, i, d)
			}
		}
	}
	if n := cl.net.Calls(""); n != 0 {
		t.Fatalf("%d remote calls; want 0", n)
	}
}

// At the threshold a POP claims; the owner collects every count (handover)
// and the window admits exactly the limit, no more.
func TestClaim_HandoverExact(t *testing.T) {
	cl := newCluster(t, 2, 4, nil)
	const limit = 100
	key := "ip:203.0.113.9"
	arb := cl.arbiterOf(key)
	admitted := 0
	// Every POP uses part of its share; then E1 goes on past it.
	for _, at := range cl.order {
		for i := 0; i < 10; i++ {
			if cl.decide(t, at, key, limit, time.Minute).Allowed {
				admitted++
			}
		}
	}
	var last Decision
	for i := 0; i < 200; i++ {
		d := cl.decide(t, "E1", key, limit, time.Minute)
		if d.Allowed {
			admitted++
		}
		if i > 6 && d.Path != PathForwarded && d.Path != PathLocal {
			t.Fatalf("request %d: path %s; want forwarded (or local within a lease)", i, d.Path)
		}
		last = d
	}
	if admitted != limit {
		t.Fatalf("admitted %d; want exactly %d", admitted, limit)
	}
	if last.Owner != arb || last.Remaining != 0 {
		t.Fatalf("last decision %+v; want owner %s, remaining 0", last, arb)
	}
	// Every other POP now forwards to the same owner.
	for _, at := range cl.order {
		if at == arb {
			continue
		}
		if d := cl.decide(t, at, key, limit, time.Minute); d.Allowed || d.Owner != arb {
			t.Fatalf("%s after the limit: %+v", at, d)
		}
	}
	o := cl.nodes[arb]
	if o.Stats.Owned.Load() != 1 || o.Stats.Handovers.Load() < 5 {
		t.Fatalf("owner stats: owned %d handovers %d", o.Stats.Owned.Load(), o.Stats.Handovers.Load())
	}
}

// Two POPs crossing the threshold at once end with one owner, and both
// counts are kept.
func TestClaim_Race(t *testing.T) {
	cl := newCluster(t, 3, 6, nil) // P = 9, share 11
	cl.net.RTT = func(string, string) time.Duration { return 5 * time.Millisecond }
	const limit = 100
	key := "user:42"
	for _, at := range []string{"E1", "E2"} {
		for i := 0; i < 11; i++ {
			cl.decide(t, at, key, limit, time.Minute)
		}
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		owners = map[string]bool{}
		more   int
	)
	for _, at := range []string{"E1", "E2"} {
		wg.Add(1)
		go func(at string) {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				d, err := cl.nodes[at].Decide(context.Background(), Request{Key: key, Limit: limit, Window: time.Minute})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if d.Path == PathForwarded {
					owners[d.Owner] = true
				}
				if d.Allowed {
					more++
				}
				mu.Unlock()
			}
		}(at)
	}
	wg.Wait()
	if len(owners) != 1 || !owners[cl.arbiterOf(key)] {
		t.Fatalf("owners %v; want only %s", owners, cl.arbiterOf(key))
	}
	if got := 22 + more; got != limit {
		t.Fatalf("admitted %d; want exactly %d (counts handed over, none lost)", got, limit)
	}
}

// Counters start again at every window; the owner's state ends with its
// window.
func TestWindowRollover(t *testing.T) {
	cl := newCluster(t, 1, 3, nil) // P = 4
	const limit = 20
	w := 10 * time.Second
	cl.clk.Set(cl.clk.windowEnd(w.Milliseconds()) - 5000)
	count := func() (n int) {
		for i := 0; i < 40; i++ {
			if cl.decide(t, cl.order[1+i%3], "k", limit, w).Allowed {
				n++
			}
		}
		return n
	}
	if n := count(); n != limit {
		t.Fatalf("first window admitted %d; want %d", n, limit)
	}
	d := cl.decide(t, "E1", "k", limit, w)
	if d.ResetMS != cl.clk.windowEnd(w.Milliseconds()) {
		t.Fatalf("reset_ms %d; want %d", d.ResetMS, cl.clk.windowEnd(w.Milliseconds()))
	}
	cl.clk.Add(5 * time.Second) // exactly the next window's start
	if d := cl.decide(t, "E2", "k", limit, w); !d.Allowed || d.Path != PathLocal {
		t.Fatalf("new window: %+v; want allowed locally", d)
	}
	if n := count(); n != limit-1 {
		t.Fatalf("second window admitted %d more; want %d", n, limit-1)
	}
}

// When the owner stops answering, POPs fall back to a share of what the
// owner last said remained, within CallTimeout, and the window's excess is
// bounded; the next window claims at another core member.
func TestOwnerLoss_Fallback(t *testing.T) {
	cl := newCluster(t, 2, 4, nil) // P = 6
	const limit = 600              // share 100
	key := "ip:9"
	w := time.Second
	owner := cl.arbiterOf(key)
	admitted := 0
	edges := []string{"E1", "E2", "E3", "E4"}
	for i := 0; i < 500; i++ { // 400 local, then a claim and forwards
		if cl.decide(t, edges[i%4], key, limit, w).Allowed {
			admitted++
		}
	}
	if admitted != 500 {
		t.Fatalf("admitted %d before the loss; want 500", admitted)
	}
	cl.net.SetDown(owner, true)
	for i := 0; i < 2000; i++ {
		d := cl.decide(t, edges[i%4], key, limit, w)
		if d.Allowed {
			admitted++
		}
		if d.Path != PathFallback && d.Path != PathLocal {
			t.Fatalf("request %d after owner loss: path %s", i, d.Path)
		}
	}
	// Each POP's fallback budget is floor(R/P) of the remaining R it last
	// saw (here R <= 100, P = 6: at most 16 each).
	if admitted > limit+4*16 {
		t.Fatalf("admitted %d in the window; the bound is %d", admitted, limit+4*16)
	}
	t.Logf("admitted %d of %d with the owner lost mid-window", admitted, limit)
	for _, e := range edges {
		if cl.nodes[e].Stats.CallFailed.Load() != 1 {
			t.Errorf("%s: %d failed calls; want 1 (then fallback without calls)", e, cl.nodes[e].Stats.CallFailed.Load())
		}
	}
	// Next window (within DownFor): the other core member owns the key.
	cl.clk.Set(cl.clk.windowEnd(w.Milliseconds()))
	for i := 0; i < 400; i++ {
		cl.decide(t, edges[i%4], key, limit, w)
	}
	d := cl.decide(t, "E1", key, limit, w)
	if d.Path != PathForwarded || d.Owner == owner || d.Owner == "" || !d.Allowed {
		t.Fatalf("next window: %+v; want allowed, forwarded to the other core", d)
	}
}

// A hanging owner (partition) costs at most CallTimeout before fallback.
func TestOwnerLoss_BoundedTime(t *testing.T) {
	cl := newCluster(t, 1, 2, func(c *Config) { c.CallTimeout = 50 * time.Millisecond })
	cl.net.Hang = true
	for i := 0; i < 3; i++ { // share 3/3 = 1 each
		cl.decide(t, cl.order[i], "k", 3, time.Minute)
	}
	cl.net.SetDown("C1", true)
	t0 := time.Now()
	d := cl.decide(t, "E1", "k", 3, time.Minute)
	if d.Path != PathFallback || d.Allowed {
		t.Fatalf("%+v; want a fallback refusal (no remaining known)", d)
	}
	if el := time.Since(t0); el > 5*time.Second {
		t.Fatalf("fallback took %v", el)
	}
}

// A blocked key is refused locally, without calls, until the block ends.
func TestBlock(t *testing.T) {
	cl := newCluster(t, 1, 2, nil)
	var stored []string
	l := cl.nodes["E1"]
	l.cfg.PutBlock = func(_ context.Context, key string, until int64) error {
		stored = append(stored, key)
		return nil
	}
	until := cl.clk.ms_() + 30_000
	if err := l.Block(context.Background(), "ip:6", until); err != nil {
		t.Fatal(err)
	}
	d := cl.decide(t, "E1", "ip:6", 100, time.Minute)
	if d.Allowed || d.Path != PathBlocked || d.ResetMS != until {
		t.Fatalf("%+v; want blocked until %d", d, until)
	}
	if len(stored) != 1 || cl.net.Calls("") != 0 {
		t.Fatalf("stored %v, calls %d", stored, cl.net.Calls(""))
	}
	// Propagation: what the node replicates reaches the other sets.
	cl.nodes["E2"].Blocks().Replace(map[string]int64{"ip:6": until})
	if d := cl.decide(t, "E2", "ip:6", 100, time.Minute); d.Path != PathBlocked {
		t.Fatalf("E2: %+v", d)
	}
	cl.clk.Add(30 * time.Second)
	if d := cl.decide(t, "E1", "ip:6", 100, time.Minute); !d.Allowed {
		t.Fatalf("after the block: %+v", d)
	}
	var ie *InputError
	if err := l.Block(context.Background(), "", until); !errors.As(err, &ie) || ie.Code != CodeBadKey {
		t.Fatalf("empty key: %v", err)
	}
	if err := l.Block(context.Background(), "k", -1); !errors.As(err, &ie) || ie.Code != CodeBadUntil {
		t.Fatalf("negative until: %v", err)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		r    Request
		code string
	}{
		{Request{Key: "", Limit: 1, Window: time.Second}, CodeBadKey},
		{Request{Key: "a b", Limit: 1, Window: time.Second}, CodeBadKey},
		{Request{Key: string(make([]byte, 300)), Limit: 1, Window: time.Second}, CodeBadKey},
		{Request{Key: "k", Limit: 0, Window: time.Second}, CodeBadLimit},
		{Request{Key: "k", Limit: MaxLimit + 1, Window: time.Second}, CodeBadLimit},
		{Request{Key: "k", Limit: 1, Window: 0}, CodeBadWindow},
		{Request{Key: "k", Limit: 1, Window: 25 * time.Hour}, CodeBadWindow},
		{Request{Key: "k", Limit: 1, Window: 1500 * time.Microsecond}, CodeBadWindow},
		{Request{Key: "k", Limit: 5, Window: time.Second, Cost: 6}, CodeBadCost},
		{Request{Key: "k", Limit: 5, Window: time.Second, Cost: -1}, CodeBadCost},
		{Request{Key: "k", Limit: 5, Window: time.Second}, ""},
	} {
		err := tc.r.Validate()
		var ie *InputError
		if tc.code == "" {
			if err != nil || tc.r.Cost != 1 {
				t.Errorf("%+v: %v", tc.r, err)
			}
			continue
		}
		if !errors.As(err, &ie) || ie.Code != tc.code {
			t.Errorf("%+v: got %v; want code %s", tc.r, err, tc.code)
		}
	}
}

// Peers sending forged claims, huge counts or calls they may not make are
// refused and counted.
func TestPeerRefusals(t *testing.T) {
	cl := newCluster(t, 1, 2, nil)
	ctx := context.Background()
	now := cl.clk.ms_()
	start := windowStart(now, 60_000)
	e1, c1 := cl.nodes["E1"], cl.nodes["C1"]
	ann := AnnounceCall{Key: "k", Limit: 10, WindowMS: 60_000, Start: start, Owner: "E2"}
	var re *RefusedError
	if _, err := e1.HandleAnnounce(ctx, "E2", ann); !errors.As(err, &re) || re.Reason != "not_arbiter" {
		t.Fatalf("edge announce: %v", err)
	}
	ann.Owner = "E2"
	if _, err := e1.HandleAnnounce(ctx, "C1", ann); !errors.As(err, &re) || re.Reason != "forged_owner" {
		t.Fatalf("forged owner: %v", err)
	}
	if _, err := e1.HandleAnnounce(ctx, "X9", ann); !errors.As(err, &re) || re.Reason != "not_member" {
		t.Fatalf("stranger: %v", err)
	}
	if _, err := e1.HandleDecide(ctx, "E2", DecideCall{Key: "k", Limit: 10, WindowMS: 60_000, Start: start, Cost: 1}); !errors.As(err, &re) || re.Reason != "not_arbiter" {
		t.Fatalf("decide at an edge: %v", err)
	}
	if _, err := c1.HandleDecide(ctx, "E1", DecideCall{Key: "k", Limit: 10, WindowMS: 60_000, Start: start, Cost: 1, Handover: 1 << 40}); !errors.As(err, &re) || re.Reason != "count_out_of_range" {
		t.Fatalf("huge handover: %v", err)
	}
	if _, err := c1.HandleDecide(ctx, "E1", DecideCall{Key: "k", Limit: 10, WindowMS: 60_000, Start: start + 7, Cost: 1}); !errors.As(err, &re) || re.Reason != "bad_request" {
		t.Fatalf("bad start: %v", err)
	}
	if got := e1.Stats.PeerRefused(); got["not_arbiter"] != 2 || got["forged_owner"] != 1 || got["not_member"] != 1 {
		t.Fatalf("E1 refusals %v", got)
	}
	if got := c1.Stats.PeerRefused(); got["count_out_of_range"] != 1 || got["bad_request"] != 1 {
		t.Fatalf("C1 refusals %v", got)
	}
}

// A flood of distinct keys stops at MaxKeys; counters of ended windows make
// room again.
func TestKeyTableBound(t *testing.T) {
	cl := newCluster(t, 1, 1, func(c *Config) { c.MaxKeys = 64 * 64 })
	l := cl.nodes["E1"]
	full := 0
	for i := 0; i < 20_000; i++ {
		_, err := l.Decide(context.Background(), Request{Key: "flood:" + itoa(i), Limit: 1000, Window: time.Second})
		if errors.Is(err, ErrFull) {
			full++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if l.Keys() > 64*64 || full == 0 {
		t.Fatalf("keys %d, refused as full %d", l.Keys(), full)
	}
	cl.clk.Add(2 * time.Second)
	for i := 0; i < 2000; i++ {
		if _, err := l.Decide(context.Background(), Request{Key: "new:" + itoa(i), Limit: 1000, Window: time.Second}); err != nil {
			t.Fatalf("after the window: %v", err)
		}
	}
}

func itoa(i int) string {
	b := []byte{}
	for {
		b = append([]byte{byte('0' + i%10)}, b...)
		i /= 10
		if i == 0 {
			return string(b)
		}
	}
}
