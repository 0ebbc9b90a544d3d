package site

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/edgecache"
	"github.com/outpost-edge/outpost/purge"
	"github.com/outpost-edge/outpost/store"
	"golang.org/x/text/language"
)

// Querier runs read-only queries (store.Store).
type Querier interface {
	Query(ctx context.Context, st store.Statement) (*store.Rows, error)
}

// Options wire a site to a node.
type Options struct {
	Store    Querier
	Cache    *edgecache.Cache // nil = no caching
	Fallback http.Handler     // paths no route matches; nil = the site's 404 page
	Logger   *slog.Logger
	// QueryTimeout bounds the queries of one page; 0 = 5s.
	QueryTimeout time.Duration
	// Node is the name of this node (templates see it as .Node).
	Node string
	// Limit decides the routes' rate_limit against the fleet's global
	// limiter; nil = routes are not limited.
	Limit LimitFunc
}

// Data is what a template sees.
type Data struct {
	Route   string                      // the route's pattern
	Path    map[string]string           // path wildcards by name
	Query   url.Values                  // the URL's query parameters ({{.Query.Get "q"}})
	Header  http.Header                 // request headers
	Cookies map[string]string           // request cookies
	Claims  map[string]any              // the verified token's claims (routes that require one or bind claim.*)
	Locale  string                      // best match of Accept-Language among the site's locales
	Locales []string                    // the site's locales
	Rows    map[string][]map[string]any // every row of each query, by query name
	Row     map[string]map[string]any   // the first row of each query (nil when none)
	Status  int                         // the status being rendered
	Node    string                      // the node rendering the page
	Vars    map[string]any              // values set with With
}

// With returns a copy of d with Vars[key] = v, for passing values to a
// shared template: {{template "head" (.With "Title" .Row.page.title)}}.
func (d Data) With(key string, v any) Data {
	vars := make(map[string]any, len(d.Vars)+1)
	for k, x := range d.Vars {
		vars[k] = x
	}
	vars[key] = v
	d.Vars = vars
	return d
}

// handler serves a site's routes.
type handler struct {
	s       *Site
	o       Options
	mux     *http.ServeMux
	flights edgecache.Flights
}

// Handler returns the http.Handler of the site: its routes, then
// o.Fallback.
func (s *Site) Handler(o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.QueryTimeout <= 0 {
		o.QueryTimeout = 5 * time.Second
	}
	h := &handler{s: s, o: o}
	h.mux = s.mux(h)
	return h
}

func (s *Site) mux(h *handler) *http.ServeMux {
	m := http.NewServeMux()
	for _, rt := range s.Routes {
		rt := rt
		m.HandleFunc("GET "+rt.Pattern, func(w http.ResponseWriter, r *http.Request) { h.serveRoute(w, r, rt) })
	}
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { h.fallback(w, r) })
	return m
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *handler) fallback(w http.ResponseWriter, r *http.Request) {
	if h.o.Fallback != nil {
		h.o.Fallback.ServeHTTP(w, r)
		return
	}
	h.NotFound(w, r)
}

// NotFound renders the site's 404 page (never cached).
func (h *handler) NotFound(w http.ResponseWriter, r *http.Request) {
	if h.s.notFound == "" {
		edgecache.ErrorPage(w, http.StatusNotFound, "No page here.")
		return
	}
	d := h.baseData(r, nil, nil)
	d.Status = http.StatusNotFound
	var buf bytes.Buffer
	if err := h.s.tmpl.ExecuteTemplate(&buf, h.s.notFound, d); err != nil {
		h.o.Logger.Error("site: 404 template failed", "template", h.s.notFound, "err", err)
		edgecache.ErrorPage(w, http.StatusInternalServerError, "The page could not be rendered.")
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusNotFound)
	_, _ = w.Write(buf.Bytes())
}

// page is a rendered page.
type page struct {
	status int
	header http.Header
	body   []byte
	tags   []string
	ok     bool // rendered (not a 500): may be cached
}

