package store_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/admission"
	"github.com/outpost-edge/outpost/hlc"
	"github.com/outpost-edge/outpost/identity"
	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/merge"
	"github.com/outpost-edge/outpost/policy"
	"github.com/outpost-edge/outpost/replication"
	"github.com/outpost-edge/outpost/store"
	"pgregory.net/rapid"
)

// convSchema is the table the convergence test writes: a text key and
// nullable columns of no declared type, so integers, reals, text, blobs and
// NULL all keep their SQLite type; c has a default, so a row created by a
// change that carries only one column shows the default in the others.
const convSchema = `CREATE TABLE t (
	k TEXT PRIMARY KEY NOT NULL,
	a,
	b,
	c DEFAULT 'dflt'
);
-- outpost: table mo writable by master
CREATE TABLE mo (k TEXT PRIMARY KEY NOT NULL, v);`

var (
	convCols     = []string{"a", "b", "c"}
	convDefaults = map[string]any{"a": nil, "b": nil, "c": "dflt"}
	// A few keys only, so concurrent writes to the same row are the rule.
	convKeys = []string{"k0", "k1", "k2", "k3"}
)

// convIdentities is the real topology: a master, a node, two edges of farm
// lhr and one of farm cdg (which may not exchange with the lhr edges).
var convIdentities = []outpost.Identity{
	{Name: "MASTER1", Location: "FRA", Role: outpost.RoleMaster, Code: "10ma"},
	{Name: "NODE1", Location: "AMS", Role: outpost.RoleNode, Code: "20nd"},
	{Name: "EDGE01", Location: "LHR", Farm: "lhr", Role: outpost.RoleEdge, Code: "43ax"},
	{Name: "EDGE02", Location: "LHR", Farm: "lhr", Role: outpost.RoleEdge, Code: "44bx"},
	{Name: "EDGE03", Location: "CDG", Farm: "cdg", Role: outpost.RoleEdge, Code: "45cx"},
}

// convHostile is the hostile peer of some histories: an edge of farm lhr on
// every trust list, so the transport lets it exchange with the master, the
// node and its farm siblings, and only admission stands in its way. It has
// no store: the test forges what it sends.
var convHostile = outpost.Identity{Name: "EDGE09", Location: "LHR", Farm: "lhr", Role: outpost.RoleEdge, Code: "49hx"}

// convDir is the trust list the stores' admission gates read: the honest
// nodes and the hostile one.
type convDir map[string]identity.Peer

func (d convDir) ByName(name string) (identity.Peer, bool) {
	p, ok := d[name]
	return p, ok
}

// convDefaultChecks is how many random histories TestConvergence_Randomized
// tries by default (each opens five stores and runs up to ~100 steps).
const convDefaultChecks = 25

// TestConvergence_Randomized is the randomized state-machine test of
// DESIGN.md section 10: five stores in the real topology take random local
// writes (upserts, updates of one column with a value of a random type,
// deletes, re-inserts of deleted keys, key changes, multi-statement
// transactions) while pulls allowed by policy.Default() move changes over
// faulty links (lost, duplicated and reordered groups), links are cut by
// partitions, clocks are skewed past the maximum drift, and nodes restart.
// Then the network heals, pulls run until nothing changes, and every node
// must hold the same data, equal to a reference model.
//
// The reference model: every fact any store holds was created by one local
// write (a remote apply copies (col, value, cl, hlc, origin) verbatim; the
// only derived fact, the sentinel version a store records when a column
// change opens a new life, carries that change's cl and version and so
// changes nothing the model compares). So right after each acknowledged
// write the test reads the group it committed (ChangesSince(dbv-1) on the
// writer, checked against the values the test wrote) and feeds it into a
// merge.Row per key. Once every node has seen every write, DESIGN.md section
// 4 says each row must be the join of all of them, which is what the model
// holds. Collecting ChangesSince(0) from the nodes at the end would not do:
// a write lost on every node would be missing from both sides.
//
// Besides, every acknowledged write must still be reflected on every node
// unless a later write superseded it by the merge rules (a higher causal
// length, or a higher version of the same column in the same life).
//
// The default run tries convDefaultChecks histories; ask for more with e.g.
//
//	go test -run TestConvergence_Randomized -rapid.checks=500 ./store/
//
// (-rapid.steps does not apply: the test draws its own number of steps).
// A failure prints the seed; rerun it with -rapid.seed=N.
func TestConvergence_Randomized(t *testing.T) { runConvergence(t, nil) }

// runConvergence checks random histories: setup (if set) adjusts each new
// world before its steps.
func runConvergence(t *testing.T, setup func(*convWorld)) {
	convSetDefaultChecks(t, convDefaultChecks)
	var total convStats
	rapid.Check(t, func(rt *rapid.T) {
		w := newConvWorld(t, rt)
		if setup != nil {
			setup(w)
		}
		defer func() { total.add(&w.stats) }()
		n := rapid.IntRange(5, 100).Draw(rt, "steps")
		for i := range n {
			w.step(rt, i)
		}
		w.heal(rt)
		if w.gc {
			w.gcAll(rt)
		}
		w.verify(rt)
	})
	t.Logf("over all checks: %+v", total)
}

