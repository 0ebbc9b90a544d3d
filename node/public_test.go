package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost"
	demosite "github.com/outpost-edge/outpost/examples/site"
	"github.com/outpost-edge/outpost/fleet"
	"github.com/outpost-edge/outpost/node"
)

// openSite opens a node serving the demo site on a public listener, with
// origin (may be "") behind it.
func openSite(tb testing.TB, origin string, change func(*node.Config)) *node.Node {
	tb.Helper()
	dir := tb.TempDir()
	schema := filepath.Join(dir, "schema.sql")
	if err := os.WriteFile(schema, []byte(fleet.DemoSchema), 0o644); err != nil {
		tb.Fatal(err)
	}
	siteDir := filepath.Join(dir, "site")
	if err := demosite.Write(siteDir); err != nil {
		tb.Fatal(err)
	}
	cfg := node.Config{
		DataDir: filepath.Join(dir, "data"), SchemaFile: schema, APIAddr: "127.0.0.1:0",
		Identity:     outpost.Identity{Name: "EDGE01", Location: "LHR", Farm: "lhr", Role: outpost.RoleEdge, Code: "43ax"},
		PublicConfig: node.PublicConfig{HTTPAddr: "127.0.0.1:0", SiteDir: siteDir, Origin: origin, OriginTimeout: 2 * time.Second},
	}
	if change != nil {
		change(&cfg)
	}
	n, err := node.Open(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	n.Serve()
	tb.Cleanup(func() { n.Close(context.Background()) })
	return n
}

func postJSON(tb testing.TB, url string, body any) (int, map[string]any) {
	tb.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// createPage inserts a page through the API and returns its slug.
func createPage(tb testing.TB, api, title, body string) string {
	tb.Helper()
	st, out := postJSON(tb, api+"/v1/exec", map[string]any{"statements": []map[string]any{{
		"sql":  "INSERT INTO pages (id, slug, title, body) VALUES (outpost_id(), outpost_slug(?), ?, ?) RETURNING slug",
		"args": []any{title, title, body}}}})
	if st != 200 {
		tb.Fatalf("exec: %d %v", st, out)
	}
	return out["results"].([]any)[0].(map[string]any)["rows"].([]any)[0].([]any)[0].(string)
}

func execSQL(tb testing.TB, api, sql string, args ...any) {
	tb.Helper()
	if args == nil {
		args = []any{}
	}
	st, out := postJSON(tb, api+"/v1/exec", map[string]any{"statements": []map[string]any{{"sql": sql, "args": args}}})
	if st != 200 {
		tb.Fatalf("exec %s: %d %v", sql, st, out)
	}
}

type gotResp struct {
	status int
	body   string
	header http.Header
}

func fetch(tb testing.TB, url string, hdr ...string) gotResp {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return gotResp{resp.StatusCode, string(b), resp.Header}
}

// TestPublic_RenderCacheInvalidate: a page is rendered from local SQLite,
// then served from the cache, and a committed change purges it at once.
func TestPublic_RenderCacheInvalidate(t *testing.T) {
	n := openSite(t, "", nil)
	slug := createPage(t, n.APIURL(), "Hello edge", "first <b>body</b>")
	// The write's own invalidation has run (it would drop a page rendered
	// before it, correctly but making the next GET a MISS).
	if err := n.Purges.WaitApplied(context.Background(), n.Store.DBVersion()); err != nil {
		t.Fatal(err)
	}
	u := n.HTTPURL() + "/pages/" + slug
	g := fetch(t, u)
	if g.status != 200 || !strings.Contains(g.body, "Hello edge") || g.header.Get("X-Cache") != "MISS" {
		t.Fatalf("first GET: %d %s %q", g.status, g.header.Get("X-Cache"), g.body)
	}
	if !strings.Contains(g.body, "first &lt;b&gt;body&lt;/b&gt;") {
		t.Fatalf("body not escaped: %s", g.body)
	}
	if !strings.Contains(g.header.Get("Surrogate-Key"), "pages/EDGE01-") {
		t.Fatalf("Surrogate-Key %q lacks the row key", g.header.Get("Surrogate-Key"))
	}
	if g := fetch(t, u); g.header.Get("X-Cache") != "HIT" {
		t.Fatalf("second GET: X-Cache %q", g.header.Get("X-Cache"))
	}
	execSQL(t, n.APIURL(), "UPDATE pages SET title = 'Changed title' WHERE slug = ?", slug)
	// The purge runs as the commit is applied, not on a timer: the very
	// next request after the write sees the new title (allow the watcher a
	// moment on a loaded machine).
	deadline := time.Now().Add(5 * time.Second)
	for {
		g := fetch(t, u)
		if strings.Contains(g.body, "Changed title") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still old page after the update: %s %s", g.header.Get("X-Cache"), g.body)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The list page too, and a page that did not exist yet appears.
	if g := fetch(t, n.HTTPURL()+"/"); !strings.Contains(g.body, "Changed title") {
		t.Fatalf("index: %s", g.body)
	}
	missing := fetch(t, n.HTTPURL()+"/pages/not-yet-43ax")
	if missing.status != 404 || !strings.Contains(missing.body, "Page not found") {
		t.Fatalf("missing page: %d %s", missing.status, missing.body)
	}
	execSQL(t, n.APIURL(), "INSERT INTO pages (id, slug, title) VALUES (outpost_id(), 'not-yet-43ax', 'Now here')")
	deadline = time.Now().Add(5 * time.Second)
	for g := fetch(t, n.HTTPURL()+"/pages/not-yet-43ax"); g.status != 200; g = fetch(t, n.HTTPURL()+"/pages/not-yet-43ax") {
		if time.Now().After(deadline) {
			t.Fatalf("new page still 404: %s", g.header.Get("X-Cache"))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPublic_Locale: the page is localised by Accept-Language and cached
// per locale.
func TestPublic_Locale(t *testing.T) {
	n := openSite(t, "", nil)
	fr := fetch(t, n.HTTPURL()+"/", "Accept-Language", "fr-CH, fr;q=0.9, en;q=0.8")
	if !strings.Contains(fr.body, "Toutes les pages") || fr.header.Get("Content-Language") != "fr" {
		t.Fatalf("fr: %s %s", fr.header.Get("Content-Language"), fr.body)
	}
	en := fetch(t, n.HTTPURL()+"/", "Accept-Language", "en-GB")
	if !strings.Contains(en.body, "All pages") || en.header.Get("X-Cache") != "MISS" {
		t.Fatalf("en after fr must be its own entry: %s %s", en.header.Get("X-Cache"), en.body)
	}
	if g := fetch(t, n.HTTPURL()+"/", "Accept-Language", "fr"); g.header.Get("X-Cache") != "HIT" || !strings.Contains(g.body, "Toutes") {
		t.Fatalf("fr again: %s", g.header.Get("X-Cache"))
	}
}

// TestPublic_NeverV1: the public listener serves no /v1/* path, even with
// an origin that would answer it.
func TestPublic_NeverV1(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "origin") }))
	defer origin.Close()
	n := openSite(t, origin.URL, nil)
	for _, p := range []string{"/v1/query", "/v1/exec", "/v1/status", "/v1", "/v1/purge", "/v1/changes"} {
		for _, m := range []string{"GET", "POST"} {
			req, _ := http.NewRequest(m, n.HTTPURL()+p, strings.NewReader(`{"sql":"SELECT 1"}`))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 404 || strings.Contains(string(b), "origin") {
				t.Errorf("%s %s: %d %s", m, p, resp.StatusCode, b)
			}
		}
	}
	if g := fetch(t, n.HTTPURL()+"/elsewhere"); g.body != "origin" {
		t.Fatalf("unmatched path not proxied: %d %s", g.status, g.body)
	}
}

// TestPublic_ProxyCoalesceTTL: 16 concurrent clients make one origin fetch
// per key per TTL; the next TTL makes one more.
func TestPublic_ProxyCoalesceTTL(t *testing.T) {
	var hits atomic.Int64
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		time.Sleep(50 * time.Millisecond) // let the clients pile up
		w.Header().Set("Cache-Control", "max-age=1")
		w.Header().Set("Surrogate-Key", "asset-1 assets")
		fmt.Fprintf(w, "asset %s", r.URL.Path)
	}))
	defer origin.Close()
	n := openSite(t, origin.URL, nil)
	round := func() {
		var wg sync.WaitGroup
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if g := fetch(t, n.HTTPURL()+"/static/a.css"); g.body != "asset /static/a.css" {
					t.Errorf("body %q", g.body)
				}
			}()
		}
		wg.Wait()
	}
	round()
	if h := hits.Load(); h != 1 {
		t.Fatalf("origin fetches for 16 concurrent clients: %d, want 1", h)
	}
	g := fetch(t, n.HTTPURL()+"/static/a.css")
	if g.header.Get("X-Cache") != "HIT" || g.header.Get("Surrogate-Key") != "" {
		t.Fatalf("X-Cache %q, Surrogate-Key %q (stripped)", g.header.Get("X-Cache"), g.header.Get("Surrogate-Key"))
	}
	time.Sleep(1100 * time.Millisecond) // the TTL runs out
	round()
	if h := hits.Load(); h != 2 {
		t.Fatalf("origin fetches after the TTL: %d, want 2", h)
	}
	// Purge by key on the API: the next GET is a MISS.
	st, out := postJSON(t, n.APIURL()+"/v1/purge", map[string]any{"keys": []string{"asset-1"}})
	if st != 200 || out["id"] == nil {
		t.Fatalf("purge: %d %v", st, out)
	}
	if g := fetch(t, n.HTTPURL()+"/static/a.css"); g.header.Get("X-Cache") != "MISS" {
		t.Fatalf("after purge by key: %s", g.header.Get("X-Cache"))
	}
	// By URL.
	postJSON(t, n.APIURL()+"/v1/purge", map[string]any{"urls": []string{"http://example.com/static/a.css"}})
	if g := fetch(t, n.HTTPURL()+"/static/a.css"); g.header.Get("X-Cache") != "MISS" {
		t.Fatalf("after purge by url: %s", g.header.Get("X-Cache"))
	}
	// Soft: served stale once while one request revalidates.
	postJSON(t, n.APIURL()+"/v1/purge", map[string]any{"keys": []string{"assets"}, "soft": true})
	if g := fetch(t, n.HTTPURL()+"/static/a.css"); g.header.Get("X-Cache") != "STALE" {
		t.Fatalf("after soft purge: %s", g.header.Get("X-Cache"))
	}
	// Status of a purge.
	_, out = postJSON(t, n.APIURL()+"/v1/purge", map[string]any{"all": true})
	deadline := time.Now().Add(5 * time.Second)
	for {
		g = fetch(t, n.APIURL()+"/v1/purge/"+out["id"].(string))
		if g.status == 200 && strings.Contains(g.body, `"node":"EDGE01"`) && strings.Contains(g.body, `"pending":[]`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("purge status: %d %s", g.status, g.body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPublic_OriginDown: stale-if-error serves the old copy; without it a
// 502 page; a slow origin a 504 after --origin-timeout.
func TestPublic_OriginDown(t *testing.T) {
	var fail, slow atomic.Bool
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slow.Load() {
			time.Sleep(3 * time.Second)
		}
		if fail.Load() {
			w.WriteHeader(500)
			return
		}
		if r.URL.Path == "/sie" {
			w.Header().Set("Cache-Control", "max-age=0, stale-if-error=60")
		} else {
			w.Header().Set("Cache-Control", "max-age=0")
		}
		fmt.Fprint(w, "fresh "+r.URL.Path)
	}))
	defer origin.Close()
	n := openSite(t, origin.URL, func(c *node.Config) { c.OriginTimeout = 500 * time.Millisecond })
	fetch(t, n.HTTPURL()+"/sie")
	fetch(t, n.HTTPURL()+"/plain")
	fail.Store(true)
	if g := fetch(t, n.HTTPURL()+"/sie"); g.status != 200 || g.header.Get("X-Cache") != "STALE" || g.body != "fresh /sie" {
		t.Fatalf("stale-if-error: %d %s %q", g.status, g.header.Get("X-Cache"), g.body)
	}
	if g := fetch(t, n.HTTPURL()+"/plain"); g.status != 500 {
		t.Fatalf("no stale-if-error: %d", g.status)
	}
	slow.Store(true)
	if g := fetch(t, n.HTTPURL()+"/slow"); g.status != 504 || !strings.Contains(g.body, "did not answer in time") {
		t.Fatalf("slow origin: %d %s", g.status, g.body)
	}
	origin.Close()
	if g := fetch(t, n.HTTPURL()+"/gone"); g.status != 502 {
		t.Fatalf("origin down: %d %s", g.status, g.body)
	}
}