func (h *handler) serveRoute(w http.ResponseWriter, r *http.Request, rt *Route) {
	var claims map[string]any
	if rt.Require || rt.usesClaims {
		c, err := h.s.auth.Verify(r, time.Now())
		if err == nil && rt.Require {
			err = checkClaims(c, rt.Claims)
		}
		if err != nil && rt.Require {
			var ae *AuthError
			errors.As(err, &ae)
			if ae.Status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="`+strings.ReplaceAll(ae.Reason, `"`, `'`)+`"`)
			}
			edgecache.ErrorPage(w, ae.Status, ae.Reason)
			return
		}
		claims = c
	}
	if h.rateLimited(w, r, rt, claims) {
		return
	}
	locale := h.locale(r)
	c := h.o.Cache
	if c == nil || rt.TTL <= 0 {
		p := h.render(r.Context(), r, rt, claims, locale, 0)
		write(w, r, p, "PASS", 0)
		return
	}
	key := h.cacheKey(r, rt, claims, locale)
	now := time.Now()
	e, st := c.Get(key, now)
	switch st {
	case edgecache.Fresh:
		c.Stats.Hits.Add(1)
		edgecache.Serve(w, r, e, "HIT", now)
		return
	case edgecache.Stale:
		c.Stats.Stale.Add(1)
		edgecache.Serve(w, r, e, "STALE", now)
		if !h.flights.Running(key) {
			bg := r.Clone(context.WithoutCancel(r.Context()))
			go h.flights.Do(key, func() (any, error) { return h.fill(bg, rt, claims, locale, key), nil }) //nolint:errcheck // logged
		}
		return
	}
	c.Stats.Misses.Add(1)
	v, _, _ := h.flights.Do(key, func() (any, error) { return h.fill(r, rt, claims, locale, key), nil })
	write(w, r, v.(*page), "MISS", 0)
}

// fill renders a page and stores it under key.
func (h *handler) fill(r *http.Request, rt *Route, claims map[string]any, locale, key string) (p *page) {
	defer func() {
		// A fill may run in the background (stale refresh): never let a
		// panic take the node down.
		if v := recover(); v != nil {
			h.o.Logger.Error("site: render panicked", "route", rt.Pattern, "panic", fmt.Sprint(v))
			p = errorPage(http.StatusInternalServerError, "The page could not be rendered.")
		}
	}()
	c := h.o.Cache
	token := c.Begin()
	start := time.Now()
	p = h.render(context.WithoutCancel(r.Context()), r, rt, claims, locale, token)
	if p.ok {
		c.Put(&edgecache.Entry{Key: key, Primary: r.URL.Path, Status: p.status, Header: p.header.Clone(), Body: p.body,
			Tags: p.tags, Stored: start, TTL: rt.TTL}, token)
	}
	return p
}

func write(w http.ResponseWriter, r *http.Request, p *page, xcache string, _ time.Duration) {
	hd := w.Header()
	for k, vs := range p.header {
		hd[k] = vs
	}
	hd.Set("X-Cache", xcache)
	if xcache != "PASS" {
		hd.Set("Age", "0")
	}
	w.WriteHeader(p.status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(p.body)
	}
}

// cacheKey is the route, the path and every value the route varies on.
func (h *handler) cacheKey(r *http.Request, rt *Route, claims map[string]any, locale string) string {
	var b strings.Builder
	b.WriteString("site\x00")
	b.WriteString(rt.Pattern)
	b.WriteString("\x00")
	b.WriteString(r.URL.Path)
	for _, v := range rt.Vary {
		b.WriteString("\x00")
		b.WriteString(v.String())
		b.WriteString("=")
		val, _ := value(r, v, claims, locale)
		b.WriteString(toString(val))
	}
	return b.String()
}

// value reads a request part.
func value(r *http.Request, s Source, claims map[string]any, locale string) (any, bool) {
	switch s.Kind {
	case "path":
		v := r.PathValue(s.Name)
		return v, true
	case "query":
		if vs, ok := r.URL.Query()[s.Name]; ok {
			return vs[0], true
		}
	case "header":
		if vs := r.Header.Values(s.Name); len(vs) > 0 {
			return strings.Join(vs, ","), true
		}
	case "cookie":
		if c, err := r.Cookie(s.Name); err == nil {
			return c.Value, true
		}
	case "claim":
		if v, ok := claims[s.Name]; ok {
			switch x := v.(type) {
			case string:
				return x, true
			case float64:
				if x == float64(int64(x)) {
					return int64(x), true
				}
				return x, true
			case bool:
				if x {
					return int64(1), true
				}
				return int64(0), true
			}
			return toString(v), true
		}
	case "locale":
		return locale, true
	}
	return nil, false
}

func toString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	}
	return strings.TrimSpace(strings.ReplaceAll(strings.ReplaceAll(fmt.Sprint(v), "\n", " "), "\x00", ""))
}

