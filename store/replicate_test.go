package store_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/store"
)

// sync moves every change from src to dst (one pull).
func syncOnce(tb testing.TB, src, dst *store.Store, name string) store.ApplyResult {
	tb.Helper()
	ctx := context.Background()
	since, _, err := dst.Cursor(ctx, name, store.CursorPull)
	if err != nil {
		tb.Fatal(err)
	}
	groups, through, err := src.ChangesSince(ctx, since, dst.Origin(), 1000)
	if err != nil {
		tb.Fatal(err)
	}
	res, err := dst.Apply(ctx, name, store.CursorPull, src.Incarnation(), groups, through)
	if err != nil {
		tb.Fatal(err)
	}
	return res
}

func dump(tb testing.TB, s *store.Store) [][]any {
	return query(tb, s, `SELECT id, slug, title, body, views FROM pages ORDER BY id`)
}

func TestStore_ReplicateTwoNodes(t *testing.T) {
	a := testutil.OpenStore(t, "", store.Options{Identity: testutil.Identity("EDGE01", "43ax")})
	b := testutil.OpenStore(t, "", store.Options{Identity: testutil.Identity("EDGE02", "44bx")})
	execV(t, a, `INSERT INTO pages (id, title, body, views) VALUES ('p1', 'one', x'00ff', 1), ('p2', 'two', NULL, 2.5)`)
	execV(t, a, `UPDATE pages SET title = 'uno' WHERE id = 'p1'`)
	execV(t, b, `INSERT INTO pages (id, title) VALUES ('p3', 'three')`)
	execV(t, a, `INSERT INTO pages (id, slug) VALUES ('p4', outpost_slug('Hello'))`)
	syncOnce(t, a, b, "EDGE01")
	syncOnce(t, b, a, "EDGE02")
	if got, want := dump(t, b), dump(t, a); !reflect.DeepEqual(got, want) {
		t.Fatalf("after sync:\n a %v\n b %v", want, got)
	}
	// Concurrent: delete at a, update at b: the delete wins.
	execV(t, a, `DELETE FROM pages WHERE id = 'p2'`)
	execV(t, b, `UPDATE pages SET title = 'late' WHERE id = 'p2'`)
	// Re-insert after delete at a wins over b's older life.
	syncOnce(t, a, b, "EDGE01")
	syncOnce(t, b, a, "EDGE02")
	if got, want := dump(t, b), dump(t, a); !reflect.DeepEqual(got, want) {
		t.Fatalf("after delete/update:\n a %v\n b %v", want, got)
	}
	if n := count(t, a, `SELECT count(*) FROM pages WHERE id = 'p2'`); n != 0 {
		t.Fatalf("concurrent update resurrected a deleted row")
	}
	execV(t, b, `INSERT INTO pages (id, title) VALUES ('p2', 'back')`)
	syncOnce(t, b, a, "EDGE02")
	if got := query(t, a, `SELECT title FROM pages WHERE id = 'p2'`); len(got) != 1 || got[0][0] != "back" {
		t.Fatalf("re-insert did not win: %v", got)
	}
	// Idempotent: syncing again changes nothing.
	before := dump(t, a)
	res := syncOnce(t, b, a, "EDGE02")
	if res.Applied != 0 || !reflect.DeepEqual(dump(t, a), before) {
		t.Fatalf("second sync applied %d changes", res.Applied)
	}
	// The slug registry replicated too.
	if n := count(t, b, `SELECT count(*) FROM outpost_slugs WHERE slug = 'hello-43ax'`); n != 1 {
		t.Fatalf("slug registry not replicated")
	}
}
