package policy

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost"
)

const (
	master = outpost.RoleMaster
	node   = outpost.RoleNode
	edge   = outpost.RoleEdge
)

// TestMatrix_Check_Default checks every cell of the default matrix: all 3x3
// role pairs, in the same farm and in different farms, for pull and push,
// against the table of DESIGN.md section 2 written out again here.
func TestMatrix_Check_Default(t *testing.T) {
	type want struct {
		pull, push bool
		rule       string
	}
	// Key: "initiator -> target, same|other farm".
	expected := map[string]want{
		"master -> master, same farm":  {true, true, "master -> master"},
		"master -> master, other farm": {true, true, "master -> master"},
		"master -> node, same farm":    {true, true, "master -> node"},
		"master -> node, other farm":   {true, true, "master -> node"},
		"master -> edge, same farm":    {true, true, "master -> edge"},
		"master -> edge, other farm":   {true, true, "master -> edge"},
		"node -> master, same farm":    {true, true, "node -> master"},
		"node -> master, other farm":   {true, true, "node -> master"},
		"node -> node, same farm":      {true, true, "node -> node"},
		"node -> node, other farm":     {true, true, "node -> node"},
		"node -> edge, same farm":      {true, true, "node -> edge"},
		"node -> edge, other farm":     {true, true, "node -> edge"},
		"edge -> master, same farm":    {true, false, "edge -> master"},
		"edge -> master, other farm":   {true, false, "edge -> master"},
		"edge -> node, same farm":      {true, false, "edge -> node"},
		"edge -> node, other farm":     {true, false, "edge -> node"},
		"edge -> edge, same farm":      {true, true, "edge -> edge (same farm)"},
		"edge -> edge, other farm":     {false, false, "edge -> edge (other farm)"},
	}
	m := Default()
	checked := 0
	for _, from := range []outpost.Role{master, node, edge} {
		for _, to := range []outpost.Role{master, node, edge} {
			for _, same := range []bool{true, false} {
				rel, targetFarm := "same farm", "lhr"
				if !same {
					rel, targetFarm = "other farm", "cdg"
				}
				key := fmt.Sprintf("%s -> %s, %s", from, to, rel)
				w, ok := expected[key]
				if !ok {
					t.Fatalf("no expectation for %s", key)
				}
				a := Party{Name: "A01", Role: from, Farm: "lhr"}
				b := Party{Name: "B01", Role: to, Farm: targetFarm}
				for _, act := range []Action{Pull, Push} {
					wantAllowed := w.pull
					if act == Push {
						wantAllowed = w.push
					}
					got := m.Check(a, b, act)
					if got.Allowed != wantAllowed || got.Rule != w.rule {
						t.Errorf("%s %s: got allowed=%v rule=%q; want allowed=%v rule=%q (reason: %s)",
							key, act, got.Allowed, got.Rule, wantAllowed, w.rule, got.Reason)
					}
					checked++
				}
			}
		}
	}
	if checked != 36 {
		t.Errorf("checked %d cases; want 36", checked)
	}
}

