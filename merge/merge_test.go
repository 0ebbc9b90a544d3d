package merge_test

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"

	"github.com/outpost-edge/outpost/merge"
	"pgregory.net/rapid"
)

// change is one replicated fact about a single row: (col, value, cl,
// version). Col "" is the row's sentinel.
type change struct {
	Col string
	Val any
	CL  int64
	V   merge.Version
}

func (c change) String() string {
	return fmt.Sprintf("{%q=%v cl=%d v=%d/%s}", c.Col, c.Val, c.CL, c.V.HLC, c.V.Origin)
}

var (
	testCols     = []string{"a", "b", "c"}
	testDefaults = map[string]any{"a": nil, "b": int64(0), "c": "dflt"}
)

// genChanges draws a set of changes to one row. HLCs come from a small range
// and origins from a small set, so ties on the hlc (broken by the origin) and
// repeated versions are frequent.
//
// A version (hlc, origin) names one transaction at one node, so it fixes the
// row's causal length, and together with a column it fixes the value: two
// facts with the same version and column but different values cannot exist
// (the merge rules treat an equal version as the same write). The generator
// keeps to that: it draws transactions with distinct versions, each with one
// cl, and at most one value per (transaction, column).
func genChanges(t *rapid.T) []change {
	type txn struct {
		V  merge.Version
		CL int64
	}
	txns := rapid.SliceOfNDistinct(rapid.Custom(func(t *rapid.T) txn {
		return txn{
			V: merge.Version{
				HLC:    rapid.Uint64Range(1, 4).Draw(t, "hlc"),
				Origin: rapid.SampledFrom([]string{"n1", "n2", "N3"}).Draw(t, "origin"),
			},
			CL: rapid.Int64Range(1, 6).Draw(t, "cl"),
		}
	}), 1, 10, func(x txn) merge.Version { return x.V }).Draw(t, "txns")
	type fact struct {
		v   merge.Version
		col string
	}
	seen := map[fact]bool{}
	var out []change
	n := rapid.IntRange(1, 25).Draw(t, "changes")
	for range n {
		tx := rapid.SampledFrom(txns).Draw(t, "txn")
		col := rapid.SampledFrom(append([]string{""}, testCols...)).Draw(t, "col")
		if seen[fact{tx.V, col}] {
			continue
		}
		seen[fact{tx.V, col}] = true
		var val any
		if col != "" {
			val = rapid.OneOf(
				rapid.Just[any](nil),
				rapid.Map(rapid.Int64Range(-2, 2), func(i int64) any { return i }),
				rapid.Map(rapid.SampledFrom([]string{"x", "y", ""}), func(s string) any { return s }),
			).Draw(t, "val")
		}
		out = append(out, change{Col: col, Val: val, CL: tx.CL, V: tx.V})
	}
	return out
}

func applyAll(r *merge.Row, chs []change) {
	for _, c := range chs {
		r.Apply(c.Col, c.Val, c.CL, c.V)
	}
}

// state is the part of a Row that every order of the same changes agrees
// on: the causal length and the current life's column cells. The sentinel
// version is left out on purpose: it records the event that set the row's
// life (or the newest sentinel change seen in it), which is metadata, and
// when a life is entered by a column change it depends on the order of
// arrival. Nothing a reader sees, and no later merge decision about columns,
// depends on it.
type state struct {
	CL   int64
	Cols map[string]merge.Cell
}

func stateOf(r *merge.Row) state {
	s := state{CL: r.CL, Cols: maps.Clone(r.Cols)}
	if len(s.Cols) == 0 {
		s.Cols = nil
	}
	return s
}

// asChanges returns r's state as changes: what a store emits for the row.
func asChanges(r *merge.Row) []change {
	if r.CL == 0 {
		return nil
	}
	out := []change{{CL: r.CL, V: r.Sentinel}}
	for _, col := range slices.Sorted(maps.Keys(r.Cols)) {
		cell := r.Cols[col]
		out = append(out, change{Col: col, Val: cell.Val, CL: r.CL, V: cell.Version})
	}
	return out
}