// locale picks the best of the site's locales for Accept-Language.
func (h *handler) locale(r *http.Request) string {
	if h.s.matcher == nil {
		return ""
	}
	al := r.Header.Get("Accept-Language")
	if len(al) > 512 {
		al = al[:512]
	}
	tags, _, _ := language.ParseAcceptLanguage(al)
	_, idx, _ := h.s.matcher.Match(tags...)
	return h.s.locales[idx]
}

func (h *handler) baseData(r *http.Request, claims map[string]any, rt *Route) *Data {
	d := &Data{Path: map[string]string{}, Query: r.URL.Query(), Header: r.Header, Cookies: map[string]string{}, Claims: claims,
		Locale: h.locale(r), Locales: h.s.locales, Rows: map[string][]map[string]any{}, Row: map[string]map[string]any{}, Node: h.o.Node}
	if rt != nil {
		d.Route = rt.Pattern
		for _, m := range wildcard.FindAllStringSubmatch(rt.Pattern, -1) {
			d.Path[m[1]] = r.PathValue(m[1])
		}
	}
	for _, c := range r.Cookies() {
		d.Cookies[c.Name] = c.Value
	}
	return d
}

// render runs the route's queries and its template into a buffer: a
// failure is a 500 page, never a half-written 200.
func (h *handler) render(ctx context.Context, r *http.Request, rt *Route, claims map[string]any, locale string, _ uint64) *page {
	ctx, cancel := context.WithTimeout(ctx, h.o.QueryTimeout)
	defer cancel()
	d := h.baseData(r, claims, rt)
	d.Locale = locale
	d.Status = http.StatusOK
	tags := []string{edgecache.URLTag(r.URL.Path)}
	tags = append(tags, rt.Keys...)
	tmpl := rt.Template
	for _, q := range rt.Queries {
		for _, t := range q.Tables {
			tags = append(tags, purge.TableTag(t))
		}
		args := make([]any, len(q.Args))
		for i, a := range q.Args {
			args[i], _ = value(r, a, claims, locale)
		}
		res, err := h.o.Store.Query(ctx, store.Statement{SQL: q.SQL, Args: args})
		if err != nil {
			h.o.Logger.Error("site: query failed", "route", rt.Pattern, "query", q.Name, "err", err)
			return errorPage(http.StatusInternalServerError, "The page could not be rendered.")
		}
		rows := make([]map[string]any, len(res.Rows))
		for i, row := range res.Rows {
			m := make(map[string]any, len(res.Columns))
			for k, c := range res.Columns {
				m[c] = row[k]
			}
			rows[i] = m
			for _, rk := range q.rowKeys {
				pk := make([]any, len(rk.cols))
				for j, ci := range rk.cols {
					pk[j] = row[ci]
				}
				tags = append(tags, purge.RowTag(rk.table, pk))
			}
		}
		d.Rows[q.Name] = rows
		if len(rows) > 0 {
			d.Row[q.Name] = rows[0]
		} else if q.Required {
			d.Status = rt.EmptyStatus
			if h.s.notFound != "" {
				tmpl = h.s.notFound
			}
		}
	}
	var buf bytes.Buffer
	if err := h.s.tmpl.ExecuteTemplate(&buf, tmpl, d); err != nil {
		h.o.Logger.Error("site: template failed", "route", rt.Pattern, "template", tmpl, "err", err)
		return errorPage(http.StatusInternalServerError, "The page could not be rendered.")
	}
	hd := http.Header{}
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Cache-Control", rt.CacheControl)
	if locale != "" {
		hd.Set("Content-Language", locale)
	}
	tags = dedupe(tags)
	var sk []string
	for _, t := range tags {
		if !strings.HasPrefix(t, "url:") {
			sk = append(sk, t)
		}
	}
	if len(sk) > 0 {
		hd.Set("Surrogate-Key", strings.Join(sk, " "))
	}
	return &page{status: d.Status, header: hd, body: buf.Bytes(), tags: tags, ok: true}
}

func errorPage(status int, msg string) *page {
	hd := http.Header{}
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	body := "<!doctype html><title>" + http.StatusText(status) + "</title><h1>" + http.StatusText(status) + "</h1><p>" + html.EscapeString(msg) + "</p>\n"
	return &page{status: status, header: hd, body: []byte(body)}
}

func dedupe(in []string) []string {
	seen := make(map[string]struct{}, len(in))
	out := in[:0]
	for _, t := range in {
		if _, ok := seen[t]; !ok {
			seen[t] = struct{}{}
			out = append(out, t)
		}
	}
	return out
}
