package beacon

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/policy"
	"github.com/outpost-edge/outpost/store"
	"github.com/parquet-go/parquet-go"
)

// w0 is a window start (2026-01-02T00:00Z).
const w0 = int64(1_767_312_000_000)

func exportAggregator(t *testing.T, cfg AggregatorConfig) *Aggregator {
	t.Helper()
	st, err := store.Open(context.Background(), store.Options{Dir: t.TempDir(), Identity: testutil.Identity("MASTER01", "01ma")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg.Self, cfg.Store = "MASTER01", st
	if cfg.ExportDir == "" {
		cfg.ExportDir = t.TempDir()
	}
	a, err := OpenAggregator(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func seqBeacons(from, to int64, recv func(seq int64) int64) []Beacon {
	var bs []Beacon
	for s := from; s <= to; s++ {
		bs = append(bs, Beacon{Seq: s, RecvMS: recv(s), Body: json.RawMessage(fmt.Sprintf(`{"event":"e","i":%d}`, s))})
	}
	return bs
}

// readExport returns the rows of files, checking each holds one window
// only (the one its name says).
func readExport(t *testing.T, files []string) map[string]int64 {
	t.Helper()
	rows := map[string]int64{} // edge/seq -> window
	for _, f := range files {
		rs, err := parquet.ReadFile[ExportRow](f)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			k := fmt.Sprintf("%s/%d", r.Edge, r.Seq)
			if _, dup := rows[k]; dup {
				t.Fatalf("%s in two files", k)
			}
			rows[k] = r.WindowMS
			if !strings.HasPrefix(filepath.Base(f), "beacons-"+windowStamp(r.WindowMS)) || r.WindowMS != minuteOf(r.RecvMS) {
				t.Fatalf("%s holds %s of window %s", filepath.Base(f), k, windowStamp(r.WindowMS))
			}
		}
	}
	return rows
}

// TestExport_ClosedWindows: files are cut by closed window, not by arrival:
// a window's beacons that arrive in several pulls, from several edges, land
// in one file, written only once the window is closed (its end plus the
// lateness passed, and every edge pulled past it); an edge behind holds the
// export back (up to the max wait); a beacon arriving for a window already
// exported goes to a late file of that window; each beacon is in one file,
// and expiry keeps what is not exported.
func TestExport_ClosedWindows(t *testing.T) {
	var mu sync.Mutex
	now := time.UnixMilli(w0 + 30_000)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	setNow := func(ms int64) { mu.Lock(); now = time.UnixMilli(ms); mu.Unlock() }
	a := exportAggregator(t, AggregatorConfig{CheckInterval: -1, Now: clock, Retention: time.Minute,
		Edges:          func() []string { return []string{"EDGE01", "EDGE02"} },
		ExportLateness: time.Minute, ExportMaxWait: time.Hour})
	ctx := context.Background()
	pulled := func(edge, key string, through int64) {
		a.mu.Lock()
		a.current[edge] = key
		a.through[key] = max(a.through[key], through)
		a.mu.Unlock()
	}
	apply := func(key string, bs []Beacon) {
		t.Helper()
		if _, err := a.Apply(ctx, key, bs, bs[len(bs)-1].Seq); err != nil {
			t.Fatal(err)
		}
	}
	var all []string
	export := func(want ...string) {
		t.Helper()
		files, err := a.Export(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, f := range files {
			got = append(got, filepath.Base(f))
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			cl, why := a.ClosedThrough(clock())
			t.Fatalf("export wrote %v, want %v (closed through %s: %s)", got, want, windowStamp(cl), why)
		}
		all = append(all, files...)
	}

	// Window w0 open: nothing.
	apply("EDGE01/x", seqBeacons(1, 10, func(s int64) int64 { return w0 + 1000 + s }))
	pulled("EDGE01", "EDGE01/x", w0+30_000)
	pulled("EDGE02", "EDGE02/y", w0+30_000)
	export()
	// More of w0 and some of w1 arrive; w0 ended but within the lateness.
	setNow(w0 + 100_000)
	apply("EDGE01/x", append(seqBeacons(11, 20, func(int64) int64 { return w0 + 50_000 }), seqBeacons(21, 25, func(int64) int64 { return w0 + 70_000 })...))
	pulled("EDGE01", "EDGE01/x", w0+100_000)
	pulled("EDGE02", "EDGE02/y", w0+100_000)
	export()
	// Past the lateness, but EDGE02 is not pulled that far: still open.
	setNow(w0 + 130_000)
	pulled("EDGE01", "EDGE01/x", w0+130_000)
	export()
	if _, why := a.ClosedThrough(clock()); !strings.Contains(why, "EDGE02") {
		t.Fatalf("why not closed: %q, want EDGE02 named", why)
	}
	if r := a.Report(); r.Export == nil || !strings.Contains(r.Export.HeldBy, "EDGE02") {
		t.Fatalf("check report: export %+v, want it held by EDGE02", r.Export)
	}
	// EDGE02 comes with beacons of w0: one file for w0, both edges, all of it.
	apply("EDGE02/y", seqBeacons(1, 3, func(int64) int64 { return w0 + 59_000 }))
	pulled("EDGE02", "EDGE02/y", w0+130_000)
	export(ExportFileName(w0))
	if rows := readExport(t, all); len(rows) != 23 {
		t.Fatalf("w0's file holds %d beacons, want 23 (EDGE01 1..20, EDGE02 1..3)", len(rows))
	}
	// A log that no edge pulled names (an edge added to the trust list since,
	// say) brings a beacon of w0: a late file; w1 closes meanwhile.
	setNow(w0 + 190_000)
	pulled("EDGE01", "EDGE01/x", w0+190_000)
	pulled("EDGE02", "EDGE02/y", w0+190_000)
	apply("EDGE03/z", seqBeacons(1, 1, func(int64) int64 { return w0 + 5_000 }))
	apply("EDGE01/x", seqBeacons(26, 26, func(int64) int64 { return w0 + 185_000 })) // w3, open
	export(ExportFileName(w0+60_000), ExportLateFileName(w0, 29, 30))
	export()
	// Expiry (retention 1 minute) deletes what is exported, keeps seq 26.
	if err := a.expire(ctx); err != nil {
		t.Fatal(err)
	}
	var left int64
	if err := a.cfg.Store.ReadLocal(ctx, func(tx *sql.Tx) error {
		return tx.QueryRow(`SELECT count(*) FROM outpost_beacon_recv`).Scan(&left)
	}); err != nil {
		t.Fatal(err)
	}
	if left != 1 {
		t.Fatalf("%d received beacons left after expiry, want 1 (not exported)", left)
	}
	// EDGE02 stops being pulled: after the max wait the windows close anyway.
	setNow(w0 + 3*3600_000)
	pulled("EDGE01", "EDGE01/x", w0+3*3600_000)
	export(ExportFileName(w0 + 180_000))
	rows := readExport(t, all)
	if len(rows) != 30 {
		t.Fatalf("%d beacons in the files, want 30", len(rows))
	}
}

// TestExport_ClosedByCrossCheck: with cross-checks on, a window closes only
// after a cross-check ran past its end plus the lateness, and not while a
// gap of this aggregator in it (or before it) is open or unrepairable.
func TestExport_ClosedByCrossCheck(t *testing.T) {
	now := time.UnixMilli(w0 + 10*60_000)
	a := exportAggregator(t, AggregatorConfig{CheckInterval: time.Hour, Transport: noTransport{}, Now: func() time.Time { return now },
		ExportLateness: time.Minute, ExportMaxWait: time.Hour})
	// Before any cross-check, only the max wait closes windows.
	if got, _ := a.ClosedThrough(now); got != w0-51*60_000 {
		t.Fatalf("closed through %s before any cross-check", windowStamp(got))
	}
	a.check.at = now
	want := w0 + 8*60_000 // ended 9 min in; + 1 min lateness = 10 min
	if got, why := a.ClosedThrough(now); got != want {
		t.Fatalf("closed through %s (%s), want %s", windowStamp(got), why, windowStamp(want))
	}
	a.check.problems["k"] = &Problem{Kind: "gap", Edge: "EDGE01/x", Minute: w0 + 3*60_000, State: "unrepairable"}
	if got, why := a.ClosedThrough(now); got != w0+2*60_000 || !strings.Contains(why, "gap") {
		t.Fatalf("closed through %s (%s) with a gap in %s", windowStamp(got), why, windowStamp(w0+3*60_000))
	}
	a.check.problems["k"].State = "repaired"
	a.check.problems["p"] = &Problem{Kind: "peer_gap", Edge: "EDGE01/x", Minute: w0, State: "open"}
	if got, _ := a.ClosedThrough(now); got != want {
		t.Fatalf("closed through %s with the gap repaired and another aggregator's gap open", windowStamp(got))
	}
}

type noTransport struct{}

func (noTransport) Do(context.Context, string, policy.Action, string, string, []byte) (*http.Response, error) {
	return nil, fmt.Errorf("no transport")
}

// TestExport_RedoesPendingRun: a crash after the run was recorded as
// pending (and maybe after part of its files were written) writes exactly
// that run again under the same names, then goes on after it.
func TestExport_RedoesPendingRun(t *testing.T) {
	out := t.TempDir()
	a := exportAggregator(t, AggregatorConfig{CheckInterval: -1, ExportDir: out})
	ctx := context.Background()
	if _, err := a.Apply(ctx, "EDGE01/x", seqBeacons(1, 20, func(int64) int64 { return w0 }), 20); err != nil {
		t.Fatal(err)
	}
	// The crash: pending recorded for window w0 through arrival 8, no file
	// renamed.
	if err := a.setExport(ctx, map[string]int64{"pending_window": w0, "pending_mark": 8}); err != nil {
		t.Fatal(err)
	}
	f1, err := a.Export(ctx)
	if err != nil || len(f1) != 1 || f1[0] != filepath.Join(out, ExportFileName(w0)) {
		t.Fatalf("redo: %q %v", f1, err)
	}
	f2, err := a.Export(ctx)
	if err != nil || len(f2) != 1 || f2[0] != filepath.Join(out, ExportLateFileName(w0, 9, 20)) {
		t.Fatalf("after the redo: %q %v", f2, err)
	}
	if rows := readExport(t, append(f1, f2...)); len(rows) != 20 {
		t.Fatalf("%d rows in the files, want 20", len(rows))
	}
}

// TestExport_FromArrivalOrderedExport: an export directory written by the
// arrival-ordered export of earlier versions (state done/pending) is
// continued without writing any beacon twice: its file under way is
// finished under its old name, and later files leave its beacons out.
func TestExport_FromArrivalOrderedExport(t *testing.T) {
	out := t.TempDir()
	a := exportAggregator(t, AggregatorConfig{CheckInterval: -1, ExportDir: out})
	ctx := context.Background()
	if _, err := a.Apply(ctx, "EDGE01/x", seqBeacons(1, 30, func(int64) int64 { return w0 }), 30); err != nil {
		t.Fatal(err)
	}
	if err := a.setExport(ctx, map[string]int64{"done": 10, "pending": 25}); err != nil {
		t.Fatal(err)
	}
	files, err := a.Export(ctx)
	if err != nil || len(files) != 2 || filepath.Base(files[0]) != legacyFileName(11, 25) || filepath.Base(files[1]) != ExportFileName(w0) {
		t.Fatalf("export: %q %v", files, err)
	}
	rs, err := parquet.ReadFile[ExportRow](files[1])
	if err != nil || len(rs) != 5 || rs[0].Seq != 26 {
		t.Fatalf("the window file holds %d rows (%v), want seqs 26..30", len(rs), err)
	}
	// The arrival counter does not take the window state for an arrival.
	a2, err := OpenAggregator(ctx, AggregatorConfig{Self: "MASTER01", Store: a.cfg.Store, CheckInterval: -1, ExportDir: out})
	if err != nil {
		t.Fatal(err)
	}
	if a2.arrival != 30 {
		t.Fatalf("arrival counter %d after reopening, want 30", a2.arrival)
	}
}
