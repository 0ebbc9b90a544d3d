package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/store"
)

// searchSchema is the pages table with a local search index over title and body.
const searchSchema = `
CREATE TABLE pages (
	id    TEXT PRIMARY KEY NOT NULL,
	slug  TEXT NOT NULL DEFAULT '',
	title TEXT NOT NULL DEFAULT '',
	body  TEXT,
	views INTEGER NOT NULL DEFAULT 0
);
-- outpost: search pages_fts on pages (title, body)
`

// hits returns the ids matching q, best first.
func hits(tb testing.TB, s *store.Store, q string) []string {
	tb.Helper()
	rows := query(tb, s, `SELECT id FROM pages_fts WHERE pages_fts MATCH ? ORDER BY bm25(pages_fts), id`, q)
	out := []string{}
	for _, r := range rows {
		out = append(out, r[0].(string))
	}
	return out
}

func TestSearch_LocalWrites(t *testing.T) {
	s := testutil.OpenStore(t, "", store.Options{Schema: searchSchema})
	exec(t, s, `INSERT INTO pages (id, title, body) VALUES ('p1', 'Crème brûlée', 'A French dessert'), ('p2', 'Apple pie', 'An American dessert with apples')`)
	if got, want := hits(t, s, "dessert"), []string{"p1", "p2"}; !reflect.DeepEqual(got, want) && !reflect.DeepEqual(got, []string{"p2", "p1"}) {
		t.Fatalf("dessert: %v", got)
	}
	if got := hits(t, s, "creme"); !reflect.DeepEqual(got, []string{"p1"}) {
		t.Fatalf("creme (diacritics removed): %v", got)
	}
	// bm25 and snippet work; the key column comes back.
	rows := query(t, s, `SELECT id, snippet(pages_fts, 1, '[', ']', '…', 4), bm25(pages_fts) FROM pages_fts WHERE pages_fts MATCH 'apples'`)
	if len(rows) != 1 || rows[0][0] != "p2" || !strings.Contains(rows[0][1].(string), "[apples]") {
		t.Fatalf("snippet: %v", rows)
	}
	// Update: the old words go, the new come.
	exec(t, s, `UPDATE pages SET title = 'Pear tart' WHERE id = 'p2'`)
	if got := hits(t, s, "apple"); len(got) != 0 {
		t.Fatalf("apple after the update: %v", got)
	}
	if got := hits(t, s, "pear"); !reflect.DeepEqual(got, []string{"p2"}) {
		t.Fatalf("pear: %v", got)
	}
	// An update of a column that is not indexed leaves the index alone.
	exec(t, s, `UPDATE pages SET views = views + 1 WHERE id = 'p2'`)
	// REPLACE of a live row (deletes it without delete triggers).
	exec(t, s, `REPLACE INTO pages (id, title, body) VALUES ('p1', 'Tarte tatin', 'caramel')`)
	if got := hits(t, s, "creme"); len(got) != 0 {
		t.Fatalf("creme after REPLACE: %v", got)
	}
	if got := hits(t, s, "caramel"); !reflect.DeepEqual(got, []string{"p1"}) {
		t.Fatalf("caramel: %v", got)
	}
	// Upsert, ignored insert, delete.
	exec(t, s, `INSERT INTO pages (id, title) VALUES ('p1', 'Upserted') ON CONFLICT (id) DO UPDATE SET title = excluded.title`)
	exec(t, s, `INSERT OR IGNORE INTO pages (id, title) VALUES ('p2', 'Ignored')`)
	if got := hits(t, s, "upserted"); !reflect.DeepEqual(got, []string{"p1"}) {
		t.Fatalf("upserted: %v", got)
	}
	if got := hits(t, s, "pear"); !reflect.DeepEqual(got, []string{"p2"}) {
		t.Fatalf("pear after an ignored insert: %v", got)
	}
	exec(t, s, `DELETE FROM pages WHERE id = 'p2'`)
	if got := hits(t, s, "pear OR dessert OR apples"); len(got) != 0 {
		t.Fatalf("after delete: %v", got)
	}
	integrity(t, s)
}

