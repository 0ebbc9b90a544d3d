package site

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/outpost-edge/outpost/edgecache"
)

// rateLimitConfig is a route's `rate_limit:`: at most limit requests per
// window for each client, counted by the fleet's global rate limiter
// (docs/SITE.md).
type rateLimitConfig struct {
	By     string `yaml:"by"`     // ip (default), or a request part: header.NAME, cookie.NAME, claim.NAME, query.NAME
	Limit  int64  `yaml:"limit"`  // requests per window, >= 1
	Window string `yaml:"window"` // e.g. 60s
}

// RateLimit is a route's limit per client.
type RateLimit struct {
	By     *Source // nil: the client's IP address
	Limit  int64
	Window time.Duration
}

// LimitFunc decides one request against the global limiter: whether it
// is allowed, the budget left (as the limiter knows it) and when the
// window (or a block) ends (Unix ms).
type LimitFunc func(ctx context.Context, key string, limit int64, window time.Duration) (allowed bool, remaining, resetMS int64, err error)

func parseRateLimit(rc *rateLimitConfig) (*RateLimit, error) {
	if rc == nil {
		return nil, nil
	}
	rl := &RateLimit{Limit: rc.Limit}
	if rc.Limit < 1 {
		return nil, fmt.Errorf("rate_limit: limit %d; want at least 1 request per window", rc.Limit)
	}
	d, err := time.ParseDuration(rc.Window)
	if err != nil || d < time.Second || d > 24*time.Hour {
		return nil, fmt.Errorf("rate_limit: window %q; want a duration from 1s to 24h, e.g. 60s", rc.Window)
	}
	rl.Window = d
	if rc.By != "" && rc.By != "ip" {
		src, err := ParseSource(rc.By)
		if err != nil || src.Kind == "locale" || src.Kind == "path" {
			return nil, fmt.Errorf("rate_limit: by %q; use ip, header.NAME, cookie.NAME, claim.NAME or query.NAME", rc.By)
		}
		rl.By = &src
	}
	return rl, nil
}

// rateLimited answers 429 (with Retry-After) and reports true when the
// route's limit refuses r; a request without the part it is counted by is
// counted by its IP address. A limiter error lets the request through
// (logged): the site stays up when the limiter cannot answer.
func (h *handler) rateLimited(w http.ResponseWriter, r *http.Request, rt *Route, claims map[string]any) bool {
	rl := rt.RateLimit
	if rl == nil || h.o.Limit == nil {
		return false
	}
	who := ""
	if rl.By != nil {
		if v, ok := value(r, *rl.By, claims, ""); ok {
			who = rl.By.Kind + "." + rl.By.Name + "=" + toString(v)
		}
	}
	if who == "" {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		who = "ip=" + host
	}
	key := "site:" + rt.Pattern + ":" + who
	allowed, remaining, resetMS, err := h.o.Limit(r.Context(), key, rl.Limit, rl.Window)
	if err != nil {
		h.o.Logger.Warn("site: rate limiter did not answer; request let through", "route", rt.Pattern, "err", err)
		return false
	}
	// The IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers):
	// the policy, the budget left and the seconds to the window's end.
	reset := max(1, int64(time.Until(time.UnixMilli(resetMS)).Seconds()+0.999))
	hdr := w.Header()
	hdr.Set("RateLimit-Policy", strconv.FormatInt(rl.Limit, 10)+";w="+strconv.FormatInt(int64(rl.Window.Seconds()), 10))
	hdr.Set("RateLimit-Limit", strconv.FormatInt(rl.Limit, 10))
	hdr.Set("RateLimit-Remaining", strconv.FormatInt(max(0, remaining), 10))
	hdr.Set("RateLimit-Reset", strconv.FormatInt(reset, 10))
	if allowed {
		return false
	}
	hdr.Set("Retry-After", strconv.FormatInt(reset, 10))
	edgecache.ErrorPage(w, http.StatusTooManyRequests, fmt.Sprintf("Too many requests: at most %d per %s. Try again later.", rl.Limit, rl.Window))
	return true
}