// TestPublic_HostileKeys: 2,000 distinct query strings over real HTTP keep
// the cache within its byte bound (edgecache's TestProxy_HostileKeys sends
// 10,000 in process); huge headers and long URIs are refused, the node
// keeps serving.
func TestPublic_HostileKeys(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Write(bytes.Repeat([]byte("x"), 2000))
	}))
	defer origin.Close()
	const bound = 256 << 10
	n := openSite(t, origin.URL, func(c *node.Config) { c.CacheSize = bound })
	tr := &http.Transport{MaxIdleConnsPerHost: 8}
	cl := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < 2_000; i += 8 {
				resp, err := cl.Get(fmt.Sprintf("%s/x?q=%d", n.HTTPURL(), i))
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	if b := n.Cache.Bytes(); b > bound || n.Cache.Len() == 0 {
		t.Fatalf("cache holds %d bytes in %d entries, bound %d", b, n.Cache.Len(), bound)
	}
	if ev := n.Cache.Stats.Evictions.Load(); ev == 0 {
		t.Fatal("no evictions")
	}
	req, _ := http.NewRequest("GET", n.HTTPURL()+"/", nil)
	req.Header.Set("X-Huge", strings.Repeat("a", 64<<10))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		if resp.StatusCode != 431 {
			t.Errorf("huge header: %d", resp.StatusCode)
		}
		resp.Body.Close()
	}
	if g := fetch(t, n.HTTPURL()+"/x?"+strings.Repeat("a", 9000)); g.status != 414 {
		t.Errorf("long URI: %d", g.status)
	}
	if g := fetch(t, n.HTTPURL()+"/pages/..%2f..%2fetc%2fpasswd"); g.status != 404 {
		t.Errorf("traversal slug: %d", g.status)
	}
	if g := fetch(t, n.HTTPURL()+"/"); g.status != 200 {
		t.Fatalf("node no longer serves: %d", g.status)
	}
	if g := fetch(t, n.APIURL()+"/metrics"); !strings.Contains(g.body, "outpost_cache_bytes") || !strings.Contains(g.body, `outpost_cache_drops_total{reason="evicted"}`) {
		t.Fatal("no cache metrics")
	}
}

