// Package bench measures a node: durable single-row writes, multi-row
// transactions and point reads through the app API, against the raw fsync
// rate of the data directory's disk measured in the same run.
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
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Schema is the table the API benchmarks write; the node under test must have it.
const Schema = `CREATE TABLE bench_rows (id TEXT PRIMARY KEY NOT NULL, n INTEGER NOT NULL DEFAULT 0, body TEXT);`

// Result is one measured scenario.
type Result struct {
	Name        string        `json:"name"`
	Concurrency int           `json:"concurrency"`
	Ops         int64         `json:"ops"`
	Errors      int64         `json:"errors"`
	Elapsed     time.Duration `json:"elapsed_ns"`
	PerSecond   float64       `json:"per_second"`
	P50         time.Duration `json:"p50_ns"`
	P99         time.Duration `json:"p99_ns"`
	Note        string        `json:"note,omitempty"`
}

// Limits bound every scenario in count and time.
type Limits struct {
	Duration time.Duration // per scenario
	MaxOps   int64         // per scenario
}

// Fsync measures the raw fsync rate of dir's disk: append 4 KiB, fsync, repeat.
func Fsync(dir string, lim Limits) (Result, error) {
	f, err := os.CreateTemp(dir, "fsync-bench-*")
	if err != nil {
		return Result{}, fmt.Errorf("fsync bench: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := bytes.Repeat([]byte{0xa5}, 4096)
	var lat []time.Duration
	start := time.Now()
	for time.Since(start) < lim.Duration && int64(len(lat)) < lim.MaxOps {
		t := time.Now()
		if _, err := f.Write(buf); err != nil {
			return Result{}, fmt.Errorf("fsync bench: %w", err)
		}
		if err := f.Sync(); err != nil {
			return Result{}, fmt.Errorf("fsync bench: %w", err)
		}
		lat = append(lat, time.Since(t))
	}
	r := summarize("raw fsync (4 KiB append + fsync)", 1, lat, 0, time.Since(start))
	r.Note = "reference: " + filepath.Clean(dir)
	return r, nil
}

// Client drives a node's app API.
type Client struct {
	URL   string
	Token string
	HTTP  *http.Client
}

// NewClient returns a client with enough keep-alive connections for conc workers.
func NewClient(url, token string, conc int) *Client {
	tr := &http.Transport{MaxIdleConns: conc * 2, MaxIdleConnsPerHost: conc * 2, IdleConnTimeout: 30 * time.Second}
	return &Client{URL: strings.TrimRight(url, "/"), Token: token, HTTP: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// Post sends a JSON body and decodes a 200 answer into out (if not nil).
func (c *Client) Post(ctx context.Context, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d: %s", path, resp.StatusCode, bytes.TrimSpace(data))
	}
	if raw, ok := out.(*rawBody); ok {
		*raw = data
		return nil
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// run calls op from conc workers until the limits are reached and returns
// the latency distribution.
func run(ctx context.Context, name string, conc int, lim Limits, op func(ctx context.Context, worker int, i int64) error) Result {
	var (
		mu     sync.Mutex
		all    []time.Duration
		errs   atomic.Int64
		count  atomic.Int64
		firstE atomic.Value
	)
	ctx, cancel := context.WithTimeout(ctx, lim.Duration)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1024)
			for ctx.Err() == nil {
				i := count.Add(1)
				if i > lim.MaxOps {
					break
				}
				t := time.Now()
				err := op(ctx, w, i)
				if err != nil {
					if ctx.Err() == nil {
						errs.Add(1)
						firstE.CompareAndSwap(nil, err)
					}
					continue
				}
				lat = append(lat, time.Since(t))
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	r := summarize(name, conc, all, errs.Load(), time.Since(start))
	if e := firstE.Load(); e != nil {
		r.Note = "first error: " + e.(error).Error()
	}
	return r
}

func summarize(name string, conc int, lat []time.Duration, errs int64, elapsed time.Duration) Result {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	r := Result{Name: name, Concurrency: conc, Ops: int64(len(lat)), Errors: errs, Elapsed: elapsed}
	if elapsed > 0 {
		r.PerSecond = float64(len(lat)) / elapsed.Seconds()
	}
	if n := len(lat); n > 0 {
		r.P50 = lat[n/2]
		r.P99 = lat[min(n-1, n*99/100)]
	}
	return r
}
