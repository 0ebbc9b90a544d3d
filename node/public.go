package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/api"
	"github.com/outpost-edge/outpost/edgecache"
	"github.com/outpost-edge/outpost/limiter"
	"github.com/outpost-edge/outpost/purge"
	"github.com/outpost-edge/outpost/site"
	"github.com/outpost-edge/outpost/store"
)

// Defaults of the public listener.
const (
	DefaultCacheSize     = 256 << 20
	DefaultOriginTimeout = 10 * time.Second
	maxRequestURI        = 8 << 10
)

// PublicConfig configures the public listener (--http): the site rendered
// from local SQLite, the caching proxy to the origin, purges. Embedded in
// Config.
type PublicConfig struct {
	HTTPAddr       string        // public listener address; "" = none
	SiteDir        string        // routes.yaml and templates/; "" = no rendered routes
	Origin         string        // URL paths no route matches are proxied to; "" = none (404)
	OriginTimeout  time.Duration // one origin fetch; 0 = DefaultOriginTimeout
	CacheSize      int64         // bytes of cached responses and pages; 0 = DefaultCacheSize
	CacheMaxObject int64         // largest cached response; 0 = CacheSize/8
}

// publicState is the node's public listener plumbing (embedded in Node).
type publicState struct {
	// Cache holds proxied responses and rendered pages; nil without --http.
	Cache *edgecache.Cache
	// Site is the loaded site directory; nil without --site.
	Site *site.Site
	// Purges applies committed changes and purge requests to Cache.
	Purges  *purge.Watcher
	httpLn  net.Listener
	httpSrv *http.Server
}

// openPublic builds the purge watcher and the API's /v1/purge and
// /v1/changes, and, with an HTTP address, the cache, the site, the proxy
// and the public listener. A bad site directory fails the start.
func (n *Node) openPublic(ctx context.Context, ddl string) error {
	c := n.cfg.PublicConfig
	if c.HTTPAddr == "" && (c.SiteDir != "" || c.Origin != "") {
		return errors.New("--site and --origin serve on the public listener: add --http ADDR (e.g. --http :8080)")
	}
	var target purge.Target
	if c.HTTPAddr != "" {
		if c.CacheSize <= 0 {
			c.CacheSize = DefaultCacheSize
		}
		n.Cache = edgecache.New(c.CacheSize, c.CacheMaxObject)
		target = n.Cache
	}
	n.Purges = purge.NewWatcher(n.Store, target, n.log.With("component", "purge"))
	if n.Cache != nil {
		n.metrics.reg.MustRegister(&cacheCollector{c: n.Cache, w: n.Purges, db: n.Store.DBVersion})
	}
	n.API.HandlePurge(&nodePurger{n: n})
	n.API.HandleChanges()
	if c.HTTPAddr == "" {
		return nil
	}
	log := n.log.With("component", "site")
	var fallback http.Handler
	if c.Origin != "" {
		u, err := url.Parse(c.Origin)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--origin %q: give an absolute http(s) URL such as http://127.0.0.1:9000", c.Origin)
		}
		if c.OriginTimeout <= 0 {
			c.OriginTimeout = DefaultOriginTimeout
		}
		fallback = edgecache.NewProxy(edgecache.ProxyConfig{Origin: u, Timeout: c.OriginTimeout, Cache: n.Cache, Logger: log})
	}
	h := fallback
	if c.SiteDir != "" {
		s, err := site.Load(ctx, c.SiteDir, ddl)
		if err != nil {
			return err
		}
		n.Site = s
		h = s.Handler(site.Options{Store: n.Store, Cache: n.Cache, Fallback: fallback, Logger: log, Node: n.Identity.Name,
			Limit: n.siteLimit()})
	}
	if h == nil {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			edgecache.ErrorPage(w, http.StatusNotFound, "No page here: this node has no --site and no --origin.")
		})
	}
	if n.BeaconIntake != nil {
		// Beacons from browsers (navigator.sendBeacon) arrive here.
		mux := http.NewServeMux()
		mux.Handle("/beacon", n.BeaconIntake.Public())
		mux.Handle("/", h)
		h = mux
	}
	ln, err := net.Listen("tcp", c.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s (--http): %w", c.HTTPAddr, err)
	}
	n.httpLn = ln
	n.httpSrv = &http.Server{
		Handler:           PublicGuard(h, log),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      c.OriginTimeout + 60*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return nil
}

