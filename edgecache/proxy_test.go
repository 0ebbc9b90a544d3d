package edgecache_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
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

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestProxy_HostileKeys: 10,000 distinct query strings, each a cacheable
// answer, keep the cache within its byte bound.
func TestProxy_HostileKeys(t *testing.T) {
	const bound = 256 << 10
	c := edgecache.New(bound, 0)
	body := strings.Repeat("x", 2000)
	u, _ := url.Parse("http://origin.test")
	p := edgecache.NewProxy(edgecache.ProxyConfig{Origin: u, Cache: c, Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
		h := http.Header{}
		h.Set("Cache-Control", "max-age=600")
		h.Set("Surrogate-Key", "k-"+r.URL.RawQuery)
		return &http.Response{StatusCode: 200, Header: h, Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
	})})
	for i := range 10_000 {
		w := httptest.NewRecorder()
		p.ServeHTTP(w, httptest.NewRequest("GET", fmt.Sprintf("/x?q=%d&pad=%s", i, strings.Repeat("p", i%500)), nil))
		if w.Code != 200 {
			t.Fatalf("request %d: %d", i, w.Code)
		}
		if c.Bytes() > bound {
			t.Fatalf("after %d requests: %d bytes, bound %d", i, c.Bytes(), bound)
		}
	}
	if c.Stats.Evictions.Load() < 9_000 || c.Len() == 0 {
		t.Fatalf("evictions %d, entries %d", c.Stats.Evictions.Load(), c.Len())
	}
}

// TestProxy_BodyBreaksOff: an origin whose body breaks off mid-copy is an
// origin error (502), also for a background refresh, never a crash.
func TestProxy_BodyBreaksOff(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=0, stale-while-revalidate=60")
		w.Header().Set("Content-Length", "1000")
		w.Write([]byte("short"))
		if hj, ok := w.(http.Hijacker); ok {
			c, _, _ := hj.Hijack()
			c.Close()
		}
	}))
	defer origin.Close()
	u, _ := url.Parse(origin.URL)
	p := edgecache.NewProxy(edgecache.ProxyConfig{Origin: u, Cache: edgecache.New(1<<20, 0)})
	srv := httptest.NewServer(p) // a server context: ReverseProxy panics on a broken copy
	defer srv.Close()
	for range 3 {
		resp, err := http.Get(srv.URL + "/broken")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 502 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
}
