package store_test

import (
	"context"
	"testing"

	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/store"
)

// TestApply_DuplicateOnlyWakesNobody: a pull batch that merges nothing
// (duplicates only) or only moves the cursor takes no db_version and does
// not wake a Changed() waiter, so an idle link stays idle; a batch that
// merges something does both.
func TestApply_DuplicateOnlyWakesNobody(t *testing.T) {
	ctx := context.Background()
	a := testutil.OpenStore(t, "", store.Options{Identity: testutil.Identity("EDGE01", "43ax")})
	b := testutil.OpenStore(t, "", store.Options{Identity: testutil.Identity("EDGE02", "44bx")})
	execV(t, a, `INSERT INTO pages (id, title) VALUES ('p1', 'one')`)
	groups, through, err := a.ChangesSince(ctx, 0, b.Origin(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	woken := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}

	// The first apply merges: a new db_version, and waiters wake.
	ch, before := b.Changed(), b.DBVersion()
	if res, err := b.Apply(ctx, "EDGE01", store.CursorPull, a.Incarnation(), groups, through); err != nil || res.Applied == 0 {
		t.Fatalf("first apply: %+v, %v", res, err)
	}
	if b.DBVersion() != before+1 || !woken(ch) {
		t.Fatalf("a merging apply: db_version %d (was %d), woken %v", b.DBVersion(), before, woken(ch))
	}

	// The same groups again: duplicates only.
	ch, before = b.Changed(), b.DBVersion()
	res, err := b.Apply(ctx, "EDGE01", store.CursorPull, a.Incarnation(), groups, through)
	if err != nil {
		t.Fatal(err)
	}
	if res.Applied != 0 || res.Ignored == 0 || res.DBVersion != 0 {
		t.Fatalf("duplicate apply: %+v, want only ignored changes and no db_version", res)
	}
	if b.DBVersion() != before {
		t.Fatalf("a duplicate-only apply moved db_version %d -> %d", before, b.DBVersion())
	}
	if woken(ch) {
		t.Fatal("a duplicate-only apply woke a Changed() waiter")
	}

	// Cursor only: an empty batch that moves the cursor.
	if _, err := b.Apply(ctx, "EDGE01", store.CursorPull, a.Incarnation(), nil, through+5); err != nil {
		t.Fatal(err)
	}
	if c, _, _ := b.Cursor(ctx, "EDGE01", store.CursorPull); c != through+5 {
		t.Fatalf("cursor %d, want %d", c, through+5)
	}
	if b.DBVersion() != before || woken(ch) {
		t.Fatalf("a cursor-only apply: db_version %d (was %d), woken %v", b.DBVersion(), before, woken(ch))
	}

	// A local write still wakes the waiter.
	execV(t, b, `INSERT INTO pages (id, title) VALUES ('p2', 'two')`)
	if !woken(ch) {
		t.Fatal("a local commit did not wake the Changed() waiter")
	}
}
