package store_test

import (
	"context"
	"database/sql"
	"errors"
	"math"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/hlc"
	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/store"
)

func change(table string, pk any, col string, val any, cl int64, ts hlc.Timestamp, origin string) outpost.Change {
	return outpost.Change{Table: table, PK: []any{pk}, Col: col, Val: val, CL: cl, HLC: uint64(ts), Origin: origin}
}

// gateFunc is a fake admission gate.
type gateFunc func(sender string, ch *outpost.Change) outpost.Admission

func (f gateFunc) Admit(sender string, ch *outpost.Change) outpost.Admission { return f(sender, ch) }

func heldCount(t *testing.T, s *store.Store) map[string]int64 {
	t.Helper()
	h, err := s.Held(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func applyOK(t *testing.T, s *store.Store, peer string, through int64, groups ...outpost.Group) store.ApplyResult {
	t.Helper()
	res, err := s.Apply(context.Background(), peer, store.CursorPull, "1", groups, through)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if c, _, _ := s.Cursor(context.Background(), peer, store.CursorPull); c != through || res.Through != through {
		t.Fatalf("cursor = %d (result %d), want %d", c, res.Through, through)
	}
	return res
}

// TestStore_ApplyDriftHeld: a group too far ahead of the receiver's clock is
// held whole (readers never see half of it) while the groups around it
// apply and the cursor moves on; the store applies it by itself once its
// clock has caught up.
func TestStore_ApplyDriftHeld(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().Add(-time.Minute).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	s := testutil.OpenStore(t, "", store.Options{Now: clock})
	ok := hlc.FromParts(clock().UnixMilli(), 0)
	ahead := hlc.FromParts(clock().Add(10*time.Second).UnixMilli(), 0)
	res := applyOK(t, s, "PEER", 3,
		outpost.Group{DBV: 1, Changes: []outpost.Change{change("pages", "a", "", nil, 1, ok, "PEER/1"), change("pages", "a", "title", "on time", 1, ok, "PEER/1")}},
		outpost.Group{DBV: 2, Changes: []outpost.Change{change("pages", "b", "", nil, 1, ok, "PEER/1"), change("pages", "b", "title", "from the future", 1, ahead, "PEER/1")}},
		outpost.Group{DBV: 3, Changes: []outpost.Change{change("pages", "c", "", nil, 1, ok, "PEER/1")}},
	)
	if res.Applied != 3 || res.Held != 2 || res.Refused != 0 {
		t.Fatalf("result %+v, want 3 applied, 2 held", res)
	}
	if got := query(t, s, `SELECT id FROM pages ORDER BY id`); len(got) != 2 || got[0][0] != "a" || got[1][0] != "c" {
		t.Fatalf("rows after the held-back apply: %v (want a and c, not half of b)", got)
	}
	if h := heldCount(t, s); h[store.RuleDrift] != 2 {
		t.Fatalf("held = %v", h)
	}
	now.Add(int64(11 * time.Second))
	deadline := time.Now().Add(10 * time.Second)
	for len(query(t, s, `SELECT title FROM pages WHERE id = 'b'`)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the held group was never applied after the clock caught up; held %v", heldCount(t, s))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := query(t, s, `SELECT title FROM pages WHERE id = 'b'`); got[0][0] != "from the future" {
		t.Fatalf("b = %v", got)
	}
	if h := heldCount(t, s); len(h) != 0 {
		t.Fatalf("still held: %v", h)
	}
	// The local clock moved past the applied change.
	execV(t, s, `UPDATE pages SET title = 'local' WHERE id = 'b'`)
	if got := query(t, s, `SELECT hlc > ? FROM outpost_clock__pages WHERE pk0 = 'b' AND col = 'title'`, int64(ahead)); got[0][0] != int64(1) {
		t.Fatal("local write after applying a change did not get a later HLC")
	}
}

// TestStore_ApplyBounds: a causal length over MaxCL or a timestamp beyond
// the hold horizon is refused on receipt; a later local delete of the same
// key still stores an integer causal length and the outbound stream works.
func TestStore_ApplyBounds(t *testing.T) {
	s := testutil.OpenStore(t, "", store.Options{MaxAhead: time.Hour})
	ts := hlc.FromParts(time.Now().UnixMilli(), 0)
	far := hlc.FromParts(time.Now().Add(2*time.Hour).UnixMilli(), 0)
	res := applyOK(t, s, "PEER", 1, outpost.Group{DBV: 1, Changes: []outpost.Change{
		change("pages", "x", "", nil, math.MaxInt64, ts, "PEER/1"),
		change("pages", "y", "", nil, store.MaxCL+1, ts, "PEER/1"),
		change("pages", "z", "", nil, 1, far, "PEER/1"),
		change("pages", "ok", "", nil, store.MaxCL, ts, "PEER/1"),
	}})
	if res.Refused != 3 || res.Applied != 1 || res.Held != 0 {
		t.Fatalf("result %+v, want 3 refused, 1 applied", res)
	}
	rules := map[string]int64{}
	for _, r := range s.Refusals() {
		if r.Sender != "PEER" {
			t.Errorf("refusal counted against %q, want PEER", r.Sender)
		}
		rules[r.Rule] += r.Count
	}
	if rules[store.RuleCLRange] != 2 || rules[store.RuleHLCRange] != 1 {
		t.Fatalf("refusals by rule = %v", rules)
	}
	execV(t, s, `INSERT INTO pages (id) VALUES ('x')`)
	execV(t, s, `DELETE FROM pages WHERE id = 'x'`)
	if got := query(t, s, `SELECT typeof(cl) FROM outpost_clock__pages WHERE pk0 = 'x' AND col = ''`); len(got) != 1 || got[0][0] != "integer" {
		t.Fatalf("causal length stored as %v", got)
	}
	if _, _, err := s.ChangesSince(context.Background(), 0, "", 1000); err != nil {
		t.Fatalf("outbound stream after the refused change: %v", err)
	}
}

// TestStore_ApplyGate: the gate judges every change before anything else
// (an unknown table does not bypass it); what it refuses is never applied
// or kept; what it holds waits durably and applies on Recheck once the gate
// admits it.
func TestStore_ApplyGate(t *testing.T) {
	var trusted atomic.Bool
	gate := gateFunc(func(sender string, ch *outpost.Change) outpost.Admission {
		name := outpost.OriginName(ch.Origin)
		switch {
		case name != sender:
			return outpost.Admission{Verdict: outpost.Refuse, Rule: "origin_not_sender", Reason: "test"}
		case name == "NEW" && !trusted.Load():
			return outpost.Admission{Verdict: outpost.Hold, Rule: "origin_unknown", Reason: "test"}
		}
		return outpost.Admitted
	})
	s := testutil.OpenStore(t, "", store.Options{Gate: gate})
	ts := hlc.FromParts(time.Now().UnixMilli(), 0)
	res := applyOK(t, s, "EVIL", 2, outpost.Group{DBV: 2, Changes: []outpost.Change{
		change("pages", "x", "", nil, 1, ts, "MASTER01/1"), change("pages", "x", "title", "forged", 1, ts, "MASTER01/1"),
		change("nosuch", "x", "", nil, 1, ts, "MASTER01/1"), // unknown table: judged first, refused, not kept
		change("pages", "e", "", nil, 1, ts, "EVIL/1"),
	}})
	if res.Refused != 3 || res.Applied != 1 || res.Held != 0 {
		t.Fatalf("result %+v, want 3 refused, 1 applied", res)
	}
	if h := heldCount(t, s); len(h) != 0 {
		t.Fatalf("a refused change was kept: %v", h)
	}
	res = applyOK(t, s, "NEW", 1, outpost.Group{DBV: 1, Changes: []outpost.Change{
		change("pages", "n", "", nil, 1, ts, "NEW/1"), change("pages", "n", "title", "early", 1, ts, "NEW/1"),
	}})
	if res.Held != 2 || res.Applied != 0 {
		t.Fatalf("result %+v, want 2 held", res)
	}
	if got := query(t, s, `SELECT id FROM pages WHERE id = 'n'`); len(got) != 0 {
		t.Fatal("a held change was applied")
	}
	if r, err := s.Recheck(context.Background(), "origin_unknown"); err != nil || r.Held != 2 || r.Applied != 0 {
		t.Fatalf("recheck before the trust list names NEW: %+v %v", r, err)
	}
	trusted.Store(true)
	if r, err := s.Recheck(context.Background(), "origin_unknown"); err != nil || r.Applied != 2 || r.Held != 0 {
		t.Fatalf("recheck after the trust list names NEW: %+v %v", r, err)
	}
	if got := query(t, s, `SELECT title FROM pages WHERE id = 'n'`); len(got) != 1 || got[0][0] != "early" {
		t.Fatalf("n = %v", got)
	}
	if h := heldCount(t, s); len(h) != 0 {
		t.Fatalf("still held: %v", h)
	}
}

// TestStore_ApplySchemaHeld: changes for a table or column this schema does
// not know are held (after the gate admitted them) and apply when a restart
// brings the schema; they are judged again then, so a gate that refuses
// them by that time keeps them out.
func TestStore_ApplySchemaHeld(t *testing.T) {
	dir := t.TempDir()
	v1 := `CREATE TABLE pages (id TEXT PRIMARY KEY NOT NULL, title TEXT);`
	v2 := `CREATE TABLE pages (id TEXT PRIMARY KEY NOT NULL, title TEXT, lang TEXT); CREATE TABLE comments (id TEXT PRIMARY KEY NOT NULL, body BLOB); CREATE TABLE secrets (id TEXT PRIMARY KEY NOT NULL, v TEXT);`
	s := testutil.OpenStore(t, dir, store.Options{Schema: v1})
	ts := hlc.FromParts(time.Now().UnixMilli(), 0)
	res := applyOK(t, s, "PEER", 5, outpost.Group{DBV: 5, Changes: []outpost.Change{
		change("pages", "p1", "", nil, 1, ts, "PEER/1"),
		change("pages", "p1", "title", "hello", 1, ts, "PEER/1"),
		change("pages", "p1", "lang", "fr", 1, ts, "PEER/1"),
		change("comments", "c1", "", nil, 1, ts, "PEER/1"),
		change("comments", "c1", "body", []byte{0, 1}, 1, ts, "PEER/1"),
		change("secrets", "s1", "", nil, 1, ts, "PEER/1"),
	}})
	if res.Held != 4 || res.Applied != 2 {
		t.Fatalf("result %+v, want 2 applied, 4 held", res)
	}
	if h := heldCount(t, s); h[store.RuleSchema] != 4 {
		t.Fatalf("held = %v", h)
	}
	s.Close()
	noSecrets := gateFunc(func(_ string, ch *outpost.Change) outpost.Admission {
		if ch.Table == "secrets" {
			return outpost.Admission{Verdict: outpost.Refuse, Rule: "table_permission", Reason: "test"}
		}
		return outpost.Admitted
	})
	s = testutil.OpenStore(t, dir, store.Options{Schema: v2, Gate: noSecrets})
	if got := query(t, s, `SELECT title, lang FROM pages`); len(got) != 1 || got[0][1] != "fr" {
		t.Fatalf("held column not applied after upgrade: %v", got)
	}
	if got := query(t, s, `SELECT body FROM comments`); len(got) != 1 || string(got[0][0].([]byte)) != "\x00\x01" {
		t.Fatalf("held table not applied after upgrade: %v", got)
	}
	if got := query(t, s, `SELECT id FROM secrets`); len(got) != 0 {
		t.Fatalf("a held change the gate now refuses was applied: %v", got)
	}
	if h := heldCount(t, s); len(h) != 0 {
		t.Fatalf("held after upgrade = %v", h)
	}
}

// TestStore_ApplyWrongKey: a change whose key has the wrong number of values
// is refused, not applied, and does not stall the batch it came in.
func TestStore_ApplyWrongKey(t *testing.T) {
	s := testutil.OpenStore(t, "", store.Options{})
	ts := hlc.FromParts(time.Now().UnixMilli(), 0)
	bad := change("pages", "x", "", nil, 1, ts, "PEER/1")
	bad.PK = []any{"x", "extra"}
	res := applyOK(t, s, "PEER", 1, outpost.Group{DBV: 1, Changes: []outpost.Change{bad, change("pages", "ok", "", nil, 1, ts, "PEER/1")}})
	if res.Refused != 1 || res.Applied != 1 {
		t.Fatalf("apply: %+v; want 1 refused, 1 applied", res)
	}
}

// TestStore_ApplyConstraintHeld: a remote value the receiver's constraints
// reject (CHECK, NOT NULL) is held, not lost and not half-applied; it leaves
// the row as it was and does not stall the rest of the batch. A newer
// version of the column supersedes it.
func TestStore_ApplyConstraintHeld(t *testing.T) {
	s := testutil.OpenStore(t, "", store.Options{Schema: `CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, n INTEGER NOT NULL DEFAULT 1 CHECK (n > 0), note TEXT);`})
	execV(t, s, `INSERT INTO t (id, n, note) VALUES ('a', 5, 'kept')`)
	ts := hlc.FromParts(time.Now().UnixMilli()+1, 0)
	res := applyOK(t, s, "PEER", 1, outpost.Group{DBV: 1, Changes: []outpost.Change{
		change("t", "a", "n", int64(-1), 1, ts, "PEER/1"), // CHECK fails
		change("t", "a", "n", nil, 1, ts, "PEER/1"),       // NOT NULL fails
		change("t", "b", "", nil, 1, ts, "PEER/1"),        // a new row ...
		change("t", "b", "n", int64(-7), 1, ts, "PEER/1"), // ... whose value fails: the row stays as the sentinel made it
		change("t", "a", "note", "updated", 1, ts, "PEER/1"),
	}})
	if res.Held != 3 || res.Applied != 2 || res.Refused != 0 {
		t.Fatalf("result %+v, want 3 held, 2 applied", res)
	}
	got := query(t, s, `SELECT id, n, note FROM t ORDER BY id`)
	if len(got) != 2 || got[0][1] != int64(5) || got[0][2] != "updated" || got[1][1] != int64(1) {
		t.Fatalf("rows = %v, want a(5, updated) and b(1 = default)", got)
	}
	if h := heldCount(t, s); h[store.RuleConstraint] != 3 {
		t.Fatalf("held = %v", h)
	}
	// Judged again, they are still rejected and stay held.
	if r, err := s.Recheck(context.Background(), store.RuleConstraint); err != nil || r.Held != 3 {
		t.Fatalf("recheck: %+v %v", r, err)
	}
	// A newer local value wins; the held ones are then ignored.
	execV(t, s, `UPDATE t SET n = 9 WHERE id IN ('a', 'b')`)
	if r, err := s.Recheck(context.Background()); err != nil || r.Held != 0 || r.Ignored != 3 {
		t.Fatalf("recheck after newer writes: %+v %v", r, err)
	}
}

// TestStore_HeldBound: holding more than the bound fails the whole Apply:
// nothing is applied, the cursor does not move, the sender keeps the
// changes. One sender cannot use up the whole bound.
func TestStore_HeldBound(t *testing.T) {
	s := testutil.OpenStore(t, "", store.Options{Schema: `CREATE TABLE pages (id TEXT PRIMARY KEY NOT NULL);`, MaxHeld: 5, MaxHeldPerSender: 3})
	ts := hlc.FromParts(time.Now().UnixMilli(), 0)
	mk := func(origin string, keys ...string) outpost.Group {
		g := outpost.Group{DBV: 1}
		for _, k := range keys {
			g.Changes = append(g.Changes, change("pages", k, "", nil, 1, ts, origin), change("unknown", k, "", nil, 1, ts, origin))
		}
		return g
	}
	res := applyOK(t, s, "A", 1, mk("A/1", "a1", "a2", "a3"))
	if res.Held != 3 {
		t.Fatalf("result %+v", res)
	}
	_, err := s.Apply(context.Background(), "A", store.CursorPull, "1", []outpost.Group{mk("A/1", "a4")}, 2)
	if !errors.Is(err, store.ErrHeldFull) {
		t.Fatalf("apply past the per-sender bound: %v, want ErrHeldFull", err)
	}
	if c, _, _ := s.Cursor(context.Background(), "A", store.CursorPull); c != 1 {
		t.Fatalf("cursor moved to %d after a refused apply", c)
	}
	if got := query(t, s, `SELECT id FROM pages WHERE id = 'a4'`); len(got) != 0 {
		t.Fatal("part of a refused apply was committed")
	}
	applyOK(t, s, "B", 1, mk("B/1", "b1", "b2"))
	if _, err := s.Apply(context.Background(), "C", store.CursorPull, "1", []outpost.Group{mk("C/1", "c1")}, 1); !errors.Is(err, store.ErrHeldFull) {
		t.Fatalf("apply past the total bound: %v, want ErrHeldFull", err)
	}
}

// TestStore_LegacyPendingMigrated: changes an older version kept in
// outpost_pending (with its own CBOR codec, text that is not valid UTF-8
// included) move to outpost_held at Open and apply when the schema has
// their column; one bad row never stops the node.
func TestStore_LegacyPendingMigrated(t *testing.T) {
	dir := t.TempDir()
	s := testutil.OpenStore(t, dir, store.Options{Schema: `CREATE TABLE pages (id TEXT PRIMARY KEY NOT NULL);`})
	s.Close()
	ts := hlc.FromParts(time.Now().UnixMilli(), 0)
	db, err := sql.Open("sqlite", filepath.Join(dir, store.DBFile)+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE outpost_pending (id INTEGER PRIMARY KEY, tbl TEXT NOT NULL, change BLOB NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []outpost.Change{
		change("pages", "p", "", nil, 1, ts, "PEER/1"),
		change("pages", "p", "title", "caf\xe9", 1, ts, "PEER/1"), // Latin-1, not UTF-8
	} {
		b, err := cbor.Marshal(ch) // the old codec
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(`INSERT INTO outpost_pending (tbl, change) VALUES (?, ?)`, ch.Table, b); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(`INSERT INTO outpost_pending (tbl, change) VALUES ('pages', x'ff00')`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s = testutil.OpenStore(t, dir, store.Options{Schema: `CREATE TABLE pages (id TEXT PRIMARY KEY NOT NULL, title TEXT);`})
	if got := query(t, s, `SELECT title FROM pages WHERE id = 'p'`); len(got) != 1 || got[0][0] != "caf\xe9" {
		t.Fatalf("migrated change not applied: %v", got)
	}
	if got := query(t, s, `SELECT count(*) FROM sqlite_schema WHERE name = 'outpost_pending'`); got[0][0] != int64(0) {
		t.Fatal("outpost_pending still there")
	}
	if h := heldCount(t, s); len(h) != 0 {
		t.Fatalf("held = %v", h)
	}
}

// TestStore_ApplyOwnSlugs: a rebuilt node learns the slugs it issued in an
// earlier life as they come back, so outpost_slug() never issues one twice
// (it used to fail with a UNIQUE error until a restart).
func TestStore_ApplyOwnSlugs(t *testing.T) {
	s := testutil.OpenStore(t, "", store.Options{})
	ts := hlc.FromParts(time.Now().UnixMilli(), 0)
	old := "EDGE01/oldlife"
	applyOK(t, s, "NODE01", 1, outpost.Group{DBV: 1, Changes: []outpost.Change{
		change("outpost_slugs", "hello-43ax", "", nil, 1, ts, old),
		change("outpost_slugs", "hello-43ax", "node", "EDGE01", 1, ts, old),
		change("outpost_slugs", "hello-43ax", "title", "Hello", 1, ts, old),
	}})
	s.SetSlugsReady(true)
	res, _, err := s.Exec(context.Background(), []store.Statement{{SQL: `INSERT INTO pages (id, slug) VALUES ('p', outpost_slug('Hello')) RETURNING slug`}})
	if err != nil {
		t.Fatalf("outpost_slug after catching up: %v", err)
	}
	if slug := res[0].Rows[0][0]; slug == "hello-43ax" || !strings.HasPrefix(slug.(string), "hello-43ax") {
		t.Fatalf("issued %v again", slug)
	}
}

// TestStore_ApplyColumnCase: SQLite column names are case-insensitive, so a
// change naming a column in another case applies to that column (it used to
// be held under "schema" forever).
func TestStore_ApplyColumnCase(t *testing.T) {
	s := testutil.OpenStore(t, "", store.Options{})
	ts := hlc.FromParts(time.Now().UnixMilli(), 0)
	res := applyOK(t, s, "PEER", 1, outpost.Group{DBV: 1, Changes: []outpost.Change{
		change("PAGES", "p", "", nil, 1, ts, "PEER/1"), change("pages", "p", "TITLE", "upper", 1, ts, "PEER/1"),
	}})
	if res.Applied != 2 || res.Held != 0 {
		t.Fatalf("result %+v", res)
	}
	if got := query(t, s, `SELECT title FROM pages WHERE id = 'p'`); len(got) != 1 || got[0][0] != "upper" {
		t.Fatalf("rows = %v", got)
	}
}

// TestStore_RefusedDoesNotMoveClock: a change that is refused or held does
// not move this node's clock; only merged changes do.
func TestStore_RefusedDoesNotMoveClock(t *testing.T) {
	gate := gateFunc(func(_ string, ch *outpost.Change) outpost.Admission {
		return outpost.Admission{Verdict: outpost.Refuse, Rule: "test", Reason: "test"}
	})
	s := testutil.OpenStore(t, "", store.Options{Gate: gate, MaxDrift: time.Minute})
	before := s.Clock().Last()
	ahead := hlc.FromParts(time.Now().Add(30*time.Second).UnixMilli(), 0)
	applyOK(t, s, "PEER", 1, outpost.Group{DBV: 1, Changes: []outpost.Change{change("pages", "p", "", nil, 1, ahead, "PEER/1")}})
	if got := s.Clock().Last(); got >= ahead {
		t.Fatalf("clock moved to %v (was %v) by a refused change", got, before)
	}
}
