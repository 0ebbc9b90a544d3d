package sim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/store"
)

// Report is the outcome of Run.
type Report struct {
	Nodes, Farms, Edges int
	Writes              int // acknowledged (each at a random edge)
	WriteErrors         int
	Changes             int64 // changes written (applied once at MASTER01)
	PartitionedFarms    []string
	LostHub             string
	// DeliveriesPerChange is every change delivery counted by the stores
	// (applied + ignored + held + refused) during the writes and until the
	// counters are quiet, per change written; PerNode divides it by N-1.
	DeliveriesPerChange, DeliveriesPerChangePerNode float64
	// Bytes at the transport from the first write until quiet, per node
	// (sent + received, /2 so each byte counts once) and at the busiest hub.
	BytesPerNode, BytesBusiestHub int64
	BusiestHub                    string
	// Startup is the time to build the fleet; Ready from Start until a
	// write at MASTER01 reached every node.
	Startup, Ready time.Duration
	// Settle is from the last acknowledged write (after the partition
	// healed) until every running node had every row; HubCatchUp from the
	// restart of the lost hub until it had them too.
	Settle, HubCatchUp time.Duration
	// Memory per node once the fleet is up and idle: Go heap in use and
	// obtained from the OS (runtime.MemStats), resident set (whole process:
	// SQLite's memory is outside the Go heap), goroutines.
	HeapPerNode, SysPerNode, RSSPerNode int64
	GoroutinesPerNode                   float64
	Rows                                int64
	Checksum                            string
	Total                               time.Duration
}

type memSnap struct {
	heap, sys, rss int64
	goroutines     int
}

func snapMem() memSnap {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := memSnap{heap: int64(ms.HeapInuse), sys: int64(ms.Sys), goroutines: runtime.NumGoroutine()}
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			pages, _ := strconv.ParseInt(f[1], 10, 64)
			s.rss = pages * int64(os.Getpagesize())
		}
	}
	return s
}

