package beacon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/api"
	"github.com/outpost-edge/outpost/store"
)

// MaxPublicBody is the largest POST /beacon body (one beacon or a few
// NDJSON lines, as navigator.sendBeacon sends).
const MaxPublicBody = 64 << 10

// DefaultPerIP is the default per-client-address rate of POST /beacon
// (beacons per second; the burst is twice as many).
const DefaultPerIP = 100

// IntakeConfig configures the HTTP intake of a Log.
type IntakeConfig struct {
	Log *Log
	// Origins allowed to post beacons from a browser (CORS); empty or "*"
	// allows every origin. A request without an Origin header (not from
	// a browser page) is not checked.
	Origins []string
	// PerIP bounds POST /beacon per client address, in beacons per
	// second (burst: twice that); 0 = DefaultPerIP, negative = no bound.
	PerIP float64
	Now   func() time.Time
}

// Intake serves POST /beacon (public, sendBeacon-compatible) and POST
// /v1/beacons (NDJSON batches on the API).
type Intake struct {
	cfg     IntakeConfig
	origins map[string]bool
	any     bool
	ips     *ipLimiter
}

// NewIntake returns the intake handlers of cfg.Log.
func NewIntake(cfg IntakeConfig) *Intake {
	if cfg.PerIP == 0 {
		cfg.PerIP = DefaultPerIP
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	in := &Intake{cfg: cfg, origins: map[string]bool{}}
	for _, o := range cfg.Origins {
		if o = strings.TrimRight(strings.TrimSpace(o), "/"); o == "*" {
			in.any = true
		} else if o != "" {
			in.origins[strings.ToLower(o)] = true
		}
	}
	if len(in.origins) == 0 {
		in.any = true
	}
	if cfg.PerIP > 0 {
		in.ips = &ipLimiter{rate: cfg.PerIP, burst: 2 * cfg.PerIP, m: map[string]*bucket{}}
	}
	return in
}

// Public returns the handler of POST /beacon (and its CORS preflight,
// OPTIONS /beacon). It answers 204 once the beacons are durable.
func (in *Intake) Public() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin != "" {
			if !in.allowed(origin) {
				writeError(w, http.StatusForbidden, "origin_not_allowed", fmt.Sprintf("origin %s may not post beacons here; add it to --beacon-origins", origin))
				return
			}
			h := w.Header()
			h.Add("Vary", "Origin")
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
		}
		switch r.Method {
		case http.MethodOptions:
			h := w.Header()
			h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Content-Type")
			h.Set("Access-Control-Max-Age", "86400")
			w.WriteHeader(http.StatusNoContent)
			return
		case http.MethodPost:
		default:
			w.Header().Set("Allow", "POST, OPTIONS")
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "/beacon takes POST (navigator.sendBeacon)")
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "" {
			mt, _, _ := mime.ParseMediaType(ct)
			switch mt {
			case "text/plain", "application/json", "application/x-ndjson", "application/octet-stream":
			default:
				writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type",
					fmt.Sprintf("a beacon is JSON sent as text/plain or application/json, not %s: pass a string (or a JSON Blob) to sendBeacon, not FormData", mt))
				return
			}
		}
		body, ok := readBody(w, r, MaxPublicBody)
		if !ok {
			return
		}
		bodies, err := splitLines(body, 100)
		if err != nil {
			writeInputError(w, err)
			return
		}
		if in.ips != nil {
			if wait, ok := in.ips.take(clientIP(r), float64(len(bodies)), in.cfg.Now()); !ok {
				w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
				writeError(w, http.StatusTooManyRequests, "too_many_beacons", "this address sends beacons faster than the edge accepts from one client; retry later")
				return
			}
		}
		if _, _, err := in.cfg.Log.Append(r.Context(), bodies); err != nil {
			writeAppendError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// Batch returns the handler of POST /v1/beacons: an NDJSON body of at most
// MaxBatchBeacons beacons and MaxBatchBytes, stored whole or not at all.
// The answer gives the sequence numbers.
func (in *Intake) Batch() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, ok := readBody(w, r, MaxBatchBytes)
		if !ok {
			return
		}
		bodies, err := splitLines(body, MaxBatchBeacons)
		if err != nil {
			writeInputError(w, err)
			return
		}
		first, last, err := in.cfg.Log.Append(r.Context(), bodies)
		if err != nil {
			writeAppendError(w, err)
			return
		}
		b := fmt.Appendf(nil, `{"accepted":%d,"first_seq":%d,"last_seq":%d}`, len(bodies), first, last)
		writeJSON(w, http.StatusOK, b)
	}
}

