package edgecache

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Policy is what a response's Cache-Control and Surrogate-Control allow a
// shared cache to do.
type Policy struct {
	NoStore bool          // no-store, private, no-cache or Vary: * : not kept
	TTL     time.Duration // how long the entry is fresh
	SWR     time.Duration // stale-while-revalidate: served stale while one request refreshes
	SIE     time.Duration // stale-if-error: served stale while the origin fails
	HasTTL  bool          // some max-age was given
}

// directives parses a Cache-Control-style header into name -> value
// (lower-case names; "" for a directive without a value).
func directives(vals []string) map[string]string {
	out := map[string]string{}
	for _, v := range vals {
		for _, part := range strings.Split(v, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(part), "=")
			name = strings.ToLower(strings.TrimSpace(name))
			if name == "" {
				continue
			}
			out[name] = strings.Trim(strings.TrimSpace(val), `"`)
		}
	}
	return out
}

func seconds(d map[string]string, name string) (time.Duration, bool) {
	v, ok := d[name]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	const maxSec = 365 * 24 * 3600
	return time.Duration(min(n, maxSec)) * time.Second, true
}

// ParsePolicy reads the caching rules of a response: Surrogate-Control
// (for CDNs; wins over Cache-Control), then s-maxage, then max-age. A
// response without any max-age is not kept. no-store, private, no-cache,
// Vary: * and Set-Cookie make it not kept too.
func ParsePolicy(h http.Header) Policy {
	var p Policy
	cc := directives(h.Values("Cache-Control"))
	sc := directives(h.Values("Surrogate-Control"))
	if _, ok := sc["no-store"]; ok {
		p.NoStore = true
	}
	for _, k := range []string{"no-store", "private", "no-cache"} {
		if _, ok := cc[k]; ok && len(sc) == 0 {
			p.NoStore = true
		}
	}
	if strings.TrimSpace(h.Get("Vary")) == "*" || len(h.Values("Set-Cookie")) > 0 {
		p.NoStore = true
	}
	switch {
	case has(sc, "max-age"):
		p.TTL, p.HasTTL = seconds(sc, "max-age")
	case has(cc, "s-maxage"):
		p.TTL, p.HasTTL = seconds(cc, "s-maxage")
	case has(cc, "max-age"):
		p.TTL, p.HasTTL = seconds(cc, "max-age")
	}
	for _, d := range []map[string]string{cc, sc} {
		if v, ok := seconds(d, "stale-while-revalidate"); ok {
			p.SWR = v
		}
		if v, ok := seconds(d, "stale-if-error"); ok {
			p.SIE = v
		}
	}
	if !p.HasTTL {
		p.NoStore = true
	}
	return p
}

func has(d map[string]string, k string) bool { _, ok := d[k]; return ok }

// SurrogateKeys splits a Surrogate-Key header into its keys (space
// separated), at most 256 keys of at most 1,024 bytes each.
func SurrogateKeys(h http.Header) []string {
	var out []string
	for _, v := range h.Values("Surrogate-Key") {
		for _, k := range strings.Fields(v) {
			if len(k) <= 1024 && len(out) < 256 {
				out = append(out, k)
			}
		}
	}
	return out
}
