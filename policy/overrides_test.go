package policy

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseOverrides(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Cell
	}{
		{"empty", "", nil},
		{"comments and blanks", "# nothing here\n\n   \n\t# still nothing\n", nil},
		{"one cell, farm defaults to any", "edge -> master pull=yes push=no\n",
			[]Cell{{From: edge, To: master, Farm: FarmAny, Pull: true, Push: false}}},
		{"farm other", "edge -> edge farm=other pull=no push=no",
			[]Cell{{From: edge, To: edge, Farm: FarmOther}}},
		{"keys in any order, true/false, case", "  EDGE -> Node  PUSH=True Farm=SAME pull=FALSE  # trailing comment\r\n",
			[]Cell{{From: edge, To: node, Farm: FarmSame, Pull: false, Push: true}}},
		{"no spaces around arrow", "master->edge pull=yes push=yes",
			[]Cell{{From: master, To: edge, Farm: FarmAny, Pull: true, Push: true}}},
		{"unicode arrow", "node → edge pull=no push=yes",
			[]Cell{{From: node, To: edge, Farm: FarmAny, Pull: false, Push: true}}},
		{"same roles, different farms are different cells", "edge -> edge farm=same pull=yes push=yes\nedge -> edge farm=other pull=yes push=no\nedge -> edge pull=no push=no\n",
			[]Cell{
				{From: edge, To: edge, Farm: FarmSame, Pull: true, Push: true},
				{From: edge, To: edge, Farm: FarmOther, Pull: true, Push: false},
				{From: edge, To: edge, Farm: FarmAny},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseOverrides(strings.NewReader(tt.in))
			if err != nil {
				t.Fatalf("got error %v", err)
			}
			withDefaultCall(tt.want)
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v; want %v", got, tt.want)
			}
		})
	}
}

func TestParseOverrides_Errors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string // substrings of the error
	}{
		{"unknown initiator role", "# header\nadmin -> master pull=yes push=no", []string{"line 2:", `unknown role "admin"`, "master, node or edge"}},
		{"unknown target role", "edge -> core pull=yes push=no", []string{"line 1:", `unknown role "core"`}},
		{"no arrow", "\n\nedge master pull=yes push=no", []string{"line 3:", "no arrow", "->"}},
		{"fat arrow", "edge => master pull=yes push=no", []string{"line 1:", "no arrow"}},
		{"long arrow", "edge --> master pull=yes push=no", []string{"line 1:", "malformed arrow"}},
		{"arrow with gap", "edge - > master pull=yes push=no", []string{"line 1:", "no arrow"}},
		{"two arrows", "edge -> node -> master pull=yes push=no", []string{"line 1:", `more than one "->"`}},
		{"missing initiator", "-> master pull=yes push=no", []string{"line 1:", "missing initiator role"}},
		{"missing target", "edge -> ", []string{"line 1:", "missing target role"}},
		{"settings before arrow", "edge pull=yes -> master push=no", []string{"line 1:", "want one initiator role"}},
		{"unknown key", "edge -> master pull=yes push=no sync=yes", []string{"line 1:", `unknown key "sync"`, "farm, pull, push or call"}},
		{"duplicate key", "edge -> master pull=yes pull=no push=no", []string{"line 1:", `duplicate key "pull"`}},
		{"duplicate key differing case", "edge -> master pull=yes PULL=no push=no", []string{"line 1:", `duplicate key "pull"`}},
		{"missing push", "edge -> master pull=yes", []string{"line 1:", "missing push=yes|no"}},
		{"missing pull", "edge -> master push=no", []string{"line 1:", "missing pull=yes|no"}},
		{"missing both", "edge -> master farm=any", []string{"line 1:", "missing pull=yes|no and push=yes|no"}},
		{"bad bool", "edge -> master pull=maybe push=no", []string{"line 1:", `pull="maybe"`, "pull=yes or pull=no"}},
		{"bad farm", "edge -> edge farm=near pull=yes push=no", []string{"line 1:", `farm="near"`, "farm=any, farm=same or farm=other"}},
		{"not key=value", "edge -> master pull = yes push=no", []string{"line 1:", `want key=value`, `"pull"`}},
		{"duplicate cell", "edge -> master pull=yes push=no\n# again\nEDGE -> master farm=any pull=no push=no\n",
			[]string{"line 3:", `duplicate cell "edge -> master"`, "already given on line 1"}},
		{"duplicate farm cell", "edge -> edge farm=other pull=no push=no\nedge -> edge farm=other pull=yes push=no\n",
			[]string{"line 2:", `duplicate cell "edge -> edge (other farm)"`, "line 1"}},
		{"every bad line reported", "admin -> master pull=yes push=no\nedge -> master pull=yes push=no\nedge -> node pull=yes\n",
			[]string{"line 1:", "admin", "line 3:", "missing push"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseOverrides(strings.NewReader(tt.in))
			if err == nil {
				t.Fatalf("got cells %v and no error; want error containing %q", got, tt.want)
			}
			if got != nil {
				t.Errorf("got cells %v with the error; want nil", got)
			}
			if !errors.Is(err, ErrInvalidPolicy) {
				t.Errorf("got error %v; want it to wrap ErrInvalidPolicy", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got error %q; want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadOverrides(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "policy.conf")
	if err := os.WriteFile(good, []byte("# let edges push to nodes\nedge -> node pull=yes push=yes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.conf")
	if err := os.WriteFile(bad, []byte("edge -> node pull=yes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		want    []Cell
		wantErr []string
	}{
		{"good", good, []Cell{{From: edge, To: node, Farm: FarmAny, Pull: true, Push: true}}, nil},
		{"bad names file and line", bad, nil, []string{bad + " line 1:", "missing push"}},
		{"missing file", filepath.Join(dir, "nope.conf"), nil, []string{"nope.conf"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadOverrides(tt.path)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("got error %v", err)
				}
				withDefaultCall(tt.want)
				if !slices.Equal(got, tt.want) {
					t.Errorf("got %v; want %v", got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("got %v and no error; want error", got)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got error %q; want it to contain %q", err, w)
				}
			}
		})
	}
	// Loaded overrides change the decision.
	cells, err := LoadOverrides(good)
	if err != nil {
		t.Fatal(err)
	}
	d := Default().With(cells).Check(Party{Name: "EDGE01", Role: edge, Farm: "lhr"}, Party{Name: "NODE01", Role: node}, Push)
	if !d.Allowed {
		t.Errorf("after override: got refused (%s); want allowed", d.Reason)
	}
}

// withDefaultCall sets the call of cells written without one, as the
// parser does for a line without call=.
func withDefaultCall(cells []Cell) {
	for i, c := range cells {
		cells[i].Call = DefaultCall(c.From, c.To, c.Farm)
	}
}
