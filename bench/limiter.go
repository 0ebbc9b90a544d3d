package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost/limiter"
)

// LimiterOptions shape the limiter simulation (`outpost bench --suite
// limiter`): POPs in farms plus core nodes, on an in-process transport that
// injects latency.
type LimiterOptions struct {
	POPs, Farms, Cores int
	PopRTT, CoreRTT    time.Duration // round trips between POPs, and to or between core nodes
	Window             time.Duration
	Limit              int64
	Workers            int           // request loops per POP
	Pace               time.Duration // a worker's interval between requests
	Windows            int           // windows per scenario
}

// DefaultLimiterOptions: 50 POPs in 10 farms and 2 core nodes, 20 ms between
// POPs, 40 ms to the core.
var DefaultLimiterOptions = LimiterOptions{POPs: 50, Farms: 10, Cores: 2, PopRTT: 20 * time.Millisecond, CoreRTT: 40 * time.Millisecond,
	Window: 2 * time.Second, Limit: 1040, Workers: 4, Pace: 2 * time.Millisecond, Windows: 2}

// LimiterResult is one scenario of the limiter suite.
type LimiterResult struct {
	Mode     string  `json:"mode"`    // global, local-only, local-share, central, async-100ms, global-owner-killed
	Traffic  string  `json:"traffic"` // uniform, zipf
	Requests int64   `json:"requests"`
	Worst    float64 `json:"worst_admitted_over_limit"`
	// ZeroCall is the share of decisions made with no remote call among
	// requests for keys below half their limit (in that window, so far).
	ZeroCall float64       `json:"zero_call_below_half"`
	FwdP50   time.Duration `json:"forward_p50_ns"`
	FwdP99   time.Duration `json:"forward_p99_ns"` // added latency of decisions that called another node (claims excluded)
	ClaimP99 time.Duration `json:"claim_p99_ns"`
	Note     string        `json:"note,omitempty"`
}

// decider is one way of deciding, at POP i.
type decider interface {
	decide(ctx context.Context, pop int, key string) (allowed, remote bool, win int64)
}

// LimiterSuite runs every scenario and writes a Markdown table (or JSON).
func LimiterSuite(ctx context.Context, o LimiterOptions, stdout, stderr io.Writer, asJSON bool) error {
	var results []LimiterResult
	add := func(r LimiterResult) {
		results = append(results, r)
		fmt.Fprintf(stderr, "  %-22s %-8s requests %8d worst %.3f zero-call %.1f%% fwd p99 %v claim p99 %v %s\n",
			r.Mode, r.Traffic, r.Requests, r.Worst, 100*r.ZeroCall, r.FwdP99.Round(100*time.Microsecond), r.ClaimP99.Round(100*time.Microsecond), r.Note)
	}
	for _, traffic := range []string{"uniform", "zipf"} {
		for _, mode := range []string{"global", "local-only", "local-share", "central", "async-100ms"} {
			r, err := runLimiter(ctx, o, mode, traffic, false)
			if err != nil {
				return err
			}
			add(r)
		}
	}
	r, err := runLimiter(ctx, o, "global", "zipf", true)
	if err != nil {
		return err
	}
	add(r)
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(results)
	}
	fmt.Fprintln(stdout, "| mode | traffic | requests | worst key admitted / limit | zero-call decisions, keys < limit/2 | remote decision p50 / p99 | claim p99 | note |")
	fmt.Fprintln(stdout, "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
	for _, r := range results {
		fmt.Fprintf(stdout, "| %s | %s | %d | %.3f | %.1f %% | %s / %s | %s | %s |\n", r.Mode, r.Traffic, r.Requests, r.Worst, 100*r.ZeroCall,
			ms(r.FwdP50), ms(r.FwdP99), ms(r.ClaimP99), r.Note)
	}
	return nil
}

