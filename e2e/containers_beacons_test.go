//go:build docker

package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	ctrBeaconBatch    = 10                    // beacons per POST /v1/beacons
	ctrBeaconEvery    = 40 * time.Millisecond // per edge: at most 250 beacons a second
	ctrBeaconCut      = 8 * time.Second       // how long farm cdg stays off the core
	ctrBeaconConverge = 60 * time.Second      // how long the aggregators may take after the heal
)

// ctrAggregators are the services that aggregate beacons (masters and nodes,
// --aggregator auto) and their node names.
var ctrAggregators = map[string]string{"master01": "MASTER01", "node01": "NODE01"}

// ctrCut is a set of containers taken off the project's core network.
type ctrCut struct {
	h    *ctrHarness
	net  string
	svcs []string
	ids  map[string]string
	ips  map[string]string // core address before the cut

	mu  sync.Mutex
	off map[string]bool
}

// cutCore disconnects svcs from the core network. Defer healQuietly, so
// they are reconnected on every way out of the phase.
func (h *ctrHarness) cutCore(t *testing.T, svcs []string) *ctrCut {
	t.Helper()
	c := &ctrCut{h: h, net: h.project + "_core", svcs: svcs, ids: map[string]string{}, ips: map[string]string{}, off: map[string]bool{}}
	h.must(t, time.Minute, nil, "docker", "network", "inspect", "-f", "{{.Name}}", c.net)
	for _, svc := range svcs {
		c.ids[svc] = h.containerID(t, svc)
		c.ips[svc] = c.coreIP(t, c.ids[svc])
		h.must(t, time.Minute, nil, "docker", "network", "disconnect", c.net, c.ids[svc])
		c.mu.Lock()
		c.off[svc] = true
		c.mu.Unlock()
	}
	return c
}

func (c *ctrCut) coreIP(t *testing.T, id string) string {
	return strings.TrimSpace(c.h.must(t, time.Minute, nil, "docker", "inspect", "-f",
		fmt.Sprintf(`{{with index .NetworkSettings.Networks %q}}{{.IPAddress}}{{end}}`, c.net), id))
}

// heal reconnects the containers and returns their address moves. Docker
// gives a reconnected container the lowest free address, so reconnecting
// the one with the higher address first makes two of them trade addresses
// (which otherwise happens or not depending on which compose happened to
// create first): TCP connections from before the cut cannot carry on, and
// every node must notice they are dead and dial again. The service name is
// the peer address in fleet.trust.
func (c *ctrCut) heal(t *testing.T) []string {
	t.Helper()
	order := slices.Clone(c.svcs)
	slices.SortFunc(order, func(a, b string) int { return ctrCompareIP(c.ips[b], c.ips[a]) })
	for _, svc := range order {
		c.h.must(t, time.Minute, nil, "docker", "network", "connect", "--alias", svc, c.net, c.ids[svc])
		c.mu.Lock()
		delete(c.off, svc)
		c.mu.Unlock()
	}
	var moves []string
	for _, svc := range c.svcs {
		moves = append(moves, fmt.Sprintf("%s %s -> %s", svc, c.ips[svc], c.coreIP(t, c.ids[svc])))
	}
	return moves
}

// healQuietly reconnects what is still cut off, ignoring errors.
func (c *ctrCut) healQuietly() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for svc := range c.off {
		ctrRun(time.Minute, nil, "docker", "network", "connect", "--alias", svc, c.net, c.ids[svc])
		delete(c.off, svc)
	}
}

// ctrBeaconLoad posts NDJSON batches of beacons at every edge's POST
// /v1/beacons. Each beacon names its edge, its batch and its place in it;
// an answered batch is recorded with the seqs the edge gave it.
type ctrBeaconLoad struct {
	mu      sync.Mutex
	batches map[string]map[int64][2]int64 // edge -> batch -> first, last seq (answered 200)
	next    map[string]int64
	failed  map[string][]string // edge -> other outcomes (transport errors, non-200)
	stopCh  chan struct{}
	wg      sync.WaitGroup
}