// spec computes the state the rules of DESIGN.md section 4 define for a set
// of changes, without applying them one by one: the highest causal length
// wins; in an alive life each column holds its highest-versioned change of
// that life.
func spec(chs []change) state {
	var s state
	for _, c := range chs {
		s.CL = max(s.CL, c.CL)
	}
	if !merge.Alive(s.CL) {
		return s
	}
	for _, c := range chs {
		if c.CL != s.CL || c.Col == "" {
			continue
		}
		if s.Cols == nil {
			s.Cols = map[string]merge.Cell{}
		}
		if cur, ok := s.Cols[c.Col]; !ok || newer(c.V, cur.Version) {
			s.Cols[c.Col] = merge.Cell{Version: c.V, Val: c.Val}
		}
	}
	return s
}

// newer is the version order of DESIGN.md section 4, written out again so
// that spec does not lean on merge.Compare: hlc first, then origin by bytes.
func newer(a, b merge.Version) bool {
	if a.HLC != b.HLC {
		return a.HLC > b.HLC
	}
	return a.Origin > b.Origin // Go compares strings bytewise
}

func requireSameState(tb rapid.TB, what string, got, want state, chs ...[]change) {
	tb.Helper()
	if !reflect.DeepEqual(got, want) {
		tb.Fatalf("%s: got %+v, want %+v\nchanges: %v", what, got, want, chs)
	}
}

func TestRow_ApplyMatchesSpec(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		chs := genChanges(t)
		var r merge.Row
		applyAll(&r, chs)
		requireSameState(t, "applied in order vs the rules", stateOf(&r), spec(chs), chs)
	})
}

func TestRow_ApplyCommutative(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		chs := genChanges(t)
		perm := rapid.Permutation(chs).Draw(t, "perm")
		var r1, r2 merge.Row
		applyAll(&r1, chs)
		applyAll(&r2, perm)
		requireSameState(t, "permuted", stateOf(&r2), stateOf(&r1), chs, perm)
		got, gotOK := r2.Visible(testCols, testDefaults)
		want, wantOK := r1.Visible(testCols, testDefaults)
		if gotOK != wantOK || !reflect.DeepEqual(got, want) {
			t.Fatalf("visible: got %v %v, want %v %v", got, gotOK, want, wantOK)
		}
	})
}

func TestRow_ApplyIdempotent(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		chs := genChanges(t)
		var dup []change
		for i, c := range chs {
			for range rapid.IntRange(1, 3).Draw(t, fmt.Sprintf("copies%d", i)) {
				dup = append(dup, c)
			}
		}
		dup = rapid.Permutation(dup).Draw(t, "dup")
		var r1, r2 merge.Row
		applyAll(&r1, chs)
		applyAll(&r2, dup)
		requireSameState(t, "with duplicates", stateOf(&r2), stateOf(&r1), chs, dup)

		// Applying everything again changes nothing, not even the sentinel,
		// and every re-applied change is ignored.
		before := r1
		before.Cols = maps.Clone(r1.Cols)
		for _, c := range chs {
			if got := r1.Apply(c.Col, c.Val, c.CL, c.V); got != merge.Ignore {
				t.Fatalf("re-applying %v: got %v, want %v", c, got, merge.Ignore)
			}
		}
		if !reflect.DeepEqual(r1, before) {
			t.Fatalf("re-applying changed the row: got %+v, want %+v", r1, before)
		}
	})
}

// TestRow_ApplyAssociative merges through two different groupings: X into
// one row and Y into another, then the second row's resulting state (as a
// store would emit it) into the first; that equals applying X and Y to a
// fresh row, in either direction of the join.
func TestRow_ApplyAssociative(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		chs := genChanges(t)
		var x, y []change
		for i, c := range chs {
			switch rapid.IntRange(0, 2).Draw(t, fmt.Sprintf("side%d", i)) {
			case 0:
				x = append(x, c)
			case 1:
				y = append(y, c)
			default: // both: the groupings overlap
				x, y = append(x, c), append(y, c)
			}
		}
		var rx, ry, all merge.Row
		applyAll(&rx, x)
		applyAll(&ry, y)
		applyAll(&all, rapid.Permutation(chs).Draw(t, "all"))

		xy := rx
		xy.Cols = maps.Clone(rx.Cols)
		applyAll(&xy, asChanges(&ry))
		yx := ry
		yx.Cols = maps.Clone(ry.Cols)
		applyAll(&yx, asChanges(&rx))

		requireSameState(t, "X then state(Y)", stateOf(&xy), stateOf(&all), x, y)
		requireSameState(t, "Y then state(X)", stateOf(&yx), stateOf(&all), x, y)
		requireSameState(t, "fresh", stateOf(&all), spec(chs), chs)
	})
}

