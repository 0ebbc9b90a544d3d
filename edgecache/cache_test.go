package edgecache_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/edgecache"
)

func entry(key string, body int, tags ...string) *edgecache.Entry {
	return &edgecache.Entry{Key: key, Primary: key, Status: 200, Header: http.Header{}, Body: make([]byte, body),
		Tags: append(tags, edgecache.URLTag(key)), Stored: time.Now(), TTL: time.Minute}
}

func TestCache_BoundLRU(t *testing.T) {
	c := edgecache.New(64<<10, 0)
	for i := range 1000 {
		c.Put(entry(fmt.Sprintf("/k%d", i), 1000), c.Begin())
		if i == 10 {
			c.Get("/k0", time.Now()) // recently used: survives longer
		}
	}
	if c.Bytes() > 64<<10 {
		t.Fatalf("%d bytes over the bound", c.Bytes())
	}
	if _, st := c.Get("/k999", time.Now()); st != edgecache.Fresh {
		t.Fatal("newest entry evicted")
	}
	if _, st := c.Get("/k1", time.Now()); st != edgecache.Miss {
		t.Fatal("oldest entry kept")
	}
	if c.Put(entry("/big", 9<<10), c.Begin()) {
		t.Fatal("an entry over max object was kept")
	}
}

func TestCache_PurgeTagsSoftAll(t *testing.T) {
	c := edgecache.New(1<<20, 0)
	c.Put(entry("/a", 10, "pages", "pages/1"), c.Begin())
	c.Put(entry("/b", 10, "pages", "pages/2"), c.Begin())
	c.Put(entry("/c", 10, "other"), c.Begin())
	if n := c.PurgeTags([]string{"pages/1"}, false); n != 1 {
		t.Fatalf("purged %d", n)
	}
	if _, st := c.Get("/a", time.Now()); st != edgecache.Miss {
		t.Fatal("/a still there")
	}
	c.PurgeTags([]string{"pages"}, true)
	if _, st := c.Get("/b", time.Now()); st != edgecache.Stale {
		t.Fatalf("/b after soft purge: %v", st)
	}
	c.PurgeTags([]string{edgecache.URLTag("/c")}, false)
	if _, st := c.Get("/c", time.Now()); st != edgecache.Miss {
		t.Fatal("/c after purge by URL")
	}
	c.PurgeAll(false)
	if c.Len() != 0 || c.Bytes() != 0 {
		t.Fatalf("after purge all: %d entries, %d bytes", c.Len(), c.Bytes())
	}
}

// TestCache_FillRacingPurge: a page rendered before a purge of one of its
// tags is not stored after it.
func TestCache_FillRacingPurge(t *testing.T) {
	c := edgecache.New(1<<20, 0)
	tok := c.Begin()
	c.PurgeTags([]string{"pages"}, false)
	if c.Put(entry("/a", 10, "pages"), tok) {
		t.Fatal("stored a fill that raced a purge of its tag")
	}
	if !c.Put(entry("/b", 10, "other"), tok) {
		t.Fatal("refused a fill of another tag")
	}
	tok = c.Begin()
	c.PurgeAll(false)
	if c.Put(entry("/c", 10), tok) {
		t.Fatal("stored a fill that raced a purge of all")
	}
}

func TestParsePolicy(t *testing.T) {
	for _, tc := range []struct {
		cc, sc, vary string
		want         edgecache.Policy
	}{
		{"max-age=60", "", "", edgecache.Policy{TTL: time.Minute, HasTTL: true}},
		{"max-age=60, s-maxage=10", "", "", edgecache.Policy{TTL: 10 * time.Second, HasTTL: true}},
		{"max-age=60", "max-age=5", "", edgecache.Policy{TTL: 5 * time.Second, HasTTL: true}},
		{"private, max-age=60", "", "", edgecache.Policy{NoStore: true, TTL: time.Minute, HasTTL: true}},
		{"private, max-age=60", "max-age=30", "", edgecache.Policy{TTL: 30 * time.Second, HasTTL: true}},
		{"no-store", "", "", edgecache.Policy{NoStore: true}},
		{"max-age=1, stale-while-revalidate=30, stale-if-error=600", "", "", edgecache.Policy{TTL: time.Second, SWR: 30 * time.Second, SIE: 10 * time.Minute, HasTTL: true}},
		{"max-age=60", "", "*", edgecache.Policy{NoStore: true, TTL: time.Minute, HasTTL: true}},
		{"", "", "", edgecache.Policy{NoStore: true}},
		{"max-age=abc", "", "", edgecache.Policy{NoStore: true, HasTTL: false}},
	} {
		h := http.Header{}
		if tc.cc != "" {
			h.Set("Cache-Control", tc.cc)
		}
		if tc.sc != "" {
			h.Set("Surrogate-Control", tc.sc)
		}
		if tc.vary != "" {
			h.Set("Vary", tc.vary)
		}
		got := edgecache.ParsePolicy(h)
		if tc.cc == "max-age=abc" {
			got.HasTTL = false
		}
		if got != tc.want {
			t.Errorf("%q / %q: %+v, want %+v", tc.cc, tc.sc, got, tc.want)
		}
	}
}