// Run builds the fleet, replicates, checks convergence and tears it all
// down; the error says what did not converge.
func Run(ctx context.Context, o Options) (rep *Report, err error) {
	o.defaults()
	t0 := time.Now()
	m0 := snapMem()
	logf := func(format string, args ...any) {
		fmt.Fprintf(o.Log, "%7.1fs  %s\n", time.Since(t0).Seconds(), fmt.Sprintf(format, args...))
	}
	f, err := build(ctx, o)
	if f != nil {
		defer func() {
			t := time.Now()
			f.Close()
			logf("closed in %s", time.Since(t).Round(time.Millisecond))
		}()
	}
	if err != nil {
		return nil, fmt.Errorf("sim: build: %w", err)
	}
	n := len(f.nodes)
	rep = &Report{Nodes: n, Farms: o.Farms, Edges: o.Edges, Startup: time.Since(t0)}
	logf("built %d nodes in %s (stores in %s)", n, rep.Startup.Round(time.Millisecond), f.dir)

	t1 := time.Now()
	for _, nd := range f.nodes {
		nd.r.Start()
	}
	master := f.byName["MASTER01"]
	if err := exec(ctx, master.st, "warm", "MASTER01", 0); err != nil {
		return rep, err
	}
	if _, err := f.converge(ctx, 1, nil); err != nil {
		return rep, fmt.Errorf("sim: warm-up: %w", err)
	}
	rep.Ready = time.Since(t1)
	logf("ready: the warm-up write reached every node in %s", rep.Ready.Round(time.Millisecond))
	m1 := snapMem()
	rep.HeapPerNode = (m1.heap - m0.heap) / int64(n)
	rep.SysPerNode = (m1.sys - m0.sys) / int64(n)
	rep.RSSPerNode = (m1.rss - m0.rss) / int64(n)
	rep.GoroutinesPerNode = float64(m1.goroutines-m0.goroutines) / float64(n)
	logf("memory per node: heap %s, sys %s, rss %s, %.1f goroutines", kib(rep.HeapPerNode), kib(rep.SysPerNode), kib(rep.RSSPerNode), rep.GoroutinesPerNode)

	// Measured from here.
	stats0 := f.replTotal()
	master0 := master.st.ReplStats().Applied
	bytes0 := f.bytes()

	var cut []string
	for i := o.Farms - o.PartitionFarms + 1; i <= o.Farms; i++ {
		cut = append(cut, fmt.Sprintf("f%03d", i))
	}
	rep.PartitionedFarms = cut
	var edges []*node
	for _, nd := range f.nodes {
		if !nd.isHub() {
			edges = append(edges, nd)
		}
	}
	rng := rand.New(rand.NewPCG(o.Seed, 42))
	tick := time.NewTicker(time.Duration(float64(time.Second) / o.WriteRate))
	var (
		wmu      sync.Mutex
		wwg      sync.WaitGroup
		lastAck  time.Time
		writeErr error
	)
	for i := 0; i < o.Writes; i++ {
		switch i {
		case o.Writes / 4:
			if len(cut) > 0 {
				f.Partition(cut...)
				logf("partition: farms %s cut off", strings.Join(cut, ","))
			}
		case o.Writes / 2:
			if !o.NoHubLoss {
				rep.LostHub = "NODE02"
				f.Stop("NODE02")
				logf("hub lost: NODE02 stopped")
			}
		case 3 * o.Writes / 4:
			if len(cut) > 0 {
				f.Heal()
				logf("partition healed")
			}
		}
		select {
		case <-ctx.Done():
			wwg.Wait()
			return rep, ctx.Err()
		case <-tick.C:
		}
		e := edges[rng.IntN(len(edges))]
		wwg.Add(1)
		go func(i int) {
			defer wwg.Done()
			err := exec(ctx, e.st, fmt.Sprintf("w%07d", i), e.id.Name, i)
			wmu.Lock()
			defer wmu.Unlock()
			if err != nil {
				rep.WriteErrors++
				writeErr = err
				return
			}
			rep.Writes++
			lastAck = time.Now()
		}(i)
	}
	tick.Stop()
	wwg.Wait()
	if len(cut) > 0 && o.Writes < 4 {
		f.Heal()
	}
	if writeErr != nil {
		return rep, fmt.Errorf("sim: %d writes failed, e.g. %w", rep.WriteErrors, writeErr)
	}
	logf("%d writes acknowledged", rep.Writes)
	want := int64(rep.Writes + 1)
	skip := map[*node]bool{}
	if rep.LostHub != "" {
		skip[f.byName[rep.LostHub]] = true
	}
	if _, err := f.converge(ctx, want, skip); err != nil {
		return rep, fmt.Errorf("sim: after the writes: %w", err)
	}
	rep.Settle = time.Since(lastAck)
	logf("settled: every running node has all %d rows %s after the last write", want, rep.Settle.Round(time.Millisecond))
	if rep.LostHub != "" {
		t := time.Now()
		f.Restart(rep.LostHub)
		if _, err := f.converge(ctx, want, nil); err != nil {
			return rep, fmt.Errorf("sim: lost hub back: %w", err)
		}
		rep.HubCatchUp = time.Since(t)
		logf("%s restarted and caught up in %s", rep.LostHub, rep.HubCatchUp.Round(time.Millisecond))
	}
	if err := f.quiet(ctx); err != nil {
		return rep, err
	}
	stats := f.replTotal() - stats0
	rep.Changes = master.st.ReplStats().Applied - master0
	if rep.Changes > 0 {
		rep.DeliveriesPerChange = float64(stats) / float64(rep.Changes)
		rep.DeliveriesPerChangePerNode = rep.DeliveriesPerChange / float64(n-1)
	}
	var total int64
	for i, nd := range f.nodes {
		b := nd.sent.Load() + nd.recv.Load() - bytes0[i]
		total += b
		if nd.isHub() && b > rep.BytesBusiestHub {
			rep.BytesBusiestHub, rep.BusiestHub = b, nd.id.Name
		}
	}
	rep.BytesPerNode = total / 2 / int64(n)
	rows, sum, err := f.checksum(ctx)
	if err != nil {
		return rep, err
	}
	rep.Rows, rep.Checksum = rows, sum
	if rows != want {
		return rep, fmt.Errorf("sim: every node has %d rows, want %d", rows, want)
	}
	rep.Total = time.Since(t0)
	logf("converged: %d nodes, %d rows, checksum %s; %.2f deliveries per change per node", n, rows, sum[:16], rep.DeliveriesPerChangePerNode)
	return rep, nil
}

func kib(b int64) string { return fmt.Sprintf("%d KiB", b>>10) }

func exec(ctx context.Context, s *store.Store, id, origin string, n int) error {
	_, _, err := s.Exec(ctx, []store.Statement{{SQL: `INSERT INTO sim (id, origin, n) VALUES (?, ?, ?)`, Args: []any{id, origin, n}}})
	return err
}

func count(ctx context.Context, s *store.Store) (int64, error) {
	res, err := s.Query(ctx, store.Statement{SQL: `SELECT count(*) FROM sim`})
	if err != nil {
		return 0, err
	}
	n, _ := res.Rows[0][0].(int64)
	return n, nil
}

// converge polls every node but those in skip until each has want rows,
// for at most Options.Timeout.
func (f *Fleet) converge(ctx context.Context, want int64, skip map[*node]bool) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(f.opts.Timeout)
	pending := make([]*node, 0, len(f.nodes))
	for _, n := range f.nodes {
		if !skip[n] {
			pending = append(pending, n)
		}
	}
	var lastErr error
	for {
		rest := pending[:0]
		for _, n := range pending {
			// A count that fails (e.g. a statement timeout on an
			// overloaded machine) leaves the node pending.
			c, err := count(ctx, n.st)
			if err != nil {
				if ctx.Err() != nil {
					return 0, ctx.Err()
				}
				lastErr = err
			}
			if err != nil || c < want {
				rest = append(rest, n)
			}
		}
		pending = rest
		if len(pending) == 0 {
			return time.Since(start), nil
		}
		if time.Now().After(deadline) {
			names := []string{}
			for _, n := range pending[:min(len(pending), 10)] {
				names = append(names, n.id.Name)
			}
			return 0, fmt.Errorf("%d nodes still lack rows after %s (want %d), e.g. %s (last count error: %v)", len(pending), f.opts.Timeout, want, strings.Join(names, ", "), lastErr)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return 0, err
		}
	}
}