// TestPublic_Changes: GET /v1/changes streams committed row changes as SSE,
// filtered by table, resumable with Last-Event-ID.
func TestPublic_Changes(t *testing.T) {
	n := openSite(t, "", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", n.APIURL()+"/v1/changes?table=pages", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
	}
	execSQL(t, n.APIURL(), "INSERT INTO bench_rows (id, n) VALUES ('b1', 1)")
	createPage(t, n.APIURL(), "Streamed", "b")
	buf := make([]byte, 0, 4096)
	tmp := make([]byte, 1024)
	for !strings.Contains(string(buf), `"value":"Streamed"`) {
		k, err := resp.Body.Read(tmp)
		if err != nil {
			t.Fatalf("stream: %v; got %s", err, buf)
		}
		buf = append(buf, tmp[:k]...)
	}
	s := string(buf)
	if strings.Contains(s, "bench_rows") || !strings.Contains(s, "id: 2\nevent: change\n") || !strings.Contains(s, `"origin":"EDGE01/`) {
		t.Fatalf("stream: %s", s)
	}
	// Resume from db_version 1: the page's group again.
	req, _ = http.NewRequestWithContext(ctx, "GET", n.APIURL()+"/v1/changes", nil)
	req.Header.Set("Last-Event-ID", "1")
	resp2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	buf = buf[:0]
	for !strings.Contains(string(buf), "Streamed") {
		k, err := resp2.Body.Read(tmp)
		if err != nil {
			t.Fatalf("resume: %v; got %s", err, buf)
		}
		buf = append(buf, tmp[:k]...)
	}
	if strings.Contains(string(buf), "id: 1\n") {
		t.Fatalf("resumed stream repeats db_version 1: %s", buf)
	}
}

