package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost"
	demosite "github.com/outpost-edge/outpost/examples/site"
	"github.com/outpost-edge/outpost/fleet"
	"github.com/outpost-edge/outpost/node"
)

// Site measures the public listener (`outpost bench --suite site`) on the
// demo fleet in this process with the demo site (examples/site): cache hits
// against /v1/query point reads at EDGE04, a page rendered from local SQLite
// with the cache off (a node of its own), the caching proxy in front of an
// httptest origin that counts its fetches, purges issued at MASTER01 at 100
// per second until the last of the four edges stops serving the old entry,
// and data-change invalidation (UPDATE at MASTER01 until EDGE04 serves the
// new page). Each result is passed to progress as it is measured.
func Site(ctx context.Context, dir string, lim Limits, progress func(Result)) ([]Result, error) {
	var out []Result
	add := func(r Result) {
		out = append(out, r)
		if progress != nil {
			progress(r)
		}
	}
	f, err := fleet.Start(ctx, filepath.Join(dir, "fleet"), fleet.Demo(0), fleet.Options{Site: "demo"})
	if err != nil {
		return nil, err
	}
	defer f.Close(context.Background())
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	edge4 := f.Node("EDGE04")
	const pages = 40
	ids := make([]string, pages)
	slugs := make([]string, pages)
	for i := range pages {
		var res struct {
			Results []struct {
				Rows [][]string `json:"rows"`
			} `json:"results"`
		}
		body := fmt.Sprintf(`{"statements":[{"sql":"INSERT INTO pages (id, slug, title, body) VALUES (outpost_id(), outpost_slug(?), ?, ?) RETURNING id, slug","args":["Bench page %d","Bench page %d","%s"]}]}`, i, i, strings.Repeat("lorem ipsum ", 100))
		if err := postJSON(ctx, hc, f.Node("EDGE01").APIURL()+"/v1/exec", body, &res); err != nil {
			return nil, err
		}
		ids[i], slugs[i] = res.Results[0].Rows[0][0], res.Results[0].Rows[0][1]
	}
	pageURL := func(n *node.Node, i int) string { return n.HTTPURL() + "/pages/" + slugs[i] }
	if err := waitFor(ctx, 30*time.Second, func() bool { st, _, _ := getPage(ctx, hc, pageURL(edge4, pages-1)); return st == 200 }); err != nil {
		return nil, fmt.Errorf("site bench: pages did not reach EDGE04: %w", err)
	}

	// Cache hits at EDGE04 against point reads of the same row on its API.
	hit := func(c context.Context, _ int, _ int64) error {
		st, _, xc := getPage(c, hc, pageURL(edge4, 0))
		if st != 200 || xc != "HIT" {
			return fmt.Errorf("status %d, X-Cache %s", st, xc)
		}
		return nil
	}
	_, _, _ = getPage(ctx, hc, pageURL(edge4, 0)) // fill
	add(run(ctx, "site: cache hit, rendered page (EDGE04)", 1, lim, hit))
	h16 := run(ctx, "site: cache hit, rendered page (EDGE04)", 16, lim, hit)
	query := []byte(`{"sql":"SELECT id, slug, title, body FROM pages WHERE slug = ?","args":["` + slugs[0] + `"]}`)
	q16 := run(ctx, "api: /v1/query point read (EDGE04)", 16, lim, func(c context.Context, _ int, _ int64) error {
		return postJSON(c, hc, edge4.APIURL()+"/v1/query", string(query), nil)
	})
	if q16.PerSecond > 0 {
		h16.Note = fmt.Sprintf("%.1fx the /v1/query point-read rate at c=16", h16.PerSecond/q16.PerSecond)
	}
	add(h16)
	add(q16)

	// A page rendered from local SQLite with the cache off, and the
	// caching proxy, on a node of their own.
	var fetches atomic.Int64
	var fmu sync.Mutex
	lastFetch := map[string]time.Time{}
	var early atomic.Int64 // a second fetch of a key within its TTL
	const ttl = time.Second
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		fmu.Lock()
		if t, ok := lastFetch[r.URL.Path]; ok && time.Since(t) < ttl-50*time.Millisecond {
			early.Add(1)
		}
		lastFetch[r.URL.Path] = time.Now()
		fmu.Unlock()
		time.Sleep(2 * time.Millisecond) // an origin that takes some time
		if strings.HasPrefix(r.URL.Path, "/nostore/") {
			w.Header().Set("Cache-Control", "no-store")
		} else {
			w.Header().Set("Cache-Control", "max-age=1")
		}
		w.Write(bytes.Repeat([]byte("o"), 4096))
	}))
	defer origin.Close()
	solo, err := soloSiteNode(ctx, filepath.Join(dir, "solo"), origin.URL)
	if err != nil {
		return nil, err
	}
	defer solo.Close(context.Background())
	var res struct {
		Results []struct {
			Rows [][]string `json:"rows"`
		} `json:"results"`
	}
	if err := postJSON(ctx, hc, solo.APIURL()+"/v1/exec", `{"statements":[{"sql":"INSERT INTO pages (id, slug, title, body) VALUES (outpost_id(), outpost_slug(?), ?, ?) RETURNING slug","args":["Solo","Solo","`+strings.Repeat("lorem ipsum ", 100)+`"]}]}`, &res); err != nil {
		return nil, err
	}
	soloURL := solo.HTTPURL() + "/pages/" + res.Results[0].Rows[0][0]
	add(run(ctx, "site: rendered from local SQLite, cache off", 1, lim, func(c context.Context, _ int, _ int64) error {
		st, _, xc := getPage(c, hc, soloURL)
		if st != 200 || xc != "PASS" {
			return fmt.Errorf("status %d, X-Cache %s", st, xc)
		}
		return nil
	}))
	add(run(ctx, "proxy: every request to the origin (no-store, origin 2 ms)", 1, lim, func(c context.Context, _ int, i int64) error {
		st, _, xc := getPage(c, hc, fmt.Sprintf("%s/nostore/%d", solo.HTTPURL(), i))
		if st != 200 || xc != "MISS" {
			return fmt.Errorf("status %d, X-Cache %s", st, xc)
		}
		return nil
	}))
	const keys = 10
	before := fetches.Load()
	pl := Limits{Duration: max(lim.Duration, 3*time.Second), MaxOps: 1 << 40}
	pr := run(ctx, "proxy: 16 clients over 10 keys, max-age=1 (origin 2 ms)", 16, pl, func(c context.Context, w int, i int64) error {
		st, _, _ := getPage(c, hc, fmt.Sprintf("%s/asset/%d", solo.HTTPURL(), i%keys))
		if st != 200 {
			return fmt.Errorf("status %d", st)
		}
		return nil
	})
	periods := pr.Elapsed.Seconds() / ttl.Seconds()
	pr.Note = fmt.Sprintf("origin fetches %d for %d keys over %.1f TTLs (%.2f per key per TTL); fetches of a key within its TTL: %d",
		fetches.Load()-before, keys, periods, float64(fetches.Load()-before)/(keys*periods), early.Load())
	add(pr)

	// Purges at 100/s issued at MASTER01, each until the last of the four
	// edges stops serving the entry.
	edges := []*node.Node{f.Node("EDGE01"), f.Node("EDGE02"), f.Node("EDGE03"), edge4}
	master := f.Node("MASTER01")
	// Each edge notes when it applied a purge of a key (after which it no
	// longer serves the entry): the time the purge left its cache.
	var amu sync.Mutex
	applied := map[string]map[string]time.Time{} // key -> edge -> when
	for _, e := range edges {
		name := e.Identity.Name
		e.Purges.Observe(func(tags []string, _ bool) {
			now := time.Now()
			amu.Lock()
			defer amu.Unlock()
			for _, t := range tags {
				if m := applied[t]; m != nil {
					if _, ok := m[name]; !ok {
						m[name] = now
					}
				}
			}
		})
	}
	purgeOne := func(c context.Context, i int) (time.Duration, error) {
		for _, e := range edges { // cached at every edge
			if _, _, xc := getPage(c, hc, pageURL(e, i)); xc != "HIT" {
				_, _, _ = getPage(c, hc, pageURL(e, i))
			}
		}
		key := "pages/" + ids[i]
		amu.Lock()
		applied[key] = map[string]time.Time{}
		amu.Unlock()
		t0 := time.Now()
		if err := postJSON(c, hc, master.APIURL()+"/v1/purge", `{"keys":["`+key+`"]}`, nil); err != nil {
			return 0, err
		}
		var last time.Time
		err := waitFor(c, 10*time.Second, func() bool {
			amu.Lock()
			defer amu.Unlock()
			m := applied[key]
			if len(m) < len(edges) {
				return false
			}
			for _, t := range m {
				if t.After(last) {
					last = t
				}
			}
			delete(applied, key)
			return true
		})
		if err != nil {
			return 0, fmt.Errorf("purge of %s not applied at every edge: %w", key, err)
		}
		for _, e := range edges {
			if _, _, xc := getPage(c, hc, pageURL(e, i)); xc == "HIT" {
				return 0, fmt.Errorf("%s still serves the purged entry", e.Identity.Name)
			}
		}
		return last.Sub(t0), nil
	}
	add(paced(ctx, "purge at MASTER01 until all 4 edges stop serving it (10 purges/s)", 10, lim, pages, purgeOne))
	add(paced(ctx, "purge at MASTER01 until all 4 edges stop serving it (100 purges/s)", 100, lim, pages, purgeOne))

	// Data-change invalidation: UPDATE at MASTER01 until EDGE04 serves the
	// new rendered page.
	var seq atomic.Int64
	add(paced(ctx, "UPDATE at MASTER01 until EDGE04 serves the new page (20 updates/s)", 20, lim, pages, func(c context.Context, i int) (time.Duration, error) {
		if err := waitFor(c, 10*time.Second, func() bool { _, _, xc := getPage(c, hc, pageURL(edge4, i)); return xc == "HIT" }); err != nil {
			return 0, err
		}
		v := fmt.Sprintf("version-%d", seq.Add(1))
		t0 := time.Now()
		if err := postJSON(c, hc, master.APIURL()+"/v1/exec", `{"statements":[{"sql":"UPDATE pages SET title = ? WHERE id = ?","args":["`+v+`","`+ids[i]+`"]}]}`, nil); err != nil {
			return 0, err
		}
		if err := waitFor(c, 10*time.Second, func() bool { _, body, _ := getPage(c, hc, pageURL(edge4, i)); return strings.Contains(body, v) }); err != nil {
			return 0, fmt.Errorf("EDGE04 never served %s: %w", v, err)
		}
		return time.Since(t0), nil
	}))
	return out, nil
}

