package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/hlc"
	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/replication"
	"github.com/outpost-edge/outpost/store"
)

func cutOf(tb testing.TB, s *store.Store) map[string]store.Point {
	tb.Helper()
	k, err := s.KnowledgePoints(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func collectTombstones(tb testing.TB, s *store.Store, cut map[string]store.Point) store.TombstoneResult {
	tb.Helper()
	res, err := s.CollectTombstones(context.Background(), cut)
	if err != nil {
		tb.Fatal(err)
	}
	return res
}

func sentinelCL(tb testing.TB, s *store.Store, id string) int64 {
	tb.Helper()
	rows := query(tb, s, `SELECT cl FROM outpost_clock__pages WHERE pk0 = ? AND col = ''`, id)
	if len(rows) == 0 {
		return 0
	}
	return rows[0][0].(int64)
}

// TestStore_CollectTombstones collects a tombstone at one node and not at
// another: a re-insert at the collecting node must still win over the
// tombstone the other keeps (the floor), and one at the keeping node over
// the collector's missing row.
func TestStore_CollectTombstones(t *testing.T) {
	ring := keyring("EDGE01", "MASTER01")
	open := func(name, code string) *store.Store {
		return testutil.OpenStore(t, "", store.Options{Identity: testutil.Identity(name, code), Keys: testKeys{name, ring}})
	}
	a, m := open("EDGE01", "43ax"), open("MASTER01", "44bx")
	execV(t, a, `INSERT INTO pages (id, title) VALUES ('p1', 'one'), ('p2', 'two')`)
	execV(t, a, `DELETE FROM pages WHERE id IN ('p1', 'p2')`)
	pullEntries(t, a, m, store.EntryFilter{})
	if got := count(t, m, `SELECT count(*) FROM pages`); got != 0 {
		t.Fatalf("m has %d pages", got)
	}

	// Nothing is covered by an empty cut, nor by a cut before the delete.
	if r := collectTombstones(t, a, nil); r.Collected != 0 || r.Remaining != 2 {
		t.Fatalf("empty cut: %+v", r)
	}
	early := cutOf(t, a)
	p := early[a.Origin()]
	p.HLC = 1
	early[a.Origin()] = p
	if r := collectTombstones(t, a, early); r.Collected != 0 || r.Remaining != 2 {
		t.Fatalf("early cut: %+v", r)
	}

	r := collectTombstones(t, a, cutOf(t, a))
	if r.Collected != 2 || r.Remaining != 0 {
		t.Fatalf("collect at a: %+v", r)
	}
	if n, _ := a.Tombstones(context.Background()); n != 0 {
		t.Fatalf("a keeps %d tombstones", n)
	}
	floors, err := a.Floors(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := floors["pages"], int64(2); got != want {
		t.Fatalf("floor = %d, want %d", got, want)
	}

	// a re-inserts p1: it must outrank m's tombstone (cl 2).
	execV(t, a, `INSERT INTO pages (id, title) VALUES ('p1', 'again')`)
	if got, want := sentinelCL(t, a, "p1"), int64(3); got != want {
		t.Fatalf("re-inserted cl = %d, want %d", got, want)
	}
	// A brand-new key takes the floor too.
	execV(t, a, `INSERT INTO pages (id, title) VALUES ('p3', 'new')`)
	if got, want := sentinelCL(t, a, "p3"), int64(3); got != want {
		t.Fatalf("new key cl = %d, want %d", got, want)
	}
	pullEntries(t, a, m, store.EntryFilter{})
	if got := query(t, m, `SELECT title FROM pages WHERE id = 'p1'`); len(got) != 1 || got[0][0] != "again" {
		t.Fatalf("m after a's re-insert: %v", got)
	}

	// m keeps its tombstone of p2 and re-inserts it (cl 3); a has no row.
	execV(t, m, `INSERT INTO pages (id, title) VALUES ('p2', 'back')`)
	pullEntries(t, m, a, store.EntryFilter{})
	if got := query(t, a, `SELECT title FROM pages WHERE id = 'p2'`); len(got) != 1 || got[0][0] != "back" {
		t.Fatalf("a after m's re-insert: %v", got)
	}
	for _, s := range []*store.Store{a, m} {
		if got := count(t, s, `SELECT count(*) FROM pages`); got != 3 {
			t.Fatalf("%s has %d pages, want 3", s.Identity().Name, got)
		}
	}
}

// TestStore_CollectTombstonesSkipsHeldTables: a change held for a table
// (here for a column this schema does not have yet) may be older than a
// tombstone, so that table's tombstones stay until it is applied.
func TestStore_CollectTombstonesSkipsHeldTables(t *testing.T) {
	ctx := context.Background()
	a := testutil.OpenStore(t, "", store.Options{Identity: testutil.Identity("EDGE01", "43ax")})
	execV(t, a, `INSERT INTO pages (id, title) VALUES ('p1', 'one')`)
	execV(t, a, `DELETE FROM pages WHERE id = 'p1'`)
	ch := outpost.Change{Table: "pages", PK: []any{"p9"}, Col: "not_yet", Val: "x", CL: 1,
		HLC: uint64(hlc.FromParts(1, 0)), Origin: "EDGE02/x"}
	res, err := a.Apply(ctx, "EDGE02", store.CursorPull, "x", []outpost.Group{{DBV: 1, Changes: []outpost.Change{ch}}}, 1)
	if err != nil || res.Held != 1 {
		t.Fatalf("apply: %+v, %v", res, err)
	}
	r := collectTombstones(t, a, cutOf(t, a))
	if r.Collected != 0 || r.Remaining != 1 || len(r.HeldTables) != 1 || r.HeldTables[0] != "pages" {
		t.Fatalf("with a held change: %+v", r)
	}
}

// TestStore_CollectTombstonesShrinksTheFile: 10,000 rows inserted and
// deleted, the log and the tombstones collected: the file is back within
// 10 % of an empty database's.
func TestStore_CollectTombstonesShrinksTheFile(t *testing.T) {
	ctx := context.Background()
	// No time budget: one statement deletes 10,000 rows (slow under -race
	// on a busy host).
	a := testutil.OpenStore(t, "", store.Options{Identity: testutil.Identity("EDGE01", "43ax"), StatementTimeout: -1})
	empty := testutil.OpenStore(t, "", store.Options{Identity: testutil.Identity("EDGE02", "44bx")})
	pages := func(s *store.Store) int64 { return count(t, s, `SELECT page_count FROM pragma_page_count`) }
	base := pages(empty)
	for b := range 10 {
		var stmts []store.Statement
		for i := range 1000 {
			stmts = append(stmts, store.Statement{SQL: `INSERT INTO pages (id, title, body) VALUES (?, ?, ?)`,
				Args: []any{fmt.Sprintf("p%d-%d", b, i), "a title", "a body of some length for the page"}})
		}
		if _, _, err := a.Exec(ctx, stmts); err != nil {
			t.Fatal(err)
		}
	}
	execV(t, a, `DELETE FROM pages`)
	full := pages(a)
	if n, _ := a.Tombstones(ctx); n != 10000 {
		t.Fatalf("%d tombstones, want 10000", n)
	}
	k, err := a.Knowledge(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.CollectLog(ctx, k); err != nil {
		t.Fatal(err)
	}
	r := collectTombstones(t, a, cutOf(t, a))
	if r.Collected != 10000 || r.Remaining != 0 {
		t.Fatalf("collect: %+v", r)
	}
	after := pages(a)
	t.Logf("pages: empty %d, full %d, after collection %d", base, full, after)
	if float64(after) > 1.1*float64(base) {
		t.Fatalf("%d pages after collection; an empty database has %d", after, base)
	}
}

// reportOf is s's report to the hubs now.
func reportOf(tb testing.TB, s *store.Store) *replication.Report {
	tb.Helper()
	return &replication.Report{Origin: s.Origin(), Known: cutOf(tb, s)}
}

// TestDecide_ConcurrentUpdate: B updates a row while A deletes it. Until
// B's report shows it held the delete (and the master holds B's log
// through that report), the master's decision must not cover the delete:
// B's update may still be on its way, and a node that had dropped the
// tombstone would take it as a live row.
func TestDecide_ConcurrentUpdate(t *testing.T) {
	ring := keyring("MASTER01", "EDGE01", "EDGE02")
	open := func(name, code string) *store.Store {
		return testutil.OpenStore(t, "", store.Options{Identity: testutil.Identity(name, code), Keys: testKeys{name, ring}})
	}
	m, a, b, c := open("MASTER01", "01ma"), open("EDGE01", "43ax"), open("EDGE02", "44bx"), open("EDGE03", "45cx")
	everyone := func() {
		for range 2 {
			pullEntries(t, a, m, store.EntryFilter{})
			pullEntries(t, b, m, store.EntryFilter{})
			pullEntries(t, m, a, store.EntryFilter{})
			pullEntries(t, m, b, store.EntryFilter{})
		}
	}
	execV(t, a, `INSERT INTO pages (id, title) VALUES ('k', 'one')`)
	everyone()
	reports := map[string]*replication.Report{"EDGE01": reportOf(t, a), "EDGE02": reportOf(t, b)}
	members := []string{"EDGE01", "EDGE02"}

	execV(t, a, `DELETE FROM pages WHERE id = 'k'`)
	execV(t, b, `UPDATE pages SET title = 'two' WHERE id = 'k'`) // concurrent: b has not seen the delete
	pullEntries(t, a, m, store.EntryFilter{})                    // m pulls a
	reports["EDGE01"] = reportOf(t, a)
	d := replication.Decide(cutOf(t, m), members, reports)
	if !d.Ready {
		t.Fatalf("not ready: %v", d.Waiting)
	}
	if r := collectTombstones(t, m, d.Stable); r.Collected != 0 {
		t.Fatalf("the master collected the delete before EDGE02 reported holding it: %+v (decision %+v)", r, d)
	}
	if !strings.Contains(strings.Join(d.Waiting, ";"), "EDGE02") {
		t.Fatalf("the decision does not say EDGE02 holds it back: %v", d.Waiting)
	}
	// EDGE02 reports after its update: the master does not hold it yet.
	reports["EDGE02"] = reportOf(t, b)
	if d := replication.Decide(cutOf(t, m), members, reports); d.Ready {
		t.Fatalf("ready without EDGE02's log through its report: %+v", d)
	}
	// Everything moves; everyone reports holding everything.
	everyone()
	if got := count(t, m, `SELECT count(*) FROM pages`); got != 0 {
		t.Fatalf("the master holds %d rows: the update resurrected the row", got)
	}
	reports = map[string]*replication.Report{"EDGE01": reportOf(t, a), "EDGE02": reportOf(t, b)}
	d = replication.Decide(cutOf(t, m), members, reports)
	for _, s := range []*store.Store{m, a, b} {
		if !d.Usable(cutOf(t, s)) {
			t.Fatalf("%s cannot use the decision: %+v", s.Identity().Name, d)
		}
		if r := collectTombstones(t, s, d.Stable); r.Collected != 1 || r.Remaining != 0 {
			t.Fatalf("%s: %+v", s.Identity().Name, r)
		}
	}
	// c lacks b's update, which the decision needs: it may not use it (had
	// it dropped its tombstone, b's update would bring the row back there).
	if d.Usable(cutOf(t, c)) {
		t.Fatal("EDGE03 may use the decision without EDGE02's concurrent update")
	}
	pullEntries(t, m, c, store.EntryFilter{})
	if !d.Usable(cutOf(t, c)) {
		t.Fatal("EDGE03 holds everything and may not use the decision")
	}
	if got := count(t, c, `SELECT count(*) FROM pages`); got != 0 {
		t.Fatalf("EDGE03 holds %d rows", got)
	}
}

// BenchmarkStore_CollectTombstones: collecting the tombstones of 10,000
// deleted rows in one cut (one op), file pages returned.
func BenchmarkStore_CollectTombstones(b *testing.B) {
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		s := testutil.OpenStore(b, "", store.Options{Identity: testutil.Identity("EDGE01", "43ax"), StatementTimeout: -1})
		for k := range 10 {
			var stmts []store.Statement
			for i := range 1000 {
				stmts = append(stmts, store.Statement{SQL: `INSERT INTO pages (id, title) VALUES (?, 'x')`, Args: []any{fmt.Sprintf("p%d-%d", k, i)}})
			}
			if _, _, err := s.Exec(ctx, stmts); err != nil {
				b.Fatal(err)
			}
		}
		if _, _, err := s.Exec(ctx, []store.Statement{{SQL: `DELETE FROM pages`}}); err != nil {
			b.Fatal(err)
		}
		cut := cutOf(b, s)
		b.StartTimer()
		res, err := s.CollectTombstones(ctx, cut)
		if err != nil || res.Collected != 10000 {
			b.Fatalf("%+v, %v", res, err)
		}
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
}

// TestStore_FloorsTravelWithTheState: a node that bootstraps from a
// snapshot after a collection has neither the tombstone nor a floor of its
// own; it learns the collector's floor from the replicated floors, so its
// insert of the collected key still outranks a node that keeps the
// tombstone.
func TestStore_FloorsTravelWithTheState(t *testing.T) {
	ctx := context.Background()
	ring := keyring("EDGE01", "MASTER01", "EDGE02")
	open := func(name, code string) *store.Store {
		return testutil.OpenStore(t, "", store.Options{Identity: testutil.Identity(name, code), Keys: testKeys{name, ring}})
	}
	a, m, n := open("EDGE01", "43ax"), open("MASTER01", "44bx"), open("EDGE02", "45cx")
	execV(t, a, `INSERT INTO pages (id, title) VALUES ('k', 'one')`)
	execV(t, a, `DELETE FROM pages WHERE id = 'k'`)
	pullEntries(t, a, m, store.EntryFilter{}) // m keeps the tombstone
	if r := collectTombstones(t, a, cutOf(t, a)); r.Collected != 1 {
		t.Fatalf("collect: %+v", r)
	}
	if err := a.PublishFloors(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.PublishFloors(ctx); err != nil { // nothing new: no write
		t.Fatal(err)
	}
	// n bootstraps from a's state (as a snapshot does: every clock row).
	groups, through, err := a.ChangesSinceFilter(ctx, 0, store.ChangeFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Apply(ctx, "EDGE01", "snapshot", "", groups, through); err != nil {
		t.Fatal(err)
	}
	if got := count(t, n, `SELECT count(*) FROM outpost_floors WHERE tbl = 'pages' AND node = 'EDGE01' AND floor = 2`); got != 1 {
		t.Fatalf("n did not get a's floor: %v", query(t, n, `SELECT * FROM outpost_floors`))
	}
	execV(t, n, `INSERT INTO pages (id, title) VALUES ('k', 'from n')`)
	if got, want := sentinelCL(t, n, "k"), int64(3); got != want {
		t.Fatalf("n's insert took cl %d, want %d", got, want)
	}
	pullEntries(t, n, m, store.EntryFilter{})
	if got := query(t, m, `SELECT title FROM pages WHERE id = 'k'`); len(got) != 1 || got[0][0] != "from n" {
		t.Fatalf("m after n's insert: %v", got)
	}
}
