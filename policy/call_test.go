package policy

import (
	"strings"
	"testing"
)

// TestCall_Defaults checks the call column of the default matrix: an edge
// may call its farm siblings and the core, the core may call anyone, edges
// of different farms never call each other.
func TestCall_Defaults(t *testing.T) {
	m1 := Party{Name: "MASTER01", Role: master}
	n1 := Party{Name: "NODE01", Role: node}
	e1 := Party{Name: "EDGE01", Role: edge, Farm: "lhr"}
	e2 := Party{Name: "EDGE02", Role: edge, Farm: "lhr"}
	e3 := Party{Name: "EDGE03", Role: edge, Farm: "cdg"}
	for _, tc := range []struct {
		from, to Party
		want     bool
	}{
		{e1, e2, true}, {e1, m1, true}, {e1, n1, true}, {e1, e3, false}, {e3, e1, false},
		{m1, e1, true}, {m1, e3, true}, {n1, e3, true}, {m1, n1, true}, {n1, m1, true},
	} {
		d := Default().Check(tc.from, tc.to, Call)
		if d.Allowed != tc.want {
			t.Errorf("%s call %s: allowed=%v (%s); want %v", tc.from, tc.to, d.Allowed, d.Reason, tc.want)
		}
	}
	if r := Default().Check(e1, e3, Call).Reason; !strings.Contains(r, "may not call") {
		t.Errorf("reason %q; want it to say %q", r, "may not call")
	}
}

// TestCall_Overrides checks call= in the overrides file and its default when
// a line (e.g. one written before calls existed) leaves it out.
func TestCall_Overrides(t *testing.T) {
	cells, err := ParseOverrides(strings.NewReader(
		"edge -> master pull=yes push=no\n" +
			"edge -> edge farm=other pull=no push=no\n" +
			"edge -> node pull=yes push=no call=no\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []bool{true, false, false}
	for i, c := range cells {
		if c.Call != want[i] {
			t.Errorf("line %d: call=%v; want %v", i+1, c.Call, want[i])
		}
	}
	m := Default().With(cells)
	if m.Check(Party{Name: "E", Role: edge, Farm: "x"}, Party{Name: "N", Role: node}, Call).Allowed {
		t.Errorf("call=no override not applied")
	}
	if _, err := ParseOverrides(strings.NewReader("edge -> node pull=yes push=no call=maybe\n")); err == nil {
		t.Errorf("call=maybe: no error")
	}
}