// convSetDefaultChecks lowers rapid's default number of checks (100) for
// this test, unless -rapid.checks or RAPID_CHECKS asked for a number. (With
// -short rapid runs a fifth of them.)
func convSetDefaultChecks(tb testing.TB, n int) {
	tb.Helper()
	f := flag.Lookup("rapid.checks")
	if f == nil {
		return
	}
	if _, env := os.LookupEnv("RAPID_CHECKS"); env {
		return
	}
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "rapid.checks" })
	if set {
		return
	}
	old := f.Value.String()
	if err := f.Value.Set(strconv.Itoa(n)); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = f.Value.Set(old) })
}

// convStats count what the histories exercised, to show the faults happen.
type convStats struct {
	Writes, Refused, Pulls, Lossy, Dup, Reorder, Drifted, Restarts, Partitions, HealRounds int
	// The hostile peer: histories it took part in, its deliveries, the
	// changes the stores refused and held from it, its admitted writes and
	// the wire garbage decoded.
	HostileRuns, HostileSends, HostileRefused, HostileHeld, HostileWrites, WireGarbage int
	// Honest relays refused: an edge serving its sibling the changes it got
	// from others (only masters and nodes relay).
	RelaysRefused int
	Snapshots     int // protocol 2: pullers bootstrapped from a snapshot
	// Tombstone collection (protocol 2): decisions a node used, and the
	// tombstones collected by them.
	Decisions, Collected int
}

func (s *convStats) add(o *convStats) {
	s.Writes += o.Writes
	s.Refused += o.Refused
	s.Pulls += o.Pulls
	s.Lossy += o.Lossy
	s.Dup += o.Dup
	s.Reorder += o.Reorder
	s.Drifted += o.Drifted
	s.Restarts += o.Restarts
	s.Partitions += o.Partitions
	s.HealRounds += o.HealRounds
	s.HostileRuns += o.HostileRuns
	s.HostileSends += o.HostileSends
	s.HostileRefused += o.HostileRefused
	s.HostileHeld += o.HostileHeld
	s.HostileWrites += o.HostileWrites
	s.WireGarbage += o.WireGarbage
	s.RelaysRefused += o.RelaysRefused
	s.Snapshots += o.Snapshots
	s.Decisions += o.Decisions
	s.Collected += o.Collected
}

type convNode struct {
	id   outpost.Identity
	dir  string
	s    *store.Store
	skew atomic.Int64 // milliseconds this node's physical clock is off
}

// convFact is one change an acknowledged local write committed.
type convFact struct {
	step int
	node string
	ch   outpost.Change
}

type convWorld struct {
	t     *testing.T // the enclosing test: stores and their directories live in it
	nodes []*convNode
	links [][2]int        // allowed pulls: links[i][0] pulls from links[i][1]
	cut   map[[2]int]bool // links cut by the current partition (both directions)
	nowMS atomic.Int64    // the shared physical clock, Unix milliseconds
	ref   map[string]*merge.Row
	facts []convFact
	stats convStats

	dir   convDir
	perms *policy.Permissions
	h     *convHostileState // nil: an honest history
	// proto2 moves changes as signed log entries (convergence2_test.go)
	// instead of protocol 1 groups.
	proto2 bool
	// gc collects tombstones by reports and hub decisions
	// (convergence2_test.go): reports by node name, decisions a node has
	// been given and not used yet, and the cut each node used.
	gc      bool
	reports map[string]*replication.Report
	pending map[string][]*replication.Decision
	cuts    map[string]map[string]store.Point
}

func newConvWorld(t *testing.T, rt *rapid.T) *convWorld {
	w := &convWorld{t: t, cut: map[[2]int]bool{}, ref: map[string]*merge.Row{}, dir: convDir{}}
	perms, err := policy.ParsePermissions(convSchema)
	if err != nil {
		rt.Fatal(err)
	}
	w.perms = perms
	for _, id := range append(slices.Clone(convIdentities), convHostile) {
		w.dir[id.Name] = identity.Peer{Identity: id}
	}
	// A physical clock that stands still unless the test moves it, so
	// hybrid timestamps of different nodes tie often.
	w.nowMS.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli())
	for _, id := range convIdentities {
		n := &convNode{id: id, dir: t.TempDir()}
		w.nodes = append(w.nodes, n)
		w.open(n)
	}
	rt.Cleanup(func() {
		for _, n := range w.nodes {
			n.s.Close()
		}
	})
	m := policy.Default()
	for i, a := range w.nodes {
		for j, b := range w.nodes {
			if i != j && m.Check(policy.PartyOf(a.id), policy.PartyOf(b.id), policy.Pull).Allowed {
				w.links = append(w.links, [2]int{i, j})
			}
		}
	}
	w.checkTopology(rt)
	if rapid.IntRange(0, 2).Draw(rt, "hostile") > 0 {
		w.h = newConvHostile(w)
		w.stats.HostileRuns++
	}
	return w
}