func TestCompare(t *testing.T) {
	tests := []struct {
		a, b merge.Version
		want int
	}{
		{merge.Version{HLC: 1, Origin: "z"}, merge.Version{HLC: 2, Origin: "a"}, -1},
		{merge.Version{HLC: 2, Origin: "a"}, merge.Version{HLC: 1, Origin: "z"}, 1},
		{merge.Version{HLC: 5, Origin: "a"}, merge.Version{HLC: 5, Origin: "b"}, -1},
		{merge.Version{HLC: 5, Origin: "b"}, merge.Version{HLC: 5, Origin: "a"}, 1},
		{merge.Version{HLC: 5, Origin: "a"}, merge.Version{HLC: 5, Origin: "a"}, 0},
		// By bytes, not by letters: 'B' (0x42) < 'a' (0x61); 'é' starts with 0xc3 > 'z'.
		{merge.Version{HLC: 5, Origin: "B"}, merge.Version{HLC: 5, Origin: "a"}, -1},
		{merge.Version{HLC: 5, Origin: "é"}, merge.Version{HLC: 5, Origin: "z"}, 1},
		{merge.Version{HLC: 5, Origin: "EDGE01/ab"}, merge.Version{HLC: 5, Origin: "EDGE01/ab0"}, -1},
		{merge.Version{}, merge.Version{HLC: 1}, -1},
	}
	for _, tt := range tests {
		if got := merge.Compare(tt.a, tt.b); got != tt.want {
			t.Errorf("Compare(%v, %v) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestAlive(t *testing.T) {
	for cl, want := range map[int64]bool{0: false, 1: true, 2: false, 3: true, 4: false} {
		if got := merge.Alive(cl); got != want {
			t.Errorf("Alive(%d) = %v, want %v", cl, got, want)
		}
	}
}

func TestAction_String(t *testing.T) {
	for a, want := range map[merge.Action]string{
		merge.Ignore: "ignore", merge.NewLife: "new-life", merge.ApplyColumn: "apply-column", merge.BumpSentinel: "bump-sentinel",
	} {
		if got := a.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(a), got, want)
		}
	}
}

func TestDecide(t *testing.T) {
	v := func(h uint64, o string) merge.Version { return merge.Version{HLC: h, Origin: o} }
	alive := merge.Local{CL: 1, Sentinel: v(5, "n1"), HasCol: true, Col: v(5, "n1")}
	tests := []struct {
		name  string
		local merge.Local
		col   string
		cl    int64
		v     merge.Version
		want  merge.Action
	}{
		{"unseen row, column change", merge.Local{}, "a", 1, v(1, "n1"), merge.NewLife},
		{"unseen row, delete", merge.Local{}, "", 2, v(1, "n1"), merge.NewLife},
		{"delete beats a concurrent newer update", alive, "", 2, v(1, "n2"), merge.NewLife},
		{"update of the older life after the delete is ignored", merge.Local{CL: 2, Sentinel: v(1, "n2")}, "a", 1, v(9, "n1"), merge.Ignore},
		{"re-insert after seeing the delete beats it", merge.Local{CL: 2, Sentinel: v(9, "n2")}, "a", 3, v(1, "n1"), merge.NewLife},
		{"re-insert sentinel beats the delete", merge.Local{CL: 2, Sentinel: v(9, "n2")}, "", 3, v(1, "n1"), merge.NewLife},
		{"delete of the re-inserted life beats it", merge.Local{CL: 3, Sentinel: v(9, "n2")}, "", 4, v(1, "n1"), merge.NewLife},
		{"cl below local is ignored even when newer", merge.Local{CL: 3, Sentinel: v(1, "n1"), HasCol: true, Col: v(1, "n1")}, "a", 1, v(99, "z"), merge.Ignore},
		{"sentinel with cl below local is ignored", merge.Local{CL: 3, Sentinel: v(1, "n1")}, "", 2, v(99, "z"), merge.Ignore},
		{"equal column version is a no-op", alive, "a", 1, v(5, "n1"), merge.Ignore},
		{"equal sentinel version is a no-op", alive, "", 1, v(5, "n1"), merge.Ignore},
		{"equal delete is a no-op", merge.Local{CL: 2, Sentinel: v(5, "n1")}, "", 2, v(5, "n1"), merge.Ignore},
		{"higher hlc wins", alive, "a", 1, v(6, "a"), merge.ApplyColumn},
		{"lower hlc loses whatever the origin", alive, "a", 1, v(4, "zz"), merge.Ignore},
		{"hlc tie: higher origin wins", alive, "a", 1, v(5, "n2"), merge.ApplyColumn},
		{"hlc tie: lower origin loses", alive, "a", 1, v(5, "n0"), merge.Ignore},
		{"hlc tie: origin compared by bytes", alive, "a", 1, v(5, "N9"), merge.Ignore},
		{"column without a version in this life takes any version", merge.Local{CL: 3, Sentinel: v(9, "n1")}, "a", 3, v(1, "n0"), merge.ApplyColumn},
		{"newer sentinel in the same life bumps it", alive, "", 1, v(6, "n1"), merge.BumpSentinel},
		{"older sentinel in the same life is ignored", alive, "", 1, v(4, "n1"), merge.Ignore},
		{"column change in the same deleted life only bumps the sentinel", merge.Local{CL: 2, Sentinel: v(5, "n1")}, "a", 2, v(6, "n1"), merge.BumpSentinel},
		{"older column change in the same deleted life is ignored", merge.Local{CL: 2, Sentinel: v(5, "n1")}, "a", 2, v(4, "n1"), merge.Ignore},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := merge.Decide(tt.local, tt.col, tt.cl, tt.v); got != tt.want {
				t.Errorf("Decide(%+v, %q, %d, %+v) = %v, want %v", tt.local, tt.col, tt.cl, tt.v, got, tt.want)
			}
		})
	}
}

