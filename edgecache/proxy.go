package edgecache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"time"
)

// ProxyConfig configures a caching reverse proxy.
type ProxyConfig struct {
	Origin  *url.URL      // where requests no route matches go
	Timeout time.Duration // an origin fetch (headers and body) takes at most this; 0 = 10s
	Cache   *Cache        // nil = no caching (every request passes through)
	Logger  *slog.Logger
	// Transport carries origin requests; nil = a transport with Timeout as
	// its dial and response-header timeouts.
	Transport http.RoundTripper
	// OnFetch, if set, is called after each origin fetch made to fill the
	// cache (tests and metrics).
	OnFetch func(key string, status int)
}

// Proxy forwards requests to the origin through httputil.ReverseProxy, with
// the cache in front: GET and HEAD without Authorization are looked up and
// filled (one origin fetch per key at a time), everything else passes.
type Proxy struct {
	cfg     ProxyConfig
	rp      *httputil.ReverseProxy
	flights Flights
	log     *slog.Logger
}

// NewProxy returns a Proxy for cfg.
func NewProxy(cfg ProxyConfig) *Proxy {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Transport == nil {
		cfg.Transport = &http.Transport{
			Proxy:                 nil,
			DialContext:           (&net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}).DialContext,
			ResponseHeaderTimeout: cfg.Timeout,
			MaxIdleConnsPerHost:   64,
			IdleConnTimeout:       90 * time.Second,
		}
	}
	p := &Proxy{cfg: cfg, log: cfg.Logger}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(cfg.Origin)
			pr.SetXForwarded()
		},
		Transport: cfg.Transport,
		ErrorLog:  slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			status, msg := http.StatusBadGateway, "The origin could not be reached."
			var ne net.Error
			if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
				status, msg = http.StatusGatewayTimeout, "The origin did not answer in time."
			}
			if c, ok := w.(*capture); ok {
				c.originErr = err
			}
			p.log.Warn("site: origin error", "path", r.URL.Path, "status", status, "err", err)
			ErrorPage(w, status, msg)
		},
	}
	return p
}

// ErrorPage writes a small HTML error page that is never cached.
func ErrorPage(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<!doctype html><title>%d %s</title><h1>%d %s</h1><p>%s</p>\n",
		status, http.StatusText(status), status, http.StatusText(status), html.EscapeString(msg))
}

// capture is the ResponseWriter a fill runs the reverse proxy into: it
// keeps the response up to a bound and notes whether the origin answered.
type capture struct {
	hdr       http.Header
	status    int
	buf       bytes.Buffer
	limit     int64
	over      bool
	originErr error
}

func (c *capture) Header() http.Header { return c.hdr }
func (c *capture) WriteHeader(s int) {
	if c.status == 0 {
		c.status = s
	}
}
func (c *capture) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	if c.over || int64(c.buf.Len()+len(b)) > c.limit {
		c.over = true
		c.buf.Reset()
		return len(b), nil
	}
	return c.buf.Write(b)
}

// fetched is the result of one origin fetch.
type fetched struct {
	status    int
	header    http.Header
	body      []byte
	over      bool  // larger than the cache's largest entry: not kept
	originErr error // the origin gave no answer (502/504 page)
	reqHeader http.Header
}

// failed reports a fetch stale-if-error may cover: no answer or a 5xx.
func (f *fetched) failed() bool { return f.originErr != nil || f.status >= 500 }

var cacheableStatus = map[int]bool{200: true, 203: true, 204: true, 300: true, 301: true, 308: true, 404: true, 410: true}

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := p.cfg.Cache
	if c == nil || (r.Method != http.MethodGet && r.Method != http.MethodHead) || r.Header.Get("Authorization") != "" {
		w.Header().Set("X-Cache", "PASS")
		p.rp.ServeHTTP(w, r)
		return
	}
	primary := r.URL.RequestURI()
	key := VariantKey(primary, c.Vary(primary), r.Header)
	now := time.Now()
	e, st := c.Get(key, now)
	switch st {
	case Fresh:
		c.Stats.Hits.Add(1)
		Serve(w, r, e, "HIT", now)
		return
	case Stale:
		c.Stats.Stale.Add(1)
		Serve(w, r, e, "STALE", now)
		if !p.flights.Running(key) {
			bg := r.Clone(context.WithoutCancel(r.Context()))
			go p.flights.Do(key, func() (any, error) { return p.fill(bg, primary), nil }) //nolint:errcheck // logged by the fill
		}
		return
	}
	c.Stats.Misses.Add(1)
	v, _, shared := p.flights.Do(key, func() (any, error) { return p.fill(r, primary), nil })
	f := v.(*fetched)
	if names := varyNames(f.header); shared && len(names) > 0 && VariantKey(primary, names, r.Header) != VariantKey(primary, names, f.reqHeader) {
		// The shared answer is another variant: fetch this one.
		f = p.fill(r, primary)
	}
	if f.failed() && e != nil && now.Sub(e.Stored) < e.TTL+e.SWR+e.SIE && e.SIE > 0 {
		c.Stats.Errors.Add(1)
		Serve(w, r, e, "STALE", now)
		return
	}
	if f.over {
		// Too large to keep, so not shared either: stream it.
		w.Header().Set("X-Cache", "PASS")
		p.rp.ServeHTTP(w, r)
		return
	}
	h := w.Header()
	for k, vs := range f.header {
		h[k] = vs
	}
	h.Set("X-Cache", "MISS")
	h.Set("Age", "0")
	w.WriteHeader(f.status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(f.body)
	}
}