// paced starts op at rate per second (each on page i mod pages, so that
// ops in flight touch different pages) until the limits, and summarizes
// the durations op reports.
func paced(ctx context.Context, name string, rate int, lim Limits, pages int, op func(ctx context.Context, i int) (time.Duration, error)) Result {
	ctx, cancel := context.WithTimeout(ctx, lim.Duration)
	defer cancel()
	var (
		mu   sync.Mutex
		lat  []time.Duration
		errs atomic.Int64
		wg   sync.WaitGroup
		note atomic.Value
	)
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	start := time.Now()
	busy := make([]atomic.Bool, pages)
	for i := 0; int64(i) < lim.MaxOps && ctx.Err() == nil; i++ {
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
		p := i % pages
		if !busy[p].CompareAndSwap(false, true) {
			continue // still running on this page: skip a beat
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer busy[p].Store(false)
			d, err := op(context.WithoutCancel(ctx), p)
			if err != nil {
				errs.Add(1)
				note.CompareAndSwap(nil, err.Error())
				return
			}
			mu.Lock()
			lat = append(lat, d)
			mu.Unlock()
		}()
	}
	wg.Wait()
	r := summarize(name, rate, lat, errs.Load(), time.Since(start))
	if n, ok := note.Load().(string); ok {
		r.Note = "first error: " + n
	}
	return r
}

