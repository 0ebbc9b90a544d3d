package fleet_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/beacon"
	"github.com/outpost-edge/outpost/fleet"
	"github.com/outpost-edge/outpost/node"
	"github.com/outpost-edge/outpost/peer"
	"github.com/outpost-edge/outpost/policy"
	"github.com/outpost-edge/outpost/store"
	"github.com/parquet-go/parquet-go"
	_ "modernc.org/sqlite" // to lose an edge's beacon log
)

// startBeaconFleet starts the demo fleet with quick cross-checks.
func startBeaconFleet(tb testing.TB) *fleet.Fleet {
	tb.Helper()
	f, err := fleet.Start(context.Background(), tb.TempDir(), fleet.Demo(0), fleet.Options{
		Configure: func(m fleet.Member, c *node.Config) {
			c.Beacons.CheckInterval = 500 * time.Millisecond
			c.Beacons.PullWait = time.Second
			c.Beacons.Rollups = []beacon.Rollup{beacon.DefaultRollup,
				{Name: "pages", Window: time.Minute, By: []string{"event", "path"}, Sum: []string{"bytes"}, Quantile: []string{"lcp"}}}
		},
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close(context.Background()) })
	return f
}

// postBatch posts n beacons (event ev) to an edge's /v1/beacons.
func postBatch(tb testing.TB, n *node.Node, ev string, count int) {
	tb.Helper()
	var b strings.Builder
	for i := range count {
		fmt.Fprintf(&b, `{"event":%q,"path":"/p%d","bytes":10,"lcp":%d}`+"\n", ev, i%3, 100+i)
	}
	resp, err := http.Post(n.APIURL()+"/v1/beacons", "application/x-ndjson", strings.NewReader(b.String()))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		body, _ := io.ReadAll(resp.Body)
		tb.Fatalf("POST /v1/beacons: %d %s", resp.StatusCode, body)
	}
}

// rollupTotal sums the count of every row of a rollup at an aggregator,
// by the first dimension.
func rollupTotal(tb testing.TB, n *node.Node, rollup string) (int64, map[string]int64) {
	tb.Helper()
	rows, err := n.Beacons.Rollup(context.Background(), rollup, 0, 1<<62, beacon.MaxRollupRows)
	if err != nil {
		tb.Fatal(err)
	}
	var total int64
	by := map[string]int64{}
	for _, r := range rows {
		total += r.Count
		by[fmt.Sprint(r.Dims["event"])] += r.Count
	}
	return total, by
}

func waitFor(tb testing.TB, d time.Duration, what string, ok func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFleet_BeaconsCountedOnceByBothAggregators posts beacons at every edge
// and checks both aggregators count each exactly once, an aggregator
// restart and duplicated deliveries change nothing, and the edges delete
// the beacons once both aggregators acknowledged them.
func TestFleet_BeaconsCountedOnceByBothAggregators(t *testing.T) {
	f := startBeaconFleet(t)
	edges := []string{"EDGE01", "EDGE02", "EDGE03", "EDGE04"}
	var wg sync.WaitGroup
	for i, e := range edges {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 5; j++ {
				postBatch(t, f.Node(e), fmt.Sprintf("ev%d", i), 40)
			}
		}()
	}
	wg.Wait()
	const want = 4 * 5 * 40
	aggs := []string{"MASTER01", "NODE01"}
	for _, a := range aggs {
		waitFor(t, 20*time.Second, a+" counts every beacon", func() bool {
			n, _ := rollupTotal(t, f.Node(a), "events")
			return n == want
		})
	}
	// Restart one aggregator mid-stream, with more beacons arriving.
	for _, e := range edges {
		postBatch(t, f.Node(e), "late", 25)
	}
	if _, err := f.Restart(context.Background(), "NODE01", nil); err != nil {
		t.Fatal(err)
	}
	for _, e := range edges {
		postBatch(t, f.Node(e), "late", 25)
	}
	const want2 = want + 4*50
	for _, a := range aggs {
		waitFor(t, 20*time.Second, a+" counts every beacon after the restart", func() bool {
			n, _ := rollupTotal(t, f.Node(a), "events")
			return n == want2
		})
		total, by := rollupTotal(t, f.Node(a), "pages")
		if total != want2 || by["late"] != 200 || by["ev0"] != 200 {
			t.Errorf("%s pages rollup: total %d, by event %v", a, total, by)
		}
	}
	// Duplicated deliveries: the same beacons again, counted once.
	m := f.Node("MASTER01")
	key := m.Beacons.LogKey("EDGE01")
	if !strings.HasPrefix(key, "EDGE01/") || key != f.Node("NODE01").Beacons.LogKey("EDGE01") || key != "EDGE01/"+f.Node("EDGE01").BeaconLog.ID() {
		t.Fatalf("log keys: %q", key)
	}
	bs, err := m.Beacons.Range(context.Background(), key, 1, 300)
	if err != nil || len(bs) == 0 {
		t.Fatalf("range: %d beacons, %v", len(bs), err)
	}
	n, err := m.Beacons.Apply(context.Background(), key, bs, -1)
	if err != nil || n != 0 {
		t.Fatalf("duplicate delivery: %d new, %v", n, err)
	}
	if got, _ := rollupTotal(t, m, "events"); got != want2 {
		t.Fatalf("after duplicates: %d, want %d", got, want2)
	}
	// Both acknowledged everything: the edges keep nothing.
	for _, e := range edges {
		waitFor(t, 20*time.Second, e+" deletes acknowledged beacons", func() bool {
			s := f.Node(e).BeaconLog.Stats()
			return s.StoredBeacons == 0 && s.Floor == s.LastSeq && s.LastSeq == 250
		})
	}
	rep := m.Beacons.Check(context.Background())
	if rep.Open != 0 {
		t.Fatalf("cross-check: %+v", rep)
	}
}

