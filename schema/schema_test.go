package schema_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/schema"
)

func TestParse_Rules(t *testing.T) {
	cases := []struct {
		name string
		ddl  string
		want []string // substrings of the error; nil = valid
	}{
		{"valid", `CREATE TABLE pages (id TEXT PRIMARY KEY NOT NULL, title TEXT NOT NULL DEFAULT '', body TEXT); CREATE INDEX pages_title ON pages (title); CREATE VIEW v AS SELECT id FROM pages;`, nil},
		{"valid composite without rowid", `CREATE TABLE kv (k TEXT NOT NULL, n INTEGER NOT NULL, v, PRIMARY KEY (k, n)) WITHOUT ROWID;`, nil},
		{"valid integer key without rowid", `CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL) WITHOUT ROWID;`, nil},
		{"empty file", ``, nil},
		{"no primary key", `CREATE TABLE t (a TEXT);`, []string{`table "t"`, "no explicit PRIMARY KEY", "outpost_id()"}},
		{"nullable key", `CREATE TABLE t (id TEXT PRIMARY KEY, a TEXT);`, []string{`table "t"`, `"id" may be NULL`, "PRIMARY KEY NOT NULL"}},
		{"autoincrement", `CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, a TEXT);`, []string{`table "t"`, "AUTOINCREMENT", "outpost_id()"}},
		{"insert in the schema file", `CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL); INSERT INTO t (id) VALUES ('a');`, []string{"statement 2 (INSERT)", "not data", "outpost shell < seed.sql"}},
		{"insert behind WITH in the schema file", `CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL); WITH x AS (SELECT 'a' AS id) INSERT INTO t SELECT id FROM x;`, []string{"(INSERT)"}},
		{"delete in the schema file", `CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL); DELETE FROM t;`, []string{"(DELETE)"}},
		{"rowid alias", `CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a TEXT);`, []string{`table "t"`, "alias for the rowid", "TEXT PRIMARY KEY NOT NULL"}},
		{"unique constraint", `CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, email TEXT UNIQUE);`, []string{`table "t"`, "UNIQUE constraint", "outpost_slug()"}},
		{"unique index", `CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, email TEXT); CREATE UNIQUE INDEX t_email ON t (email);`, []string{`table "t"`, `unique index "t_email"`}},
		{"not null without default", `CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, a TEXT NOT NULL);`, []string{`table "t"`, `column "a" is NOT NULL without a DEFAULT`, "DEFAULT"}},
		{"datetime column", `CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, at DATETIME);`, []string{`column "at" is declared DATETIME`, "TEXT (ISO-8601)"}},
		{"reserved table name", `CREATE TABLE outpost_x (id TEXT PRIMARY KEY NOT NULL);`, []string{"reserved for Outpost"}},
		{"reserved column name", `CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, outpost_x TEXT);`, []string{`column name "outpost_x" is reserved`}},
		{"rollback conflict clause", `CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, a TEXT NOT NULL ON CONFLICT ROLLBACK DEFAULT '');`, []string{"ROLLBACK"}},
		{"checking trigger", `CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, a TEXT); CREATE TRIGGER t_check BEFORE UPDATE OF a ON t WHEN new.a = 'bad' BEGIN SELECT RAISE(ABORT, 'no'), replace(new.a, 'x', 'y'); END;`, nil},
		{"trigger that writes", `CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, a TEXT); CREATE TABLE log (id TEXT PRIMARY KEY NOT NULL, a TEXT); CREATE TRIGGER t_log AFTER INSERT ON t BEGIN INSERT INTO log (id, a) VALUES (new.id, new.a); END;`, []string{`trigger "t_log"`, "writes (INSERT)", "same /v1/exec transaction"}},
		{"trigger that deletes", `CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, a TEXT); CREATE TRIGGER t_gc AFTER UPDATE ON t BEGIN SELECT 1; DELETE FROM t WHERE a IS NULL; END;`, []string{`trigger "t_gc"`, "writes (DELETE)"}},
		{"trigger that upserts", `CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, a TEXT); CREATE TRIGGER t_up AFTER DELETE ON t BEGIN REPLACE INTO t (id) VALUES ('x'); END;`, []string{"writes (REPLACE)"}},
		{"not sql", `CREATE TABLE (`, []string{"does not run in SQLite"}},
		{"several problems reported together", `CREATE TABLE a (x TEXT); CREATE TABLE b (id TEXT PRIMARY KEY NOT NULL, y TEXT NOT NULL);`, []string{`table "a"`, `table "b"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := schema.Parse(context.Background(), tc.ddl)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if s.Version == "" {
					t.Fatal("no schema version")
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse accepted %q", tc.ddl)
			}
			if !errors.Is(err, outpost.ErrInvalidSchema) {
				t.Errorf("error does not wrap ErrInvalidSchema: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestParse_Tables(t *testing.T) {
	s, err := schema.Parse(context.Background(), `CREATE TABLE kv (k TEXT NOT NULL, v BLOB, n INTEGER NOT NULL, PRIMARY KEY (n, k)) WITHOUT ROWID;`)
	if err != nil {
		t.Fatal(err)
	}
	tbl, ok := s.Table("KV")
	if !ok {
		t.Fatal("table lookup is not case-insensitive")
	}
	pk := tbl.PK()
	if len(pk) != 2 || pk[0].Name != "n" || pk[1].Name != "k" {
		t.Fatalf("PK order = %+v, want n, k", pk)
	}
	ct := tbl.Capture()
	if len(ct.Columns) != 1 || ct.Columns[0].Name != "v" {
		t.Fatalf("capture columns = %+v", ct.Columns)
	}
	s2, _ := schema.Parse(context.Background(), `CREATE TABLE kv (k TEXT NOT NULL, v BLOB, n INTEGER NOT NULL, PRIMARY KEY (n, k)) WITHOUT ROWID;`)
	s3, _ := schema.Parse(context.Background(), `CREATE TABLE kv (k TEXT NOT NULL, v TEXT, n INTEGER NOT NULL, PRIMARY KEY (n, k)) WITHOUT ROWID;`)
	if s.Version != s2.Version || s.Version == s3.Version {
		t.Fatalf("schema versions: same DDL %v, different DDL %v", s.Version == s2.Version, s.Version == s3.Version)
	}
}

// TestParse_RowidAliasOneMessage: "id INTEGER PRIMARY KEY" gets one
// coherent message; it used to also advise "INTEGER PRIMARY KEY NOT NULL",
// which the rowid rule then rejects.
func TestParse_RowidAliasOneMessage(t *testing.T) {
	_, err := schema.Parse(context.Background(), `CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT);`)
	if err == nil {
		t.Fatal("accepted a rowid alias")
	}
	msg := err.Error()
	if strings.Contains(msg, "INTEGER PRIMARY KEY NOT NULL") || strings.Count(msg, "\n  - ") != 1 || !strings.Contains(msg, "`id TEXT PRIMARY KEY NOT NULL`") {
		t.Fatalf("want one message advising TEXT PRIMARY KEY NOT NULL, got:\n%v", err)
	}
}

// TestParse_SearchNotInVersion: search directives are local to each node,
// so they do not change the schema version peers compare.
func TestParse_SearchNotInVersion(t *testing.T) {
	ddl := "CREATE TABLE pages (id TEXT PRIMARY KEY NOT NULL, title TEXT, body TEXT);\n"
	a, err := schema.Parse(context.Background(), ddl)
	if err != nil {
		t.Fatal(err)
	}
	b, err := schema.Parse(context.Background(), ddl+"-- outpost: search pages_fts on pages (title, body)\n")
	if err != nil {
		t.Fatal(err)
	}
	if a.Version != b.Version || len(b.Search) != 1 || len(a.Search) != 0 {
		t.Fatalf("versions %s / %s, search %v / %v", a.Version, b.Version, a.Search, b.Search)
	}
	if ix := b.Search[0]; ix.Table != "pages" || len(ix.Keys) != 1 || ix.Keys[0] != "id" {
		t.Fatalf("index: %+v", ix)
	}
}