func TestRow_Apply(t *testing.T) {
	v := func(h uint64, o string) merge.Version { return merge.Version{HLC: h, Origin: o} }
	// insert returns a row alive at cl 1 with every column written at (5, n1).
	insert := func() *merge.Row {
		r := &merge.Row{}
		r.Apply("", nil, 1, v(5, "n1"))
		r.Apply("a", "a1", 1, v(5, "n1"))
		r.Apply("b", int64(1), 1, v(5, "n1"))
		r.Apply("c", "c1", 1, v(5, "n1"))
		return r
	}
	t.Run("delete beats a concurrent update at the older cl", func(t *testing.T) {
		for _, order := range []string{"update first", "delete first"} {
			r := insert()
			update := change{Col: "a", Val: "late", CL: 1, V: v(9, "n2")} // newer hlc than the delete
			del := change{CL: 2, V: v(6, "n1")}
			if order == "update first" {
				applyAll(r, []change{update, del})
			} else {
				applyAll(r, []change{del, update})
			}
			if got, ok := r.Visible(testCols, testDefaults); ok {
				t.Errorf("%s: the row is visible after a delete: %v", order, got)
			}
			if got, want := r.CL, int64(2); got != want {
				t.Errorf("%s: cl = %d, want %d", order, got, want)
			}
		}
	})
	t.Run("re-insert after seeing the delete beats the delete", func(t *testing.T) {
		r := insert()
		// A delete with a high clock, then a re-insert from a slow clock.
		r.Apply("", nil, 2, v(9, "n2"))
		if got := r.Apply("b", int64(7), 3, v(1, "n1")); got != merge.NewLife {
			t.Fatalf("re-insert: got %v, want %v", got, merge.NewLife)
		}
		got, ok := r.Visible(testCols, testDefaults)
		want := map[string]any{"a": nil, "b": int64(7), "c": "dflt"}
		if !ok || !reflect.DeepEqual(got, want) {
			t.Fatalf("after re-insert: got %v (alive %v), want %v", got, ok, want)
		}
		// The delete arriving again (duplicate) does not undo it.
		if got := r.Apply("", nil, 2, v(9, "n2")); got != merge.Ignore {
			t.Fatalf("old delete again: got %v, want %v", got, merge.Ignore)
		}
	})
	t.Run("equal version is a no-op", func(t *testing.T) {
		r := insert()
		before := *r
		before.Cols = maps.Clone(r.Cols)
		for _, c := range asChanges(r) {
			if got := r.Apply(c.Col, c.Val, c.CL, c.V); got != merge.Ignore {
				t.Errorf("re-applying %v: got %v, want %v", c, got, merge.Ignore)
			}
		}
		if !reflect.DeepEqual(*r, before) {
			t.Errorf("got %+v, want %+v", *r, before)
		}
	})
	t.Run("higher version wins, hlc tie broken by origin bytes", func(t *testing.T) {
		r := insert()
		steps := []struct {
			val  string
			v    merge.Version
			want string
		}{
			{"older", v(4, "z"), "a1"},
			{"tie-lower-origin", v(5, "n0"), "a1"},
			{"tie-higher-origin", v(5, "n2"), "tie-higher-origin"},
			{"tie-upper-case", v(5, "N9"), "tie-higher-origin"}, // "N9" < "n2" by bytes
			{"newer", v(6, "a"), "newer"},
		}
		for _, s := range steps {
			r.Apply("a", s.val, 1, s.v)
			got, _ := r.Visible(testCols, testDefaults)
			if got["a"] != s.want {
				t.Errorf("after %s %+v: a = %v, want %v", s.val, s.v, got["a"], s.want)
			}
		}
	})
	t.Run("a change with cl below local is ignored", func(t *testing.T) {
		r := insert()
		r.Apply("", nil, 2, v(6, "n1"))
		r.Apply("", nil, 3, v(7, "n1"))
		before := *r
		for _, c := range []change{{Col: "a", Val: "old", CL: 1, V: v(99, "z")}, {CL: 2, V: v(99, "z")}} {
			if got := r.Apply(c.Col, c.Val, c.CL, c.V); got != merge.Ignore {
				t.Errorf("%v: got %v, want %v", c, got, merge.Ignore)
			}
		}
		if !reflect.DeepEqual(*r, before) {
			t.Errorf("got %+v, want %+v", *r, before)
		}
	})
	t.Run("entering a new life drops the other columns", func(t *testing.T) {
		r := insert()
		r.Apply("c", "c3", 3, v(1, "n2")) // life 3 seen through one column change only
		got, ok := r.Visible(testCols, testDefaults)
		want := map[string]any{"a": nil, "b": int64(0), "c": "c3"}
		if !ok || !reflect.DeepEqual(got, want) {
			t.Fatalf("got %v (alive %v), want %v", got, ok, want)
		}
		if _, has := r.Cols["a"]; has {
			t.Fatalf("column a of life 1 survived into life 3: %+v", r.Cols)
		}
		// A column of the older life arriving late stays dropped.
		r.Apply("a", "a1-late", 1, v(50, "n1"))
		if got, _ := r.Visible(testCols, testDefaults); got["a"] != nil {
			t.Fatalf("late column of life 1: a = %v, want nil", got["a"])
		}
	})
	t.Run("entering a deleted life drops every column", func(t *testing.T) {
		r := insert()
		r.Apply("a", "x", 4, v(1, "n2")) // a column change carrying a deleted cl
		if r.Cols != nil {
			t.Fatalf("cols = %+v, want none", r.Cols)
		}
		if _, ok := r.Visible(testCols, testDefaults); ok {
			t.Fatal("deleted row is visible")
		}
	})
	t.Run("unseen row is not visible", func(t *testing.T) {
		var r merge.Row
		if got, ok := r.Visible(testCols, testDefaults); ok || got != nil {
			t.Fatalf("got %v, %v; want nil, false", got, ok)
		}
	})
}