func (w *convWorld) open(n *convNode) {
	n.s = testutil.OpenStore(w.t, n.dir, store.Options{
		Identity: n.id,
		Schema:   convSchema,
		Now:      func() time.Time { return time.UnixMilli(w.nowMS.Load() + n.skew.Load()) },
		Gate: admission.New(admission.Config{Self: n.id, Perms: w.perms,
			Trust: func() admission.Directory { return w.dir }}),
		Keys: testKeys{n.id.Name, convRing},
	})
}

// checkTopology makes sure the policy gives the topology the test means:
// the lhr and cdg edges never exchange directly, and yet every node's
// changes can reach every other node.
func (w *convWorld) checkTopology(tb rapid.TB) {
	tb.Helper()
	allowed := map[[2]string]bool{}
	for _, l := range w.links {
		allowed[[2]string{w.nodes[l[0]].id.Name, w.nodes[l[1]].id.Name}] = true
	}
	for _, p := range [][2]string{{"EDGE01", "EDGE03"}, {"EDGE03", "EDGE01"}, {"EDGE02", "EDGE03"}, {"EDGE03", "EDGE02"}} {
		if allowed[p] {
			tb.Fatalf("policy allows %s to pull from %s (other farm)", p[0], p[1])
		}
	}
	for _, p := range [][2]string{{"EDGE01", "EDGE02"}, {"MASTER1", "EDGE03"}, {"EDGE03", "NODE1"}} {
		if !allowed[p] {
			tb.Fatalf("policy refuses %s pulling from %s", p[0], p[1])
		}
	}
	for i := range w.nodes {
		reach := map[int]bool{i: true}
		for grew := true; grew; {
			grew = false
			for _, l := range w.links { // data flows from target l[1] to initiator l[0]
				if reach[l[1]] && !reach[l[0]] {
					reach[l[0]], grew = true, true
				}
			}
		}
		if len(reach) != len(w.nodes) {
			tb.Fatalf("changes written at %s cannot reach every node: %v", w.nodes[i].id.Name, reach)
		}
	}
}

// step draws and runs one action; writes and pulls are the most frequent.
func (w *convWorld) step(rt *rapid.T, i int) {
	actions := []string{
		"write", "write", "write", "write", "write", "txn",
		"pull", "pull", "pull", "pull", "pull", "pull",
		"partition", "reconnect", "restart", "tick", "skew",
	}
	if w.h != nil {
		actions = append(actions, "hostile", "hostile", "hostile", "wire")
	}
	if w.proto2 {
		actions = append(actions, "collect", "forge")
	}
	if w.gc {
		actions = append(actions, "report", "report", "report", "decide", "decide", "decide", "use")
	}
	switch a := rapid.SampledFrom(actions).Draw(rt, fmt.Sprintf("action%d", i)); a {
	case "write":
		w.write(rt, i, rapid.IntRange(0, len(w.nodes)-1).Draw(rt, "node"), 1)
	case "txn":
		w.write(rt, i, rapid.IntRange(0, len(w.nodes)-1).Draw(rt, "node"), rapid.IntRange(2, 3).Draw(rt, "stmts"))
	case "pull":
		var open [][2]int
		for _, l := range w.links {
			if !w.cut[l] {
				open = append(open, l)
			}
		}
		if len(open) == 0 {
			return
		}
		l := rapid.SampledFrom(open).Draw(rt, "link")
		mode := rapid.SampledFrom([]string{"clean", "clean", "lossy", "dup", "reorder"}).Draw(rt, "mode")
		if w.proto2 {
			w.pull2(rt, w.nodes[l[0]], w.nodes[l[1]], mode)
			return
		}
		w.pull(rt, w.nodes[l[0]], w.nodes[l[1]], mode, rapid.SampledFrom([]int{1, 2, 5, 1000}).Draw(rt, "max"))
	case "partition":
		// Cut every link between an island and the rest.
		island := rapid.SliceOfNDistinct(rapid.IntRange(0, len(w.nodes)-1), 1, len(w.nodes)-1, rapid.ID[int]).Draw(rt, "island")
		w.cut = map[[2]int]bool{}
		for _, l := range w.links {
			if slices.Contains(island, l[0]) != slices.Contains(island, l[1]) {
				w.cut[l] = true
			}
		}
		w.stats.Partitions++
	case "reconnect":
		w.cut = map[[2]int]bool{}
	case "restart":
		w.restart(rt, w.nodes[rapid.IntRange(0, len(w.nodes)-1).Draw(rt, "node")])
	case "tick":
		w.nowMS.Add(int64(rapid.IntRange(1, 300).Draw(rt, "ms")))
	case "skew":
		// Skews beyond the maximum drift (500 ms) make receivers hold
		// groups back until the clocks agree again.
		n := w.nodes[rapid.IntRange(0, len(w.nodes)-1).Draw(rt, "node")]
		n.skew.Store(int64(rapid.SampledFrom([]int{0, 0, 100, 700, -700}).Draw(rt, "skew")))
	case "hostile":
		w.hostileSend(rt, i)
	case "wire":
		w.wireGarbage(rt)
	case "collect":
		w.collect(rt, w.nodes[rapid.IntRange(0, len(w.nodes)-1).Draw(rt, "node")])
	case "forge":
		w.forge(rt)
	case "report":
		w.report(rt, w.nodes[rapid.IntRange(0, len(w.nodes)-1).Draw(rt, "node")])
	case "decide":
		w.decide(rt, rapid.IntRange(0, len(w.nodes)-1).Draw(rt, "hub"), rapid.IntRange(0, len(w.nodes)-1).Draw(rt, "to"))
	case "use":
		w.useDecisions(rt, w.nodes[rapid.IntRange(0, len(w.nodes)-1).Draw(rt, "node")])
	default:
		rt.Fatalf("unknown action %q", a)
	}
}

