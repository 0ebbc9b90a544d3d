package site_test

import (
	"context"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/edgecache"
	"github.com/outpost-edge/outpost/site"
)

// TestSite_RateLimit: a route's rate_limit counts each client (by IP or by
// a named request part) with the limiter it is given; past the limit the
// answer is 429 with Retry-After, before any query or cache; a limiter
// that fails lets requests through.
func TestSite_RateLimit(t *testing.T) {
	dir := writeSite(t, `
routes:
  - path: /pages/{slug}
    template: page.html
    ttl: 1m
    rate_limit: {limit: 2, window: 60s}
    queries:
      - name: page
        sql: SELECT id, title FROM pages WHERE slug = :slug
        required: true
  - path: /by-user
    template: page.html
    rate_limit: {limit: 1, window: 10s, by: header.X-User}
`, map[string]string{"page.html": `{{.Row.page.title}}`, "404.html": "none"})
	s, err := site.Load(context.Background(), dir, schemaDDL)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	counts := map[string]int64{}
	failing := false
	limit := func(_ context.Context, key string, n int64, window time.Duration) (bool, int64, int64, error) {
		mu.Lock()
		defer mu.Unlock()
		if failing {
			return false, 0, 0, context.DeadlineExceeded
		}
		counts[key]++
		return counts[key] <= n, n - counts[key], time.Now().Add(window).UnixMilli(), nil
	}
	srv := httptest.NewServer(s.Handler(site.Options{Store: openStore(t), Cache: edgecache.New(1<<20, 0), Limit: limit}))
	t.Cleanup(srv.Close)
	u := srv.URL + "/pages/hello"
	for i, want := range []int{200, 200, 429, 429} {
		st, body, h := get(t, u)
		if st != want {
			t.Fatalf("request %d: %d %q, want %d", i, st, body, want)
		}
		if st == 429 && (h.Get("Retry-After") == "" || h.Get("X-Cache") != "") {
			t.Fatalf("429 without Retry-After, or from the cache: %v", h)
		}
		if h.Get("RateLimit-Policy") != "2;w=60" || h.Get("RateLimit-Limit") != "2" || h.Get("RateLimit-Reset") == "" {
			t.Fatalf("request %d: RateLimit headers %v", i, h)
		}
		if want := map[int]string{0: "1", 1: "0", 2: "0"}[i]; want != "" && h.Get("RateLimit-Remaining") != want {
			t.Fatalf("request %d: RateLimit-Remaining %q, want %s", i, h.Get("RateLimit-Remaining"), want)
		}
	}
	// Counted per user when the route says so.
	if st, _, _ := get(t, srv.URL+"/by-user", "X-User", "a"); st != 200 {
		t.Fatalf("first request of user a: %d", st)
	}
	if st, _, _ := get(t, srv.URL+"/by-user", "X-User", "a"); st != 429 {
		t.Fatalf("second request of user a: %d", st)
	}
	if st, _, _ := get(t, srv.URL+"/by-user", "X-User", "b"); st != 200 {
		t.Fatalf("first request of user b: %d", st)
	}
	mu.Lock()
	failing = true
	mu.Unlock()
	if st, _, _ := get(t, u); st != 200 {
		t.Fatalf("with the limiter failing: %d, want the page", st)
	}
}