func ms(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

func popName(i int) string  { return "POP" + strconv.Itoa(i) }
func coreName(i int) string { return "CORE" + strconv.Itoa(i) }

// rtt models the network: POPs of farm i%Farms; cores.
func (o LimiterOptions) rtt(a, b string) time.Duration {
	if a[0] == 'C' || b[0] == 'C' {
		return o.CoreRTT
	}
	return o.PopRTT
}

// truth counts what was really admitted per key and window.
type truth struct {
	mu sync.Mutex
	m  map[string]*atomic.Int64
}

func (t *truth) get(key string, win int64) *atomic.Int64 {
	k := key + "@" + strconv.FormatInt(win, 10)
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.m[k]
	if c == nil {
		c = &atomic.Int64{}
		t.m[k] = c
	}
	return c
}

func runLimiter(ctx context.Context, o LimiterOptions, mode, traffic string, kill bool) (LimiterResult, error) {
	res := LimiterResult{Mode: mode, Traffic: traffic}
	if kill {
		res.Mode = "global-owner-killed"
	}
	w := o.Window.Milliseconds()
	keys := 100
	if traffic == "zipf" {
		keys = 10_000
	}
	hook := &latencies{}
	var (
		d       decider
		net     *limiter.MemNetwork
		lims    []*limiter.Limiter
		cleanup = func() {}
	)
	switch mode {
	case "global":
		net = limiter.NewMemNetwork()
		net.RTT = o.rtt
		net.Hang = true
		var ms []limiter.Member
		for i := 0; i < o.Cores; i++ {
			ms = append(ms, limiter.Member{Name: coreName(i), Core: true})
		}
		for i := 0; i < o.POPs; i++ {
			ms = append(ms, limiter.Member{Name: popName(i)})
		}
		for _, m := range ms {
			l := limiter.New(limiter.Config{Self: m.Name, Members: ms, Transport: net.Transport(m.Name), OnForward: hook.observe})
			net.Add(m.Name, l)
			if !m.Core {
				lims = append(lims, l)
			}
		}
		d = globalDecider{lims: lims, limit: o.Limit, window: o.Window}
	case "local-only", "local-share":
		per := o.Limit
		if mode == "local-share" {
			per = o.Limit / int64(o.POPs+o.Cores)
		}
		d = newLocalDecider(o.POPs, per, w)
	case "central":
		d = &centralDecider{c: newCounters(), limit: o.Limit, w: w, rtt: o.CoreRTT}
	case "async-100ms":
		a := newAsyncDecider(o.POPs, o.Limit, w, o.CoreRTT)
		actx, cancel := context.WithCancel(ctx)
		done := a.start(actx)
		cleanup = func() { cancel(); <-done }
		d = a
	}
	defer cleanup()

	// Start at a window boundary, run o.Windows whole windows.
	now := time.Now().UnixMilli()
	begin := now - now%w + w
	if err := sleepUntil(ctx, begin); err != nil {
		return res, err
	}
	end := begin + int64(o.Windows)*w
	tr := &truth{m: map[string]*atomic.Int64{}}
	var (
		wg              sync.WaitGroup
		mu              sync.Mutex
		fwd, claims     []time.Duration
		below, belowLoc int64
		requests        int64
	)
	if kill {
		// Kill the core that owns most keys, 40% into the first window.
		go func() {
			_ = sleepUntil(ctx, begin+w*4/10)
			net.SetDown(coreName(0), true)
		}()
		defer net.SetDown(coreName(0), false)
	}
	for p := 0; p < o.POPs; p++ {
		for k := 0; k < o.Workers; k++ {
			wg.Add(1)
			go func(p int, seed uint64) {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(seed, 7))
				zipf := rand.NewZipf(rng, 1.1, 1, uint64(keys-1))
				var myFwd, myClaims []time.Duration
				var myBelow, myBelowLoc, n int64
				next := time.Now()
				for {
					next = next.Add(o.Pace)
					if time.Until(next) > 0 {
						time.Sleep(time.Until(next))
					}
					t0 := time.Now()
					if t0.UnixMilli() >= end || ctx.Err() != nil {
						break
					}
					ki := rng.IntN(keys)
					if traffic == "zipf" {
						ki = int(zipf.Uint64())
					}
					key := "k" + strconv.Itoa(ki)
					ms := t0.UnixMilli()
					isBelow := tr.get(key, ms-ms%w).Load() < o.Limit/2
					allowed, remote, win := d.decide(ctx, p, key)
					el := time.Since(t0)
					n++
					if allowed {
						tr.get(key, win).Add(1)
					}
					if isBelow {
						myBelow++
						if !remote {
							myBelowLoc++
						}
					}
					if remote && mode != "global" {
						myFwd = append(myFwd, el)
					}
				}
				mu.Lock()
				fwd = append(fwd, myFwd...)
				claims = append(claims, myClaims...)
				below += myBelow
				belowLoc += myBelowLoc
				requests += n
				mu.Unlock()
			}(p, uint64(p*1000+k+1))
		}
	}
	wg.Wait()
	res.Requests = requests
	for _, c := range tr.m {
		res.Worst = max(res.Worst, float64(c.Load())/float64(o.Limit))
	}
	if below > 0 {
		res.ZeroCall = float64(belowLoc) / float64(below)
	}
	if mode == "global" {
		fwd, claims = hook.fwd, hook.claims
	}
	res.FwdP50, res.FwdP99 = pct(fwd, 0.50), pct(fwd, 0.99)
	res.ClaimP99 = pct(claims, 0.99)
	if kill {
		var fb int64
		for _, l := range lims {
			fb += l.Stats.Fallback.Load()
		}
		slowest := time.Duration(0)
		if len(fwd) > 0 {
			slowest = slices.Max(fwd)
		}
		res.Note = fmt.Sprintf("CORE0 down (calls hang) at 40%% of window 1; fallback decisions %d; longest remote decision (time to fall back) %v", fb, slowest.Round(time.Millisecond))
	}
	if mode == "global" && !kill {
		var local, forwarded, fallback, failed int64
		for _, l := range lims {
			local += l.Stats.Local.Load()
			forwarded += l.Stats.Forwarded.Load()
			fallback += l.Stats.Fallback.Load()
			failed += l.Stats.CallFailed.Load()
		}
		res.Note = fmt.Sprintf("local %d, forwarded %d, fallback %d, failed calls %d", local, forwarded, fallback, failed)
	}
	return res, nil
}

