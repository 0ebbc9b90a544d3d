// Package site serves pages rendered at the edge from the node's own
// SQLite: routes (Go 1.22 ServeMux patterns) read from DIR/routes.yaml, each
// with named read-only queries bound to parts of the request, an
// html/template from DIR/templates, a cache TTL, what the page varies on,
// and optionally a signed token (JWT) it requires. Rendered pages go into
// the public listener's cache tagged with the tables and rows they read, so
// a committed change purges them. The format is in docs/SITE.md.
package site

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// RoutesFile is the name of the routes file inside the site directory.
const RoutesFile = "routes.yaml"

// fileConfig is routes.yaml.
type fileConfig struct {
	Locales  []string      `yaml:"locales"`
	NotFound string        `yaml:"not_found"`
	Auth     *authConfig   `yaml:"auth"`
	Routes   []routeConfig `yaml:"routes"`
}

type authConfig struct {
	JWKS     string `yaml:"jwks"`
	Issuer   string `yaml:"issuer"`
	Audience string `yaml:"audience"`
	Cookie   string `yaml:"cookie"`
	Leeway   string `yaml:"leeway"`
}

type routeConfig struct {
	Path         string           `yaml:"path"`
	Template     string           `yaml:"template"`
	Queries      []queryConfig    `yaml:"queries"`
	EmptyStatus  int              `yaml:"empty_status"`
	TTL          string           `yaml:"ttl"`
	Vary         []string         `yaml:"vary"`
	Keys         []string         `yaml:"keys"`
	Require      *requireConf     `yaml:"require"`
	CacheControl string           `yaml:"cache_control"`
	RateLimit    *rateLimitConfig `yaml:"rate_limit"`
}

type queryConfig struct {
	Name     string            `yaml:"name"`
	SQL      string            `yaml:"sql"`
	Params   map[string]string `yaml:"params"`
	Required bool              `yaml:"required"`
}

type requireConf struct {
	Claims map[string]string `yaml:"claims"`
}

// ConfigError is a problem in the site directory, with the file and line
// it is at (line 0 when the whole file is at fault).
type ConfigError struct {
	File string
	Line int
	Msg  string
}

func (e *ConfigError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("site: %s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("site: %s: %s", e.File, e.Msg)
}

var yamlLine = regexp.MustCompile(`^yaml: (?:unmarshal errors:\n\s*)?line (\d+): (.*)$`)

// readConfig parses routes.yaml strictly (unknown fields are errors) and
// returns it with the line of each route.
func readConfig(dir string) (*fileConfig, []int, string, error) {
	path := filepath.Join(dir, RoutesFile)
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, path, &ConfigError{File: path, Msg: "no routes file; a site directory holds routes.yaml and templates/ (see docs/SITE.md)"}
		}
		return nil, nil, path, &ConfigError{File: path, Msg: err.Error()}
	}
	var cfg fileConfig
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		msg := err.Error()
		line := 0
		if m := yamlLine.FindStringSubmatch(strings.SplitN(msg, "\n", 3)[0] + "\n"); m != nil {
			fmt.Sscan(m[1], &line)
		}
		var te *yaml.TypeError
		if errors.As(err, &te) && len(te.Errors) > 0 {
			msg = te.Errors[0]
			if m := regexp.MustCompile(`^line (\d+): (.*)$`).FindStringSubmatch(msg); m != nil {
				fmt.Sscan(m[1], &line)
				msg = m[2]
			}
			msg = strings.ReplaceAll(msg, "in type site.", "in ")
			msg += " (fields are listed in docs/SITE.md)"
		} else {
			msg = strings.TrimPrefix(msg, "yaml: ")
		}
		return nil, nil, path, &ConfigError{File: path, Line: line, Msg: msg}
	}
	// The lines of the routes, for later errors.
	var root yaml.Node
	_ = yaml.Unmarshal(b, &root)
	lines := make([]int, len(cfg.Routes))
	if len(root.Content) > 0 {
		m := root.Content[0]
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == "routes" {
				for k, r := range m.Content[i+1].Content {
					if k < len(lines) {
						lines[k] = r.Line
					}
				}
			}
		}
	}
	return &cfg, lines, path, nil
}

// parseTTL reads a route's ttl ("" = 0: not cached).
func parseTTL(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("ttl %q is not a duration such as \"30s\" or \"5m\"", s)
	}
	return d, nil
}

// checkPattern refuses a path ServeMux would refuse (it panics).
func checkPattern(p string) (err error) {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("path %q must start with / (a Go ServeMux pattern such as /pages/{slug}; no method, no host)", p)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("path %q: %v", p, r)
		}
	}()
	http.NewServeMux().Handle("GET "+p, http.NotFoundHandler())
	return nil
}