func (l *ctrBeaconLoad) start(urls map[string]string) {
	l.batches, l.next, l.failed = map[string]map[int64][2]int64{}, map[string]int64{}, map[string][]string{}
	l.stopCh = make(chan struct{})
	for _, e := range ctrEdges {
		l.batches[e] = map[int64][2]int64{}
		l.wg.Add(1)
		go l.poster(e, urls[e], l.stopCh)
	}
}

func (l *ctrBeaconLoad) stop() {
	if l.stopCh == nil {
		return
	}
	close(l.stopCh)
	l.stopCh = nil
	l.wg.Wait()
}

func (l *ctrBeaconLoad) poster(edge, url string, stop <-chan struct{}) {
	defer l.wg.Done()
	hc := &http.Client{Timeout: ctrWriteTimeout}
	defer hc.CloseIdleConnections()
	tick := time.NewTicker(ctrBeaconEvery)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		l.mu.Lock()
		l.next[edge]++
		batch := l.next[edge]
		l.mu.Unlock()
		var b strings.Builder
		for k := 0; k < ctrBeaconBatch; k++ {
			fmt.Fprintf(&b, `{"event":"ev%d","edge":%q,"b":%d,"k":%d}`+"\n", k%3, edge, batch, k)
		}
		first, last, err := ctrPostBeacons(hc, url, b.String())
		l.mu.Lock()
		if err != nil {
			if len(l.failed[edge]) < 5 {
				l.failed[edge] = append(l.failed[edge], fmt.Sprintf("batch %d: %v", batch, err))
			} else {
				l.failed[edge][4] = fmt.Sprintf("... (%s)", err)
			}
		} else {
			l.batches[edge][batch] = [2]int64{first, last}
		}
		l.mu.Unlock()
	}
}

