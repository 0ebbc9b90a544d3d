package policy

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost"
)

const testSchema = `-- Outpost schema for the pages example.
-- outpost: table prices writable by master, node
CREATE TABLE prices (sku TEXT PRIMARY KEY, cents INTEGER NOT NULL);

-- Comments may be written by anyone.
CREATE TABLE comments (id TEXT PRIMARY KEY, body TEXT);

--OUTPOST: TABLE Pages WRITABLE BY master node
CREATE TABLE pages (id TEXT PRIMARY KEY, body TEXT DEFAULT '-- outpost: table pages writable by edge');

CREATE TABLE audit (id TEXT PRIMARY KEY); -- outpost: table audit writable by master
/* -- outpost: table comments writable by master */
-- outpost: table "odd name" writable by edge,master,,edge
-- outpost : table [Bracketed] writable by node
-- outpost is what we call this product; not a directive
-- outpost: search pages_fts on pages (body)
-- (a search index directive belongs to package schema: skipped here)
`

func TestParsePermissions(t *testing.T) {
	p, err := ParsePermissions(testSchema)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		table string
		want  []outpost.Role
	}{
		{"prices", []outpost.Role{master, node}},
		{"PRICES", []outpost.Role{master, node}},
		{"pages", []outpost.Role{master, node}},
		{"audit", []outpost.Role{master}},
		{"comments", nil},
		{"odd name", []outpost.Role{master, edge}},
		{"bracketed", []outpost.Role{node}},
		{"missing", nil},
	}
	for _, tt := range tests {
		if got := p.Writers(tt.table); !slices.Equal(got, tt.want) {
			t.Errorf("Writers(%q) = %v; want %v", tt.table, got, tt.want)
		}
	}
	if got, want := p.Tables(), []string{"audit", "Bracketed", "odd name", "Pages", "prices"}; !slices.Equal(got, want) {
		t.Errorf("Tables() = %q; want %q", got, want)
	}
	w := p.Writers("prices")
	w[0] = edge
	if got := p.Writers("prices"); got[0] != master {
		t.Errorf("Writers returned shared storage")
	}
}

func TestParsePermissions_Empty(t *testing.T) {
	for _, src := range []string{"", "CREATE TABLE t (id TEXT PRIMARY KEY);", "-- just a comment"} {
		p, err := ParsePermissions(src)
		if err != nil {
			t.Fatalf("ParsePermissions(%q): %v", src, err)
		}
		if got := p.Tables(); got != nil {
			t.Errorf("ParsePermissions(%q).Tables() = %q; want nil", src, got)
		}
	}
}

