package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/outpost-edge/outpost"
)

// ErrInvalidPolicy reports a malformed matrix overrides file or a malformed
// permission directive in a schema file.
var ErrInvalidPolicy = errors.New("invalid policy")

// Action is a kind of exchange one node starts with another.
type Action string

// The actions of the matrix.
const (
	// Pull: the initiator receives the target's changes.
	Pull Action = "pull"
	// Push: the initiator sends its changes to the target.
	Push Action = "push"
	// Call: the initiator asks the target a question that is answered at
	// once (a rate limiter's claim, forwarded decision or announce).
	Call Action = "call"
)

// Party is one side of an exchange, or the origin node of a change.
type Party struct {
	Name string // node name, e.g. EDGE01
	Role outpost.Role
	Farm string // may be empty for masters and nodes
}

// PartyOf returns the Party for a node identity.
func PartyOf(id outpost.Identity) Party {
	return Party{Name: id.Name, Role: id.Role, Farm: id.Farm}
}

// String returns the role and name, e.g. "edge EDGE01".
func (p Party) String() string {
	if p.Name == "" {
		return string(p.Role)
	}
	return string(p.Role) + " " + p.Name
}

// FarmRelation says which pairs of farms a Cell applies to.
type FarmRelation string

// Farm relations of a Cell.
const (
	// FarmAny matches every pair of parties.
	FarmAny FarmRelation = "any"
	// FarmSame matches parties with the same non-empty farm.
	FarmSame FarmRelation = "same"
	// FarmOther matches parties that are not in the same farm (including a
	// party with no farm).
	FarmOther FarmRelation = "other"
)

// Relation returns FarmSame if a and b are both in the same non-empty farm,
// and FarmOther otherwise.
func Relation(a, b Party) FarmRelation {
	if a.Farm != "" && a.Farm == b.Farm {
		return FarmSame
	}
	return FarmOther
}

// Cell is one row of the push/pull matrix: whether a From node may pull from,
// push to and call a To node whose farms relate as Farm.
type Cell struct {
	From, To   outpost.Role
	Farm       FarmRelation // "" is read as FarmAny
	Pull, Push bool
	Call       bool
}

// DefaultCall is the call setting of a cell that does not state one (an
// overrides line without call=): an edge may call its farm siblings and the
// core (masters and nodes); masters and nodes may call anyone; edges of
// different farms never call each other.
func DefaultCall(from, to outpost.Role, farm FarmRelation) bool {
	return !(from == outpost.RoleEdge && to == outpost.RoleEdge && farm != FarmSame)
}

// Rule names the cell, e.g. "edge -> master" or "edge -> edge (other farm)".
func (c Cell) Rule() string {
	r := string(c.From) + " -> " + string(c.To)
	if f := farmOf(c); f != FarmAny {
		r += " (" + string(f) + " farm)"
	}
	return r
}

// String returns the cell in the overrides file format, e.g.
// "edge -> edge farm=other pull=no push=no call=no".
func (c Cell) String() string {
	return fmt.Sprintf("%s -> %s farm=%s pull=%s push=%s call=%s", c.From, c.To, farmOf(c), yesNo(c.Pull), yesNo(c.Push), yesNo(c.Call))
}

// Allows reports whether the cell allows action a.
func (c Cell) Allows(a Action) bool {
	switch a {
	case Pull:
		return c.Pull
	case Push:
		return c.Push
	case Call:
		return c.Call
	}
	return false
}

// Validate reports a cell with an unknown role or farm relation; such a cell
// never matches any pair of parties.
func (c Cell) Validate() error {
	for _, r := range []outpost.Role{c.From, c.To} {
		if !validRole(r) {
			return fmt.Errorf("%w: cell %s: unknown role %q; want master, node or edge", ErrInvalidPolicy, c.Rule(), r)
		}
	}
	if f := farmOf(c); f != FarmAny && f != FarmSame && f != FarmOther {
		return fmt.Errorf("%w: cell %s: unknown farm relation %q; want any, same or other", ErrInvalidPolicy, c.Rule(), c.Farm)
	}
	return nil
}

// Decision is the outcome of Matrix.Check.
type Decision struct {
	Allowed bool
	Rule    string // the cell that decided, e.g. "edge -> edge (other farm)"; "" when no cell matched
	Reason  string // a sentence naming the parties and the rule, for logs and 403 bodies
}

// Matrix is the push/pull matrix: a set of cells, at most one per
// (From, To, Farm). A Matrix is immutable and safe for concurrent use.
type Matrix struct {
	cells []Cell // sorted by cellLess, unique keys
}

// Default returns the matrix of DESIGN.md section 2.
func Default() *Matrix {
	const (
		m = outpost.RoleMaster
		n = outpost.RoleNode
		e = outpost.RoleEdge
	)
	return NewMatrix([]Cell{
		{From: m, To: m, Farm: FarmAny, Pull: true, Push: true, Call: true},
		{From: m, To: n, Farm: FarmAny, Pull: true, Push: true, Call: true},
		{From: m, To: e, Farm: FarmAny, Pull: true, Push: true, Call: true},
		{From: n, To: m, Farm: FarmAny, Pull: true, Push: true, Call: true},
		{From: n, To: n, Farm: FarmAny, Pull: true, Push: true, Call: true},
		{From: n, To: e, Farm: FarmAny, Pull: true, Push: true, Call: true},
		{From: e, To: m, Farm: FarmAny, Pull: true, Push: false, Call: true},
		{From: e, To: n, Farm: FarmAny, Pull: true, Push: false, Call: true},
		{From: e, To: e, Farm: FarmSame, Pull: true, Push: true, Call: true},
		{From: e, To: e, Farm: FarmOther, Pull: false, Push: false, Call: false},
	})
}