func ctrPostBeacons(hc *http.Client, url, body string) (first, last int64, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), ctrWriteTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/beacons", strings.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, 0, err
	}
	var a struct {
		Accepted int   `json:"accepted"`
		First    int64 `json:"first_seq"`
		Last     int64 `json:"last_seq"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &a) != nil || a.Accepted != ctrBeaconBatch || a.Last-a.First+1 != ctrBeaconBatch {
		return 0, 0, fmt.Errorf("HTTP %d: %s", resp.StatusCode, ctrTail(string(b), 3))
	}
	return a.First, a.Last, nil
}

// ctrBeaconLog is an edge's GET /v1/beacons/log.
type ctrBeaconLog struct {
	LogID   string           `json:"log_id"`
	LastSeq int64            `json:"last_seq"`
	Floor   int64            `json:"floor"`
	Stored  int64            `json:"stored_beacons"`
	Acks    map[string]int64 `json:"acks"`
	Needed  int              `json:"acks_needed"`
}

func ctrGetBeaconLog(base string) (ctrBeaconLog, error) {
	var l ctrBeaconLog
	code, b, err := ctrGet(base + "/v1/beacons/log")
	if err != nil {
		return l, err
	}
	if code != http.StatusOK {
		return l, fmt.Errorf("GET /v1/beacons/log: HTTP %d: %s", code, ctrTail(string(b), 3))
	}
	return l, json.Unmarshal(b, &l)
}

// secondAck is the 2nd highest acknowledgement of an edge's log (0 with
// fewer than two): what the edge may delete through with --beacon-acks 2.
func (l ctrBeaconLog) secondAck() int64 {
	v := slices.Sorted(maps.Values(l.Acks))
	if len(v) < 2 {
		return 0
	}
	return v[len(v)-2]
}

// beaconPartition: beacons posted at every edge's API; farm cdg (edge03,
// edge04) is cut off the core for ctrBeaconCut meanwhile, so neither
// aggregator can pull it. The cdg edges must go on answering every batch
// with 200 (durable in their log), delete nothing that two aggregators
// have not acknowledged, and after the heal both aggregators must hold
// each edge's whole gapless sequence exactly once, with equal rollups, and
// the edges must have deleted everything (acknowledged by both).
func (h *ctrHarness) beaconPartition(t *testing.T) {
	load := &ctrBeaconLoad{}
	defer load.stop()
	cdg := []string{"edge03", "edge04"}
	load.start(h.urls)
	time.Sleep(2 * time.Second)

	cut := h.cutCore(t, cdg)
	defer cut.healQuietly()
	cutAt := time.Now()
	atCut := map[string]ctrBeaconLog{}
	for _, e := range cdg {
		l, err := ctrGetBeaconLog(h.urls[e])
		if err != nil {
			t.Fatalf("%s: %v", e, err)
		}
		atCut[e] = l
	}
	// While cut off: the edge deletes only what two aggregators
	// acknowledged, and nothing past what it held at the cut (no aggregator
	// can pull more).
	samples := 0
	for time.Since(cutAt) < ctrBeaconCut {
		time.Sleep(500 * time.Millisecond)
		for _, e := range cdg {
			l, err := ctrGetBeaconLog(h.urls[e])
			if err != nil {
				t.Errorf("%s while cut off: %v", e, err)
				continue
			}
			samples++
			if l.Floor > l.secondAck() || l.Floor > atCut[e].LastSeq {
				t.Errorf("%s while cut off: floor %d, acks %v, last seq at the cut %d: deleted beacons two aggregators had not acknowledged",
					e, l.Floor, l.Acks, atCut[e].LastSeq)
			}
		}
	}
	duringCut := map[string]int64{}
	for _, e := range cdg {
		l, err := ctrGetBeaconLog(h.urls[e])
		if err != nil {
			t.Fatalf("%s: %v", e, err)
		}
		duringCut[e] = l.LastSeq - atCut[e].LastSeq
		if duringCut[e] < 100 {
			t.Errorf("%s took %d beacons in while cut off; want it accepting throughout", e, duringCut[e])
		}
	}
	moves := cut.heal(t)
	time.Sleep(2 * time.Second)
	load.stop()
	stopped := time.Now()

	for e, fs := range load.failed {
		if len(fs) > 0 {
			t.Errorf("%s: batches not answered 200 (want every one durable, cut off or not): %s", e, strings.Join(fs, "; "))
		}
	}
	last := map[string]ctrBeaconLog{}
	var total int64
	for _, e := range ctrEdges {
		l, err := ctrGetBeaconLog(h.urls[e])
		if err != nil {
			t.Fatalf("%s: %v", e, err)
		}
		last[e] = l
		total += l.LastSeq
		var acked int64
		for _, r := range load.batches[e] {
			acked += r[1] - r[0] + 1
			if r[1] > l.LastSeq {
				t.Errorf("%s answered seqs %d..%d but its last seq is %d", e, r[0], r[1], l.LastSeq)
			}
		}
		if acked == 0 {
			t.Errorf("%s: no batch answered; the phase proved nothing for it", e)
		}
	}

	// Both aggregators: each edge's seqs 1..last exactly once, each answered
	// batch at the seqs the edge gave it; equal rollups counting them all.
	deadline := time.Now().Add(ctrBeaconConverge)
	rollups := map[string]string{}
	for _, svc := range []string{"master01", "node01"} {
		for {
			why := ctrAggregatorHolds(h.urls[svc], last, load.batches)
			if why == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s after the heal: %s", svc, why)
			}
			time.Sleep(ctrPollEvery)
		}
		rows, err := syncQuery(h.urls[svc], `SELECT rollup, window_ms, dims, count FROM outpost_beacon_rollups ORDER BY 1, 2, 3`)
		if err != nil {
			t.Fatalf("%s rollups: %v", svc, err)
		}
		var sum int64
		for _, r := range rows {
			if r[0] == "events" {
				n, _ := r[3].(json.Number).Int64()
				sum += n
			}
		}
		if sum != total {
			t.Errorf("%s counts %d beacons in rollup events, want %d (the edges' sequences)", svc, sum, total)
		}
		b, _ := json.Marshal(rows)
		rollups[svc] = string(b)
	}
	if rollups["master01"] != rollups["node01"] {
		t.Errorf("the aggregators' rollups differ:\nmaster01 %s\nnode01   %s", ctrTail(rollups["master01"], 5), ctrTail(rollups["node01"], 5))
	}
	converged := time.Since(stopped)

	// The edges delete what both acknowledged, and only that.
	for _, e := range ctrEdges {
		var l ctrBeaconLog
		var err error
		for {
			l, err = ctrGetBeaconLog(h.urls[e])
			if err == nil && l.Floor == l.LastSeq && l.Stored == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s after the heal: floor %d of last seq %d, %d stored, acks %v (%v)", e, l.Floor, l.LastSeq, l.Stored, l.Acks, err)
			}
			time.Sleep(ctrPollEvery)
		}
		for _, name := range ctrAggregators {
			if l.Acks[name] < l.LastSeq {
				t.Errorf("%s deleted through %d but %s acknowledged %d (acks %v)", e, l.Floor, name, l.Acks[name], l.Acks)
			}
		}
	}
	var during []string
	for _, e := range cdg {
		during = append(during, fmt.Sprintf("%s %d", e, duringCut[e]))
	}
	var seqs []string
	for _, e := range ctrEdges {
		seqs = append(seqs, fmt.Sprintf("%s %d", e, last[e].LastSeq))
	}
	t.Logf("beacons: farm cdg off the core for %v (%d log samples while cut off); taken in meanwhile: %s; healed (core addresses: %s); "+
		"edge sequences %s (%d beacons); both aggregators hold each exactly once with equal rollups, and every edge deleted all, %v after the load stopped",
		ctrBeaconCut, samples, strings.Join(during, ", "), strings.Join(moves, ", "), strings.Join(seqs, ", "), total, converged.Round(time.Millisecond))
}

// ctrAggregatorHolds returns "" if the aggregator at base holds, of each
// edge, the seqs 1..last exactly once with each answered batch at its seqs,
// else what is wrong.
func ctrAggregatorHolds(base string, last map[string]ctrBeaconLog, batches map[string]map[int64][2]int64) string {
	for _, e := range ctrEdges {
		key := strings.ToUpper(e) + "/" + last[e].LogID
		rows, err := syncQuery(base, `SELECT count(*), coalesce(min(seq), 0), coalesce(max(seq), 0), count(DISTINCT body) FROM outpost_beacon_recv WHERE edge = ?`, key)
		if err != nil || len(rows) != 1 || len(rows[0]) != 4 {
			return fmt.Sprintf("%s: %v %v", key, err, rows)
		}
		var v [4]int64
		for i := range v {
			v[i], _ = rows[0][i].(json.Number).Int64()
		}
		if want := last[e].LastSeq; v[0] != want || v[1] != 1 || v[2] != want || v[3] != want {
			return fmt.Sprintf("%s: holds %d beacons (%d distinct), seqs %d..%d; want seqs 1..%d once each", key, v[0], v[3], v[1], v[2], want)
		}
		rows, err = syncQuery(base, `SELECT body ->> '$.b', min(seq), max(seq), count(*) FROM outpost_beacon_recv WHERE edge = ? GROUP BY 1`, key)
		if err != nil {
			return fmt.Sprintf("%s batches: %v", key, err)
		}
		got := map[int64][3]int64{}
		for _, r := range rows {
			var x [4]int64
			for i := range x {
				x[i], _ = strconv.ParseInt(fmt.Sprint(r[i]), 10, 64)
			}
			got[x[0]] = [3]int64{x[1], x[2], x[3]}
		}
		for b, r := range batches[e] {
			if g := got[b]; g != [3]int64{r[0], r[1], ctrBeaconBatch} {
				return fmt.Sprintf("%s: batch %d answered with seqs %d..%d, held as seqs %d..%d (%d beacons)", key, b, r[0], r[1], g[0], g[1], g[2])
			}
		}
	}
	return ""
}