// convValue draws a value of a random SQLite type.
func convValue() *rapid.Generator[any] {
	return rapid.OneOf(
		rapid.Just[any](nil),
		rapid.Map(rapid.Int64Range(-3, 3), func(i int64) any { return i }),
		rapid.Map(rapid.SampledFrom([]int64{1 << 62, -1 << 63}), func(i int64) any { return i }),
		rapid.Map(rapid.IntRange(-12, 12), func(i int) any { return float64(i) / 4 }), // includes reals with no fraction
		rapid.Map(rapid.SampledFrom([]float64{1e300, -2.5e-300, 0.1}), func(f float64) any { return f }),
		rapid.Map(rapid.SampledFrom([]string{"", "x", "3", "héllo"}), func(s string) any { return s }),
		rapid.Map(rapid.SampledFrom(convBlobs()), func(s string) any { return []byte(s) }),
	)
}

func convBlobs() []string {
	return []string{"", "\x00", "\xff\x00x", "3"}
}

// convOp is one statement of a local write and what it should leave in the
// row it writes, for checking the changes it captured.
type convOp struct {
	kind string
	key  string
	st   store.Statement
	want map[string]any // column values the write sets (nil: not checked)
	also string         // a second key the statement writes (a key change's new key)
}

func (w *convWorld) drawOp(rt *rapid.T, n *convNode, key string) convOp {
	kind := rapid.SampledFrom([]string{"upsert", "upsert", "update", "update", "update", "delete", "insert", "upsert-a", "rekey"}).Draw(rt, "op")
	switch kind {
	case "upsert":
		a, b := convValue().Draw(rt, "a"), convValue().Draw(rt, "b")
		if rapid.Bool().Draw(rt, "omitC") {
			return convOp{kind, key, store.Statement{SQL: `INSERT OR REPLACE INTO t (k, a, b) VALUES (?, ?, ?)`, Args: []any{key, a, b}},
				map[string]any{"a": a, "b": b, "c": convDefaults["c"]}, ""}
		}
		c := convValue().Draw(rt, "c")
		return convOp{kind, key, store.Statement{SQL: `INSERT OR REPLACE INTO t (k, a, b, c) VALUES (?, ?, ?, ?)`, Args: []any{key, a, b, c}},
			map[string]any{"a": a, "b": b, "c": c}, ""}
	case "update":
		col := rapid.SampledFrom(convCols).Draw(rt, "col")
		v := convValue().Draw(rt, "v")
		return convOp{kind, key, store.Statement{SQL: `UPDATE t SET ` + col + ` = ? WHERE k = ?`, Args: []any{v, key}}, map[string]any{col: v}, ""}
	case "delete":
		return convOp{kind, key, store.Statement{SQL: `DELETE FROM t WHERE k = ?`, Args: []any{key}}, nil, ""}
	case "insert":
		// Prefer re-inserting a key this node has seen deleted.
		if dead := w.tombstones(rt, n); len(dead) > 0 {
			key = rapid.SampledFrom(dead).Draw(rt, "dead")
		}
		a := convValue().Draw(rt, "a")
		return convOp{kind, key, store.Statement{SQL: `INSERT INTO t (k, a) VALUES (?, ?)`, Args: []any{key, a}},
			map[string]any{"a": a, "b": convDefaults["b"], "c": convDefaults["c"]}, ""}
	case "upsert-a":
		a := convValue().Draw(rt, "a")
		return convOp{kind, key, store.Statement{SQL: `INSERT INTO t (k, a) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET a = excluded.a`, Args: []any{key, a}},
			map[string]any{"a": a}, ""}
	case "rekey":
		to := rapid.SampledFrom(convKeys).Draw(rt, "to")
		return convOp{kind, key, store.Statement{SQL: `UPDATE t SET k = ? WHERE k = ?`, Args: []any{to, key}}, nil, to}
	}
	rt.Fatalf("unknown op %q", kind)
	return convOp{}
}