// replTotal sums every node's change deliveries.
func (f *Fleet) replTotal() int64 {
	var t int64
	for _, n := range f.nodes {
		s := n.st.ReplStats()
		t += s.Applied + s.Ignored + s.Held + s.Refused
	}
	return t
}

func (f *Fleet) bytes() []int64 {
	out := make([]int64, len(f.nodes))
	for i, n := range f.nodes {
		out[i] = n.sent.Load() + n.recv.Load()
	}
	return out
}

// quiet waits until no delivery has been counted for 2 s (late duplicates
// included), for at most Options.Timeout.
func (f *Fleet) quiet(ctx context.Context) error {
	deadline := time.Now().Add(f.opts.Timeout)
	last, since := f.replTotal(), time.Now()
	for time.Since(since) < 2*time.Second {
		if time.Now().After(deadline) {
			return errors.New("sim: deliveries never stopped")
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
		if t := f.replTotal(); t != last {
			last, since = t, time.Now()
		}
	}
	return nil
}

// checksum returns the row count and a hash of the table, the same on
// every node, or an error naming a node that differs.
func (f *Fleet) checksum(ctx context.Context) (int64, string, error) {
	var rows int64
	var sum string
	for i, n := range f.nodes {
		res, err := n.st.Query(ctx, store.Statement{SQL: `SELECT id, origin, n FROM sim ORDER BY id`})
		if err != nil {
			return 0, "", err
		}
		h := sha256.New()
		for _, r := range res.Rows {
			fmt.Fprintf(h, "%v|%v|%v\n", r[0], r[1], r[2])
		}
		s := hex.EncodeToString(h.Sum(nil))
		if i == 0 {
			rows, sum = int64(len(res.Rows)), s
		} else if s != sum || int64(len(res.Rows)) != rows {
			return 0, "", fmt.Errorf("sim: %s has %d rows with checksum %s, %s has %d with %s", n.id.Name, len(res.Rows), s[:16], f.nodes[0].id.Name, rows, sum[:16])
		}
	}
	return rows, sum, nil
}

// WriteMarkdown prints the report as a table.
func (r *Report) WriteMarkdown(w io.Writer) error {
	mib := func(b int64) string { return fmt.Sprintf("%.2f MiB", float64(b)/(1<<20)) }
	rows := [][2]string{
		{"nodes", fmt.Sprintf("%d (1 master, 2 nodes, %d farms x %d edges)", r.Nodes, r.Farms, r.Edges)},
		{"writes acknowledged (random edges)", fmt.Sprint(r.Writes)},
		{"changes written", fmt.Sprint(r.Changes)},
		{"partitioned farms", strings.Join(r.PartitionedFarms, ", ")},
		{"hub lost", r.LostHub},
		{"deliveries / change (fleet)", fmt.Sprintf("%.1f", r.DeliveriesPerChange)},
		{"deliveries / change / receiving node", fmt.Sprintf("%.2f", r.DeliveriesPerChangePerNode)},
		{"transport bytes / node (writes until quiet)", mib(r.BytesPerNode)},
		{"transport bytes at busiest hub (" + r.BusiestHub + ")", mib(r.BytesBusiestHub)},
		{"settle (last write to every running node)", r.Settle.Round(time.Millisecond).String()},
		{"lost hub catch-up after restart", r.HubCatchUp.Round(time.Millisecond).String()},
		{"Go heap in use / node", mib(r.HeapPerNode)},
		{"Go memory from the OS / node", mib(r.SysPerNode)},
		{"RSS / node (with SQLite)", mib(r.RSSPerNode)},
		{"goroutines / node", fmt.Sprintf("%.1f", r.GoroutinesPerNode)},
		{"build / ready / total", fmt.Sprintf("%s / %s / %s", r.Startup.Round(time.Millisecond), r.Ready.Round(time.Millisecond), r.Total.Round(time.Millisecond))},
		{"rows on every node / checksum", fmt.Sprintf("%d / %s", r.Rows, r.Checksum)},
	}
	if _, err := fmt.Fprintln(w, "| measure | value |\n|---|---|"); err != nil {
		return err
	}
	for _, row := range rows {
		if _, err := fmt.Fprintf(w, "| %s | %s |\n", row[0], row[1]); err != nil {
			return err
		}
	}
	return nil
}
