package store_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/hlc"
	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/store"
)

func change(table string, pk any, col string, val any, cl int64, ts hlc.Timestamp, origin string) outpost.Change {
	return outpost.Change{Table: table, PK: []any{pk}, Col: col, Val: val, CL: cl, HLC: uint64(ts), Origin: origin}
}

// TestStore_ApplyDrift: a change too far ahead of the receiver's clock is
// held back with everything after it, not applied and not lost; it applies
// once the clock has caught up.
func TestStore_ApplyDrift(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	s := testutil.OpenStore(t, "", store.Options{Now: clock})
	ok := hlc.FromParts(clock().UnixMilli(), 0)
	ahead := hlc.FromParts(clock().Add(10*time.Second).UnixMilli(), 0)
	groups := []outpost.Group{
		{DBV: 1, Changes: []outpost.Change{change("pages", "a", "", nil, 1, ok, "PEER/1"), change("pages", "a", "title", "on time", 1, ok, "PEER/1")}},
		{DBV: 2, Changes: []outpost.Change{change("pages", "b", "", nil, 1, ahead, "PEER/1"), change("pages", "b", "title", "from the future", 1, ahead, "PEER/1")}},
	}
	res, err := s.Apply(context.Background(), "PEER", store.CursorPull, "1", groups, 2)
	if err != nil {
		t.Fatal(err)
	}
	if res.Drift == nil || !errors.Is(res.Drift, hlc.ErrDrift) || res.Through != 1 {
		t.Fatalf("drift not reported or cursor moved past the held group: %+v", res)
	}
	if got := query(t, s, `SELECT id FROM pages ORDER BY id`); len(got) != 1 || got[0][0] != "a" {
		t.Fatalf("rows after the held-back apply: %v", got)
	}
	if c, _, _ := s.Cursor(context.Background(), "PEER", store.CursorPull); c != 1 {
		t.Fatalf("cursor = %d, want 1", c)
	}
	now.Add(int64(10 * time.Second))
	res, err = s.Apply(context.Background(), "PEER", store.CursorPull, "1", groups[1:], 2)
	if err != nil || res.Drift != nil {
		t.Fatalf("retry: %+v %v", res, err)
	}
	if got := query(t, s, `SELECT title FROM pages WHERE id = 'b'`); len(got) != 1 || got[0][0] != "from the future" {
		t.Fatalf("held-back change not applied on retry: %v", got)
	}
	// The local clock moved past the applied change.
	execV(t, s, `UPDATE pages SET title = 'local' WHERE id = 'b'`)
	if got := query(t, s, `SELECT hlc > ? FROM outpost_clock__pages WHERE pk0 = 'b' AND col = 'title'`, int64(ahead)); got[0][0] != int64(1) {
		t.Fatal("local write after applying a change did not get a later HLC")
	}
}

// TestStore_ApplyPending: changes for a table or column this schema does not
// know wait in outpost_pending and apply when a restart brings the schema.
func TestStore_ApplyPending(t *testing.T) {
	dir := t.TempDir()
	v1 := `CREATE TABLE pages (id TEXT PRIMARY KEY NOT NULL, title TEXT);`
	s := testutil.OpenStore(t, dir, store.Options{Schema: v1})
	ts := hlc.FromParts(time.Now().UnixMilli(), 0)
	groups := []outpost.Group{{DBV: 5, Changes: []outpost.Change{
		change("pages", "p1", "", nil, 1, ts, "PEER/1"),
		change("pages", "p1", "title", "hello", 1, ts, "PEER/1"),
		change("pages", "p1", "lang", "fr", 1, ts, "PEER/1"),
		change("comments", "c1", "", nil, 1, ts, "PEER/1"),
		change("comments", "c1", "body", []byte{0, 1}, 1, ts, "PEER/1"),
	}}}
	res, err := s.Apply(context.Background(), "PEER", store.CursorPull, "1", groups, 5)
	if err != nil {
		t.Fatal(err)
	}
	if res.Pending != 3 || res.Applied != 2 {
		t.Fatalf("applied %d pending %d, want 2 and 3", res.Applied, res.Pending)
	}
	if n, _ := s.PendingCount(context.Background()); n != 3 {
		t.Fatalf("pending count = %d", n)
	}
	s.Close()
	v2 := `CREATE TABLE pages (id TEXT PRIMARY KEY NOT NULL, title TEXT, lang TEXT); CREATE TABLE comments (id TEXT PRIMARY KEY NOT NULL, body BLOB);`
	s = testutil.OpenStore(t, dir, store.Options{Schema: v2})
	if got := query(t, s, `SELECT title, lang FROM pages`); len(got) != 1 || got[0][1] != "fr" {
		t.Fatalf("pending column not applied after upgrade: %v", got)
	}
	if got := query(t, s, `SELECT body FROM comments`); len(got) != 1 || string(got[0][0].([]byte)) != "\x00\x01" {
		t.Fatalf("pending table not applied after upgrade: %v", got)
	}
	if n, _ := s.PendingCount(context.Background()); n != 0 {
		t.Fatalf("pending count after upgrade = %d", n)
	}
}

