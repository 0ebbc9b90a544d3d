package site

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/outpost-edge/outpost/schema"
	"github.com/outpost-edge/outpost/sqltext"
	"modernc.org/sqlite"
)

// Query is one named, compiled, read-only query of a route.
type Query struct {
	Name     string
	SQL      string
	Args     []Source // one per distinct named parameter, in order of first appearance
	Required bool     // no rows: the route's empty status
	Tables   []string // tables (lower case) it reads
	// rowKeys: per table whose whole primary key the result selects, the
	// result column index of each key column.
	rowKeys []rowKey
}

type rowKey struct {
	table string
	cols  []int
}

// Source is where a parameter's value comes from: Kind is path, query,
// header, cookie, claim or locale; Name the part's name.
type Source struct {
	Kind, Name string
}

func (s Source) String() string {
	if s.Kind == "locale" {
		return "locale"
	}
	return s.Kind + "." + s.Name
}

// ParseSource reads "path.slug", "query.q", "header.X-Device",
// "cookie.theme", "claim.sub" or "locale".
func ParseSource(s string) (Source, error) {
	if s == "locale" {
		return Source{Kind: "locale"}, nil
	}
	kind, name, ok := strings.Cut(s, ".")
	if ok && name != "" {
		switch kind {
		case "path", "query", "cookie", "claim":
			return Source{Kind: kind, Name: name}, nil
		case "header":
			return Source{Kind: kind, Name: name}, nil
		}
	}
	return Source{}, fmt.Errorf("%q is not a request part; use path.NAME, query.NAME, header.NAME, cookie.NAME, claim.NAME or locale", s)
}

// sqliteMessage strips the driver's decoration: "SQL logic error: no such
// column: x (1)" -> "no such column: x".
var sqliteMessage = regexp.MustCompile(`^(?:SQL logic error: )?(.*?)(?: \(\d+\))?$`)

// checker compiles queries against the schema in a scratch database and
// learns which tables each reads.
type checker struct {
	db     *sql.DB
	conn   *sql.Conn
	reads  []string
	denied string
	pks    map[string][]string // table (lower case) -> key columns
}

func newChecker(ctx context.Context, ddl string) (*checker, error) {
	sch, err := schema.Parse(ctx, ddl)
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	db, err := sql.Open("sqlite", "file:sitecheck?mode=memory")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	c := &checker{db: db, pks: map[string][]string{}}
	if c.conn, err = db.Conn(ctx); err != nil {
		db.Close()
		return nil, err
	}
	for _, t := range sch.Tables {
		if _, err := c.conn.ExecContext(ctx, t.SQL); err != nil {
			c.close()
			return nil, fmt.Errorf("schema: %w", err)
		}
		var pk []string
		for _, col := range t.Columns {
			if col.PK > 0 {
				for len(pk) < col.PK {
					pk = append(pk, "")
				}
				pk[col.PK-1] = col.Name
			}
		}
		c.pks[strings.ToLower(t.Name)] = pk
	}
	for _, o := range sch.Objects {
		if o.Type == "view" || o.Type == "index" {
			if _, err := c.conn.ExecContext(ctx, o.SQL); err != nil {
				c.close()
				return nil, fmt.Errorf("schema: %w", err)
			}
		}
	}
	err = c.conn.Raw(func(dc any) error {
		ar, ok := dc.(sqlite.AuthorizerRegisterer)
		if !ok {
			return errors.New("sqlite driver does not support authorizers")
		}
		return ar.RegisterAuthorizer(c.authorize)
	})
	if err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

func (c *checker) close() {
	if c.conn != nil {
		c.conn.Close()
	}
	c.db.Close()
}

func (c *checker) authorize(action sqlite.AuthorizerActionCode, arg1, arg2, _, _ string) sqlite.AuthorizerReturnCode {
	switch action {
	case sqlite.AuthRead:
		if t := strings.ToLower(arg1); !slices.Contains(c.reads, t) {
			c.reads = append(c.reads, t)
		}
		return sqlite.AuthorizerOK
	case sqlite.AuthSelect, sqlite.AuthFunction, sqlite.AuthRecursive:
		return sqlite.AuthorizerOK
	}
	c.denied = "a route query only reads (SELECT or WITH ... SELECT)"
	return sqlite.AuthorizerDeny
}

// compile checks q's SQL against the schema and fills its tables, arguments
// and row keys. pathNames are the route's path wildcards.
func (c *checker) compile(ctx context.Context, q *Query, params map[string]string, pathNames []string) error {
	one, err := sqltext.Single(q.SQL)
	if err != nil {
		return fmt.Errorf("query %q: %w", q.Name, err)
	}
	q.SQL = one
	toks, err := sqltext.Tokens(one)
	if err != nil {
		return fmt.Errorf("query %q: %w", q.Name, err)
	}
	var names []string
	for _, t := range toks {
		if t.Kind != sqltext.Param {
			continue
		}
		if t.Text == "?" || t.Text[0] == '?' || len(t.Text) < 2 {
			return fmt.Errorf("query %q: use named parameters (:slug), not %s, so each is bound by name", q.Name, t.Text)
		}
		if n := t.Text[1:]; !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	for k := range params {
		if !slices.Contains(names, k) {
			return fmt.Errorf("query %q: params names %q, which the SQL does not use (:%s)", q.Name, k, k)
		}
	}
	for _, n := range names {
		src, ok := params[n]
		var s Source
		switch {
		case ok:
			if s, err = ParseSource(src); err != nil {
				return fmt.Errorf("query %q: parameter :%s: %w", q.Name, n, err)
			}
			if s.Kind == "path" && !slices.Contains(pathNames, s.Name) {
				return fmt.Errorf("query %q: parameter :%s is bound to path.%s but the path has no {%s}", q.Name, n, s.Name, s.Name)
			}
		case slices.Contains(pathNames, n):
			s = Source{Kind: "path", Name: n}
		default:
			return fmt.Errorf("query %q: parameter :%s is not bound; add `params: {%s: query.%s}` (sources: path.NAME, query.NAME, header.NAME, cookie.NAME, claim.NAME, locale)", q.Name, n, n, n)
		}
		q.Args = append(q.Args, s)
	}
	c.reads, c.denied = nil, ""
	st, err := c.conn.PrepareContext(ctx, one)
	if err != nil {
		msg := sqliteMessage.ReplaceAllString(err.Error(), "$1")
		if c.denied != "" {
			msg = c.denied
		}
		return fmt.Errorf("query %q does not compile against the schema: %s", q.Name, msg)
	}
	defer st.Close()
	if len(c.reads) == 0 {
		c.reads = []string{}
	}
	q.Tables = slices.Clone(c.reads)
	nargs := make([]any, len(names))
	for i, n := range names {
		nargs[i] = sql.Named(n, nil)
	}
	rows, err := st.QueryContext(ctx, nargs...)
	if err != nil {
		return fmt.Errorf("query %q: %w", q.Name, err)
	}
	cols, err := rows.Columns()
	rows.Close()
	if err != nil {
		return fmt.Errorf("query %q: %w", q.Name, err)
	}
	for _, t := range q.Tables {
		pk := c.pks[t]
		if len(pk) == 0 {
			continue
		}
		idx := make([]int, 0, len(pk))
		for _, kc := range pk {
			i := slices.IndexFunc(cols, func(s string) bool { return strings.EqualFold(s, kc) })
			if i < 0 {
				break
			}
			idx = append(idx, i)
		}
		if len(idx) == len(pk) {
			q.rowKeys = append(q.rowKeys, rowKey{table: t, cols: idx})
		}
	}
	return nil
}