// integrity checks the index against the table with FTS5's integrity-check
// (on a plain connection: clients may not write the index).
func integrity(tb testing.TB, s *store.Store) {
	tb.Helper()
	if err := store.SearchIntegrity(context.Background(), s, "pages_fts"); err != nil {
		tb.Fatalf("index does not match the table: %v", err)
	}
}

func TestSearch_ReplicatedWrites(t *testing.T) {
	a := testutil.OpenStore(t, "", store.Options{Identity: testutil.Identity("EDGE01", "43ax"), Schema: searchSchema})
	b := testutil.OpenStore(t, "", store.Options{Identity: testutil.Identity("EDGE02", "44bx"), Schema: searchSchema})
	exec(t, a, `INSERT INTO pages (id, title, body) VALUES ('p1', 'Edge news', 'written at the first edge'), ('p2', 'Other', 'second')`)
	syncOnce(t, a, b, "EDGE01")
	if got := hits(t, b, "first"); !reflect.DeepEqual(got, []string{"p1"}) {
		t.Fatalf("replicated insert not found at b: %v", got)
	}
	exec(t, a, `UPDATE pages SET body = 'rewritten at the edge' WHERE id = 'p1'`)
	exec(t, a, `DELETE FROM pages WHERE id = 'p2'`)
	syncOnce(t, a, b, "EDGE01")
	if got := hits(t, b, "first"); len(got) != 0 {
		t.Fatalf("replicated update: old words still found: %v", got)
	}
	if got := hits(t, b, "rewritten"); !reflect.DeepEqual(got, []string{"p1"}) {
		t.Fatalf("replicated update: %v", got)
	}
	if got := hits(t, b, "second"); len(got) != 0 {
		t.Fatalf("replicated delete: %v", got)
	}
	// Concurrent edits of different columns merge; the index follows.
	exec(t, a, `UPDATE pages SET title = 'Merged title' WHERE id = 'p1'`)
	exec(t, b, `UPDATE pages SET body = 'merged body' WHERE id = 'p1'`)
	syncOnce(t, a, b, "EDGE01")
	syncOnce(t, b, a, "EDGE02")
	for _, s := range []*store.Store{a, b} {
		if got := hits(t, s, "title AND body"); !reflect.DeepEqual(got, []string{"p1"}) {
			t.Fatalf("merged row: %v", got)
		}
		integrity(t, s)
	}
	// Nothing of the index was replicated: the changes are the table's.
	groups, _, err := a.ChangesSince(context.Background(), 0, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		for _, c := range g.Changes {
			if c.Table != "pages" {
				t.Fatalf("a change of table %q was emitted", c.Table)
			}
		}
	}
}

func TestSearch_Rebuild(t *testing.T) {
	dir := t.TempDir()
	plain := strings.Replace(searchSchema, "-- outpost: search", "-- no index yet:", 1)
	s := testutil.OpenStore(t, dir, store.Options{Schema: plain})
	exec(t, s, `INSERT INTO pages (id, title, body) VALUES ('p1', 'Before the index', 'old row'), ('p2', 'Second', 'another old row')`)
	s.Close()

	// Declared later: built from the rows already there.
	s = testutil.OpenStore(t, dir, store.Options{Schema: searchSchema})
	if got := hits(t, s, "old"); len(got) != 2 {
		t.Fatalf("index built at start: %v", got)
	}
	exec(t, s, `INSERT INTO pages (id, title) VALUES ('p3', 'After')`)
	s.Close()

	// Definition changed (another tokenizer, one more column): rebuilt.
	porter := strings.Replace(searchSchema, "(title, body)", "(title, body, slug) tokenize 'porter unicode61'", 1)
	s = testutil.OpenStore(t, dir, store.Options{Schema: porter})
	if got := hits(t, s, "rows"); len(got) != 2 { // porter: "rows" finds "row"
		t.Fatalf("rebuilt with porter: %v", got)
	}
	integrity(t, s)
	s.Close()

	// A restored database is a new incarnation: its index is rebuilt.
	s = testutil.OpenStore(t, dir, store.Options{Schema: porter})
	b, err := s.Backup(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "backup.db")
	copyFile(t, b.File.Name(), file)
	b.Close()
	s.Close()
	dir2 := t.TempDir()
	if _, err := store.Restore(context.Background(), dir2, file, false); err != nil {
		t.Fatal(err)
	}
	r := testutil.OpenStore(t, dir2, store.Options{Schema: porter})
	if got := hits(t, r, "after OR old"); len(got) != 3 {
		t.Fatalf("restored: %v", got)
	}
	integrity(t, r)
	r.Close()

	// Directive removed: the index goes.
	s = testutil.OpenStore(t, dir, store.Options{Schema: plain})
	if n := len(query(t, s, `SELECT name FROM sqlite_schema WHERE name LIKE 'pages_fts%' OR name LIKE 'outpost_search_%'`)); n != 0 {
		t.Fatalf("%d objects of the dropped index remain", n)
	}
}

