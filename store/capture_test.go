package store_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/store"
	_ "modernc.org/sqlite"
)

type clockRow struct {
	col    string
	cl     int64
	hlc    int64
	origin string
	dbv    int64
}

func clockOf(tb testing.TB, s *store.Store, id string) map[string]clockRow {
	tb.Helper()
	rows := query(tb, s, `SELECT col, cl, hlc, origin, dbv FROM outpost_clock__pages WHERE pk0 = ?`, id)
	out := map[string]clockRow{}
	for _, r := range rows {
		out[r[0].(string)] = clockRow{r[0].(string), r[1].(int64), r[2].(int64), r[3].(string), r[4].(int64)}
	}
	return out
}

func execV(tb testing.TB, s *store.Store, sql string, args ...any) int64 {
	tb.Helper()
	_, dbv, err := s.Exec(context.Background(), []store.Statement{{SQL: sql, Args: args}})
	if err != nil {
		tb.Fatalf("exec %q: %v", sql, err)
	}
	return dbv
}

var pageCols = []string{"slug", "title", "body", "views"}

// TestCapture_Lifecycle walks one row through DESIGN.md section 4's local
// rules: insert, update, no-op update, delete, re-insert, replace.
func TestCapture_Lifecycle(t *testing.T) {
	s := testutil.OpenStore(t, "", store.Options{})

	v1 := execV(t, s, `INSERT INTO pages (id, title, body) VALUES ('p1', 'a', 'b')`)
	c := clockOf(t, s, "p1")
	if got, want := len(c), 1+len(pageCols); got != want {
		t.Fatalf("after insert: %d clock rows, want %d: %v", got, want, c)
	}
	if c[""].cl != 1 {
		t.Fatalf("after insert: cl = %d, want 1", c[""].cl)
	}
	for _, col := range pageCols {
		r := c[col]
		if r.cl != 1 || r.dbv != v1 || r.origin != s.Origin() || r.hlc != c[""].hlc {
			t.Fatalf("after insert: column %s version %+v, want cl 1 dbv %d origin %s hlc %d", col, r, v1, s.Origin(), c[""].hlc)
		}
	}

	v2 := execV(t, s, `UPDATE pages SET title = 'a2' WHERE id = 'p1'`)
	if v2 != v1+1 {
		t.Fatalf("db_version after update = %d, want %d", v2, v1+1)
	}
	c2 := clockOf(t, s, "p1")
	if c2["title"].dbv != v2 || c2["title"].hlc <= c["title"].hlc {
		t.Fatalf("updated column not versioned: %+v then %+v", c["title"], c2["title"])
	}
	if c2["body"] != c["body"] || c2[""] != c[""] {
		t.Fatalf("update touched other versions: body %+v->%+v sentinel %+v->%+v", c["body"], c2["body"], c[""], c2[""])
	}

	execV(t, s, `UPDATE pages SET title = 'a2', body = 'b' WHERE id = 'p1'`) // same values
	if c3 := clockOf(t, s, "p1"); c3["title"] != c2["title"] || c3["body"] != c2["body"] {
		t.Fatalf("no-op update created versions")
	}

	vd := execV(t, s, `DELETE FROM pages WHERE id = 'p1'`)
	cd := clockOf(t, s, "p1")
	if len(cd) != 1 || cd[""].cl != 2 || cd[""].dbv != vd {
		t.Fatalf("after delete: want only a tombstone with cl 2 at dbv %d, got %v", vd, cd)
	}
	if n := query(t, s, `SELECT count(*) FROM pages WHERE id = 'p1'`)[0][0]; n != int64(0) {
		t.Fatalf("row still visible after delete")
	}

	vr := execV(t, s, `INSERT INTO pages (id, title) VALUES ('p1', 'again')`)
	cr := clockOf(t, s, "p1")
	if cr[""].cl != 3 || len(cr) != 1+len(pageCols) {
		t.Fatalf("after re-insert: want cl 3 and every column versioned, got %v", cr)
	}
	for _, col := range pageCols {
		if cr[col].cl != 3 || cr[col].dbv != vr {
			t.Fatalf("after re-insert: column %s = %+v", col, cr[col])
		}
	}

	execV(t, s, `INSERT OR REPLACE INTO pages (id, title) VALUES ('p1', 'replaced')`)
	if cl := clockOf(t, s, "p1")[""].cl; cl != 3 {
		t.Fatalf("REPLACE of a live row changed its life: cl = %d, want 3", cl)
	}

	execV(t, s, `INSERT INTO pages (id, title) VALUES ('p1', 'upsert') ON CONFLICT (id) DO UPDATE SET title = excluded.title`)
	if got := query(t, s, `SELECT title FROM pages WHERE id = 'p1'`)[0][0]; got != "upsert" {
		t.Fatalf("upsert title = %v", got)
	}

	// Changing the key is a delete of the old key and an insert of the new one.
	execV(t, s, `UPDATE pages SET id = 'p2' WHERE id = 'p1'`)
	if c := clockOf(t, s, "p1"); len(c) != 1 || c[""].cl != 4 {
		t.Fatalf("old key after key change: %v, want tombstone cl 4", c)
	}
	if c := clockOf(t, s, "p2"); c[""].cl != 1 || len(c) != 1+len(pageCols) {
		t.Fatalf("new key after key change: %v, want cl 1 with every column", c)
	}
}