// TestFleet_BeaconCrossCheckRepairsGap drops a range of received beacons at
// one aggregator after the edge deleted them: the cross-check finds the gap
// (report, metric) and repairs it from the other aggregator, and the counts
// are exact again.
func TestFleet_BeaconCrossCheckRepairsGap(t *testing.T) {
	f := startBeaconFleet(t)
	e := f.Node("EDGE02")
	for range 4 {
		postBatch(t, e, "view", 50)
	}
	waitFor(t, 20*time.Second, "EDGE02 deletes what both aggregators hold", func() bool {
		s := e.BeaconLog.Stats()
		return s.LastSeq == 200 && s.Floor == 200
	})
	node1 := f.Node("NODE01")
	dropped, err := node1.Beacons.DropRange(context.Background(), node1.Beacons.LogKey("EDGE02"), 50, 120)
	if err != nil || dropped != 71 {
		t.Fatalf("drop: %d, %v", dropped, err)
	}
	if n, _ := rollupTotal(t, node1, "events"); n != 129 {
		t.Fatalf("after the drop NODE01 counts %d, want 129", n)
	}
	waitFor(t, 20*time.Second, "the gap repaired", func() bool {
		n, _ := rollupTotal(t, node1, "events")
		return n == 200
	})
	rep := node1.Beacons.Report()
	var found bool
	for _, p := range rep.Problems {
		if p.Kind == "gap" && strings.HasPrefix(p.Edge, "EDGE02/") && p.From <= 50 && p.To >= 120 && p.State == "repaired" {
			found = true
		}
	}
	if !found || rep.Stats.Repaired != 71 || rep.Stats.Problems["gap"] == 0 {
		t.Fatalf("report: %+v", rep)
	}
	total, by := rollupTotal(t, node1, "pages")
	if total != 200 || by["view"] != 200 {
		t.Fatalf("pages after repair: %d %v", total, by)
	}
	// The report and the metric over HTTP.
	resp, err := http.Get(node1.APIURL() + "/v1/beacons/check")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"kind":"gap"`) {
		t.Fatalf("check: %d %s", resp.StatusCode, body)
	}
	resp, err = http.Get(node1.APIURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `outpost_beacon_check_problems_total{kind="gap"}`) {
		t.Fatalf("metrics lack the problem counter")
	}
}

// TestFleet_BeaconBudgetWhileCoreAway: with no aggregator collecting, an
// edge accepts up to its disk budget, then answers 503 with Retry-After and
// stores nothing more; once the aggregators come, every accepted beacon is
// counted exactly once and the edge has room again.
func TestFleet_BeaconBudgetWhileCoreAway(t *testing.T) {
	f, err := fleet.Start(context.Background(), t.TempDir(), fleet.Demo(0), fleet.Options{
		Configure: func(m fleet.Member, c *node.Config) {
			c.Beacons.Aggregator = "off"
			c.Beacons.DiskBudget = 40 << 10
			c.Beacons.PullWait = time.Second
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close(context.Background())
	e := f.Node("EDGE03")
	accepted, refused := 0, 0
	for i := 0; i < 100 && refused == 0; i++ {
		var b strings.Builder
		for k := 0; k < 20; k++ {
			fmt.Fprintf(&b, `{"event":"offline","i":%d,"pad":"%s"}`+"\n", i*20+k, strings.Repeat("x", 40))
		}
		resp, err := http.Post(e.APIURL()+"/v1/beacons", "application/x-ndjson", strings.NewReader(b.String()))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		switch resp.StatusCode {
		case 200:
			accepted += 20
		case 503:
			if resp.Header.Get("Retry-After") == "" {
				t.Fatal("503 without Retry-After")
			}
			refused++
		default:
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	if refused == 0 || accepted == 0 {
		t.Fatalf("accepted %d, refused %d", accepted, refused)
	}
	if s := e.BeaconLog.Stats(); s.LastSeq != int64(accepted) || s.StoredBytes > s.BudgetBytes {
		t.Fatalf("log %+v after %d accepted", s, accepted)
	}
	for _, a := range []string{"MASTER01", "NODE01"} {
		if _, err := f.Restart(context.Background(), a, func(c *node.Config) { c.Beacons.Aggregator = "auto" }); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range []string{"MASTER01", "NODE01"} {
		waitFor(t, 20*time.Second, a+" collects what the edge accepted", func() bool {
			n, _ := rollupTotal(t, f.Node(a), "events")
			return n == int64(accepted)
		})
	}
	waitFor(t, 20*time.Second, "the edge deletes and has room again", func() bool {
		return e.BeaconLog.Stats().StoredBeacons == 0
	})
	postBatch(t, e, "back", 20)
}

// TestFleet_BeaconRoutesRefuseEdges: an edge may not pull another edge's
// beacons nor ask an aggregator for coverage or ranges.
func TestFleet_BeaconRoutesRefuseEdges(t *testing.T) {
	f := startBeaconFleet(t)
	c := f.Node("EDGE01").Client
	for _, tc := range []struct {
		to     string
		action policy.Action
		path   string
	}{
		{"EDGE02", policy.Pull, beacon.PullPath + "?from=1"},
		{"MASTER01", policy.Call, beacon.SummaryPath + "?since=0"},
		{"MASTER01", policy.Call, beacon.RangePath + "?edge=EDGE02&from=1&to=10"},
	} {
		resp, err := c.Do(context.Background(), tc.to, tc.action, "GET", tc.path, nil)
		if err == nil {
			resp.Body.Close()
			t.Errorf("%s %s: allowed", tc.to, tc.path)
			continue
		}
		var se *peer.StatusError
		if !errors.As(err, &se) && !errors.Is(err, peer.ErrPolicy) {
			t.Errorf("%s %s: %v", tc.to, tc.path, err)
		} else if se != nil && se.Status != 403 {
			t.Errorf("%s %s: %d %s", tc.to, tc.path, se.Status, se.Code)
		}
	}
}

// TestFleet_BeaconNewLogAfterDiskLoss: an edge whose beacon log is lost
// (a new disk: the log starts again at seq 1 under a new identity) is pulled
// from its new start; what the aggregators counted from the old log stays,
// and nothing of the new one is taken for a duplicate of the old.
func TestFleet_BeaconNewLogAfterDiskLoss(t *testing.T) {
	f := startBeaconFleet(t)
	e := f.Node("EDGE04")
	postBatch(t, e, "old", 30)
	for _, a := range []string{"MASTER01", "NODE01"} {
		waitFor(t, 20*time.Second, a+" counts the old log", func() bool {
			n, _ := rollupTotal(t, f.Node(a), "events")
			return n == 30
		})
	}
	oldID := e.BeaconLog.ID()
	e, err := f.Restart(context.Background(), "EDGE04", func(c *node.Config) {
		db, err := sql.Open("sqlite", filepath.Join(c.DataDir, store.DBFile))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		for _, q := range []string{`DROP TABLE outpost_beacon_log`, `DROP TABLE outpost_beacon_state`, `DROP TABLE outpost_beacon_acks`,
			`DELETE FROM sqlite_sequence WHERE name = 'outpost_beacon_log'`} {
			if _, err := db.Exec(q); err != nil {
				t.Fatal(err)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if e.BeaconLog.ID() == oldID {
		t.Fatal("the new log kept the old identity")
	}
	postBatch(t, e, "new", 12)
	if s := e.BeaconLog.Stats(); s.LastSeq != 12 {
		t.Fatalf("new log: %+v", s)
	}
	for _, a := range []string{"MASTER01", "NODE01"} {
		waitFor(t, 20*time.Second, a+" counts the new log too", func() bool {
			n, by := rollupTotal(t, f.Node(a), "events")
			return n == 42 && by["new"] == 12 && by["old"] == 30
		})
	}
	waitFor(t, 20*time.Second, "the new log is deleted after acks", func() bool {
		return e.BeaconLog.Stats().StoredBeacons == 0
	})
}

// TestFleet_BeaconParquetExport: an aggregator with an export directory
// writes every beacon it received into exactly one Parquet file.
func TestFleet_BeaconParquetExport(t *testing.T) {
	out := t.TempDir()
	f, err := fleet.Start(context.Background(), t.TempDir(), fleet.Demo(0), fleet.Options{
		Configure: func(m fleet.Member, c *node.Config) {
			c.Beacons.PullWait = time.Second
			if m.Name == "MASTER01" {
				c.Beacons.ExportDir, c.Beacons.ExportInterval = out, 200*time.Millisecond
				c.Beacons.ExportLateness = 200 * time.Millisecond
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close(context.Background())
	for _, e := range []string{"EDGE01", "EDGE03"} {
		for range 3 {
			postBatch(t, f.Node(e), "x", 50)
		}
	}
	// A file holds one closed window (a minute of receive time): it is
	// written once the minute the beacons arrived in has ended.
	waitFor(t, time.Until(time.Now().Truncate(time.Minute).Add(time.Minute))+30*time.Second, "every beacon exported once", func() bool {
		files, _ := filepath.Glob(filepath.Join(out, "*.parquet"))
		seen := map[string]int{}
		for _, file := range files {
			rows, err := parquet.ReadFile[beacon.ExportRow](file)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rows {
				seen[fmt.Sprintf("%s/%d", r.Edge, r.Seq)]++
			}
		}
		for k, n := range seen {
			if n != 1 {
				t.Fatalf("%s in %d files", k, n)
			}
		}
		return len(seen) == 300
	})
}

// TestFleet_BeaconAggregatorAway: NODE01 is down while the edges take in
// beacons. The edges keep them (one aggregator's ack is not enough to
// delete), NODE01 catches up after its restart, both aggregators count
// every beacon once with equal rollups, the cross-check agrees and the
// edges end empty.
func TestFleet_BeaconAggregatorAway(t *testing.T) {
	f := startBeaconFleet(t)
	edges := []string{"EDGE01", "EDGE02", "EDGE03", "EDGE04"}
	for _, e := range edges {
		postBatch(t, f.Node(e), "before", 20)
	}
	if _, err := f.Restart(context.Background(), "NODE01", func(*node.Config) {
		for _, e := range edges {
			for range 3 {
				postBatch(t, f.Node(e), "away", 30)
			}
		}
		waitFor(t, 20*time.Second, "MASTER01 counts what came while NODE01 is away", func() bool {
			n, _ := rollupTotal(t, f.Node("MASTER01"), "events")
			return n == 4*(20+90)
		})
		for _, e := range edges {
			if s := f.Node(e).BeaconLog.Stats(); s.Floor > 20 {
				t.Fatalf("%s deleted beacons NODE01 has not acknowledged: %+v", e, s)
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	const want = 4 * (20 + 90)
	waitFor(t, 30*time.Second, "NODE01 catches up", func() bool {
		n, _ := rollupTotal(t, f.Node("NODE01"), "events")
		return n == want
	})
	for _, rollup := range []string{"events", "pages"} {
		m, bym := rollupTotal(t, f.Node("MASTER01"), rollup)
		n, byn := rollupTotal(t, f.Node("NODE01"), rollup)
		if m != want || n != want || bym["away"] != byn["away"] || bym["away"] != 360 {
			t.Fatalf("%s: MASTER01 %d %v, NODE01 %d %v", rollup, m, bym, n, byn)
		}
	}
	for _, e := range edges {
		waitFor(t, 20*time.Second, e+" deletes what both acknowledged", func() bool {
			s := f.Node(e).BeaconLog.Stats()
			return s.StoredBeacons == 0 && s.LastSeq == 110
		})
	}
	for _, a := range []string{"MASTER01", "NODE01"} {
		waitFor(t, 20*time.Second, a+"'s cross-check to agree", func() bool {
			rep := f.Node(a).Beacons.Check(context.Background())
			return rep.Open == 0 && len(rep.Peers) == 1 && rep.Peers[0].OK
		})
	}
}
