package store_test

import (
	"context"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/store"
)

// TestStore_SchemaUpgrade reopens a database with a schema that adds a table
// and appends a defaulted column: both are applied in place, data kept, and
// the new column is captured.
func TestStore_SchemaUpgrade(t *testing.T) {
	dir := t.TempDir()
	v1 := `CREATE TABLE pages (id TEXT PRIMARY KEY NOT NULL, title TEXT);`
	s := testutil.OpenStore(t, dir, store.Options{Schema: v1})
	execV(t, s, `INSERT INTO pages (id, title) VALUES ('p1', 'a')`)
	s.Close()

	v2 := v1 + `ALTER TABLE pages ADD COLUMN lang TEXT NOT NULL DEFAULT 'en'; CREATE TABLE comments (id TEXT PRIMARY KEY NOT NULL, page TEXT, body TEXT);`
	s = testutil.OpenStore(t, dir, store.Options{Schema: v2})
	if got := query(t, s, `SELECT id, title, lang FROM pages`); len(got) != 1 || got[0][2] != "en" {
		t.Fatalf("after upgrade: %v", got)
	}
	execV(t, s, `UPDATE pages SET lang = 'fr' WHERE id = 'p1'`)
	execV(t, s, `INSERT INTO comments (id, page, body) VALUES ('c1', 'p1', 'hi')`)
	if got := query(t, s, `SELECT count(*) FROM outpost_clock__pages WHERE col = 'lang'`); got[0][0] != int64(1) {
		t.Fatalf("new column not captured: %v", got)
	}
	if got := query(t, s, `SELECT count(*) FROM outpost_clock__comments`); got[0][0] != int64(3) {
		t.Fatalf("new table not captured: %v", got)
	}
	s.Close()

	// A schema that drops or changes a column is refused, naming the table.
	for _, bad := range []string{
		`CREATE TABLE pages (id TEXT PRIMARY KEY NOT NULL);`,
		`CREATE TABLE pages (id TEXT PRIMARY KEY NOT NULL, heading TEXT, lang TEXT NOT NULL DEFAULT 'en');`,
	} {
		_, err := store.Open(context.Background(), store.Options{Dir: dir, Identity: testutil.Identity("EDGE01", "43ax"), Schema: bad})
		if err == nil || !strings.Contains(err.Error(), `table "pages"`) {
			t.Errorf("schema %q: err = %v, want a refusal naming table pages", bad, err)
		}
	}
}