func TestCapture_CompositeKey(t *testing.T) {
	s := testutil.OpenStore(t, "", store.Options{})
	execV(t, s, `INSERT INTO kv (k, n, v) VALUES ('a', 1, x'00ff')`)
	execV(t, s, `DELETE FROM kv WHERE k = 'a' AND n = 1`)
	execV(t, s, `INSERT INTO kv (k, n, v) VALUES ('a', 1, 1.0)`)
	before := query(t, s, `SELECT hlc FROM outpost_clock__kv WHERE col = 'v'`)[0][0]
	execV(t, s, `UPDATE kv SET v = 1 WHERE k = 'a'`) // equal number, other type
	if after := query(t, s, `SELECT hlc FROM outpost_clock__kv WHERE col = 'v'`)[0][0]; after == before {
		t.Fatalf("changing a value's type (1.0 -> 1) did not version it")
	}
	rows := query(t, s, `SELECT pk0, pk1, col, cl FROM outpost_clock__kv ORDER BY col`)
	if len(rows) != 2 || rows[0][3] != int64(3) || rows[1][2] != "v" || rows[1][3] != int64(3) {
		t.Fatalf("composite-key clock = %v", rows)
	}
}

// TestCapture_WriteOutsideOutpostAborts opens the database file with a plain
// SQLite connection, as a script or the sqlite3 shell would, and writes.
func TestCapture_WriteOutsideOutpostAborts(t *testing.T) {
	dir := t.TempDir()
	s := testutil.OpenStore(t, dir, store.Options{})
	execV(t, s, `INSERT INTO pages (id, title) VALUES ('p1', 'a')`)

	db, err := sql.Open("sqlite", filepath.Join(dir, store.DBFile)+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		`INSERT INTO pages (id, title) VALUES ('p2', 'sneaky')`,
		`UPDATE pages SET title = 'sneaky' WHERE id = 'p1'`,
		`DELETE FROM pages WHERE id = 'p1'`,
	} {
		if _, err := db.Exec(q); err == nil || !strings.Contains(err.Error(), "outpost_capture") {
			t.Errorf("%s: err = %v, want an abort naming outpost_capture", q, err)
		}
	}
	if got := query(t, s, `SELECT title FROM pages`); len(got) != 1 || got[0][0] != "a" {
		t.Fatalf("data changed by an uncaptured write: %v", got)
	}
}
