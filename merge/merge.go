// Package merge holds the merge rules of DESIGN.md section 4 as pure
// functions: what a node does with a remote change given what it already has
// for that row. The store applies these decisions in SQL; Row is the same
// rules on an in-memory row, the reference model the tests compare the store
// against.
//
// State per row: a causal length CL (0 = never seen, odd = alive, even =
// deleted), the version of the event that set it, and, for the current life
// only, each column's version and value. A change (col, value, cl, version):
//
//   - cl greater than the row's: the row enters that life (its columns of
//     older lives are dropped; alive when odd, deleted when even) and the
//     column, if any, is applied;
//   - cl smaller: ignored, it belongs to an older life;
//   - cl equal: the higher (hlc, origin) wins, compared in that order, the
//     origin by bytes; an equal version is the same write (no-op).
//
// This is a join-semilattice (lexicographic on cl, then per column on the
// version), so applying changes is commutative, associative and idempotent.
package merge

import "strings"

// Version orders writes: hybrid logical time, then origin by bytes.
type Version struct {
	HLC    uint64
	Origin string
}

// Compare returns -1, 0 or +1 as a is older than, the same as, or newer than b.
func Compare(a, b Version) int {
	switch {
	case a.HLC < b.HLC:
		return -1
	case a.HLC > b.HLC:
		return 1
	}
	return strings.Compare(a.Origin, b.Origin)
}

// Alive reports whether a causal length is a live one.
func Alive(cl int64) bool { return cl%2 == 1 }

// Action is what to do with a remote change.
type Action int

// The outcomes of Decide.
const (
	// Ignore: the change belongs to an older life or loses to what the
	// row holds (or is the same write).
	Ignore Action = iota
	// NewLife: the row enters the change's life: drop its column versions,
	// delete it (even cl) or reset it to its defaults (odd cl), then apply
	// the column if the change has one and the life is alive.
	NewLife
	// ApplyColumn: same life, the change's column version wins.
	ApplyColumn
	// BumpSentinel: same life, a sentinel change with a newer version; only
	// the row's sentinel version changes.
	BumpSentinel
)

func (a Action) String() string {
	return [...]string{"ignore", "new-life", "apply-column", "bump-sentinel"}[a]
}

// Local is what a node holds for one row and, for a column change, that
// column: the row's causal length (0 = never seen) and sentinel version, and
// the column's version (HasCol false when the column has none in this life).
type Local struct {
	CL       int64
	Sentinel Version
	HasCol   bool
	Col      Version
}

// Decide applies the rules to one change. col == "" is a sentinel change.
func Decide(local Local, col string, cl int64, v Version) Action {
	switch {
	case cl > local.CL:
		return NewLife
	case cl < local.CL:
		return Ignore
	case col == "" || !Alive(cl):
		if Compare(v, local.Sentinel) > 0 {
			return BumpSentinel
		}
		return Ignore
	case !local.HasCol || Compare(v, local.Col) > 0:
		return ApplyColumn
	}
	return Ignore
}
