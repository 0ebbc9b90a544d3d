package site_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/edgecache"
	"github.com/outpost-edge/outpost/site"
	"github.com/outpost-edge/outpost/store"
)

const schemaDDL = `CREATE TABLE pages (id TEXT PRIMARY KEY NOT NULL, slug TEXT NOT NULL DEFAULT '', title TEXT NOT NULL DEFAULT '', body TEXT);`

// writeSite lays out a site directory: routes.yaml and templates.
func writeSite(tb testing.TB, routes string, templates map[string]string) string {
	tb.Helper()
	dir := tb.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "templates"), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "routes.yaml"), []byte(routes), 0o644); err != nil {
		tb.Fatal(err)
	}
	for name, body := range templates {
		if err := os.WriteFile(filepath.Join(dir, "templates", name), []byte(body), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}

func openStore(tb testing.TB) *store.Store {
	tb.Helper()
	st, err := store.Open(context.Background(), store.Options{Dir: tb.TempDir(), Schema: schemaDDL,
		Identity: outpost.Identity{Name: "EDGE01", Location: "LHR", Farm: "lhr", Role: outpost.RoleEdge, Code: "43ax"}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	_, _, err = st.Exec(context.Background(), []store.Statement{{SQL: `INSERT INTO pages (id, slug, title, body) VALUES ('p1', 'hello', 'Hello', 'world'), ('p2', 'other', 'Other', 'x')`}})
	if err != nil {
		tb.Fatal(err)
	}
	return st
}

var okTemplates = map[string]string{"page.html": `{{with .Row.page}}<h1>{{.title}}</h1>{{end}}`, "404.html": `nothing at {{.Path.slug}}`}

// TestLoad_BadConfig: every broken site directory stops the start with
// the file, the line and what to fix.
func TestLoad_BadConfig(t *testing.T) {
	route := func(extra string) string {
		return "routes:\n  - path: /pages/{slug}\n    template: page.html\n" + extra
	}
	for _, tc := range []struct {
		name, routes string
		tmpl         map[string]string
		want         []string
	}{
		{"unknown field", "routes:\n  - path: /x\n    tmeplate: page.html\n", okTemplates, []string{"routes.yaml:3", `field tmeplate not found`}},
		{"rate limit zero", route("    rate_limit: {limit: 0, window: 60s}\n"), okTemplates, []string{"rate_limit: limit 0"}},
		{"rate limit window", route("    rate_limit: {limit: 5, window: forever}\n"), okTemplates, []string{`rate_limit: window "forever"`}},
		{"rate limit by", route("    rate_limit: {limit: 5, window: 60s, by: path.slug}\n"), okTemplates, []string{`rate_limit: by "path.slug"`}},
		{"not yaml", "routes: [\n", okTemplates, []string{"routes.yaml:", "did not find expected"}},
		{"no routes", "locales: [en]\n", okTemplates, []string{"no routes"}},
		{"missing template", "routes:\n  - path: /x\n    template: nope.html\n", okTemplates, []string{"routes.yaml:2", `template "nope.html" is not in templates/`}},
		{"template parse", route(""), map[string]string{"page.html": "{{if}}"}, []string{"page.html:1", "does not parse"}},
		{"query no table", route("    queries:\n      - name: page\n        sql: SELECT * FROM pagez WHERE slug = :slug\n"), okTemplates, []string{"routes.yaml:2", "no such table: pagez"}},
		{"query writes", route("    queries:\n      - name: page\n        sql: DELETE FROM pages WHERE slug = :slug\n"), okTemplates, []string{"only reads"}},
		{"unbound param", route("    queries:\n      - name: page\n        sql: SELECT * FROM pages WHERE title = :t\n"), okTemplates, []string{"parameter :t is not bound", "params: {t: query.t}"}},
		{"positional param", route("    queries:\n      - name: page\n        sql: SELECT * FROM pages WHERE slug = ?\n"), okTemplates, []string{"named parameters"}},
		{"bad source", route("    queries:\n      - name: page\n        sql: SELECT * FROM pages WHERE slug = :s\n        params: {s: body.s}\n"), okTemplates, []string{"not a request part"}},
		{"bad ttl", route("    ttl: soon\n"), okTemplates, []string{`ttl "soon"`}},
		{"require without auth", route("    require: {}\n"), okTemplates, []string{"auth:"}},
		{"bad path", "routes:\n  - path: pages\n    template: page.html\n", okTemplates, []string{"must start with /"}},
		{"conflict", route("") + "  - path: /pages/{slug}\n    template: page.html\n", okTemplates, []string{"routes.yaml:4", "also at line 2"}},
		{"locale without locales", route("    vary: [locale]\n"), okTemplates, []string{"locales:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeSite(t, tc.routes, tc.tmpl)
			_, err := site.Load(context.Background(), dir, schemaDDL)
			if err == nil {
				t.Fatal("loaded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func serve(tb testing.TB, dir string, fallback http.Handler) (*httptest.Server, *edgecache.Cache) {
	tb.Helper()
	s, err := site.Load(context.Background(), dir, schemaDDL)
	if err != nil {
		tb.Fatal(err)
	}
	c := edgecache.New(1<<20, 0)
	srv := httptest.NewServer(s.Handler(site.Options{Store: openStore(tb), Cache: c, Fallback: fallback}))
	tb.Cleanup(srv.Close)
	return srv, c
}

func get(tb testing.TB, url string, hdr ...string) (int, string, http.Header) {
	tb.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Cookie" {
			k, v, _ := strings.Cut(hdr[i+1], "=")
			req.AddCookie(&http.Cookie{Name: k, Value: v})
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// TestSite_VaryKeys: the cache keys on the path, what the route declares it
// varies on and the request parts its queries bind; nothing else.
func TestSite_VaryKeys(t *testing.T) {
	dir := writeSite(t, `
routes:
  - path: /pages/{slug}
    template: page.html
    ttl: 1m
    vary: [cookie.theme, header.X-Device]
    queries:
      - name: page
        sql: SELECT id, title FROM pages WHERE slug = :slug AND title <> coalesce(:not, '')
        params: {not: query.not}
        required: true
`, map[string]string{"page.html": `{{.Row.page.title}} {{.Cookies.theme}} {{.Header.Get "X-Device"}}`, "404.html": "none"})
	srv, _ := serve(t, dir, nil)
	u := srv.URL + "/pages/hello"
	steps := []struct {
		url  string
		hdr  []string
		want string
	}{
		{u, nil, "MISS"},
		{u, nil, "HIT"},
		{u + "?utm=1", nil, "HIT"}, // not bound, not varied on
		{u + "?not=x", nil, "MISS"},
		{u + "?not=x", nil, "HIT"},
		{u, []string{"Cookie", "theme=dark"}, "MISS"},
		{u, []string{"Cookie", "theme=dark"}, "HIT"},
		{u, []string{"X-Device", "phone"}, "MISS"},
		{u, []string{"X-Device", "phone", "Cookie", "theme=dark"}, "MISS"},
		{u, []string{"Accept-Language", "fr"}, "HIT"},
		{srv.URL + "/pages/other", nil, "MISS"},
	}
	for i, s := range steps {
		_, body, h := get(t, s.url, s.hdr...)
		if h.Get("X-Cache") != s.want {
			t.Errorf("step %d %s %v: X-Cache %s, want %s (%s)", i, s.url, s.hdr, h.Get("X-Cache"), s.want, body)
		}
	}
	if _, body, _ := get(t, u, "Cookie", "theme=dark", "X-Device", "phone"); body != "Hello dark phone" {
		t.Errorf("body %q", body)
	}
	if st, body, _ := get(t, srv.URL+"/pages/nope"); st != 404 || body != "none" {
		t.Errorf("no rows: %d %q", st, body)
	}
}

// TestSite_TemplateFailsAtRequest: a template error at request time is a
// 500 page, never part of a page with 200, and is not cached.
func TestSite_TemplateFailsAtRequest(t *testing.T) {
	dir := writeSite(t, "routes:\n  - path: /pages/{slug}\n    template: page.html\n    ttl: 1m\n    queries:\n      - name: page\n        sql: SELECT title FROM pages WHERE slug = :slug\n",
		map[string]string{"page.html": `<h1>{{.Row.page.title}}</h1>{{index .Rows.page 5}}`})
	srv, c := serve(t, dir, nil)
	st, body, _ := get(t, srv.URL+"/pages/hello")
	if st != 500 || strings.Contains(body, "<h1>Hello") {
		t.Fatalf("%d %q", st, body)
	}
	if c.Len() != 0 {
		t.Fatal("a failed page was cached")
	}
}

// keys for the JWT tests.
type keys struct {
	ed, edOther ed25519.PrivateKey
	rs          *rsa.PrivateKey
}

func newKeys(tb testing.TB) (keys, string) {
	tb.Helper()
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	rs, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: ed.Public(), KeyID: "ed", Algorithm: string(jose.EdDSA), Use: "sig"},
		{Key: rs.Public(), KeyID: "rs", Algorithm: string(jose.RS256), Use: "sig"},
	}}
	b, _ := json.Marshal(set)
	return keys{ed, other, rs}, string(b)
}

func sign(tb testing.TB, alg jose.SignatureAlgorithm, key any, kid string, c jwt.Claims, extra map[string]any) string {
	tb.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		tb.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(c).Claims(extra).Serialize()
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// TestSite_JWT: a route that requires a token verifies it at the edge;
// every failure is 401 or 403 and never reaches the origin.
func TestSite_JWT(t *testing.T) {
	k, jwks := newKeys(t)
	dir := writeSite(t, `
auth:
  jwks: keys.json
  issuer: https://id.test
  audience: outpost-test
  cookie: session
routes:
  - path: /members/{slug}
    template: member.html
    ttl: 1m
    vary: [claim.sub]
    require:
      claims: {role: member}
    queries:
      - name: page
        sql: SELECT title FROM pages WHERE slug = :slug
`, map[string]string{"member.html": `hi {{.Claims.sub}}: {{.Row.page.title}}`})
	if err := os.WriteFile(filepath.Join(dir, "keys.json"), []byte(jwks), 0o644); err != nil {
		t.Fatal(err)
	}
	var originHits atomic.Int64
	srv, _ := serve(t, dir, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { originHits.Add(1) }))
	now := time.Now()
	good := jwt.Claims{Issuer: "https://id.test", Audience: jwt.Audience{"outpost-test"}, Subject: "ann",
		Expiry: jwt.NewNumericDate(now.Add(time.Hour)), NotBefore: jwt.NewNumericDate(now.Add(-time.Minute))}
	member := map[string]any{"role": "member"}
	with := func(f func(*jwt.Claims)) jwt.Claims { c := good; f(&c); return c }
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf(`{"iss":"https://id.test","aud":"outpost-test","sub":"eve","role":"member","exp":%d}`, now.Add(time.Hour).Unix()))) + "."
	for _, tc := range []struct {
		name  string
		hdr   []string
		want  int
		wantB string
	}{
		{"no token", nil, 401, ""},
		{"ed25519", []string{"Authorization", "Bearer " + sign(t, jose.EdDSA, k.ed, "ed", good, member)}, 200, "hi ann: Hello"},
		{"rs256", []string{"Authorization", "Bearer " + sign(t, jose.RS256, k.rs, "rs", with(func(c *jwt.Claims) { c.Subject = "bob" }), member)}, 200, "hi bob: Hello"},
		{"cookie", []string{"Cookie", "session=" + sign(t, jose.EdDSA, k.ed, "ed", with(func(c *jwt.Claims) { c.Subject = "cat" }), member)}, 200, "hi cat: Hello"},
		{"expired", []string{"Authorization", "Bearer " + sign(t, jose.EdDSA, k.ed, "ed", with(func(c *jwt.Claims) { c.Expiry = jwt.NewNumericDate(now.Add(-time.Hour)) }), member)}, 401, "expired"},
		{"no exp", []string{"Authorization", "Bearer " + sign(t, jose.EdDSA, k.ed, "ed", with(func(c *jwt.Claims) { c.Expiry = nil }), member)}, 401, "no exp"},
		{"not yet", []string{"Authorization", "Bearer " + sign(t, jose.EdDSA, k.ed, "ed", with(func(c *jwt.Claims) { c.NotBefore = jwt.NewNumericDate(now.Add(time.Hour)) }), member)}, 401, "nbf"},
		{"wrong audience", []string{"Authorization", "Bearer " + sign(t, jose.EdDSA, k.ed, "ed", with(func(c *jwt.Claims) { c.Audience = jwt.Audience{"other"} }), member)}, 401, "audience"},
		{"wrong issuer", []string{"Authorization", "Bearer " + sign(t, jose.EdDSA, k.ed, "ed", with(func(c *jwt.Claims) { c.Issuer = "https://evil.test" }), member)}, 401, "issuer"},
		{"wrong key", []string{"Authorization", "Bearer " + sign(t, jose.EdDSA, k.edOther, "ed", good, member)}, 401, "signature"},
		{"alg none", []string{"Authorization", "Bearer " + none}, 401, ""},
		{"garbage", []string{"Authorization", "Bearer abc.def.ghi"}, 401, ""},
		{"claim not allowed", []string{"Authorization", "Bearer " + sign(t, jose.EdDSA, k.ed, "ed", good, map[string]any{"role": "guest"})}, 403, "role"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, body, h := get(t, srv.URL+"/members/hello", tc.hdr...)
			if st != tc.want || !strings.Contains(body, tc.wantB) {
				t.Fatalf("%d %q, want %d %q", st, body, tc.want, tc.wantB)
			}
			if st == 401 && !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate %q", h.Get("WWW-Authenticate"))
			}
		})
	}
	if n := originHits.Load(); n != 0 {
		t.Fatalf("origin called %d times", n)
	}
}