// NewMatrix returns a matrix of exactly the given cells; when two cells have
// the same From, To and Farm, the later one wins. An empty Farm is read as
// FarmAny.
func NewMatrix(cells []Cell) *Matrix {
	return (&Matrix{}).With(cells)
}

// With returns a copy of m with the overrides applied in order: each replaces
// the cell of m with the same From, To and Farm, or is added if there is
// none. m itself is not changed. An empty Farm is read as FarmAny.
func (m *Matrix) With(overrides []Cell) *Matrix {
	var cells []Cell
	if m != nil {
		cells = slices.Clone(m.cells)
	}
	for _, o := range overrides {
		o.Farm = farmOf(o)
		if i := slices.IndexFunc(cells, func(c Cell) bool { return sameKey(c, o) }); i >= 0 {
			cells[i] = o
		} else {
			cells = append(cells, o)
		}
	}
	slices.SortStableFunc(cells, cellCmp)
	return &Matrix{cells: cells}
}

// Cells returns a copy of the cells, ordered by initiator, target and farm
// relation (master, node, edge; any, same, other).
func (m *Matrix) Cells() []Cell {
	if m == nil {
		return nil
	}
	return slices.Clone(m.cells)
}

// Lookup returns the cell that decides an exchange from initiator to target:
// the most specific matching cell, where a same-farm or other-farm cell beats
// an any-farm cell. ok is false when no cell matches.
func (m *Matrix) Lookup(initiator, target Party) (c Cell, ok bool) {
	if m == nil {
		return Cell{}, false
	}
	rel := Relation(initiator, target)
	best := 0
	for _, cell := range m.cells {
		if cell.From != initiator.Role || cell.To != target.Role {
			continue
		}
		spec := 0
		switch cell.Farm {
		case FarmAny:
			spec = 1
		case rel:
			spec = 2
		}
		if spec > best {
			best, c = spec, cell
		}
	}
	return c, best > 0
}

// Check decides whether initiator may start action a with target.
func (m *Matrix) Check(initiator, target Party, a Action) Decision {
	var verb, verbing string
	switch a {
	case Pull:
		verb, verbing = "pull from", "pulling from"
	case Push:
		verb, verbing = "push to", "pushing to"
	case Call:
		verb, verbing = "call", "calling"
	default:
		return Decision{Reason: fmt.Sprintf("%s asked for unknown action %q with %s; want pull, push or call", initiator, a, target)}
	}
	c, ok := m.Lookup(initiator, target)
	if !ok {
		return Decision{Reason: fmt.Sprintf("no rule covers %s %s %s (%s -> %s, %s farm), so it is refused",
			initiator, verbing, target, initiator.Role, target.Role, Relation(initiator, target))}
	}
	allowed := c.Allows(a)
	may := "may"
	if !allowed {
		may = "may not"
	}
	withFarm := c.Farm != FarmAny
	return Decision{
		Allowed: allowed,
		Rule:    c.Rule(),
		Reason: fmt.Sprintf("%s %s %s %s (rule: %s, %s: %s)",
			describe(initiator, withFarm), may, verb, describe(target, withFarm), c.Rule(), a, yesNo(allowed)),
	}
}

// String renders the matrix as a text table in the overrides file format
// (one aligned line per cell under a comment header), so it can be read back
// with ParseOverrides.
func (m *Matrix) String() string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "# initiator -> target\tfarm\tpull\tpush\tcall")
	for _, c := range m.Cells() {
		fmt.Fprintf(w, "%s -> %s\tfarm=%s\tpull=%s\tpush=%s\tcall=%s\n", c.From, c.To, c.Farm, yesNo(c.Pull), yesNo(c.Push), yesNo(c.Call))
	}
	w.Flush()
	return b.String()
}

// describe renders a party for a Reason; withFarm adds its farm, for rules
// that depend on farms.
func describe(p Party, withFarm bool) string {
	if !withFarm {
		return p.String()
	}
	if p.Farm == "" {
		return p.String() + " (no farm)"
	}
	return p.String() + " of farm " + p.Farm
}

func farmOf(c Cell) FarmRelation {
	if c.Farm == "" {
		return FarmAny
	}
	return c.Farm
}

func sameKey(a, b Cell) bool {
	return a.From == b.From && a.To == b.To && farmOf(a) == farmOf(b)
}

func cellCmp(a, b Cell) int {
	if d := roleRank(a.From) - roleRank(b.From); d != 0 {
		return d
	}
	if a.From != b.From {
		return strings.Compare(string(a.From), string(b.From))
	}
	if d := roleRank(a.To) - roleRank(b.To); d != 0 {
		return d
	}
	if a.To != b.To {
		return strings.Compare(string(a.To), string(b.To))
	}
	return farmRank(a.Farm) - farmRank(b.Farm)
}

// roles lists the roles in canonical order.
var roles = []outpost.Role{outpost.RoleMaster, outpost.RoleNode, outpost.RoleEdge}

func roleRank(r outpost.Role) int {
	if i := slices.Index(roles, r); i >= 0 {
		return i
	}
	return len(roles)
}

func validRole(r outpost.Role) bool { return slices.Contains(roles, r) }

func farmRank(f FarmRelation) int {
	switch f {
	case FarmAny:
		return 0
	case FarmSame:
		return 1
	case FarmOther:
		return 2
	}
	return 3
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
