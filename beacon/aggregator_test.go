package beacon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/beacon"
)

func openAgg(tb testing.TB, dir string, rollups []beacon.Rollup) (*beacon.Aggregator, func()) {
	tb.Helper()
	st := openStore(tb, dir)
	a, err := beacon.OpenAggregator(context.Background(), beacon.AggregatorConfig{Self: "MASTER01", Store: st, Rollups: rollups, CheckInterval: -1})
	if err != nil {
		tb.Fatal(err)
	}
	return a, func() { st.Close() }
}

func beacons(from, to int64, recv int64) []beacon.Beacon {
	var out []beacon.Beacon
	for s := from; s <= to; s++ {
		out = append(out, beacon.Beacon{Seq: s, RecvMS: recv, Body: json.RawMessage(fmt.Sprintf(`{"event":"e%d","lcp":%d,"bytes":2}`, s%2, s))})
	}
	return out
}

func total(tb testing.TB, a *beacon.Aggregator, rollup string) (int64, float64) {
	tb.Helper()
	rows, err := a.Rollup(context.Background(), rollup, 0, 1<<62, beacon.MaxRollupRows)
	if err != nil {
		tb.Fatal(err)
	}
	var n int64
	var sum float64
	for _, r := range rows {
		n += r.Count
		sum += r.Sum["bytes"]
	}
	return n, sum
}

// TestAggregator_ExactlyOnceAcrossRestart delivers overlapping batches, some
// twice, closes and reopens the store, delivers again: each (edge, seq) is
// counted once.
func TestAggregator_ExactlyOnceAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	rollups := []beacon.Rollup{beacon.DefaultRollup, {Name: "sizes", Window: time.Minute, Sum: []string{"bytes"}, Quantile: []string{"lcp"}}}
	a, closeStore := openAgg(t, dir, rollups)
	ctx := context.Background()
	t0 := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC).UnixMilli()
	for _, r := range [][2]int64{{1, 100}, {50, 150}, {1, 150}} {
		if _, err := a.Apply(ctx, "EDGE01", beacons(r[0], r[1], t0), r[1]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Apply(ctx, "EDGE02", beacons(1, 10, t0+60_000), 10); err != nil {
		t.Fatal(err)
	}
	if n, sum := total(t, a, "events"); n != 160 || sum != 0 {
		t.Fatalf("events: %d", n)
	}
	closeStore()
	a, _ = openAgg(t, dir, rollups)
	if c := a.Cursor("EDGE01"); c != 150 {
		t.Fatalf("cursor after reopen: %d", c)
	}
	n, err := a.Apply(ctx, "EDGE01", beacons(140, 160, t0), 160)
	if err != nil || n != 10 {
		t.Fatalf("after reopen: %d new, %v", n, err)
	}
	if n, sum := total(t, a, "sizes"); n != 170 || sum != 340 {
		t.Fatalf("sizes: %d %v", n, sum)
	}
	rows, err := a.Rollup(ctx, "sizes", t0, t0+1, 10)
	if err != nil || len(rows) != 1 {
		t.Fatalf("rows %v %v", rows, err)
	}
	// lcp of EDGE01 is 1..160: the median within the sketch's 1%.
	if p50 := rows[0].Quantiles["lcp"]["p50"]; math.Abs(p50-80.5)/80.5 > 0.03 {
		t.Fatalf("p50 %v", p50)
	}
	if _, err := a.Rollup(ctx, "nope", 0, 1, 1); err == nil {
		t.Fatal("unknown rollup answered")
	}
}

func TestParseRollup(t *testing.T) {
	r, err := beacon.ParseRollup("pages:by=event,path;window=5m;sum=bytes;quantile=lcp,fid")
	if err != nil || r.Window != 5*time.Minute || len(r.By) != 2 || r.Quantile[1] != "fid" {
		t.Fatalf("%+v %v", r, err)
	}
	if got := r.String(); got != "pages:window=5m;by=event,path;sum=bytes;quantile=lcp,fid" {
		t.Fatalf("String: %s", got)
	}
	for _, bad := range []string{"", "Pages:by=x", "p:window=7m", "p:window=0s", "p:color=red", "p:by"} {
		if _, err := beacon.ParseRollup(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