func TestMatrix_Check_Reason(t *testing.T) {
	e1 := Party{Name: "EDGE01", Role: edge, Farm: "lhr"}
	e2 := Party{Name: "EDGE02", Role: edge, Farm: "cdg"}
	e3 := Party{Name: "EDGE03", Role: edge, Farm: "lhr"}
	m1 := Party{Name: "MASTER01", Role: master}
	n1 := Party{Name: "NODE01", Role: node}
	tests := []struct {
		name                   string
		m                      *Matrix
		initiator, target      Party
		act                    Action
		wantAllowed            bool
		wantRule, wantReason   string
		wantReasonContainsText string
	}{
		{
			name: "edge push to master refused", m: Default(), initiator: e1, target: m1, act: Push,
			wantRule:   "edge -> master",
			wantReason: "edge EDGE01 may not push to master MASTER01 (rule: edge -> master, push: no)",
		},
		{
			name: "edge pull from master allowed", m: Default(), initiator: e1, target: m1, act: Pull, wantAllowed: true,
			wantRule:   "edge -> master",
			wantReason: "edge EDGE01 may pull from master MASTER01 (rule: edge -> master, pull: yes)",
		},
		{
			name: "edge push to node refused", m: Default(), initiator: e1, target: n1, act: Push,
			wantRule:   "edge -> node",
			wantReason: "edge EDGE01 may not push to node NODE01 (rule: edge -> node, push: no)",
		},
		{
			name: "edge pull across farms refused", m: Default(), initiator: e1, target: e2, act: Pull,
			wantRule:   "edge -> edge (other farm)",
			wantReason: "edge EDGE01 of farm lhr may not pull from edge EDGE02 of farm cdg (rule: edge -> edge (other farm), pull: no)",
		},
		{
			name: "edge push within farm allowed", m: Default(), initiator: e1, target: e3, act: Push, wantAllowed: true,
			wantRule:   "edge -> edge (same farm)",
			wantReason: "edge EDGE01 of farm lhr may push to edge EDGE03 of farm lhr (rule: edge -> edge (same farm), push: yes)",
		},
		{
			name: "edges without farms are not in the same farm", m: Default(),
			initiator: Party{Name: "E1", Role: edge}, target: Party{Name: "E2", Role: edge}, act: Pull,
			wantRule:   "edge -> edge (other farm)",
			wantReason: "edge E1 (no farm) may not pull from edge E2 (no farm) (rule: edge -> edge (other farm), pull: no)",
		},
		{
			name: "no rule", m: NewMatrix([]Cell{{From: master, To: node, Pull: true, Push: true}}),
			initiator: e1, target: e2, act: Push,
			wantReason: "no rule covers edge EDGE01 pushing to edge EDGE02 (edge -> edge, other farm), so it is refused",
		},
		{
			name: "nil matrix", m: nil, initiator: m1, target: n1, act: Pull,
			wantReasonContainsText: "no rule covers master MASTER01 pulling from node NODE01",
		},
		{
			name: "unknown role", m: Default(), initiator: Party{Name: "X", Role: "admin"}, target: m1, act: Pull,
			wantReasonContainsText: "no rule covers admin X pulling from master MASTER01",
		},
		{
			name: "unknown action", m: Default(), initiator: m1, target: n1, act: "sync",
			wantReasonContainsText: `unknown action "sync"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.m.Check(tt.initiator, tt.target, tt.act)
			if got.Allowed != tt.wantAllowed || got.Rule != tt.wantRule {
				t.Errorf("got allowed=%v rule=%q; want allowed=%v rule=%q", got.Allowed, got.Rule, tt.wantAllowed, tt.wantRule)
			}
			if tt.wantReason != "" && got.Reason != tt.wantReason {
				t.Errorf("got reason\n  %q\nwant\n  %q", got.Reason, tt.wantReason)
			}
			if tt.wantReasonContainsText != "" && !strings.Contains(got.Reason, tt.wantReasonContainsText) {
				t.Errorf("got reason %q; want it to contain %q", got.Reason, tt.wantReasonContainsText)
			}
		})
	}
	// The refusal the design calls out, spelled as an operator would grep it.
	if got := Default().Check(e1, m1, Push).Reason; !strings.Contains(got, "may not push to master") {
		t.Errorf("got reason %q; want it to contain %q", got, "may not push to master")
	}
}

func TestMatrix_Cells(t *testing.T) {
	got := Default().Cells()
	want := []Cell{
		{master, master, FarmAny, true, true, true},
		{master, node, FarmAny, true, true, true},
		{master, edge, FarmAny, true, true, true},
		{node, master, FarmAny, true, true, true},
		{node, node, FarmAny, true, true, true},
		{node, edge, FarmAny, true, true, true},
		{edge, master, FarmAny, true, false, true},
		{edge, node, FarmAny, true, false, true},
		{edge, edge, FarmSame, true, true, true},
		{edge, edge, FarmOther, false, false, false},
	}
	if !slices.Equal(got, want) {
		t.Errorf("got cells\n%v\nwant\n%v", got, want)
	}
	got[0].Push = false
	if c := Default().Cells()[0]; !c.Push {
		t.Errorf("Cells returned shared storage")
	}
	if got := (*Matrix)(nil).Cells(); got != nil {
		t.Errorf("nil matrix: got %v; want nil", got)
	}
}

func TestMatrix_With(t *testing.T) {
	e1 := Party{Name: "EDGE01", Role: edge, Farm: "lhr"}
	e2 := Party{Name: "EDGE02", Role: edge, Farm: "cdg"}
	e3 := Party{Name: "EDGE03", Role: edge, Farm: "lhr"}
	m1 := Party{Name: "MASTER01", Role: master}
	n1 := Party{Name: "NODE01", Role: node, Farm: "lhr"}
	n2 := Party{Name: "NODE02", Role: node, Farm: "lhr"}
	n3 := Party{Name: "NODE03", Role: node, Farm: "fra"}
	tests := []struct {
		name              string
		overrides         []Cell
		initiator, target Party
		act               Action
		wantAllowed       bool
		wantRule          string
		wantCells         int
	}{
		{"replace edge -> master", []Cell{{From: edge, To: master, Pull: true, Push: true}}, e1, m1, Push, true, "edge -> master", 10},
		{"replace with explicit any", []Cell{{From: edge, To: master, Farm: FarmAny, Pull: false, Push: false}}, e1, m1, Pull, false, "edge -> master", 10},
		{"replace other-farm edge cell", []Cell{{From: edge, To: edge, Farm: FarmOther, Pull: true}}, e1, e2, Pull, true, "edge -> edge (other farm)", 10},
		{"add same-farm node cell beats any: same farm", []Cell{{From: node, To: node, Farm: FarmSame}}, n1, n2, Pull, false, "node -> node (same farm)", 11},
		{"add same-farm node cell beats any: other farm keeps any", []Cell{{From: node, To: node, Farm: FarmSame}}, n1, n3, Pull, true, "node -> node", 11},
		{"add any edge cell loses to same", []Cell{{From: edge, To: edge, Farm: FarmAny}}, e1, e3, Push, true, "edge -> edge (same farm)", 11},
		{"add any edge cell loses to other", []Cell{{From: edge, To: edge, Farm: FarmAny, Pull: true, Push: true}}, e1, e2, Push, false, "edge -> edge (other farm)", 11},
		{"later override wins", []Cell{{From: edge, To: node, Push: true}, {From: edge, To: node, Push: false}}, e1, n1, Push, false, "edge -> node", 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := Default()
			m := base.With(tt.overrides)
			got := m.Check(tt.initiator, tt.target, tt.act)
			if got.Allowed != tt.wantAllowed || got.Rule != tt.wantRule {
				t.Errorf("got allowed=%v rule=%q; want allowed=%v rule=%q (%s)", got.Allowed, got.Rule, tt.wantAllowed, tt.wantRule, got.Reason)
			}
			if n := len(m.Cells()); n != tt.wantCells {
				t.Errorf("got %d cells; want %d", n, tt.wantCells)
			}
			if !slices.Equal(base.Cells(), Default().Cells()) {
				t.Errorf("With changed the base matrix")
			}
		})
	}
}

func TestMatrix_String(t *testing.T) {
	s := Default().String()
	for _, want := range []string{
		"# initiator -> target  farm        pull      push      call\n",
		"\nedge -> master         farm=any    pull=yes  push=no   call=yes\n",
		"\nedge -> edge           farm=other  pull=no   push=no   call=no\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("String() =\n%s\nwant it to contain %q", s, want)
		}
	}
	if got, want := strings.Count(s, "\n"), 11; got != want {
		t.Errorf("got %d lines; want %d", got, want)
	}
	// The rendering is itself an overrides file.
	cells, err := ParseOverrides(strings.NewReader(s))
	if err != nil {
		t.Fatalf("ParseOverrides(String()): %v", err)
	}
	if !slices.Equal(cells, Default().Cells()) {
		t.Errorf("round trip: got %v; want %v", cells, Default().Cells())
	}
}

func TestCell_Rule(t *testing.T) {
	tests := []struct {
		c    Cell
		want string
	}{
		{Cell{From: edge, To: master}, "edge -> master"},
		{Cell{From: edge, To: master, Farm: FarmAny}, "edge -> master"},
		{Cell{From: edge, To: edge, Farm: FarmSame}, "edge -> edge (same farm)"},
		{Cell{From: edge, To: edge, Farm: FarmOther}, "edge -> edge (other farm)"},
	}
	for _, tt := range tests {
		if got := tt.c.Rule(); got != tt.want {
			t.Errorf("%+v.Rule() = %q; want %q", tt.c, got, tt.want)
		}
	}
}

func TestCell_Validate(t *testing.T) {
	tests := []struct {
		c       Cell
		wantErr string
	}{
		{Cell{From: edge, To: master}, ""},
		{Cell{From: edge, To: edge, Farm: FarmOther}, ""},
		{Cell{From: "admin", To: master}, `unknown role "admin"`},
		{Cell{From: edge, To: ""}, `unknown role ""`},
		{Cell{From: edge, To: edge, Farm: "near"}, `unknown farm relation "near"`},
	}
	for _, tt := range tests {
		err := tt.c.Validate()
		if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%+v.Validate() = %v; want error containing %q", tt.c, err, tt.wantErr)
		}
	}
}

func TestRelation(t *testing.T) {
	tests := []struct {
		a, b string
		want FarmRelation
	}{
		{"lhr", "lhr", FarmSame},
		{"lhr", "cdg", FarmOther},
		{"lhr", "", FarmOther},
		{"", "", FarmOther},
	}
	for _, tt := range tests {
		if got := Relation(Party{Farm: tt.a}, Party{Farm: tt.b}); got != tt.want {
			t.Errorf("Relation(%q, %q) = %q; want %q", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestPartyOf(t *testing.T) {
	id := outpost.Identity{Name: "EDGE01", Location: "LHR", Farm: "lhr", Role: edge, Code: "43ax"}
	if got, want := PartyOf(id), (Party{Name: "EDGE01", Role: edge, Farm: "lhr"}); got != want {
		t.Errorf("got %+v; want %+v", got, want)
	}
}
