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
// second (a batch every 10 ms) at each of the first edges edges (EDGE01 ..
// EDGE04) for lim.Duration, and measures the time from an edge's 2xx to
// both aggregators (MASTER01, NODE01) holding the batch in their rollups
// (their cursor for that edge covers it: the cursor moves in the
// transaction that updates the rollups). Then it measures how much the
// edges still store once both acknowledged.
func BeaconsEndToEnd(ctx context.Context, rate, edges int, lim Limits) ([]Result, error) {
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
	names := []string{"EDGE01", "EDGE02", "EDGE03", "EDGE04"}[:min(max(edges, 1), 4)]
	aggs := []*node.Node{f.Node("MASTER01"), f.Node("NODE01")}
	type sent struct {
		last int64
		at   time.Time
	}
	var (
		mu      sync.Mutex
		pending = map[string][]sent{}
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
			for _, e := range names {
				cur := min(aggs[0].Beacons.Cursor(e), aggs[1].Beacons.Cursor(e))
				now := time.Now()
				mu.Lock()
				p := pending[e]
				for len(p) > 0 && p[0].last <= cur {
					lat = append(lat, now.Sub(p[0].at))
					p = p[1:]
				}
				pending[e] = p
				mu.Unlock()
			}
		}
	}()
	per := max(1, rate/100) // beacons per 10 ms tick and edge
	start := time.Now()
	var wg sync.WaitGroup
	for _, e := range names {
		c := NewClient(f.Node(e).APIURL(), "", 4)
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			var posts sync.WaitGroup
			defer posts.Wait()
			var i int64
			for time.Since(start) < lim.Duration && ctx.Err() == nil {
				<-tick.C
				body := make([]byte, 0, per*200)
				for k := 0; k < per; k++ {
					i++
					body = beaconBody(body, i)
					body = append(body, '\n')
				}
				posts.Add(1)
				go func() {
					defer posts.Done()
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
					p := pending[e]
					k := len(p)
					for k > 0 && p[k-1].last > ans.Last {
						k--
					}
					p = append(p, sent{})
					copy(p[k+1:], p[k:])
					p[k] = sent{ans.Last, at}
					pending[e] = p
				}()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	left := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, p := range pending {
			n += len(p)
		}
		return n
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && left() > 0; {
		time.Sleep(10 * time.Millisecond)
	}
	wcancel()
	<-wdone
	mu.Lock()
	r := summarize(fmt.Sprintf("end to end, edge 2xx to both aggregators' rollups, %d beacons/s at each of %d edges", rate, len(names)), len(names), lat, errs, elapsed)
	r.PerSecond = float64(total) / elapsed.Seconds()
	mu.Unlock()
	r.Note = fmt.Sprintf("%d beacons in %d batches; %d batches never reached both", total, len(lat), left())
	out := []Result{r}
	// Storage at the edges: back to ~0 once both aggregators acknowledged.
	t0 := time.Now()
	var stored, bytes int64
	for time.Since(t0) < 30*time.Second {
		stored, bytes = 0, 0
		for _, e := range names {
			s := f.Node(e).BeaconLog.Stats()
			stored += s.StoredBeacons
			bytes += s.StoredBytes
		}
		if stored == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	out = append(out, Result{Name: "edge storage after acks", Ops: stored, Elapsed: time.Since(t0),
		Note: fmt.Sprintf("%d beacons (%d bytes) left on the loaded edges %s after the last post", stored, bytes, time.Since(t0).Round(time.Millisecond))})
	return out, nil
}