// TestStore_ApplyRefused: a change the origin may not write is reported and
// never applied; the cursor still moves past it.
func TestStore_ApplyRefused(t *testing.T) {
	s := testutil.OpenStore(t, "", store.Options{RemoteCheck: func(ch *outpost.Change) error {
		if strings.HasPrefix(ch.Origin, "EVIL/") {
			return errors.New("EVIL may not write")
		}
		return nil
	}})
	ts := hlc.FromParts(time.Now().UnixMilli(), 0)
	res, err := s.Apply(context.Background(), "EVIL", store.CursorPull, "1", []outpost.Group{{DBV: 3, Changes: []outpost.Change{
		change("pages", "x", "", nil, 1, ts, "EVIL/1"), change("pages", "x", "title", "pwned", 1, ts, "EVIL/1"),
		change("pages", "y", "", nil, 1, ts, "GOOD/1"),
	}}}, 3)
	if err != nil {
		t.Fatal(err)
	}
	if res.Refused != 2 || res.Applied != 1 || res.Through != 3 {
		t.Fatalf("result %+v, want 2 refused, 1 applied, through 3", res)
	}
	if got := query(t, s, `SELECT id FROM pages`); len(got) != 1 || got[0][0] != "y" {
		t.Fatalf("rows = %v", got)
	}
}

// TestStore_ApplyWrongKey: a change whose key has the wrong number of values
// is refused, not applied, and does not stall the batch it came in.
func TestStore_ApplyWrongKey(t *testing.T) {
	s := testutil.OpenStore(t, "", store.Options{})
	ts := hlc.FromParts(time.Now().UnixMilli(), 0)
	bad := change("pages", "x", "", nil, 1, ts, "PEER/1")
	bad.PK = []any{"x", "extra"}
	res, err := s.Apply(context.Background(), "PEER", store.CursorPull, "1", []outpost.Group{{DBV: 1, Changes: []outpost.Change{
		bad, change("pages", "ok", "", nil, 1, ts, "PEER/1"),
	}}}, 1)
	if err != nil || res.Refused != 1 || res.Applied != 1 || res.Through != 1 {
		t.Fatalf("apply: %+v %v; want 1 refused, 1 applied, through 1", res, err)
	}
}

// TestStore_ApplyConstraintRefused: a remote value the receiver's
// constraints reject (CHECK, NOT NULL) is refused whole, leaves the row as
// it was, and does not stall the rest of the batch.
func TestStore_ApplyConstraintRefused(t *testing.T) {
	s := testutil.OpenStore(t, "", store.Options{Schema: `CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, n INTEGER NOT NULL DEFAULT 1 CHECK (n > 0), note TEXT);`})
	execV(t, s, `INSERT INTO t (id, n, note) VALUES ('a', 5, 'kept')`)
	ts := hlc.FromParts(time.Now().UnixMilli()+1, 0)
	res, err := s.Apply(context.Background(), "PEER", store.CursorPull, "1", []outpost.Group{{DBV: 1, Changes: []outpost.Change{
		change("t", "a", "n", int64(-1), 1, ts, "PEER/1"), // CHECK fails
		change("t", "a", "n", nil, 1, ts, "PEER/1"),       // NOT NULL fails
		change("t", "b", "", nil, 1, ts, "PEER/1"),        // a new row ...
		change("t", "b", "n", int64(-7), 1, ts, "PEER/1"), // ... whose value fails: the row stays as the sentinel made it
		change("t", "a", "note", "updated", 1, ts, "PEER/1"),
	}}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if res.Refused != 3 || res.Applied != 2 || res.Through != 1 {
		t.Fatalf("result %+v, want 3 refused, 2 applied, through 1", res)
	}
	got := query(t, s, `SELECT id, n, note FROM t ORDER BY id`)
	if len(got) != 2 || got[0][1] != int64(5) || got[0][2] != "updated" || got[1][1] != int64(1) {
		t.Fatalf("rows = %v, want a(5, updated) and b(1 = default)", got)
	}
}