// TestPublic_BadPurge: bad purge requests get a JSON error.
func TestPublic_BadPurge(t *testing.T) {
	n := openSite(t, "", nil)
	for _, body := range []any{map[string]any{}, map[string]any{"keys": []string{""}}, map[string]any{"urls": []string{"not a path"}},
		map[string]any{"kyes": []string{"a"}}, map[string]any{"keys": make([]string, 1001)}} {
		st, out := postJSON(t, n.APIURL()+"/v1/purge", body)
		if st != 400 || out["error"] == nil {
			t.Errorf("%v: %d %v", body, st, out)
		}
	}
	if g := fetch(t, n.APIURL()+"/v1/purge/nope"); g.status != 404 || !strings.Contains(g.body, "not_found") {
		t.Errorf("unknown purge: %d %s", g.status, g.body)
	}
}

// TestPublic_BadSiteRefusedAtStart: a broken site directory stops the node
// at start with the file and line; --site without --http is refused too.
func TestPublic_BadSiteRefusedAtStart(t *testing.T) {
	dir := t.TempDir()
	schema := filepath.Join(dir, "schema.sql")
	os.WriteFile(schema, []byte(fleet.DemoSchema), 0o644)
	siteDir := filepath.Join(dir, "site")
	if err := demosite.Write(siteDir); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(siteDir, "routes.yaml"), []byte("routes:\n  - path: /x\n    template: index.html\n    queries:\n      - name: q\n        sql: SELECT nope FROM pages\n"), 0o644)
	for _, tc := range []struct {
		pc   node.PublicConfig
		want string
	}{
		{node.PublicConfig{HTTPAddr: "127.0.0.1:0", SiteDir: siteDir}, "routes.yaml:2: route \"/x\": query \"q\" does not compile against the schema: no such column: nope"},
		{node.PublicConfig{SiteDir: siteDir}, "add --http"},
		{node.PublicConfig{HTTPAddr: "127.0.0.1:0", Origin: "ftp://x"}, "absolute http(s) URL"},
	} {
		_, err := node.Open(context.Background(), node.Config{
			DataDir: filepath.Join(dir, "data"), SchemaFile: schema, APIAddr: "127.0.0.1:0",
			Identity:     outpost.Identity{Name: "EDGE01", Location: "LHR", Farm: "lhr", Role: outpost.RoleEdge, Code: "43ax"},
			PublicConfig: tc.pc,
		})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.pc, err, tc.want)
		}
	}
}
