package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/store"
)

// TestExecThen_RememberedWithTheWrite: what ExecThen's callback writes
// commits with the statements (and survives a reopen), and rolls back with
// them when a statement fails; the table is not replicated.
func TestExecThen_RememberedWithTheWrite(t *testing.T) {
	dir := t.TempDir()
	s, err := store.Open(context.Background(), openOpts(dir))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.UnixMilli(time.Now().UnixMilli())
	_, dbv, err := s.ExecThen(ctx, []store.Statement{{SQL: `INSERT INTO pages (id, title) VALUES ('a', 'A')`}}, func(tx *store.Tx, res []store.Result) error {
		return tx.Remember("k1", store.Remembered{Hash: []byte{1}, Status: 200, Body: []byte(`{}`), DBV: tx.DBVersion(), Created: now})
	})
	if err != nil {
		t.Fatal(err)
	}
	// A failing statement: nothing of the callback is kept.
	_, _, err = s.ExecThen(ctx, []store.Statement{{SQL: `INSERT INTO pages (id, title) VALUES ('a', 'dup')`}}, func(tx *store.Tx, res []store.Result) error {
		return tx.Remember("k2", store.Remembered{Hash: []byte{2}, Status: 200, DBV: tx.DBVersion(), Created: now})
	})
	if err == nil {
		t.Fatal("duplicate insert succeeded")
	}
	// A failing callback: nothing of the statements is kept.
	boom := errors.New("boom")
	_, _, err = s.ExecThen(ctx, []store.Statement{{SQL: `INSERT INTO pages (id, title) VALUES ('b', 'B')`}}, func(tx *store.Tx, res []store.Result) error {
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	s.Close()

	s = testutil.OpenStore(t, dir, openOpts(dir))
	r, err := s.Remembered(ctx, "k1")
	if err != nil || r == nil {
		t.Fatalf("k1 after reopen: %v, %v", r, err)
	}
	if r.DBV != dbv || r.Status != 200 || string(r.Body) != `{}` || !r.Created.Equal(now) {
		t.Fatalf("k1 = %+v, want dbv %d", r, dbv)
	}
	if r, err := s.Remembered(ctx, "k2"); err != nil || r != nil {
		t.Fatalf("k2 = %v, %v; want none", r, err)
	}
	if n := count(t, s, `SELECT count(*) FROM pages WHERE id = 'b'`); n != 0 {
		t.Fatalf("row of the failed callback's transaction kept")
	}
	// Not replicated: no change of it is emitted.
	if n := count(t, s, `SELECT count(*) FROM sqlite_schema WHERE name LIKE 'outpost_clock__outpost_idempotency%'`); n != 0 {
		t.Fatal("outpost_idempotency has a clock table")
	}
}

// TestForgetRemembered: expired entries go, then the oldest beyond the
// count and byte bounds.
func TestForgetRemembered(t *testing.T) {
	s := testutil.OpenStore(t, "", store.Options{})
	ctx := context.Background()
	base := time.UnixMilli(1_700_000_000_000)
	for i, k := range []string{"a", "b", "c", "d", "e"} {
		_, err := s.Write(ctx, func(tx *store.Tx) error {
			return tx.Remember(k, store.Remembered{Hash: []byte{1}, Status: 200, Body: make([]byte, 10), Created: base.Add(time.Duration(i) * time.Hour)})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	forget := func(before time.Time, n int, b int64) int64 {
		var got int64
		_, err := s.Write(ctx, func(tx *store.Tx) error {
			var err error
			got, err = tx.ForgetRemembered(before, n, b)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if n := forget(base.Add(30*time.Minute), 0, 0); n != 1 { // a
		t.Fatalf("expired: deleted %d, want 1", n)
	}
	if n := forget(base, 3, 0); n != 1 { // b
		t.Fatalf("count bound: deleted %d, want 1", n)
	}
	if n := forget(base, 0, 25); n != 1 { // c: d+e are 20 bytes
		t.Fatalf("byte bound: deleted %d, want 1", n)
	}
	for k, want := range map[string]bool{"a": false, "b": false, "c": false, "d": true, "e": true} {
		r, err := s.Remembered(ctx, k)
		if err != nil || (r != nil) != want {
			t.Fatalf("%s: %v, %v; want kept %v", k, r, err, want)
		}
	}
}