// LogStatus returns the handler of GET /v1/beacons/log: the edge log's
// state (LogStats).
func (in *Intake) LogStatus() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, _ := json.Marshal(in.cfg.Log.Stats())
		writeJSON(w, http.StatusOK, b)
	}
}

func (in *Intake) allowed(origin string) bool {
	return in.any || in.origins[strings.ToLower(strings.TrimRight(origin, "/"))]
}

// readBody reads at most limit bytes, answering 413 beyond.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	if r.ContentLength > limit {
		writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("body of %d bytes; the limit is %d bytes", r.ContentLength, limit))
		return nil, false
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("body over the limit of %d bytes", limit))
			return nil, false
		}
		writeError(w, http.StatusBadRequest, "body_unreadable", "reading the body failed: "+err.Error())
		return nil, false
	}
	return b, true
}

// splitLines checks an NDJSON body: one beacon per line (blank lines
// ignored), at most max beacons. One bad line refuses the whole body.
func splitLines(body []byte, max int) ([]json.RawMessage, error) {
	var out []json.RawMessage
	line := 0
	for len(body) > 0 {
		line++
		l := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			l, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		l = bytes.TrimSpace(l)
		if len(l) == 0 {
			continue
		}
		if len(out) == max {
			return nil, inputErr(0, "batch_too_large", "more than %d beacons in one request; split the batch", max)
		}
		b, err := ParseOne(l, line)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	if len(out) == 0 {
		return nil, inputErr(0, "beacon_malformed", "no beacon in the body: send one JSON object per line")
	}
	return out, nil
}

func writeInputError(w http.ResponseWriter, err error) {
	var ie *InputError
	if !errors.As(err, &ie) {
		writeError(w, http.StatusBadRequest, "beacon_malformed", err.Error())
		return
	}
	status := http.StatusBadRequest
	if ie.Code == "beacon_too_large" || ie.Code == "batch_too_large" {
		status = http.StatusRequestEntityTooLarge
	}
	writeError(w, status, ie.Code, ie.Error())
}

func writeAppendError(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrFull) {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "beacon_budget_full", "this edge keeps as many beacons as its disk budget allows (--beacon-disk-budget) until aggregators collect them; retry later")
		return
	}
	if errors.Is(err, ErrHandingOff) {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "draining", "this edge is shutting down (its disk does not survive it) and takes no new beacons; retry on another edge or in a few seconds")
		return
	}
	if errors.Is(err, context.Canceled) {
		writeError(w, http.StatusServiceUnavailable, store.CodeUnavailable, "request canceled")
		return
	}
	var se *store.Error
	if errors.As(err, &se) {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, se.Code, se.Message)
		return
	}
	writeError(w, http.StatusInternalServerError, store.CodeInternal, err.Error())
}

// writeError writes the error body of the API ({"error":{"code","message"}}).
func writeError(w http.ResponseWriter, status int, code, msg string) {
	b := []byte(`{"error":{"code":`)
	b = api.AppendString(b, code)
	b = append(b, `,"message":`...)
	b = api.AppendString(b, msg)
	b = append(b, "}}"...)
	writeJSON(w, status, b)
}

func writeJSON(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// ipLimiter is a token bucket per client address, bounded in memory.
type ipLimiter struct {
	rate, burst float64
	mu          sync.Mutex
	m           map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

const maxTrackedIPs = 100_000

// take spends n tokens of ip's bucket, or says how long until it could.
func (l *ipLimiter) take(ip string, n float64, now time.Time) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.m[ip]
	if b == nil {
		if len(l.m) >= maxTrackedIPs {
			for k, o := range l.m {
				if o.tokens+now.Sub(o.at).Seconds()*l.rate >= l.burst {
					delete(l.m, k) // full again: forgetting it changes nothing
				}
			}
			if len(l.m) >= maxTrackedIPs {
				return time.Second, false
			}
		}
		b = &bucket{tokens: l.burst, at: now}
		l.m[ip] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
	b.at = now
	if b.tokens < n {
		return time.Duration((n - b.tokens) / l.rate * float64(time.Second)), false
	}
	b.tokens -= n
	return 0, true
}
