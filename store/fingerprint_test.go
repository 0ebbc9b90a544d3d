package store_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/hlc"
	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/store"
)

// TestStore_PeersFingerprintMigrated: an outpost_peers table of an older
// build (no fingerprint columns) gets them at Open, its cursors kept; a pull
// apply then keeps the fingerprint of the last group of the peer's own
// changes, which stays while the cursor moves on under the same incarnation
// and goes with a reset or a new incarnation.
func TestStore_PeersFingerprintMigrated(t *testing.T) {
	dir := t.TempDir()
	s := testutil.OpenStore(t, dir, store.Options{})
	s.Close()
	db, err := sql.Open("sqlite", filepath.Join(dir, store.DBFile)+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`DROP TABLE outpost_peers`,
		`CREATE TABLE outpost_peers (name TEXT NOT NULL, kind TEXT NOT NULL, incarnation TEXT NOT NULL DEFAULT '', dbv INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (name, kind)) WITHOUT ROWID`,
		`INSERT INTO outpost_peers (name, kind, incarnation, dbv) VALUES ('PEER', 'pull', '1', 7)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	s = testutil.OpenStore(t, dir, store.Options{})
	ctx := context.Background()
	if c, inc, err := s.Cursor(ctx, "PEER", store.CursorPull); err != nil || c != 7 || inc != "1" {
		t.Fatalf("cursor after migration: %d %q %v", c, inc, err)
	}
	if fp, err := s.CursorFingerprint(ctx, "PEER", store.CursorPull); err != nil || !fp.IsZero() {
		t.Fatalf("fingerprint after migration: %+v %v", fp, err)
	}
	ts := hlc.FromParts(time.Now().UnixMilli(), 0)
	other := hlc.FromParts(time.Now().UnixMilli(), 5)
	applyOK(t, s, "PEER", 9,
		outpost.Group{DBV: 8, Changes: []outpost.Change{change("pages", "a", "", nil, 1, ts, "PEER/1")}},
		outpost.Group{DBV: 9, Changes: []outpost.Change{change("pages", "b", "", nil, 1, other, "EDGE01/e1")}}, // relayed: no fingerprint
	)
	want := store.Fingerprint{DBV: 8, HLC: uint64(ts)}
	if fp, _ := s.CursorFingerprint(ctx, "PEER", store.CursorPull); fp != want {
		t.Fatalf("fingerprint %+v, want %+v", fp, want)
	}
	if got := store.ParseFingerprint(want.String()); got != want {
		t.Fatalf("wire form %q reads as %+v", want.String(), got)
	}
	applyOK(t, s, "PEER", 12) // the cursor moves on, nothing of the peer's own
	if fp, _ := s.CursorFingerprint(ctx, "PEER", store.CursorPull); fp != want {
		t.Fatalf("fingerprint after a cursor move: %+v, want %+v", fp, want)
	}
	if err := s.SetCursor(ctx, "PEER", store.CursorPull, "1", 0); err != nil {
		t.Fatal(err)
	}
	if fp, _ := s.CursorFingerprint(ctx, "PEER", store.CursorPull); !fp.IsZero() {
		t.Fatalf("fingerprint after a reset to 0: %+v", fp)
	}
	applyOK(t, s, "PEER", 13, outpost.Group{DBV: 13, Changes: []outpost.Change{change("pages", "c", "", nil, 1, ts, "PEER/1")}})
	if err := s.SetCursor(ctx, "PEER", store.CursorPull, "2", 20); err != nil {
		t.Fatal(err)
	}
	if fp, _ := s.CursorFingerprint(ctx, "PEER", store.CursorPull); !fp.IsZero() {
		t.Fatalf("fingerprint after a new incarnation: %+v", fp)
	}
	for _, bad := range []string{"", "x", "3", "3:", "0:5", "-1:5", "3:5:6", "03:5"} {
		if fp := store.ParseFingerprint(bad); !fp.IsZero() {
			t.Errorf("ParseFingerprint(%q) = %+v, want unknown", bad, fp)
		}
	}
}
