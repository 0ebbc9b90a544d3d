package site

import (
	"context"
	"fmt"
	"html/template"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/text/language"
)

// Route is one page route of the site.
type Route struct {
	Pattern      string // ServeMux path pattern, e.g. /pages/{slug}
	Template     string // template file name in templates/
	Queries      []*Query
	EmptyStatus  int           // status when a required query has no rows
	TTL          time.Duration // 0 = not cached
	Vary         []Source      // what the cache key holds besides the path: declared + bound
	Keys         []string      // surrogate keys added to every page of the route
	Require      bool          // a valid token is needed
	Claims       map[string]string
	CacheControl string     // Cache-Control sent to clients
	RateLimit    *RateLimit // requests per window per client, counted fleet-wide; nil = none
	usesClaims   bool
}

// Site is a loaded site directory.
type Site struct {
	Dir      string
	Routes   []*Route
	tmpl     *template.Template
	notFound string // template of "no rows" and unmatched pages; "" = none
	auth     *Auth
	locales  []string
	matcher  language.Matcher
}

var wildcard = regexp.MustCompile(`\{([A-Za-z_][A-Za-z0-9_]*)(?:\.\.\.)?\}`)

// Load reads DIR/routes.yaml and DIR/templates/*, checks every query
// against the schema DDL, and returns the site, or an error naming the file,
// line and fix.
func Load(ctx context.Context, dir, schemaDDL string) (*Site, error) {
	cfg, lines, file, err := readConfig(dir)
	if err != nil {
		return nil, err
	}
	s := &Site{Dir: dir}
	tdir := filepath.Join(dir, "templates")
	files, _ := filepath.Glob(filepath.Join(tdir, "*.html"))
	if len(files) == 0 {
		return nil, &ConfigError{File: tdir, Msg: "no templates (*.html); a route names its template file in templates/"}
	}
	s.tmpl, err = template.New("").Option("missingkey=zero").ParseFiles(files...)
	if err != nil {
		return nil, &ConfigError{File: tdir, Msg: "template does not parse: " + strings.TrimPrefix(err.Error(), "template: ")}
	}
	s.notFound = cfg.NotFound
	if s.notFound == "" {
		if s.tmpl.Lookup("404.html") != nil {
			s.notFound = "404.html"
		}
	} else if s.tmpl.Lookup(s.notFound) == nil {
		return nil, &ConfigError{File: file, Msg: fmt.Sprintf("not_found names template %q, which is not in templates/", s.notFound)}
	}
	if len(cfg.Locales) > 0 {
		var tags []language.Tag
		for _, l := range cfg.Locales {
			t, err := language.Parse(l)
			if err != nil {
				return nil, &ConfigError{File: file, Msg: fmt.Sprintf("locale %q: %v (use BCP 47 tags such as en, fr, pt-BR)", l, err)}
			}
			tags = append(tags, t)
			s.locales = append(s.locales, l)
		}
		s.matcher = language.NewMatcher(tags)
	}
	if cfg.Auth != nil {
		if s.auth, err = loadAuth(dir, cfg.Auth); err != nil {
			return nil, &ConfigError{File: file, Msg: err.Error()}
		}
	}
	chk, err := newChecker(ctx, schemaDDL)
	if err != nil {
		return nil, &ConfigError{File: file, Msg: err.Error()}
	}
	defer chk.close()
	if len(cfg.Routes) == 0 {
		return nil, &ConfigError{File: file, Msg: "no routes; add `routes:` with at least one `- path: ... template: ...`"}
	}
	seen := map[string]int{}
	for i, rc := range cfg.Routes {
		rt, err := s.loadRoute(ctx, chk, rc)
		if err != nil {
			return nil, &ConfigError{File: file, Line: lines[i], Msg: fmt.Sprintf("route %q: %v", rc.Path, err)}
		}
		if prev, dup := seen[rt.Pattern]; dup {
			return nil, &ConfigError{File: file, Line: lines[i], Msg: fmt.Sprintf("route %q is also at line %d; each path once", rc.Path, prev)}
		}
		seen[rt.Pattern] = lines[i]
		s.Routes = append(s.Routes, rt)
	}
	if err := s.checkMux(); err != nil {
		return nil, &ConfigError{File: file, Msg: err.Error()}
	}
	return s, nil
}