// fill fetches primary from the origin (as a GET, whatever the client's
// conditional headers) and stores the answer if its headers allow.
func (p *Proxy) fill(r *http.Request, primary string) *fetched {
	c := p.cfg.Cache
	token := c.Begin()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), p.cfg.Timeout)
	defer cancel()
	out := r.Clone(ctx)
	out.Method = http.MethodGet
	for _, h := range []string{"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range", "Range"} {
		out.Header.Del(h)
	}
	cap := &capture{hdr: http.Header{}, limit: c.MaxObject()}
	start := time.Now()
	p.proxyInto(cap, out)
	if cap.status == 0 {
		cap.status = http.StatusOK
	}
	f := &fetched{status: cap.status, header: cap.hdr, body: bytes.Clone(cap.buf.Bytes()), over: cap.over, originErr: cap.originErr, reqHeader: r.Header}
	if p.cfg.OnFetch != nil {
		p.cfg.OnFetch(primary, f.status)
	}
	pol := ParsePolicy(cap.hdr)
	tags := append(SurrogateKeys(cap.hdr), URLTag(primary))
	var age time.Duration
	if a, err := strconv.Atoi(cap.hdr.Get("Age")); err == nil && a > 0 {
		age = time.Duration(a) * time.Second
	}
	for _, h := range []string{"Surrogate-Key", "Surrogate-Control", "Age", "X-Cache"} {
		f.header.Del(h)
	}
	if f.originErr != nil || f.over || pol.NoStore || !cacheableStatus[f.status] {
		return f
	}
	names := varyNames(cap.hdr)
	e := &Entry{
		Key: VariantKey(primary, names, r.Header), Primary: primary, Vary: names,
		Status: f.status, Header: f.header.Clone(), Body: f.body, Tags: tags,
		Stored: start, Age: age, TTL: pol.TTL, SWR: pol.SWR, SIE: pol.SIE,
	}
	c.Put(e, token)
	return f
}

// proxyInto runs the reverse proxy into cap. ReverseProxy panics with
// http.ErrAbortHandler when the origin's body breaks off mid-copy; a fill
// (possibly in the background) turns that into an origin error instead.
func (p *Proxy) proxyInto(cap *capture, out *http.Request) {
	defer func() {
		if r := recover(); r != nil {
			cap.originErr = fmt.Errorf("origin response broke off: %v", r)
			cap.status = http.StatusBadGateway
			cap.buf.Reset()
		}
	}()
	p.rp.ServeHTTP(cap, out)
}

func varyNames(h http.Header) []string {
	var out []string
	for _, v := range h.Values("Vary") {
		for _, n := range splitComma(v) {
			n = http.CanonicalHeaderKey(n)
			if n != "" && !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	slices.Sort(out)
	return out
}

func splitComma(s string) []string {
	var out []string
	for _, part := range bytes.Split([]byte(s), []byte(",")) {
		out = append(out, string(bytes.TrimSpace(part)))
	}
	return out
}

// Serve writes a cached entry with its Age and an X-Cache header (HIT,
// STALE).
func Serve(w http.ResponseWriter, r *http.Request, e *Entry, xcache string, now time.Time) {
	h := w.Header()
	for k, vs := range e.Header {
		h[k] = vs
	}
	h.Set("X-Cache", xcache)
	h.Set("Age", strconv.FormatInt(int64(e.CurrentAge(now)/time.Second), 10))
	w.WriteHeader(e.Status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(e.Body)
	}
}
