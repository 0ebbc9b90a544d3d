package schema

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/outpost-edge/outpost/capture"
	"github.com/outpost-edge/outpost/sqltext"
)

// timeTypes are declared types the SQLite driver converts to time values on
// read, which would change the value a client gets back.
var timeTypes = map[string]bool{"DATE": true, "DATETIME": true, "TIMESTAMP": true}

// inspect reads a table's columns and indexes and checks the rules of
// DESIGN.md section 3, returning one message per violation.
func inspect(ctx context.Context, db *sql.DB, o Object) (Table, []string) {
	t := Table{Name: o.Name, SQL: o.SQL}
	var problems []string
	bad := func(rule, fix string, args ...any) {
		problems = append(problems, fmt.Sprintf("table %q: %s; %s", o.Name, rule, fmt.Sprintf(fix, args...)))
	}

	rows, err := db.QueryContext(ctx, `SELECT name, type, "notnull", coalesce(dflt_value, ''), pk FROM pragma_table_info(?)`, o.Name)
	if err != nil {
		return t, []string{fmt.Sprintf("table %q: read columns: %v", o.Name, err)}
	}
	for rows.Next() {
		var c Column
		if err := rows.Scan(&c.Name, &c.Type, &c.NotNull, &c.Default, &c.PK); err != nil {
			rows.Close()
			return t, []string{fmt.Sprintf("table %q: read columns: %v", o.Name, err)}
		}
		t.Columns = append(t.Columns, c)
	}
	rows.Close()

	if isVirtual(o.SQL) {
		bad("virtual tables cannot be replicated", "create it outside the schema file or use an ordinary table")
		return t, problems
	}
	if auto, _ := sqltext.HasKeyword(o.SQL, "AUTOINCREMENT"); auto {
		bad("AUTOINCREMENT is not allowed (rowids issued on different nodes collide)",
			"declare the key as `id TEXT PRIMARY KEY NOT NULL` and fill it with outpost_id()")
	}
	pk := t.PK()
	withoutRowid, _ := sqltext.HasKeyword(o.SQL, "WITHOUT")
	rowidAlias := len(pk) == 1 && strings.EqualFold(pk[0].Type, "INTEGER") && !withoutRowid
	switch {
	case len(pk) == 0:
		bad("no explicit PRIMARY KEY", "add `id TEXT PRIMARY KEY NOT NULL` and fill it with outpost_id()")
	case rowidAlias:
		bad(fmt.Sprintf("column %q is INTEGER PRIMARY KEY, an alias for the rowid that SQLite fills in by itself, so keys issued on different nodes collide", pk[0].Name),
			"declare it `%s TEXT PRIMARY KEY NOT NULL` and fill it with outpost_id()", pk[0].Name)
	}
	for _, c := range t.Columns {
		if c.PK > 0 && !c.NotNull && !rowidAlias {
			// (A rowid alias gets one message, above, whose fix covers NOT NULL.)
			bad(fmt.Sprintf("primary key column %q may be NULL (SQLite allows NULL keys unless told otherwise)", c.Name),
				"declare it `%s %s PRIMARY KEY NOT NULL`", c.Name, c.Type)
		}
		if c.PK == 0 && c.NotNull && c.Default == "" {
			bad(fmt.Sprintf("column %q is NOT NULL without a DEFAULT (a row created by a change from another node may not carry it yet)", c.Name),
				"add a DEFAULT, e.g. `%s %s NOT NULL DEFAULT ''`", c.Name, c.Type)
		}
		if timeTypes[strings.ToUpper(c.Type)] {
			bad(fmt.Sprintf("column %q is declared %s, which the SQLite driver converts to a time value on read, so clients would not get back what they stored", c.Name, c.Type),
				"declare it TEXT (ISO-8601) or INTEGER (Unix milliseconds)")
		}
		if c.Name == "" || strings.HasPrefix(strings.ToLower(c.Name), capture.Prefix) {
			bad(fmt.Sprintf("column name %q is reserved", c.Name), "rename the column")
		}
	}

	idx, err := db.QueryContext(ctx, `SELECT name, "unique", origin FROM pragma_index_list(?)`, o.Name)
	if err != nil {
		return t, append(problems, fmt.Sprintf("table %q: read indexes: %v", o.Name, err))
	}
	defer idx.Close()
	for idx.Next() {
		var name, origin string
		var unique bool
		if err := idx.Scan(&name, &unique, &origin); err != nil {
			return t, append(problems, fmt.Sprintf("table %q: read indexes: %v", o.Name, err))
		}
		if unique && origin != "pk" {
			what := "a UNIQUE constraint"
			if origin == "c" {
				what = fmt.Sprintf("unique index %q", name)
			}
			bad(what+" besides the primary key cannot hold across nodes without coordination",
				"drop it (use a non-unique index) and make human-readable unique keys with outpost_slug()")
		}
	}
	return t, problems
}

func isVirtual(sql string) bool {
	toks, err := sqltext.Tokens(sql)
	if err != nil || len(toks) < 2 {
		return false
	}
	return strings.EqualFold(toks[1].Text, "VIRTUAL")
}

// triggerWrites reports whether a CREATE TRIGGER statement's body (after
// BEGIN) contains a statement that writes, and which verb.
func triggerWrites(sql string) (string, bool) {
	toks, err := sqltext.Tokens(sql)
	if err != nil {
		return "unreadable body", true
	}
	body := false
	for i, t := range toks {
		if !body {
			body = t.IsWord("BEGIN")
			continue
		}
		for _, verb := range []string{"INSERT", "UPDATE", "DELETE", "REPLACE"} {
			if !t.IsWord(verb) {
				continue
			}
			if verb == "REPLACE" && i+1 < len(toks) && toks[i+1].Text == "(" {
				continue // the replace() function
			}
			return verb, true
		}
	}
	return "", false
}