func TestParsePermissions_Errors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"unknown role", "CREATE TABLE prices (x);\n-- outpost: table prices writable by master, admin\n",
			[]string{"line 2:", `unknown role "admin"`, `table "prices"`}},
		{"duplicate directive", "-- outpost: table prices writable by master\n\n-- outpost: table PRICES writable by node\n",
			[]string{"line 3:", `second directive for table "PRICES"`, "first is on line 1"}},
		{"missing table keyword", "-- outpost: prices writable by master", []string{"line 1:", "malformed directive", `found "prices" where "table" belongs`}},
		{"missing writable", "\n-- outpost: table prices by master", []string{"line 2:", "malformed directive", `"writable"`}},
		{"missing by", "-- outpost: table prices writable master", []string{"line 1:", `found "master" where "by" belongs`}},
		{"no roles", "-- outpost: table prices writable by", []string{"line 1:", `no roles after "writable by"`}},
		{"no roles, only commas", "-- outpost: table prices writable by , ,", []string{"line 1:", `no roles`}},
		{"nothing after colon", "-- outpost:", []string{"line 1:", `missing "table"`}},
		{"missing table name", "-- outpost: table", []string{"line 1:", "missing table name"}},
		{"bad table name", "-- outpost: table prices, writable by master", []string{"line 1:", `table name "prices,"`}},
		{"unterminated quote", `-- outpost: table "prices writable by master`, []string{"line 1:", "unterminated"}},
		{"empty quoted name", `-- outpost: table "" writable by master`, []string{"line 1:", "empty table name"}},
		{"quoted name glued to keyword", `-- outpost: table "prices"writable by master`, []string{"line 1:", "want a space after table name"}},
		{"line counted through strings and block comments", "CREATE TABLE t (a TEXT DEFAULT 'x\ny');\n/*\n\n*/\n-- outpost: table t writable by nobody",
			[]string{"line 6:", `unknown role "nobody"`}},
		{"every bad directive reported", "-- outpost: table a writable by admin\n-- outpost: table b writable by root\n",
			[]string{"line 1:", `"admin"`, "line 2:", `"root"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParsePermissions(tt.src)
			if err == nil {
				t.Fatalf("got %v and no error; want error containing %q", p.Tables(), tt.want)
			}
			if !errors.Is(err, ErrInvalidPolicy) {
				t.Errorf("got %v; want it to wrap ErrInvalidPolicy", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got error %q; want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestPermissions_CanWrite(t *testing.T) {
	p, err := ParsePermissions(testSchema)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		perms *Permissions
		role  outpost.Role
		table string
		want  bool
	}{
		{p, master, "prices", true},
		{p, node, "prices", true},
		{p, edge, "prices", false},
		{p, edge, "Prices", false},
		{p, node, "PRICES", true},
		{p, master, "comments", true},
		{p, node, "comments", true},
		{p, edge, "comments", true},
		{p, edge, "never declared", true},
		{p, edge, "audit", false},
		{p, node, "audit", false},
		{p, edge, "odd name", true},
		{p, node, "odd name", false},
		{p, "admin", "comments", false},
		{p, "", "comments", false},
		{p, "MASTER", "prices", false}, // roles are exact, as outpost.Identity.Validate requires
		{nil, edge, "prices", true},
		{nil, "admin", "prices", false},
	}
	for _, tt := range tests {
		if got := tt.perms.CanWrite(tt.role, tt.table); got != tt.want {
			t.Errorf("CanWrite(%q, %q) = %v; want %v (perms nil: %v)", tt.role, tt.table, got, tt.want, tt.perms == nil)
		}
	}
}

func TestPermissions_Check(t *testing.T) {
	p, err := ParsePermissions(testSchema)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		origin  Party
		table   string
		wantErr string // "" = allowed
	}{
		{Party{Name: "EDGE01", Role: edge, Farm: "lhr"}, "prices", `edge EDGE01 may not write table "prices" (writable by master, node)`},
		{Party{Name: "EDGE01", Role: edge, Farm: "lhr"}, "Prices", `edge EDGE01 may not write table "Prices" (writable by master, node)`},
		{Party{Name: "NODE01", Role: node}, "audit", `node NODE01 may not write table "audit" (writable by master)`},
		{Party{Name: "X", Role: "admin"}, "comments", `admin X may not write table "comments" ("admin" is not a role)`},
		{Party{Name: "EDGE01", Role: edge, Farm: "lhr"}, "comments", ""},
		{Party{Name: "MASTER01", Role: master}, "prices", ""},
	}
	for _, tt := range tests {
		err := p.Check(tt.origin, tt.table)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("Check(%v, %q) = %v; want nil", tt.origin, tt.table, err)
			}
			continue
		}
		if err == nil || err.Error() != tt.wantErr {
			t.Errorf("Check(%v, %q) = %v; want %q", tt.origin, tt.table, err, tt.wantErr)
		}
		if !errors.Is(err, ErrWriteRefused) {
			t.Errorf("Check(%v, %q) = %v; want it to wrap ErrWriteRefused", tt.origin, tt.table, err)
		}
	}
	if err := (*Permissions)(nil).Check(Party{Name: "EDGE01", Role: edge}, "prices"); err != nil {
		t.Errorf("nil Permissions: got %v; want nil", err)
	}
}
