package bench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost/fleet"
	"github.com/outpost-edge/outpost/node"
	"github.com/outpost-edge/outpost/store"
)

// Replication benchmarks run the demo fleet of `outpost up` in this process
// (real mutual TLS on loopback) and measure propagation, sustained
// replication throughput and catch-up.
func Replication(ctx context.Context, lim Limits, log func(Result)) ([]Result, error) {
	dir, err := os.MkdirTemp("", "outpost-bench-fleet-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	f, err := fleet.Start(ctx, dir, fleet.Demo(0), fleet.Options{})
	if err != nil {
		return nil, err
	}
	defer f.Close(context.Background())
	var out []Result
	add := func(rs ...Result) {
		for _, r := range rs {
			out = append(out, r)
			if log != nil {
				log(r)
			}
		}
	}
	src := f.Node("EDGE01")
	targets := []*node.Node{f.Node("EDGE02"), f.Node("MASTER01"), f.Node("EDGE04")}
	run := 0
	for _, rate := range []int{100, 1000, 0} {
		run++
		rs, err := propagation(ctx, src, targets, rate, lim, fmt.Sprintf("r%d", run))
		if err != nil {
			return out, err
		}
		add(rs...)
	}
	r, err := throughput(ctx, src, f.Node("MASTER01"), lim)
	if err != nil {
		return out, err
	}
	add(r)
	r, err = catchUp(ctx, src, f.Node("MASTER01"), 100_000)
	if err != nil {
		return out, err
	}
	add(r)
	return out, nil
}

// watcher records when rows with a given prefix arrive at a node.
type watcher struct {
	n       *node.Node
	prefix  string
	mu      sync.Mutex
	arrived map[int64]time.Time
	last    int64
}

func watch(ctx context.Context, n *node.Node, prefix string) *watcher {
	w := &watcher{n: n, prefix: prefix, arrived: map[int64]time.Time{}}
	go func() {
		for ctx.Err() == nil {
			ch := n.Store.Changed()
			// Rows arrive in any order of n; the target's rowid grows in
			// arrival order.
			rows, err := n.Store.Query(ctx, store.Statement{SQL: `SELECT n, rowid FROM bench_rows WHERE rowid > ? AND id >= ? AND id < ?`,
				Args: []any{w.last, prefix, prefix + "\xff"}})
			now := time.Now()
			if err == nil {
				w.mu.Lock()
				for _, r := range rows.Rows {
					k := r[0].(int64)
					if _, ok := w.arrived[k]; !ok {
						w.arrived[k] = now
					}
					w.last = max(w.last, r[1].(int64))
				}
				w.mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-ch:
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *watcher) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.arrived)
}

// propagation writes single rows at src at rate per second (0 = as fast as
// 16 concurrent clients can) and measures, per target, the time from each
// write's acknowledgement to its arrival.
func propagation(ctx context.Context, src *node.Node, targets []*node.Node, rate int, lim Limits, tag string) ([]Result, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	prefix := "prop-" + tag + "-"
	ws := make([]*watcher, len(targets))
	for i, t := range targets {
		ws[i] = watch(wctx, t, prefix)
	}
	c := NewClient(src.APIURL(), "", 16)
	var mu sync.Mutex
	acked := map[int64]time.Time{}
	var seq atomic.Int64
	write := func() error {
		k := seq.Add(1)
		body := []byte(`{"statements":[{"sql":"INSERT INTO bench_rows (id, n, body) VALUES (?, ?, 'x')","args":["` + prefix + strconv.FormatInt(k, 10) + `",` + strconv.FormatInt(k, 10) + `]}]}`)
		if err := c.Post(ctx, "/v1/exec", body, nil); err != nil {
			return err
		}
		mu.Lock()
		acked[k] = time.Now()
		mu.Unlock()
		return nil
	}
	dur := scenarioTime(lim)
	start := time.Now()
	var wg sync.WaitGroup
	var errs atomic.Int64
	if rate > 0 {
		tick := time.NewTicker(time.Second / time.Duration(rate))
		sem := make(chan struct{}, 32)
		for time.Since(start) < dur {
			<-tick.C
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				if write() != nil {
					errs.Add(1)
				}
			}()
		}
		tick.Stop()
	} else {
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Since(start) < dur {
					if write() != nil {
						errs.Add(1)
					}
				}
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	total := len(acked)
	deadline := time.Now().Add(max(60*time.Second, 2*dur))
	for _, w := range ws {
		for w.count() < total && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	achieved := float64(total) / elapsed.Seconds()
	label := fmt.Sprintf("%d writes/s", rate)
	if rate == 0 {
		label = fmt.Sprintf("max (%.0f writes/s)", achieved)
	}
	var out []Result
	for i, w := range ws {
		w.mu.Lock()
		var lat []time.Duration
		missing := 0
		for k, at := range acked {
			arr, ok := w.arrived[k]
			if !ok {
				missing++
				continue
			}
			lat = append(lat, max(0, arr.Sub(at)))
		}
		w.mu.Unlock()
		r := summarize(fmt.Sprintf("propagation EDGE01 -> %s at %s", targets[i].Identity.Name, label), 1, lat, int64(missing)+errs.Load(), elapsed)
		r.PerSecond = achieved
		if missing > 0 {
			r.Note = fmt.Sprintf("%d writes had not arrived after %s", missing, max(60*time.Second, 2*dur))
		}
		out = append(out, r)
	}
	return out, nil
}

// throughput writes 100-row transactions at src for the time limit and
// measures how fast the changes become visible at dst.
func throughput(ctx context.Context, src, dst *node.Node, lim Limits) (Result, error) {
	prefix := "tput-"
	w := watch(ctx, dst, prefix)
	start := time.Now()
	var rows atomic.Int64
	var wg sync.WaitGroup
	dur := scenarioTime(lim)
	for c := 0; c < 4; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for time.Since(start) < dur {
				stmts := make([]store.Statement, 100)
				for k := range stmts {
					n := rows.Add(1)
					stmts[k] = store.Statement{SQL: `INSERT INTO bench_rows (id, n, body) VALUES (?, ?, 'x')`, Args: []any{prefix + strconv.FormatInt(n, 10), n}}
				}
				if _, _, err := src.Store.Exec(ctx, stmts); err != nil {
					return
				}
			}
		}(c)
	}
	wg.Wait()
	total := int(rows.Load())
	deadline := time.Now().Add(max(120*time.Second, 4*dur))
	for w.count() < total && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Since(start)
	changes := float64(w.count() * 3) // sentinel + 2 columns per row
	r := Result{Name: "sustained replication EDGE01 -> MASTER01 (changes/s)", Concurrency: 4, Ops: int64(changes), Elapsed: elapsed,
		PerSecond: changes / elapsed.Seconds(), Note: fmt.Sprintf("%d rows written in %s, all at MASTER01 after %s", total, dur, elapsed.Round(time.Millisecond))}
	if got := w.count(); got < total {
		r.Errors = int64(total - got)
		r.Note = fmt.Sprintf("%d rows written in %s, only %d at MASTER01 after %s (deadline)", total, dur, got, elapsed.Round(time.Millisecond))
	}
	return r, nil
}

// catchUp partitions dst from the fleet, writes n changes at src, heals,
// and measures how fast dst catches up.
func catchUp(ctx context.Context, src, dst *node.Node, n int) (Result, error) {
	dst.Repl.Stop()
	prefix := "catch-"
	rowsWanted := n / 3
	for i := 0; i < rowsWanted; {
		stmts := make([]store.Statement, 0, 1000)
		for k := 0; k < 1000 && i < rowsWanted; k, i = k+1, i+1 {
			stmts = append(stmts, store.Statement{SQL: `INSERT INTO bench_rows (id, n, body) VALUES (?, ?, 'x')`, Args: []any{prefix + strconv.Itoa(i), int64(i + 1)}})
		}
		if _, _, err := src.Store.Exec(ctx, stmts); err != nil {
			return Result{}, err
		}
	}
	// Let the rest of the fleet settle so only dst is behind.
	time.Sleep(500 * time.Millisecond)
	w := watch(ctx, dst, prefix)
	start := time.Now()
	dst.Repl.Start()
	deadline := time.Now().Add(120 * time.Second)
	for w.count() < rowsWanted && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	elapsed := time.Since(start)
	got := w.count()
	changes := float64(got * 3)
	r := Result{Name: fmt.Sprintf("catch-up of MASTER01 after a partition (%d changes behind)", rowsWanted*3), Ops: int64(changes), Elapsed: elapsed,
		PerSecond: changes / elapsed.Seconds(), Note: fmt.Sprintf("caught up in %s", elapsed.Round(time.Millisecond))}
	if got < rowsWanted {
		// The deadline ran out: say so, and count what never arrived.
		r.Errors = int64(rowsWanted - got)
		r.Note = fmt.Sprintf("NOT caught up: %d of %d rows after %s", got, rowsWanted, elapsed.Round(time.Millisecond))
	}
	return r, nil
}

// scenarioTime is how long a replication scenario writes: --duration
// (5 s when unset).
func scenarioTime(lim Limits) time.Duration {
	if lim.Duration <= 0 {
		return 5 * time.Second
	}
	return lim.Duration
}
