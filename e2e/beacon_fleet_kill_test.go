package e2e_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestBeacons_KillAggregatorAndEdge runs a master, a node and two edges as
// real processes, posts beacons at both edges, and SIGKILLs the node (an
// aggregator) twice mid-pull and an edge once mid-intake. Afterwards both
// aggregators hold every beacon each edge acknowledged, each exactly once
// (received rows = the edge's sequence, rollup counts = received rows),
// and the edges deleted what both acknowledged.
func TestBeacons_KillAggregatorAndEdge(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process beacon test; skipped with -short")
	}
	bin := outpostBinary(t)
	dir := t.TempDir()
	nodes := []*syncNode{
		{name: "MASTER01", role: "master", location: "FRA", code: "01ma"},
		{name: "NODE01", role: "node", location: "AMS", code: "02no"},
		{name: "EDGE01", role: "edge", farm: "lhr", location: "LHR", code: "43ax"},
		{name: "EDGE02", role: "edge", farm: "lhr", location: "LHR", code: "44bx"},
	}
	byName, schemaFile, trustFile := layoutSyncFleet(t, bin, dir, "CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL);\n", nodes)
	defer func() {
		if t.Failed() {
			for _, n := range nodes {
				t.Logf("=== %s log (last 40 lines):\n%s", n.name, tailLines(n.log.String(), 40))
			}
		}
	}()
	for _, n := range nodes {
		startSyncNode(t, bin, n, schemaFile, trustFile)
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	var (
		mu    sync.Mutex
		acked = map[string]int{} // beacons acknowledged per edge
		stop  = make(chan struct{})
		wg    sync.WaitGroup
	)
	for _, e := range []string{"EDGE01", "EDGE02"} {
		url := byName[e].url
		for g := 0; g < 2; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					var b strings.Builder
					for k := 0; k < 20; k++ {
						fmt.Fprintf(&b, `{"event":"ev%d","g":%d,"i":%d}`+"\n", k%3, g, i)
					}
					resp, err := hc.Post(url+"/v1/beacons", "application/x-ndjson", strings.NewReader(b.String()))
					if err != nil {
						time.Sleep(20 * time.Millisecond)
						continue
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 200 {
						mu.Lock()
						acked[e] += 20
						mu.Unlock()
					}
					time.Sleep(5 * time.Millisecond)
				}
			}()
		}
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoad()
	kill := func(name string, down time.Duration) {
		n := byName[name]
		time.Sleep(700 * time.Millisecond)
		n.p.kill()
		time.Sleep(down)
		startSyncNode(t, bin, n, schemaFile, trustFile)
	}
	kill("NODE01", 300*time.Millisecond)
	kill("EDGE01", 200*time.Millisecond)
	kill("NODE01", 1500*time.Millisecond)
	time.Sleep(700 * time.Millisecond)
	stopLoad()

	last := map[string]int64{}
	for _, e := range []string{"EDGE01", "EDGE02"} {
		var s struct {
			LastSeq int64 `json:"last_seq"`
		}
		getJSON(t, byName[e].url+"/v1/beacons/log", &s)
		last[e] = s.LastSeq
		if s.LastSeq < int64(acked[e]) {
			t.Fatalf("%s: last seq %d but %d beacons acknowledged", e, s.LastSeq, acked[e])
		}
	}
	t.Logf("acknowledged %v, edge logs %v", acked, last)
	for _, a := range []string{"MASTER01", "NODE01"} {
		url := byName[a].url
		deadline := time.Now().Add(30 * time.Second)
		for {
			ok := true
			var why string
			for _, e := range []string{"EDGE01", "EDGE02"} {
				rows, err := syncQuery(url, `SELECT count(*), coalesce(max(seq), 0) FROM outpost_beacon_recv WHERE edge LIKE ?`, e+"/%")
				if err != nil || len(rows) != 1 {
					ok, why = false, fmt.Sprint(err)
					break
				}
				n, _ := rows[0][0].(json.Number).Int64()
				hi, _ := rows[0][1].(json.Number).Int64()
				if n != last[e] || hi != last[e] {
					ok, why = false, fmt.Sprintf("%s holds %d beacons of %s up to seq %d, want %d", a, n, e, hi, last[e])
				}
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal(why)
			}
			time.Sleep(100 * time.Millisecond)
		}
		rows, err := syncQuery(url, `SELECT sum(count) FROM outpost_beacon_rollups WHERE rollup = 'events'`)
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := rows[0][0].(json.Number).Int64(); n != last["EDGE01"]+last["EDGE02"] {
			t.Fatalf("%s counts %d beacons in its rollup, holds %d", a, n, last["EDGE01"]+last["EDGE02"])
		}
	}
	for _, e := range []string{"EDGE01", "EDGE02"} {
		deadline := time.Now().Add(20 * time.Second)
		for {
			var s struct {
				Stored int64 `json:"stored_beacons"`
			}
			getJSON(t, byName[e].url+"/v1/beacons/log", &s)
			if s.Stored == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still stores %d beacons both aggregators hold", e, s.Stored)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func getJSON(t *testing.T, url string, out any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}
