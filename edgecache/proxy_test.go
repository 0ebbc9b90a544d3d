package edgecache_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/outpost-edge/outpost/edgecache"
)

// TestProxy_Vary: the cache keys a response on the request headers its
// Vary names; an Authorization header passes through uncached.
func TestProxy_Vary(t *testing.T) {
	var hits atomic.Int64
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Cache-Control", "public, max-age=60")
		w.Header().Set("Vary", "Accept-Language")
		fmt.Fprintf(w, "lang=%s", r.Header.Get("Accept-Language"))
	}))
	defer origin.Close()
	u, _ := url.Parse(origin.URL)
	p := edgecache.NewProxy(edgecache.ProxyConfig{Origin: u, Cache: edgecache.New(1<<20, 0)})
	srv := httptest.NewServer(p)
	defer srv.Close()
	do := func(lang, auth string) (string, string) {
		req, _ := http.NewRequest("GET", srv.URL+"/doc", nil)
		if lang != "" {
			req.Header.Set("Accept-Language", lang)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b), resp.Header.Get("X-Cache")
	}
	for i, s := range []struct{ lang, auth, body, xc string }{
		{"en", "", "lang=en", "MISS"},
		{"en", "", "lang=en", "HIT"},
		{"fr", "", "lang=fr", "MISS"},
		{"fr", "", "lang=fr", "HIT"},
		{"en", "", "lang=en", "HIT"},
		{"en", "Bearer x", "lang=en", "PASS"},
	} {
		body, xc := do(s.lang, s.auth)
		if body != s.body || xc != s.xc {
			t.Errorf("step %d: %q %s, want %q %s", i, body, xc, s.body, s.xc)
		}
	}
	if h := hits.Load(); h != 3 {
		t.Errorf("origin hits %d, want 3", h)
	}
}