// PublicGuard is the public listener's outer handler: it never serves the
// app API (/v1/*), refuses request URIs over 8 KiB, and turns a panic into
// a 500 page.
func PublicGuard(h http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				log.Error("site: panic", "path", r.URL.Path, "panic", fmt.Sprint(p))
				edgecache.ErrorPage(w, http.StatusInternalServerError, "Internal error.")
			}
		}()
		if p := r.URL.Path; p == "/v1" || strings.HasPrefix(p, "/v1/") {
			edgecache.ErrorPage(w, http.StatusNotFound, "No page here.")
			return
		}
		if len(r.RequestURI) > maxRequestURI {
			edgecache.ErrorPage(w, http.StatusRequestURITooLong, "The address is too long.")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// HTTPURL returns the base URL of the public listener ("" without --http).
func (n *Node) HTTPURL() string {
	if n.httpLn == nil {
		return ""
	}
	return "http://" + n.httpLn.Addr().String()
}

func (n *Node) servePublic() {
	n.Purges.Start()
	if n.httpSrv != nil {
		go func() {
			if err := n.httpSrv.Serve(n.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				n.log.Error("public listener stopped", "err", err)
			}
		}()
	}
}

func (n *Node) closePublic(ctx context.Context) {
	if n.httpSrv != nil {
		if err := n.httpSrv.Shutdown(ctx); err != nil {
			n.httpSrv.Close()
		}
	}
	if n.httpLn != nil {
		_ = n.httpLn.Close()
	}
	if n.Purges != nil {
		n.Purges.Stop()
	}
}

// nodePurger is the API's Purger: a replicated outpost_purges row.
type nodePurger struct{ n *Node }

func (p *nodePurger) Purge(ctx context.Context, r purge.Request) (string, int64, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return "", 0, err
	}
	id := p.n.Store.ID()
	dbv, err := p.n.Store.PutPurge(ctx, storePurge(id, string(body)))
	if err != nil {
		return "", 0, err
	}
	// Answer once this node's own cache has applied it too.
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_ = p.n.Purges.WaitApplied(wctx, dbv)
	return id, dbv, nil
}

func (p *nodePurger) PurgeStatus(ctx context.Context, id string) (api.PurgeStatus, bool, error) {
	pr, acks, ok, err := p.n.Store.GetPurge(ctx, id)
	if err != nil || !ok {
		return api.PurgeStatus{}, ok, err
	}
	st := api.PurgeStatus{ID: pr.ID, Node: pr.Node, IssuedMS: pr.Issued}
	st.Request, _ = purge.Decode(pr.Body)
	var done []string
	for _, a := range acks {
		st.Applied = append(st.Applied, api.PurgeApplied{Node: a.Node, AppliedMS: a.Applied})
		done = append(done, a.Node)
	}
	for _, m := range p.n.memberNames() {
		if !slices.Contains(done, m) {
			st.Pending = append(st.Pending, m)
		}
	}
	return st, true, nil
}

// memberNames lists the fleet's nodes (the trust list), or this node alone.
func (n *Node) memberNames() []string {
	if n.Trust == nil {
		return []string{n.Identity.Name}
	}
	var out []string
	for _, p := range n.Trust.List().Peers() {
		out = append(out, p.Name)
	}
	return out
}

func storePurge(id, body string) store.Purge {
	return store.Purge{ID: id, Body: body, Issued: time.Now().UnixMilli()}
}

// siteLimit decides the site's rate_limit with the node's global limiter.
func (n *Node) siteLimit() site.LimitFunc {
	if n.Limiter == nil {
		return nil
	}
	return func(ctx context.Context, key string, limit int64, window time.Duration) (bool, int64, int64, error) {
		d, err := n.Limiter.Decide(ctx, limiter.Request{Key: key, Limit: limit, Window: window, Cost: 1})
		return d.Allowed, d.Remaining, d.ResetMS, err
	}
}