// tombstones returns the keys n holds as deleted.
func (w *convWorld) tombstones(tb rapid.TB, n *convNode) []string {
	tb.Helper()
	var out []string
	for _, r := range convQuery(tb, n.s, `SELECT pk0 FROM outpost_clock__t WHERE col = '' AND cl % 2 = 0 ORDER BY pk0`) {
		out = append(out, r[0].(string))
	}
	return out
}

// write runs m statements on distinct keys as one local transaction at node
// ni and, when it is acknowledged, records the changes it committed.
// (Distinct keys, so what each statement leaves in its row is known.)
func (w *convWorld) write(rt *rapid.T, step, ni, m int) {
	n := w.nodes[ni]
	keys := rapid.Permutation(convKeys).Draw(rt, "keys")[:m]
	var ops []convOp
	var stmts []store.Statement
	touched := map[string]bool{}
	for _, k := range keys {
		op := w.drawOp(rt, n, k)
		if touched[op.key] || op.also != "" && touched[op.also] {
			continue // a re-insert or key change hit a key already written
		}
		touched[op.key] = true
		if op.also != "" {
			touched[op.also] = true
		}
		ops = append(ops, op)
		stmts = append(stmts, op.st)
	}
	ctx := context.Background()
	_, dbv, err := n.s.Exec(ctx, stmts)
	if err != nil {
		// Inserting a live key (or moving a row onto one) is the client's
		// mistake; the transaction is refused whole and nothing is acked.
		var se *store.Error
		if errors.As(err, &se) && se.Code == store.CodeConstraint {
			rt.Logf("step %d: %s refused %v: %v", step, n.id.Name, stmts, err)
			w.stats.Refused++
			return
		}
		rt.Fatalf("step %d: write at %s %v: %v", step, n.id.Name, stmts, err)
	}
	w.stats.Writes++
	groups, _, err := n.s.ChangesSince(ctx, dbv-1, "", 1<<20)
	if err != nil {
		rt.Fatal(err)
	}
	var chs []outpost.Change
	for _, g := range groups {
		if g.DBV == dbv {
			chs = g.Changes
		}
	}
	rt.Logf("step %d: %s wrote %v at dbv %d: %d changes", step, n.id.Name, stmts, dbv, len(chs))
	for _, ch := range chs {
		key, _ := ch.PK[0].(string)
		if ch.Table != "t" || ch.Origin != n.s.Origin() {
			rt.Fatalf("step %d: %s committed a change of table %q origin %q; want t, %s", step, n.id.Name, ch.Table, ch.Origin, n.s.Origin())
		}
		// A column change of a row the write set must carry the value
		// written, with its SQLite type.
		for _, op := range ops {
			if op.key != key || ch.Col == "" || op.want == nil || ch.CL%2 == 0 {
				continue
			}
			if want, ok := op.want[ch.Col]; ok && convFormat(convTypeOf(ch.Val), ch.Val) != convFormat(convTypeOf(want), want) {
				rt.Fatalf("step %d: %s %q on %s captured %s = %s, want %s", step, n.id.Name, op.st.SQL, key,
					ch.Col, convFormat(convTypeOf(ch.Val), ch.Val), convFormat(convTypeOf(want), want))
			}
		}
		w.facts = append(w.facts, convFact{step: step, node: n.id.Name, ch: ch})
		r := w.ref[key]
		if r == nil {
			r = &merge.Row{}
			w.ref[key] = r
		}
		r.Apply(ch.Col, ch.Val, ch.CL, merge.Version{HLC: ch.HLC, Origin: ch.Origin})
	}
}

// apply hands groups to dst as if pulled from src and checks the result.
func (w *convWorld) apply(rt *rapid.T, dst, src *convNode, groups []outpost.Group, through int64) store.ApplyResult {
	rt.Helper()
	res, err := dst.s.Apply(context.Background(), src.id.Name, store.CursorPull, src.s.Incarnation(), groups, through)
	if err != nil {
		rt.Fatalf("%s applying %d groups from %s through %d: %v", dst.id.Name, len(groups), src.id.Name, through, err)
	}
	// An edge relays only its own writes: what it serves of others' is
	// refused by the gate (origin_not_sender), and reaches dst through a
	// master or node instead. Nothing else may be refused.
	relayed := 0
	if !admission.New(admission.Config{}).IsRelay(src.id.Role) {
		for _, g := range groups {
			for _, ch := range g.Changes {
				if outpost.OriginName(ch.Origin) != src.id.Name {
					relayed++
				}
			}
		}
	}
	if res.Refused > relayed {
		rt.Fatalf("%s applying from %s: %d refused; want at most the %d changes %s relayed", dst.id.Name, src.id.Name, res.Refused, relayed, src.id.Name)
	}
	w.stats.RelaysRefused += res.Refused
	if res.Held != 0 {
		// Only clock drift holds changes here: the group waits in
		// outpost_held while the rest of the batch applies.
		w.stats.Drifted++
	}
	// The cursor moves to exactly the through it was given: held groups
	// are kept, not skipped.
	cur, _, err := dst.s.Cursor(context.Background(), src.id.Name, store.CursorPull)
	if err != nil {
		rt.Fatal(err)
	}
	if cur != res.Through {
		rt.Fatalf("%s's cursor for %s is %d, but Apply answered %d", dst.id.Name, src.id.Name, cur, res.Through)
	}
	if cur > through {
		rt.Fatalf("%s applying %d groups from %s through %d: the cursor moved to %d", dst.id.Name, len(groups), src.id.Name, through, cur)
	}
	return res
}