func (s *Site) loadRoute(ctx context.Context, chk *checker, rc routeConfig) (*Route, error) {
	if err := checkPattern(rc.Path); err != nil {
		return nil, err
	}
	rt := &Route{Pattern: rc.Path, Template: rc.Template, EmptyStatus: rc.EmptyStatus, Keys: rc.Keys, CacheControl: rc.CacheControl}
	if rt.Template == "" {
		return nil, fmt.Errorf("no template; add `template: page.html` (a file in templates/)")
	}
	if s.tmpl.Lookup(rt.Template) == nil {
		return nil, fmt.Errorf("template %q is not in templates/ (have: %s)", rt.Template, s.templateNames())
	}
	if rt.EmptyStatus == 0 {
		rt.EmptyStatus = 404
	}
	if rt.EmptyStatus < 200 || rt.EmptyStatus > 599 {
		return nil, fmt.Errorf("empty_status %d is not an HTTP status", rt.EmptyStatus)
	}
	if rt.CacheControl == "" {
		rt.CacheControl = "no-cache"
	}
	var err error
	if rt.TTL, err = parseTTL(rc.TTL); err != nil {
		return nil, err
	}
	for _, k := range rc.Keys {
		if k == "" || strings.ContainsAny(k, " \t\r\n") {
			return nil, fmt.Errorf("key %q: a surrogate key has no spaces", k)
		}
	}
	if rt.RateLimit, err = parseRateLimit(rc.RateLimit); err != nil {
		return nil, err
	}
	if rc.Require != nil {
		if s.auth == nil {
			return nil, fmt.Errorf("require needs an `auth:` section (jwks, issuer, audience) at the top of the file")
		}
		rt.Require, rt.Claims = true, rc.Require.Claims
	}
	var pathNames []string
	for _, m := range wildcard.FindAllStringSubmatch(rc.Path, -1) {
		pathNames = append(pathNames, m[1])
	}
	for _, v := range rc.Vary {
		src, err := ParseSource(v)
		if err != nil {
			return nil, fmt.Errorf("vary: %w", err)
		}
		rt.addVary(src)
	}
	names := map[string]bool{}
	for _, qc := range rc.Queries {
		if qc.Name == "" || names[qc.Name] {
			return nil, fmt.Errorf("every query needs a unique `name` (the template reads .Rows.NAME and .Row.NAME)")
		}
		names[qc.Name] = true
		if strings.TrimSpace(qc.SQL) == "" {
			return nil, fmt.Errorf("query %q has no sql", qc.Name)
		}
		q := &Query{Name: qc.Name, SQL: qc.SQL, Required: qc.Required}
		if err := chk.compile(ctx, q, qc.Params, pathNames); err != nil {
			return nil, err
		}
		for _, a := range q.Args {
			if a.Kind != "path" {
				rt.addVary(a)
			}
		}
		rt.Queries = append(rt.Queries, q)
	}
	for _, v := range rt.Vary {
		if v.Kind == "claim" {
			rt.usesClaims = true
			if s.auth == nil {
				return nil, fmt.Errorf("%s needs an `auth:` section at the top of the file", v)
			}
		}
		if v.Kind == "locale" && s.matcher == nil {
			return nil, fmt.Errorf("locale needs `locales: [en, fr, ...]` at the top of the file")
		}
	}
	return rt, nil
}

func (rt *Route) addVary(s Source) {
	if s.Kind == "header" {
		s.Name = strings.ToLower(s.Name)
	}
	if !slices.Contains(rt.Vary, s) {
		rt.Vary = append(rt.Vary, s)
		slices.SortFunc(rt.Vary, func(a, b Source) int { return strings.Compare(a.String(), b.String()) })
	}
}

func (s *Site) templateNames() string {
	var out []string
	for _, t := range s.tmpl.Templates() {
		if strings.HasSuffix(t.Name(), ".html") {
			out = append(out, t.Name())
		}
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

// checkMux registers every route in a ServeMux, which refuses conflicting
// patterns.
func (s *Site) checkMux() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("routes conflict: %v", r)
		}
	}()
	s.mux(nil)
	return nil
}

// ReadDDL reads a schema file (empty path: no tables).
func ReadDDL(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	return string(b), err
}
