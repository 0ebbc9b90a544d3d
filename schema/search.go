package schema

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/outpost-edge/outpost/capture"
	"github.com/outpost-edge/outpost/search"
	"github.com/outpost-edge/outpost/sqltext"
)

// shadowTables returns the (lower-cased) names of the tables SQLite keeps
// for virtual tables (an FTS5 table's _data, _idx, ...).
func shadowTables(ctx context.Context, db *sql.DB) (map[string]bool, error) {
	rows, err := db.QueryContext(ctx, `SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'shadow'`)
	if err != nil {
		return nil, fmt.Errorf("read scratch schema: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("read scratch schema: %w", err)
		}
		out[strings.ToLower(n)] = true
	}
	return out, rows.Err()
}

// virtualTableProblem explains why a virtual table in the schema file is
// refused: a full-text table gets the rule and the directive to use.
func virtualTableProblem(o Object) string {
	if o.Type != "table" || !isVirtual(o.SQL) {
		return ""
	}
	switch strings.ToLower(virtualModule(o.SQL)) {
	case "fts5", "fts4", "fts3":
		return fmt.Sprintf("virtual table %q: a full-text index cannot be a table of the schema file: every table there is replicated, and an index is derived data each node must build from the rows it holds. Declare it with a directive instead, and the node builds it locally and keeps it current on every write, local or replicated: `-- outpost: search %s on <table> (<column>, ...)` (see docs/API.md, \"Full-text search\")", o.Name, o.Name)
	}
	return fmt.Sprintf("virtual table %q: virtual tables cannot be replicated; use an ordinary table (full-text search: a `-- outpost: search ...` directive)", o.Name)
}

// virtualModule returns the module name of a CREATE VIRTUAL TABLE statement.
func virtualModule(sql string) string {
	toks, err := sqltext.Tokens(sql)
	if err != nil {
		return ""
	}
	for i, t := range toks {
		if t.IsWord("USING") && i+1 < len(toks) {
			return toks[i+1].Text
		}
	}
	return ""
}

// checkSearch reads the search directives of src and checks each against
// the schema (its table is a replicated rowid table that has the columns;
// its name is free), then creates it in the scratch database, which checks
// what SQLite checks (the tokenizer).
func checkSearch(ctx context.Context, db *sql.DB, src string, s *Schema, objs []Object) ([]search.Index, []string) {
	idx, problems := search.Directives(src)
	var ok []search.Index
	names := map[string]int{}
	for _, o := range objs {
		names[strings.ToLower(o.Name)] = -1
	}
	for _, ix := range idx {
		bad := func(format string, args ...any) {
			problems = append(problems, fmt.Sprintf("line %d: search index %q: ", ix.Line, ix.Name)+fmt.Sprintf(format, args...))
		}
		key := strings.ToLower(ix.Name)
		switch line, taken := names[key]; {
		case strings.HasPrefix(key, capture.Prefix) || strings.HasPrefix(key, "sqlite_"):
			bad("names starting with %q or \"sqlite_\" are reserved; rename it (e.g. %s_fts)", capture.Prefix, ix.Table)
			continue
		case taken && line < 0:
			bad("the schema already has an object of that name; an index needs a name of its own (e.g. %s_fts)", ix.Table)
			continue
		case taken:
			bad("a second index of that name (the first is on line %d)", line)
			continue
		}
		names[key] = ix.Line
		t, found := s.Table(ix.Table)
		if !found {
			bad("table %q is not a table of the schema file; an index is built over a replicated table", ix.Table)
			continue
		}
		ix.Table = t.Name
		if without, _ := sqltext.HasKeyword(t.SQL, "WITHOUT"); without {
			bad("table %q is WITHOUT ROWID; an FTS5 index refers to rows by rowid, so index a rowid table (drop WITHOUT ROWID)", t.Name)
			continue
		}
		colsOK := true
		for i, c := range ix.Columns {
			col, has := column(t, c)
			if !has {
				bad("table %q has no column %q", t.Name, c)
				colsOK = false
				continue
			}
			ix.Columns[i] = col.Name
		}
		if !colsOK {
			continue
		}
		for _, k := range t.PK() {
			ix.Keys = append(ix.Keys, k.Name)
		}
		var failed error
		for _, stmt := range append([]string{ix.Create()}, ix.Triggers()...) {
			if _, err := db.ExecContext(ctx, stmt); err != nil {
				failed = err
				break
			}
		}
		if failed != nil {
			hint := ""
			if ix.Tokenize != "" {
				hint = fmt.Sprintf(" (check the tokenizer %q: FTS5 knows unicode61, ascii, porter, trigram)", ix.Tokenize)
			}
			bad("SQLite refused it: %v%s", failed, hint)
			continue
		}
		ok = append(ok, ix)
	}
	return ok, problems
}

func column(t Table, name string) (Column, bool) {
	for _, c := range t.Columns {
		if strings.EqualFold(c.Name, name) {
			return c, true
		}
	}
	return Column{}, false
}