// pull moves one batch of src's changes to dst over a link that may lose,
// duplicate or reorder groups. Whatever the link does, the cursor never
// passes a group that was not applied: with a lost group it stays just
// before it, so the next pull sends it (and the later ones) again.
func (w *convWorld) pull(rt *rapid.T, dst, src *convNode, mode string, maxChanges int) {
	ctx := context.Background()
	since, inc, err := dst.s.Cursor(ctx, src.id.Name, store.CursorPull)
	if err != nil {
		rt.Fatal(err)
	}
	if inc != "" && inc != src.s.Incarnation() {
		rt.Fatalf("%s's cursor for %s belongs to incarnation %s, but %s is %s", dst.id.Name, src.id.Name, inc, src.id.Name, src.s.Incarnation())
	}
	groups, through, err := src.s.ChangesSince(ctx, since, dst.s.Origin(), maxChanges)
	if err != nil {
		rt.Fatal(err)
	}
	w.stats.Pulls++
	rt.Logf("%s pulls from %s (%s): since %d, %d groups through %d", dst.id.Name, src.id.Name, mode, since, len(groups), through)
	switch {
	case mode == "lossy" && len(groups) > 0:
		w.stats.Lossy++
		keep := rapid.SliceOfN(rapid.Bool(), len(groups), len(groups)).Draw(rt, "keep")
		var delivered []outpost.Group
		upTo := through
		for i, g := range groups {
			if keep[i] {
				delivered = append(delivered, g)
			} else if upTo == through {
				upTo = g.DBV - 1 // everything before the first lost group arrived
			}
		}
		w.apply(rt, dst, src, delivered, upTo)
	case mode == "dup":
		w.stats.Dup++
		w.apply(rt, dst, src, groups, through)
		w.apply(rt, dst, src, groups, through)
	case mode == "reorder" && len(groups) > 1:
		w.stats.Reorder++
		k := rapid.IntRange(1, len(groups)-1).Draw(rt, "split")
		// The later groups first, leaving the cursor where it was...
		w.apply(rt, dst, src, groups[k:], since)
		// ...then the earlier ones with the full cursor.
		w.apply(rt, dst, src, groups[:k], through)
	default:
		w.apply(rt, dst, src, groups, through)
	}
}

// restart closes n and opens its directory again: data, db_version,
// incarnation, cursors and the clock's high-water mark must survive.
func (w *convWorld) restart(rt *rapid.T, n *convNode) {
	ctx := context.Background()
	type snap struct {
		data, clock []string
		dbv         int64
		inc         string
		cursors     map[string]string
	}
	take := func() snap {
		s := snap{data: convData(rt, n.s), clock: convClock(rt, n.s), dbv: n.s.DBVersion(), inc: n.s.Incarnation(), cursors: map[string]string{}}
		for _, p := range w.nodes {
			dbv, inc, err := n.s.Cursor(ctx, p.id.Name, store.CursorPull)
			if err != nil {
				rt.Fatal(err)
			}
			s.cursors[p.id.Name] = fmt.Sprintf("%d@%s", dbv, inc)
		}
		return s
	}
	// Changes held for drift that this node's clock has caught up with are
	// applied by the store's drift loop on its own time, and at Open; so
	// they are applied first, to compare a store with nothing pending.
	if _, err := n.s.Recheck(ctx, store.RuleDrift); err != nil {
		rt.Fatalf("%s judging changes held for drift again: %v", n.id.Name, err)
	}
	before := take()
	// The clock may lose timestamps that nothing committed used (a refused
	// write's), but never go back below one that is stored.
	var hwm int64
	for _, r := range convQuery(rt, n.s, `SELECT coalesce(max(hlc), 0) FROM outpost_clock__t`) {
		hwm = r[0].(int64)
	}
	if err := n.s.Close(); err != nil {
		rt.Fatalf("close %s: %v", n.id.Name, err)
	}
	w.open(n)
	w.stats.Restarts++
	if w.h != nil {
		w.h.refused[n.id.Name] = map[string]int64{} // counted since Open
	}
	after := take()
	if got, want := fmt.Sprint(after), fmt.Sprint(before); got != want {
		rt.Fatalf("%s after restart:\n got %s\nwant %s", n.id.Name, got, want)
	}
	if got := n.s.Clock().Last(); int64(got) < hwm {
		rt.Fatalf("%s's clock went back over a restart: %v, below the stored version %v", n.id.Name, got, hlc.Timestamp(hwm))
	}
}