func TestSearch_ClientsCannotWriteTheIndex(t *testing.T) {
	s := testutil.OpenStore(t, "", store.Options{Schema: searchSchema})
	exec(t, s, `INSERT INTO pages (id, title) VALUES ('p1', 'hello')`)
	for _, q := range []string{
		`INSERT INTO pages_fts (pages_fts) VALUES ('delete-all')`,
		`INSERT INTO pages_fts (rowid, title) VALUES (99, 'spam')`,
		`DELETE FROM pages_fts`,
		`DELETE FROM pages_fts_data`,
		`UPDATE PAGES_FTS_DOCSIZE SET sz = NULL`,
		`DELETE FROM outpost_search_stash__pages_fts`,
	} {
		_, _, err := s.Exec(context.Background(), []store.Statement{{SQL: q}})
		var se *store.Error
		if !errors.As(err, &se) || se.Code != store.CodeNotAllowed {
			t.Errorf("%s: got %v, want %s", q, err, store.CodeNotAllowed)
		}
	}
	if got := hits(t, s, "hello"); !reflect.DeepEqual(got, []string{"p1"}) {
		t.Fatalf("index changed: %v", got)
	}
}

func TestSearch_BadQueries(t *testing.T) {
	s := testutil.OpenStore(t, "", store.Options{Schema: searchSchema})
	for _, q := range []string{`"unterminated`, `AND`, `title:`, `nosuchcolumn:word`} {
		_, err := s.Query(context.Background(), store.Statement{SQL: `SELECT id FROM pages_fts WHERE pages_fts MATCH ?`, Args: []any{q}})
		var se *store.Error
		if !errors.As(err, &se) || se.Code == store.CodeInternal {
			t.Errorf("MATCH %q: got %v, want a client error", q, err)
		}
	}
}