// latencies collects the limiter's OnForward observations.
type latencies struct {
	mu          sync.Mutex
	fwd, claims []time.Duration
}

func (h *latencies) observe(d time.Duration, claim bool) {
	h.mu.Lock()
	if claim {
		h.claims = append(h.claims, d)
	} else {
		h.fwd = append(h.fwd, d)
	}
	h.mu.Unlock()
}

func pct(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, int(float64(len(ds))*q))]
}

func sleepUntil(ctx context.Context, ms int64) error {
	d := time.Until(time.UnixMilli(ms))
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type globalDecider struct {
	lims   []*limiter.Limiter
	limit  int64
	window time.Duration
}

func (g globalDecider) decide(ctx context.Context, pop int, key string) (bool, bool, int64) {
	d, err := g.lims[pop].Decide(ctx, limiter.Request{Key: key, Limit: g.limit, Window: g.window, Cost: 1})
	if err != nil {
		return false, false, 0
	}
	return d.Allowed, d.Path == limiter.PathForwarded, d.ResetMS - g.window.Milliseconds()
}

// counters is a mutex-guarded count per key and window.
type counters struct {
	mu sync.Mutex
	m  map[string]int64
}

func newCounters() *counters { return &counters{m: map[string]int64{}} }

func (c *counters) take(key string, win, limit int64) bool {
	if limit <= 0 {
		return false
	}
	k := key + "@" + strconv.FormatInt(win, 10)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m[k]+1 > limit {
		return false
	}
	c.m[k]++
	return true
}

type localDecider struct {
	pops []*counters
	per  int64
	w    int64
}

func newLocalDecider(n int, per, w int64) *localDecider {
	d := &localDecider{per: per, w: w}
	for i := 0; i < n; i++ {
		d.pops = append(d.pops, newCounters())
	}
	return d
}

func (d *localDecider) decide(_ context.Context, pop int, key string) (bool, bool, int64) {
	ms := time.Now().UnixMilli()
	return d.pops[pop].take(key, ms-ms%d.w, d.per), false, ms - ms%d.w
}

type centralDecider struct {
	c     *counters
	limit int64
	w     int64
	rtt   time.Duration
}

func (d *centralDecider) decide(ctx context.Context, _ int, key string) (bool, bool, int64) {
	time.Sleep(d.rtt / 2)
	ms := time.Now().UnixMilli()
	ok := d.c.take(key, ms-ms%d.w, d.limit)
	time.Sleep(d.rtt - d.rtt/2)
	return ok, true, ms - ms%d.w
}

// asyncDecider counts locally and syncs deltas with a central total every
// 100 ms (gubernator's GLOBAL behaviour): a POP admits while the total it
// last heard plus its own unsynced count is under the limit.
type asyncDecider struct {
	limit, w int64
	rtt      time.Duration
	pops     []*asyncPOP
	central  *counters
}

type asyncPOP struct {
	mu    sync.Mutex
	known map[string]int64 // global total last heard, by key@window
	delta map[string]int64 // admitted here since the last sync
}

func newAsyncDecider(n int, limit, w int64, rtt time.Duration) *asyncDecider {
	a := &asyncDecider{limit: limit, w: w, rtt: rtt, central: newCounters()}
	for i := 0; i < n; i++ {
		a.pops = append(a.pops, &asyncPOP{known: map[string]int64{}, delta: map[string]int64{}})
	}
	return a
}

func (a *asyncDecider) decide(_ context.Context, pop int, key string) (bool, bool, int64) {
	ms := time.Now().UnixMilli()
	win := ms - ms%a.w
	k := key + "@" + strconv.FormatInt(win, 10)
	p := a.pops[pop]
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.known[k]+p.delta[k]+1 > a.limit {
		return false, false, win
	}
	p.delta[k]++
	return true, false, win
}

func (a *asyncDecider) start(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, p := range a.pops {
		wg.Add(1)
		go func(p *asyncPOP) {
			defer wg.Done()
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				p.mu.Lock()
				d := p.delta
				p.delta = map[string]int64{}
				p.mu.Unlock()
				time.Sleep(a.rtt / 2)
				totals := map[string]int64{}
				a.central.mu.Lock()
				for k, v := range d {
					a.central.m[k] += v
				}
				for k := range p.known {
					totals[k] = a.central.m[k]
				}
				for k := range d {
					totals[k] = a.central.m[k]
				}
				a.central.mu.Unlock()
				time.Sleep(a.rtt - a.rtt/2)
				p.mu.Lock()
				for k, v := range totals {
					p.known[k] = v
				}
				p.mu.Unlock()
			}
		}(p)
	}
	go func() { wg.Wait(); close(done) }()
	return done
}