func soloSiteNode(ctx context.Context, dir, origin string) (*node.Node, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	schema := filepath.Join(dir, "schema.sql")
	if err := os.WriteFile(schema, []byte(fleet.DemoSchema), 0o644); err != nil {
		return nil, err
	}
	site := filepath.Join(dir, "site")
	if err := demosite.Write(site); err != nil {
		return nil, err
	}
	routes := filepath.Join(site, "routes.yaml")
	b, err := os.ReadFile(routes)
	if err != nil {
		return nil, err
	}
	// Cache off: every request renders.
	if err := os.WriteFile(routes, []byte(strings.ReplaceAll(string(b), "ttl: 5m", "ttl: 0s")), 0o644); err != nil {
		return nil, err
	}
	n, err := node.Open(ctx, node.Config{
		DataDir: filepath.Join(dir, "data"), SchemaFile: schema, APIAddr: "127.0.0.1:0",
		Identity:     outpost.Identity{Name: "SOLO01", Location: "LHR", Farm: "lhr", Role: outpost.RoleEdge, Code: "09so"},
		PublicConfig: node.PublicConfig{HTTPAddr: "127.0.0.1:0", SiteDir: site, Origin: origin},
	})
	if err != nil {
		return nil, err
	}
	n.Serve()
	return n, nil
}

func getPage(ctx context.Context, hc *http.Client, url string) (int, string, string) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("X-Cache")
}

func postJSON(ctx context.Context, hc *http.Client, url, body string, out any) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %d %s", url, resp.StatusCode, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// waitFor polls ok every 200 µs until it holds or d passes.
func waitFor(ctx context.Context, d time.Duration, ok func() bool) error {
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(200 * time.Microsecond)
	}
	return nil
}