// heal ends every fault (partitions, clock skew) and pulls along every
// allowed link, in rounds, until a round changes nothing.
func (w *convWorld) heal(rt *rapid.T) {
	w.cut = map[[2]int]bool{}
	for _, n := range w.nodes {
		n.skew.Store(0)
	}
	// Physical time moves past every skewed timestamp, so no change is
	// held back for drift any more.
	w.nowMS.Add(5_000)
	for _, n := range w.nodes {
		if _, err := n.s.Recheck(context.Background(), store.RuleDrift); err != nil {
			rt.Fatalf("%s judging changes held for drift again: %v", n.id.Name, err)
		}
		held, err := n.s.Held(context.Background())
		if err != nil {
			rt.Fatal(err)
		}
		// Only the hostile peer's changes for tables and columns this
		// schema lacks stay held (until a schema that has them).
		want := map[string]int64{}
		if w.h != nil && w.h.held[n.id.Name] > 0 {
			want[store.RuleSchema] = w.h.held[n.id.Name]
		}
		if !maps.Equal(held, want) {
			rt.Fatalf("%s holds %v after the clocks healed, want %v", n.id.Name, held, want)
		}
	}
	if w.h != nil {
		w.hostileHeal(rt)
	}
	if w.proto2 {
		w.heal2(rt)
		return
	}
	const maxRounds = 8
	for round := 1; ; round++ {
		if round > maxRounds {
			rt.Fatalf("still changing after %d rounds of pulls", maxRounds)
		}
		w.stats.HealRounds++
		applied := 0
		for _, l := range w.links {
			dst, src := w.nodes[l[0]], w.nodes[l[1]]
			for {
				since, _, err := dst.s.Cursor(context.Background(), src.id.Name, store.CursorPull)
				if err != nil {
					rt.Fatal(err)
				}
				groups, through, err := src.s.ChangesSince(context.Background(), since, dst.s.Origin(), 1000)
				if err != nil {
					rt.Fatal(err)
				}
				if len(groups) == 0 && through == since {
					break
				}
				res := w.apply(rt, dst, src, groups, through)
				if res.Held != 0 {
					rt.Fatalf("%s pulling from %s after the clocks healed held %d changes", dst.id.Name, src.id.Name, res.Held)
				}
				applied += res.Applied
				if through >= src.s.DBVersion() {
					break
				}
			}
		}
		if applied == 0 {
			return
		}
	}
}

// verify checks that all nodes agree, that they equal the reference model,
// and that no acknowledged write was lost.
func (w *convWorld) verify(rt *rapid.T) {
	wantData, modelClock := w.model()
	for _, n := range w.nodes {
		wantClock := modelClock
		if got := convData(rt, n.s); !slices.Equal(got, wantData) {
			rt.Fatalf("%s data differs from the model:\n%s", n.id.Name, convDiff(got, wantData))
		}
		got := convClock(rt, n.s)
		if w.gc {
			wantClock = w.withoutCollected(rt, n, got, wantClock)
		}
		if !slices.Equal(got, wantClock) {
			rt.Fatalf("%s clock rows differ from the model:\n%s", n.id.Name, convDiff(got, wantClock))
		}
		w.checkFacts(rt, n)
		w.checkRefusals(rt, n)
	}
}

// model renders the reference rows like convData and convClock render a
// store.
func (w *convWorld) model() (data, clock []string) {
	keys := make([]string, 0, len(w.ref))
	for k := range w.ref {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		r := w.ref[k]
		clock = append(clock, fmt.Sprintf("%s cl=%d", k, r.CL))
		vals, ok := r.Visible(convCols, convDefaults)
		if !ok {
			continue
		}
		line := k
		for _, c := range convCols {
			line += " " + c + "=" + convFormat(convTypeOf(vals[c]), vals[c])
		}
		data = append(data, line)
		for _, c := range convCols {
			if cell, ok := r.Cols[c]; ok {
				clock = append(clock, fmt.Sprintf("%s.%s cl=%d v=%d/%s", k, c, r.CL, int64(cell.Version.HLC), cell.Version.Origin))
			}
		}
	}
	slices.Sort(clock)
	return data, clock
}

