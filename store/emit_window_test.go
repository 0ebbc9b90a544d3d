package store_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/store"
)

// TestStore_ReadWindowOneStatement: reading a window of every table in one
// statement gives exactly what one statement per table gives (changes,
// order, db_versions), over tables with one- and two-column keys, inserts,
// updates, deletes and several transactions per window; and KeysOnly gives
// the same keys, columns and db_versions, whole changes only for Values.
func TestStore_ReadWindowOneStatement(t *testing.T) {
	s := testutil.OpenStore(t, "", store.Options{})
	execV(t, s, `INSERT INTO pages (id, title, body) VALUES ('a', 'A', x'')`)
	execV(t, s, `INSERT INTO kv (k, n, v) VALUES ('x', 1, 'one'), ('x', 2, 2.5)`)
	execV(t, s, `UPDATE pages SET views = 3 WHERE id = 'a'`)
	execV(t, s, `INSERT INTO pages (id) VALUES ('b')`)
	execV(t, s, `DELETE FROM kv WHERE n = 1`)
	if _, _, err := s.Exec(context.Background(), []store.Statement{
		{SQL: `INSERT INTO kv (k, n, v) VALUES ('y', 1, NULL)`},
		{SQL: `UPDATE pages SET title = 'B' WHERE id = 'b'`},
	}); err != nil {
		t.Fatal(err)
	}
	hi := s.DBVersion()
	for lo := int64(0); lo < hi; lo++ {
		want, wantV, err := store.ChangesPerTable(s, lo, hi)
		if err != nil {
			t.Fatal(err)
		}
		got, gotV, err := store.ChangesAllTables(s, lo, hi)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(gotV, wantV) {
			t.Fatalf("window (%d, %d]:\none statement %v %v\nper table     %v %v", lo, hi, got, gotV, want, wantV)
		}
	}
	full, _, err := s.ChangesSinceFilter(context.Background(), 0, store.ChangeFilter{})
	if err != nil {
		t.Fatal(err)
	}
	keys, _, err := s.ChangesSinceFilter(context.Background(), 0, store.ChangeFilter{KeysOnly: true, Values: []string{"KV"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != len(full) {
		t.Fatalf("KeysOnly: %d groups, want %d", len(keys), len(full))
	}
	n := 0
	for i := range full {
		if keys[i].DBV != full[i].DBV || len(keys[i].Changes) != len(full[i].Changes) {
			t.Fatalf("KeysOnly group %d: %+v, want %+v", i, keys[i], full[i])
		}
		for k, w := range full[i].Changes {
			g := keys[i].Changes[k]
			if w.Table == "kv" {
				if !reflect.DeepEqual(g, w) {
					t.Fatalf("KeysOnly change of a Values table: %+v, want %+v", g, w)
				}
				continue
			}
			n++
			w.CL, w.HLC, w.Origin, w.Val = 0, 0, "", nil
			if !reflect.DeepEqual(g, w) {
				t.Fatalf("KeysOnly change: %+v, want %+v", g, w)
			}
		}
	}
	if n == 0 {
		t.Fatal("no change of pages was compared")
	}
	if _, _, err := s.ChangesSinceFilter(context.Background(), 0, store.ChangeFilter{KeysOnly: true, OwnOnly: true}); err == nil {
		t.Fatal("KeysOnly with OwnOnly: no error")
	}
}
