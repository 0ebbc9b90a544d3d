package admission_test

import (
	"testing"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/admission"
	"github.com/outpost-edge/outpost/identity"
	"github.com/outpost-edge/outpost/policy"
)

type dir map[string]identity.Peer

func (d dir) ByName(name string) (identity.Peer, bool) { p, ok := d[name]; return p, ok }

func id(name, code, farm string, role outpost.Role) outpost.Identity {
	return outpost.Identity{Name: name, Location: "LHR", Farm: farm, Role: role, Code: code}
}

func TestGate_Admit(t *testing.T) {
	perms, err := policy.ParsePermissions("-- outpost: table prices writable by master\nCREATE TABLE prices (id TEXT PRIMARY KEY NOT NULL);\nCREATE TABLE pages (id TEXT PRIMARY KEY NOT NULL);")
	if err != nil {
		t.Fatal(err)
	}
	self := id("EDGE02", "e2e2", "lhr", outpost.RoleEdge)
	trusted := dir{}
	for _, i := range []outpost.Identity{
		id("MASTER01", "m1m1", "", outpost.RoleMaster),
		id("NODE01", "n1n1", "lhr", outpost.RoleNode),
		id("EDGE01", "e1e1", "lhr", outpost.RoleEdge),
		id("EDGE03", "e3e3", "lhr", outpost.RoleEdge),
	} {
		trusted[i.Name] = identity.Peer{Identity: i}
	}
	var list admission.Directory = trusted
	g := admission.New(admission.Config{Self: self, Trust: func() admission.Directory { return list }, Perms: perms})
	ch := func(table, origin string, pk ...any) *outpost.Change {
		if pk == nil {
			pk = []any{"k"}
		}
		return &outpost.Change{Table: table, PK: pk, CL: 1, HLC: 1, Origin: origin}
	}
	cases := []struct {
		name    string
		sender  string
		ch      *outpost.Change
		verdict outpost.Verdict
		rule    string
	}{
		{"own write", "EDGE01", ch("pages", "EDGE01/i1"), outpost.Admit, ""},
		{"relay by a node", "NODE01", ch("pages", "EDGE03/i3"), outpost.Admit, ""},
		{"relay by a master", "MASTER01", ch("prices", "MASTER01/i"), outpost.Admit, ""},
		{"master write relayed by a node", "NODE01", ch("prices", "MASTER01/i"), outpost.Admit, ""},
		{"sibling forges a master", "EDGE01", ch("prices", "MASTER01/i"), outpost.Refuse, admission.RuleNotSender},
		{"sibling relays a sibling", "EDGE01", ch("pages", "EDGE03/i3"), outpost.Refuse, admission.RuleNotSender},
		{"edge writes a master table", "EDGE01", ch("prices", "EDGE01/i1"), outpost.Refuse, admission.RuleTablePermission},
		{"edge write of a master table relayed", "NODE01", ch("prices", "EDGE01/i1"), outpost.Refuse, admission.RuleTablePermission},
		{"unknown sender", "EVIL", ch("pages", "MASTER01/i"), outpost.Refuse, admission.RuleSenderUnknown},
		{"unknown origin via a relay is held", "NODE01", ch("pages", "NEW01/x"), outpost.Hold, admission.RuleOriginUnknown},
		{"malformed origin", "NODE01", ch("pages", "NODE01"), outpost.Refuse, admission.RuleOriginMalformed},
		{"malformed origin, empty incarnation", "NODE01", ch("pages", "NODE01/"), outpost.Refuse, admission.RuleOriginMalformed},
		{"malformed origin, extra part", "NODE01", ch("pages", "NODE01/a/b"), outpost.Refuse, admission.RuleOriginMalformed},
		{"own slug", "EDGE01", ch("outpost_slugs", "EDGE01/i1", "hello-e1e1"), outpost.Admit, ""},
		{"own numbered slug", "EDGE01", ch("outpost_slugs", "EDGE01/i1", "hello-e1e1-12"), outpost.Admit, ""},
		{"another node's slug", "EDGE01", ch("outpost_slugs", "EDGE01/i1", "hello-m1m1"), outpost.Refuse, admission.RuleSlugNotOrigin},
		{"slug with a bad suffix", "EDGE01", ch("outpost_slugs", "EDGE01/i1", "hello-e1e1-x"), outpost.Refuse, admission.RuleSlugNotOrigin},
		{"slug key arity", "EDGE01", ch("outpost_slugs", "EDGE01/i1", "a", "b"), outpost.Refuse, admission.RuleBadKey},
		{"own changes of an earlier life come back", "NODE01", ch("pages", "EDGE02/old"), outpost.Admit, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := g.Admit(tc.sender, tc.ch)
			if a.Verdict != tc.verdict || a.Rule != tc.rule {
				t.Fatalf("Admit(%s, %s on %s) = %v %q (%s), want %v %q", tc.sender, tc.ch.Origin, tc.ch.Table, a.Verdict, a.Rule, a.Reason, tc.verdict, tc.rule)
			}
			if a.Verdict != outpost.Admit && a.Reason == "" {
				t.Fatal("no reason given")
			}
		})
	}
	t.Run("no trust list", func(t *testing.T) {
		list = nil
		defer func() { list = trusted }()
		if a := g.Admit("EDGE01", ch("pages", "EDGE01/i1")); a.Verdict != outpost.Refuse || a.Rule != admission.RuleNoTrustList {
			t.Fatalf("got %+v", a)
		}
	})
	t.Run("relay roles configurable", func(t *testing.T) {
		g := admission.New(admission.Config{Self: self, Trust: func() admission.Directory { return trusted }, Perms: perms, Relays: []outpost.Role{outpost.RoleMaster}})
		if a := g.Admit("NODE01", ch("pages", "EDGE03/i3")); a.Rule != admission.RuleNotSender {
			t.Fatalf("a node relayed with relays = [master]: %+v", a)
		}
	})
}
