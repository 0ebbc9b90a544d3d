// Package schema loads an Outpost schema file and checks it against the rules
// of DESIGN.md section 3 before any of it touches a node's database.
//
// The file is plain SQLite DDL. It is executed in a scratch in-memory
// database, and the tables SQLite actually built are then inspected (columns,
// primary keys, indexes), so the checks see exactly what SQLite sees rather
// than a re-parse of the text.
package schema

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/capture"
	"github.com/outpost-edge/outpost/search"
	"github.com/outpost-edge/outpost/sqltext"
	_ "modernc.org/sqlite" // scratch database driver
)

// Schema is a checked schema: the replicated tables and every object to create.
type Schema struct {
	Tables  []Table  // replicated tables, in creation order
	Objects []Object // indexes, views and triggers, in creation order
	// Search are the local full-text search indexes the file declares
	// ("-- outpost: search ..." directives; see package search). They are
	// not part of Version: each node builds its own, none is replicated.
	Search  []search.Index
	Version string // hex SHA-256 of the normalized DDL; equal on nodes with the same schema
}

// Object is a non-table schema object as SQLite stored it.
type Object struct {
	Type, Name, Table, SQL string
}

// Table is a replicated table.
type Table struct {
	Name    string
	SQL     string // CREATE TABLE statement as SQLite normalized it
	Columns []Column
}

// Column is one column of a table as PRAGMA table_info reports it.
type Column struct {
	Name    string
	Type    string
	NotNull bool
	Default string // SQL text of the DEFAULT expression; "" when none
	PK      int    // 1-based position in the primary key; 0 when not a key column
}

// Definition returns the column definition used by ALTER TABLE ADD COLUMN.
func (c Column) Definition() string {
	def := capture.Quote(c.Name)
	if c.Type != "" {
		def += " " + c.Type
	}
	if c.NotNull {
		def += " NOT NULL"
	}
	if c.Default != "" {
		def += " DEFAULT " + c.Default
	}
	return def
}

// PK returns the primary key columns in key order.
func (t Table) PK() []Column {
	var pk []Column
	for _, c := range t.Columns {
		if c.PK > 0 {
			pk = append(pk, c)
		}
	}
	sort.Slice(pk, func(i, j int) bool { return pk[i].PK < pk[j].PK })
	return pk
}

// Capture returns the table in the form package capture generates triggers for.
func (t Table) Capture() capture.Table {
	ct := capture.Table{Name: t.Name}
	for _, c := range t.PK() {
		ct.PK = append(ct.PK, capture.Column{Name: c.Name, Type: c.Type})
	}
	for _, c := range t.Columns {
		if c.PK == 0 {
			ct.Columns = append(ct.Columns, capture.Column{Name: c.Name, Type: c.Type})
		}
	}
	return ct
}

// Table returns the named table (case-insensitive, like SQLite) or false.
func (s *Schema) Table(name string) (Table, bool) {
	for _, t := range s.Tables {
		if strings.EqualFold(t.Name, name) {
			return t, true
		}
	}
	return Table{}, false
}

// dataStatements reports every statement of src that writes rows (INSERT,
// REPLACE, UPDATE, DELETE): the schema file is applied at every start and
// its rows would not be replicated, so it may hold only the schema.
func dataStatements(src string) []string {
	stmts, err := sqltext.Split(src)
	if err != nil {
		return nil // SQLite reports the malformed text
	}
	var problems []string
	for i, st := range stmts {
		switch v := sqltext.Verb(st); v {
		case "INSERT", "REPLACE", "UPDATE", "DELETE":
			problems = append(problems, fmt.Sprintf("statement %d (%s): the schema file may hold only the schema (CREATE TABLE, INDEX, VIEW, TRIGGER), not data; load seed data through the API once the node runs, e.g. outpost shell < seed.sql", i+1, v))
		}
	}
	return problems
}

// Parse executes src in a scratch database and checks every rule. Each
// violation is reported (all of them, not just the first) with the table, the
// rule and the fix; the error wraps outpost.ErrInvalidSchema.
func Parse(ctx context.Context, src string) (*Schema, error) {
	return parse(ctx, src, false)
}

// ParseInternal is Parse for Outpost's own tables, which may use the reserved prefix.
func ParseInternal(ctx context.Context, src string) (*Schema, error) {
	return parse(ctx, src, true)
}

func parse(ctx context.Context, src string, internal bool) (*Schema, error) {
	db, err := sql.Open("sqlite", "file:scratch?mode=memory")
	if err != nil {
		return nil, fmt.Errorf("open scratch database: %w", err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	problems := dataStatements(src)
	if _, err := db.ExecContext(ctx, src); err != nil {
		return nil, fmt.Errorf("%w: the schema file does not run in SQLite: %v", outpost.ErrInvalidSchema, err)
	}
	rows, err := db.QueryContext(ctx, `SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' ORDER BY rowid`)
	if err != nil {
		return nil, fmt.Errorf("read scratch schema: %w", err)
	}
	var objs []Object
	for rows.Next() {
		var o Object
		if err := rows.Scan(&o.Type, &o.Name, &o.Table, &o.SQL); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read scratch schema: %w", err)
		}
		objs = append(objs, o)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read scratch schema: %w", err)
	}

	shadow, err := shadowTables(ctx, db)
	if err != nil {
		return nil, err
	}
	s := &Schema{}
	h := sha256.New()
	for _, o := range objs {
		fmt.Fprintf(h, "%s\x00%s\x00%s\x00", o.Type, o.Name, o.SQL)
		if shadow[strings.ToLower(o.Name)] {
			continue // a virtual table's own storage: reported with the virtual table
		}
		if msg := virtualTableProblem(o); msg != "" {
			problems = append(problems, msg)
			continue
		}
		if !internal && strings.HasPrefix(strings.ToLower(o.Name), capture.Prefix) {
			problems = append(problems, fmt.Sprintf("%s %q: names starting with %q are reserved for Outpost; rename it", o.Type, o.Name, capture.Prefix))
			continue
		}
		if rb, _ := sqltext.HasKeyword(o.SQL, "ROLLBACK"); rb {
			problems = append(problems, fmt.Sprintf("%s %q: ON CONFLICT ROLLBACK / RAISE(ROLLBACK) would roll back every transaction of a commit group, not just the failing one; use ABORT (the default) instead", o.Type, o.Name))
		}
		if o.Type == "trigger" && !internal {
			if verb, ok := triggerWrites(o.SQL); ok {
				problems = append(problems, fmt.Sprintf("trigger %q: its body writes (%s); a trigger fires again on every node that applies the change, where its writes are not replicated, so replicas would diverge; do the write in the same /v1/exec transaction instead (a trigger may still check values and RAISE(ABORT, ...))", o.Name, verb))
			}
		}
		if o.Type != "table" {
			s.Objects = append(s.Objects, o)
			continue
		}
		t, errs := inspect(ctx, db, o)
		problems = append(problems, errs...)
		s.Tables = append(s.Tables, t)
	}
	if !internal {
		var msgs []string
		s.Search, msgs = checkSearch(ctx, db, src, s, objs)
		problems = append(problems, msgs...)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w:\n  - %s", outpost.ErrInvalidSchema, strings.Join(problems, "\n  - "))
	}
	s.Version = hex.EncodeToString(h.Sum(nil))
	return s, nil
}