// checkFacts checks that every acknowledged write is still reflected at n,
// or was superseded by the merge rules: the row moved to a higher causal
// length, or the column holds a higher version in the same life.
func (w *convWorld) checkFacts(rt *rapid.T, n *convNode) {
	type ver struct {
		cl int64
		v  merge.Version
	}
	vers := map[string]ver{} // "key" for the sentinel, "key.col" for columns
	for _, r := range convQuery(rt, n.s, `SELECT pk0, col, cl, hlc, origin FROM outpost_clock__t`) {
		id := r[0].(string)
		if c := r[1].(string); c != "" {
			id += "." + c
		}
		vers[id] = ver{r[2].(int64), merge.Version{HLC: uint64(r[3].(int64)), Origin: r[4].(string)}}
	}
	vals := map[string]string{}
	for _, r := range convQuery(rt, n.s, `SELECT k, a, typeof(a), b, typeof(b), c, typeof(c) FROM t`) {
		for i, c := range convCols {
			vals[r[0].(string)+"."+c] = convFormat(r[2+2*i].(string), r[1+2*i])
		}
	}
	for _, f := range w.facts {
		key := f.ch.PK[0].(string)
		row, ok := vers[key]
		switch {
		case !ok && w.collected(rt, n, key):
			continue // deleted since, and its tombstone collected
		case !ok || row.cl < f.ch.CL:
			rt.Fatalf("%s lost %s's write of step %d: %+v; the row is at cl %d", n.id.Name, f.node, f.step, f.ch, row.cl)
		case row.cl > f.ch.CL || f.ch.Col == "" || !merge.Alive(f.ch.CL):
			continue // superseded by a later life, or a life fact that holds
		}
		col, ok := vers[key+"."+f.ch.Col]
		if !ok || merge.Compare(col.v, merge.Version{HLC: f.ch.HLC, Origin: f.ch.Origin}) < 0 {
			rt.Fatalf("%s lost %s's write of step %d: %+v; the column holds %+v", n.id.Name, f.node, f.step, f.ch, col)
		}
		if col.v.HLC == f.ch.HLC && col.v.Origin == f.ch.Origin {
			if got, want := vals[key+"."+f.ch.Col], convFormat(convTypeOf(f.ch.Val), f.ch.Val); got != want {
				rt.Fatalf("%s holds %s's write of step %d (%+v) with value %s, want %s", n.id.Name, f.node, f.step, f.ch, got, want)
			}
		}
	}
}

func convQuery(tb rapid.TB, s *store.Store, sql string, args ...any) [][]any {
	tb.Helper()
	rows, err := s.Query(context.Background(), store.Statement{SQL: sql, Args: args})
	if err != nil {
		tb.Fatalf("query %q: %v", sql, err)
	}
	return rows.Rows
}

// convData renders table t, one line per row in key order, every value with
// its SQLite type.
func convData(tb rapid.TB, s *store.Store) []string {
	tb.Helper()
	var out []string
	for _, r := range convQuery(tb, s, `SELECT k, a, typeof(a), b, typeof(b), c, typeof(c) FROM t ORDER BY k`) {
		line := r[0].(string)
		for i, c := range convCols {
			line += " " + c + "=" + convFormat(r[2+2*i].(string), r[1+2*i])
		}
		out = append(out, line)
	}
	return out
}

// convClock renders t's clock: each row's causal length and each column's
// version. Sentinel versions are left out: they are metadata that may
// differ between nodes that saw the same changes in a different order.
func convClock(tb rapid.TB, s *store.Store) []string {
	tb.Helper()
	var out []string
	for _, r := range convQuery(tb, s, `SELECT pk0, cl FROM outpost_clock__t WHERE col = '' ORDER BY pk0`) {
		out = append(out, fmt.Sprintf("%s cl=%d", r[0], r[1]))
	}
	for _, r := range convQuery(tb, s, `SELECT pk0, col, cl, hlc, origin FROM outpost_clock__t WHERE col <> '' ORDER BY pk0, col`) {
		out = append(out, fmt.Sprintf("%s.%s cl=%d v=%d/%s", r[0], r[1], r[2], r[3], r[4]))
	}
	slices.Sort(out)
	return out
}

// convTypeOf names the SQLite type a Go value is stored as.
func convTypeOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case int64:
		return "integer"
	case float64:
		return "real"
	case string:
		return "text"
	case []byte:
		return "blob"
	}
	return fmt.Sprintf("unexpected Go type %T", v)
}

// convFormat renders a value of SQLite type typ exactly: the type first (so
// 3, 3.0, '3' and x'33' differ), reals in their shortest form that parses
// back to the same bits.
func convFormat(typ string, v any) string {
	switch typ {
	case "null":
		if v != nil {
			return fmt.Sprintf("null(%T %v)", v, v)
		}
		return "null"
	case "integer":
		if i, ok := v.(int64); ok {
			return "integer:" + strconv.FormatInt(i, 10)
		}
	case "real":
		if f, ok := v.(float64); ok {
			return "real:" + strconv.FormatFloat(f, 'g', -1, 64)
		}
	case "text":
		if s, ok := v.(string); ok {
			return "text:" + strconv.Quote(s)
		}
	case "blob":
		if b, ok := v.([]byte); ok || v == nil {
			return fmt.Sprintf("blob:%x", b)
		}
	}
	return fmt.Sprintf("%s(%T %v)", typ, v, v)
}

// convDiff lists the lines only in got and only in want.
func convDiff(got, want []string) string {
	var b strings.Builder
	for _, l := range got {
		if !slices.Contains(want, l) {
			fmt.Fprintf(&b, "  got only:  %s\n", l)
		}
	}
	for _, l := range want {
		if !slices.Contains(got, l) {
			fmt.Fprintf(&b, "  want only: %s\n", l)
		}
	}
	return b.String()
}
