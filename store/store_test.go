package store_test

import (
	"context"
	"testing"

	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/store"
)

func exec(tb testing.TB, s *store.Store, sql string, args ...any) []store.Result {
	tb.Helper()
	res, _, err := s.Exec(context.Background(), []store.Statement{{SQL: sql, Args: args}})
	if err != nil {
		tb.Fatalf("exec %q: %v", sql, err)
	}
	return res
}

func query(tb testing.TB, s *store.Store, sql string, args ...any) [][]any {
	tb.Helper()
	rows, err := s.Query(context.Background(), store.Statement{SQL: sql, Args: args})
	if err != nil {
		tb.Fatalf("query %q: %v", sql, err)
	}
	return rows.Rows
}

func TestStore_ExecQuery(t *testing.T) {
	s := testutil.OpenStore(t, "", store.Options{})
	res := exec(t, s, `INSERT INTO pages (id, slug, title) VALUES (outpost_id(), outpost_slug(?), ?) RETURNING id, slug`, "Example page", "Example page")
	if got := len(res[0].Rows); got != 1 {
		t.Fatalf("returning rows = %d", got)
	}
	if got, want := res[0].Rows[0][1], "example-page-43ax"; got != want {
		t.Fatalf("slug = %v, want %v", got, want)
	}
	res = exec(t, s, `INSERT INTO pages (id, slug, title) VALUES (outpost_id(), outpost_slug(?), ?) RETURNING slug`, "Example page", "Example page")
	if got, want := res[0].Rows[0][0], "example-page-43ax-2"; got != want {
		t.Fatalf("second slug = %v, want %v", got, want)
	}
	rows := query(t, s, `SELECT count(*) FROM pages`)
	if got := rows[0][0]; got != int64(2) {
		t.Fatalf("count = %v", got)
	}
	clock := query(t, s, `SELECT col, cl FROM outpost_clock__pages ORDER BY pk0, col`)
	t.Logf("clock: %v", clock)
}