func TestSearch_SchemaErrors(t *testing.T) {
	for _, tt := range []struct{ name, ddl, want string }{
		{"fts5 table in the schema", `CREATE TABLE pages (id TEXT PRIMARY KEY NOT NULL, title TEXT); CREATE VIRTUAL TABLE pages_fts USING fts5(title, content='pages');`, "-- outpost: search pages_fts on <table>"},
		{"unknown table", "CREATE TABLE pages (id TEXT PRIMARY KEY NOT NULL, title TEXT);\n-- outpost: search x_fts on posts (title)", `table "posts" is not a table of the schema file`},
		{"unknown column", "CREATE TABLE pages (id TEXT PRIMARY KEY NOT NULL, title TEXT);\n-- outpost: search x_fts on pages (title, body)", `has no column "body"`},
		{"without rowid", "CREATE TABLE pages (id TEXT PRIMARY KEY NOT NULL, title TEXT) WITHOUT ROWID;\n-- outpost: search x_fts on pages (title)", "WITHOUT ROWID"},
		{"name taken", "CREATE TABLE pages (id TEXT PRIMARY KEY NOT NULL, title TEXT);\n-- outpost: search pages on pages (title)", "already has an object of that name"},
		{"reserved name", "CREATE TABLE pages (id TEXT PRIMARY KEY NOT NULL, title TEXT);\n-- outpost: search outpost_fts on pages (title)", "reserved"},
		{"twice", "CREATE TABLE pages (id TEXT PRIMARY KEY NOT NULL, title TEXT);\n-- outpost: search f on pages (title)\n-- outpost: search F on pages (title)", "line 2"},
		{"bad tokenizer", "CREATE TABLE pages (id TEXT PRIMARY KEY NOT NULL, title TEXT);\n-- outpost: search f on pages (title) tokenize 'nosuch'", "SQLite refused it"},
		{"malformed", "CREATE TABLE pages (id TEXT PRIMARY KEY NOT NULL, title TEXT);\n-- outpost: search f pages (title)", `missing "on"`},
		{"no columns", "CREATE TABLE pages (id TEXT PRIMARY KEY NOT NULL, title TEXT);\n-- outpost: search f on pages ()", "not a name"},
		{"trailing junk", "CREATE TABLE pages (id TEXT PRIMARY KEY NOT NULL, title TEXT);\n-- outpost: search f on pages (title) prefix '2'", `only "tokenize`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := store.Open(context.Background(), store.Options{Dir: t.TempDir(), Identity: testutil.Identity("EDGE01", "43ax"), Schema: tt.ddl})
			if !errors.Is(err, outpost.ErrInvalidSchema) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want ErrInvalidSchema mentioning %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "pages_fts_data") {
				t.Fatalf("the error is about FTS5's shadow tables: %v", err)
			}
		})
	}
}

func copyFile(tb testing.TB, from, to string) {
	tb.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkSearch_Insert100 measures 100-row transactions of pages (a
// title and a 40-word body each) with and without a search index over
// title and body, and applying them at a replica: the cost of keeping the
// index on local and replicated writes.
func BenchmarkSearch_Insert100(b *testing.B) {
	words := strings.Fields("edge cache page render origin purge replica merge column version clock farm master node shell backup restore search index token")
	body := func(i int) string {
		var sb strings.Builder
		for k := 0; k < 40; k++ {
			sb.WriteString(words[(i*7+k*3)%len(words)])
			sb.WriteByte(' ')
		}
		return sb.String()
	}
	for _, tt := range []struct{ name, schema string }{
		{"index=none", strings.Replace(searchSchema, "-- outpost: search", "-- none:", 1)},
		{"index=title,body", searchSchema},
	} {
		b.Run(tt.name+"/local", func(b *testing.B) {
			s := testutil.OpenStore(b, "", store.Options{Schema: tt.schema})
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				stmts := make([]store.Statement, 100)
				for k := range stmts {
					n := i*100 + k
					stmts[k] = store.Statement{SQL: `INSERT INTO pages (id, title, body) VALUES (?, ?, ?)`, Args: []any{fmt.Sprint("p", n), fmt.Sprint("Page ", n), body(n)}}
				}
				if _, _, err := s.Exec(context.Background(), stmts); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "rows/s")
		})
		b.Run(tt.name+"/apply", func(b *testing.B) {
			src := testutil.OpenStore(b, "", store.Options{Schema: tt.schema, Identity: testutil.Identity("EDGE01", "43ax")})
			dst := testutil.OpenStore(b, "", store.Options{Schema: tt.schema, Identity: testutil.Identity("EDGE02", "44bx")})
			for i := 0; i < b.N; i++ {
				stmts := make([]store.Statement, 100)
				for k := range stmts {
					n := i*100 + k
					stmts[k] = store.Statement{SQL: `INSERT INTO pages (id, title, body) VALUES (?, ?, ?)`, Args: []any{fmt.Sprint("p", n), fmt.Sprint("Page ", n), body(n)}}
				}
				if _, _, err := src.Exec(context.Background(), stmts); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for {
				if res := syncOnce(b, src, dst, "EDGE01"); res.Applied == 0 {
					break
				}
			}
			b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
