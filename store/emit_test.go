package store_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/store"
)

// TestStore_ChangesSinceByteBound: a batch stops at the byte bound on a
// group boundary, always holds at least one group (a group larger than the
// bound comes alone), and successive batches cover every group once.
func TestStore_ChangesSinceByteBound(t *testing.T) {
	s := testutil.OpenStore(t, "", store.Options{})
	big := strings.Repeat("x", 10_000)
	for i := 0; i < 20; i++ {
		execV(t, s, `INSERT INTO pages (id, body) VALUES (?, ?)`, "p"+string(rune('a'+i)), big)
	}
	// One group far over the bound.
	execV(t, s, `INSERT INTO pages (id, body) VALUES ('h1', ?), ('h2', ?), ('h3', ?)`, big, big, big)
	ctx := context.Background()
	var since int64
	seen := map[int64]bool{}
	batches := 0
	for since < s.DBVersion() {
		groups, through, err := s.ChangesSinceFilter(ctx, since, store.ChangeFilter{MaxBytes: 25_000})
		if err != nil {
			t.Fatal(err)
		}
		if through <= since || len(groups) == 0 {
			t.Fatalf("no progress from %d: through %d, %d groups", since, through, len(groups))
		}
		bytes := 0
		for _, g := range groups {
			if g.DBV <= since || g.DBV > through || seen[g.DBV] {
				t.Fatalf("group %d outside (%d, %d] or repeated", g.DBV, since, through)
			}
			seen[g.DBV] = true
			for i := range g.Changes {
				bytes += store.ChangeBytes(&g.Changes[i])
			}
		}
		if len(groups) > 1 && bytes > 25_000 {
			t.Fatalf("batch of %d groups holds %d bytes, over the bound", len(groups), bytes)
		}
		since = through
		batches++
	}
	if len(seen) != 21 {
		t.Fatalf("saw %d groups, want 21", len(seen))
	}
	if batches < 8 {
		t.Fatalf("%d batches: the byte bound did not split the backlog", batches)
	}
}

// TestStore_ChangesSinceOwnOnly: an edge's filter keeps only changes of its
// own name, of every incarnation, and drops what it merely received.
func TestStore_ChangesSinceOwnOnly(t *testing.T) {
	ctx := context.Background()
	a := testutil.OpenStore(t, "", store.Options{Identity: testutil.Identity("EDGE01", "43ax")})
	b := testutil.OpenStore(t, "", store.Options{Identity: testutil.Identity("EDGE02", "44bx")})
	execV(t, b, `INSERT INTO pages (id) VALUES ('from-b')`)
	syncOnce(t, b, a, "EDGE02")
	execV(t, a, `INSERT INTO pages (id) VALUES ('from-a')`)
	groups, _, err := a.ChangesSinceFilter(ctx, 0, store.ChangeFilter{OwnOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		for _, ch := range g.Changes {
			if outpost.OriginName(ch.Origin) != "EDGE01" {
				t.Fatalf("own-only batch holds %s's change", ch.Origin)
			}
		}
	}
	if len(groups) != 1 {
		t.Fatalf("%d groups, want EDGE01's one", len(groups))
	}
}

// TestStore_RotateIncarnation: a new incarnation is durable, new writes
// carry it, and changes of the old one are not excluded as an echo of the
// new one.
func TestStore_RotateIncarnation(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := store.Open(ctx, store.Options{Dir: dir, Identity: testutil.Identity("EDGE01", "43ax"), Schema: testutil.PagesSchema})
	if err != nil {
		t.Fatal(err)
	}
	execV(t, s, `INSERT INTO pages (id) VALUES ('old')`)
	old := s.Origin()
	inc, err := s.RotateIncarnation(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	if inc == "" || s.Incarnation() != inc || s.Origin() != "EDGE01/"+inc {
		t.Fatalf("incarnation %q origin %q after rotating to %q", s.Incarnation(), s.Origin(), inc)
	}
	execV(t, s, `INSERT INTO pages (id) VALUES ('new')`)
	groups, _, err := s.ChangesSinceFilter(ctx, 0, store.ChangeFilter{Exclude: s.Origin()})
	if err != nil {
		t.Fatal(err)
	}
	origins := map[string]int{}
	for _, g := range groups {
		for _, ch := range g.Changes {
			origins[ch.Origin]++
		}
	}
	if origins[old] == 0 || origins[s.Origin()] != 0 {
		t.Fatalf("origins %v: want the old incarnation's changes and none of the new", origins)
	}
	s.Close()
	s2 := testutil.OpenStore(t, dir, store.Options{})
	if s2.Incarnation() != inc {
		t.Fatalf("reopened with incarnation %q, want %q", s2.Incarnation(), inc)
	}
}

// TestChangesSince_ConcurrentFirstReads: more concurrent feed reads than
// the replication readers' pool has connections, on a fresh store (no
// statement prepared yet), each holding its read transaction: none may
// wait for a connection to prepare a statement on (it deadlocked once).
func TestChangesSince_ConcurrentFirstReads(t *testing.T) {
	s := testutil.OpenStore(t, "", store.Options{})
	if _, _, err := s.Exec(context.Background(), []store.Statement{{SQL: `INSERT INTO pages (id, title) VALUES ('p1', 'a')`}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 4*store.ReplReaders)
	for i := range 4 * store.ReplReaders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := store.ChangeFilter{MaxChanges: 100 + i} // distinct calls, the same statements
			if i%2 == 1 {
				f.KeysOnly, f.Values = true, []string{"outpost_purges"}
			}
			if _, _, err := s.ChangesSinceFilter(ctx, 0, f); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
