package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/beacon"
	"github.com/outpost-edge/outpost/fleet"
	"github.com/outpost-edge/outpost/node"
	"github.com/outpost-edge/outpost/store"
)

// beaconBody is a typical RUM beacon (~150 bytes).
func beaconBody(b []byte, i int64) []byte {
	b = append(b, `{"event":"lcp","path":"/products/`...)
	b = strconv.AppendInt(b, i%50, 10)
	b = append(b, `","lcp":`...)
	b = strconv.AppendInt(b, 800+i%2000, 10)
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, time.Now().UnixMilli(), 10)
	b = append(b, `,"ua":"Mozilla/5.0 (X11; Linux x86_64)","sid":"s`...)
	b = strconv.AppendInt(b, i, 36)
	return append(b, `"}`...)
}

// postBeacon sends body to path and wants 2xx.
func (c *Client) postBeacon(ctx context.Context, path string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: HTTP %d: %s", path, resp.StatusCode, bytes.TrimSpace(data))
	}
	return nil
}

// BeaconSingle measures POST /beacon, one beacon per request (sendBeacon).
func BeaconSingle(ctx context.Context, c *Client, conc int, lim Limits) Result {
	return run(ctx, fmt.Sprintf("single beacon POST /beacon, c=%d", conc), conc, lim, func(ctx context.Context, w int, i int64) error {
		return c.postBeacon(ctx, "/beacon", beaconBody(make([]byte, 0, 192), i))
	})
}

// BeaconBatch measures POST /v1/beacons with batches of n beacons.
func BeaconBatch(ctx context.Context, c *Client, conc, n int, lim Limits) Result {
	r := run(ctx, fmt.Sprintf("%d-beacon batch POST /v1/beacons, c=%d", n, conc), conc, lim, func(ctx context.Context, w int, i int64) error {
		body := make([]byte, 0, n*200)
		for k := 0; k < n; k++ {
			body = beaconBody(body, i*int64(n)+int64(k))
			body = append(body, '\n')
		}
		return c.postBeacon(ctx, "/v1/beacons", body)
	})
	r.Note = fmt.Sprintf("beacons/s = %.0f", r.PerSecond*float64(n))
	return r
}

// BeaconLog reads GET /v1/beacons/log of a node.
func BeaconLog(ctx context.Context, c *Client) (beacon.LogStats, error) {
	var s beacon.LogStats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+"/v1/beacons/log", nil)
	if err != nil {
		return s, err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return s, fmt.Errorf("/v1/beacons/log: HTTP %d", resp.StatusCode)
	}
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// DBBytes returns the size of a data directory's database and WAL files.
func DBBytes(dir string) int64 {
	var n int64
	for _, f := range []string{store.DBFile, store.DBFile + "-wal"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err == nil {
			n += st.Size()
		}
	}
	return n
}

// BeaconsEndToEnd runs the 'up' fleet in this process, posts rate beacons a
// second (batches every 10 ms) at EDGE01 for lim.Duration, and measures the
// time from the edge's 2xx to both aggregators (MASTER01, NODE01) holding
// the beacons in their rollups (their cursor for EDGE01 covers the batch:
// the cursor moves in the transaction that updates the rollups). Then it
// measures how long the edge takes to delete everything once both
// acknowledged it.
func BeaconsEndToEnd(ctx context.Context, rate int, lim Limits) ([]Result, error) {
	dir, err := os.MkdirTemp("", "outpost-bench-beacons-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	f, err := fleet.Start(ctx, dir, fleet.Demo(0), fleet.Options{Configure: func(_ fleet.Member, c *node.Config) {
		c.Beacons.PerIP = -1
	}})
	if err != nil {
		return nil, err
	}
	defer f.Close(context.Background())
	edge := f.Node("EDGE01")
	aggs := []*node.Node{f.Node("MASTER01"), f.Node("NODE01")}
	c := NewClient(edge.APIURL(), "", 4)
	type sent struct {
		last int64
		at   time.Time
	}
	var (
		mu      sync.Mutex
		pending []sent
		lat     []time.Duration
		errs    int64
		total   int64
	)
	// The watcher: when both cursors cover a batch, its latency is known.
	wctx, wcancel := context.WithCancel(ctx)
	wdone := make(chan struct{})
	go func() {
		defer close(wdone)
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
			}
			cur := min(aggs[0].Beacons.Cursor("EDGE01"), aggs[1].Beacons.Cursor("EDGE01"))
			now := time.Now()
			mu.Lock()
			for len(pending) > 0 && pending[0].last <= cur {
				lat = append(lat, now.Sub(pending[0].at))
				pending = pending[1:]
			}
			mu.Unlock()
		}
	}()
	per := max(1, rate/100) // beacons per 10 ms tick
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	var wg sync.WaitGroup
	var i int64
	for time.Since(start) < lim.Duration && ctx.Err() == nil {
		<-tick.C
		body := make([]byte, 0, per*200)
		for k := 0; k < per; k++ {
			i++
			body = beaconBody(body, i)
			body = append(body, '\n')
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ans struct {
				Last int64 `json:"last_seq"`
			}
			err := c.Post(ctx, "/v1/beacons", body, &ans)
			at := time.Now()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs++
				return
			}
			total += int64(per)
			// Keep pending ordered by seq (answers may come out of order).
			k := len(pending)
			for k > 0 && pending[k-1].last > ans.Last {
				k--
			}
			pending = append(pending, sent{})
			copy(pending[k+1:], pending[k:])
			pending[k] = sent{ans.Last, at}
		}()
	}
	tick.Stop()
	elapsed := time.Since(start)
	wg.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(pending)
		mu.Unlock()
		if n == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	wcancel()
	<-wdone
	mu.Lock()
	r := summarize(fmt.Sprintf("end to end, edge 2xx to both aggregators' rollups, %d beacons/s", rate), 1, lat, errs, elapsed)
	r.PerSecond = float64(total) / elapsed.Seconds()
	r.Note = fmt.Sprintf("%d beacons in %d batches; %d batches never reached both", total, len(lat), len(pending))
	mu.Unlock()
	out := []Result{r}
	// Storage at the edge: returns to ~0 once both aggregators acknowledged.
	t0 := time.Now()
	var s beacon.LogStats
	for time.Since(t0) < 30*time.Second {
		s = edge.BeaconLog.Stats()
		if s.StoredBeacons == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	out = append(out, Result{Name: "edge storage after acks", Ops: s.StoredBeacons, Elapsed: time.Since(t0),
		Note: fmt.Sprintf("stored beacons %d (%d bytes) %s after the last post; last seq %d, floor %d", s.StoredBeacons, s.StoredBytes, time.Since(t0).Round(time.Millisecond), s.LastSeq, s.Floor)})
	return out, nil
}
