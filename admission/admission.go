// Package admission decides, for every change a node receives from a peer,
// whether it is merged, refused or held (docs/ARCHITECTURE.md, "Trust
// model"). It is built before the store from the trust list, the table
// permissions and the relay roles, and handed to the store as its Gate.
//
// The rules, in order:
//
//  1. The origin must be NAME/incarnation.
//  2. Who may speak for whom: the origin must be the sending peer itself, or
//     the sender's role must be a relay (masters and nodes by default). A
//     farm sibling relays only its own writes. Protocol 1 carries no origin
//     signatures, so this is the only proof of an origin there is.
//  3. The origin must be on this node's trust list; if it is not (yet), the
//     change is held and judged again when the trust list is reloaded.
//  4. A node's slug registry rows may come only from that node.
//  5. The origin's role must be allowed to write the table (the
//     `-- outpost: table T writable by ...` directives of the schema).
//
// The store adds what only it can judge: the schema (unknown tables and
// columns are held), clock drift (held), bounds on causal length and time
// (refused) and the local constraints (held).
package admission

import (
	"fmt"
	"slices"
	"strings"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/identity"
	"github.com/outpost-edge/outpost/policy"
)

// Rules a refused or held change is reported under. They are stable: logs,
// metrics and tests use them.
const (
	RuleOriginMalformed = "origin_malformed"  // the origin is not NAME/incarnation
	RuleSenderUnknown   = "sender_unknown"    // the sender is not on the trust list (any more)
	RuleNotSender       = "origin_not_sender" // a non-relay sent a change it did not originate
	RuleOriginUnknown   = "origin_unknown"    // held: the origin is not on the trust list yet
	RuleSlugNotOrigin   = "slug_not_origins"  // a slug registry row for another node's slug
	RuleTablePermission = "table_permission"  // the origin's role may not write the table
	RuleNoTrustList     = "no_trust_list"     // a node without a trust list accepts no changes
	RuleBadKey          = "primary_key_malformed"
)

// Directory is the part of the trust list the gate reads: peers by name.
// *trust.List satisfies it.
type Directory interface {
	ByName(name string) (identity.Peer, bool)
}

// Config configures a Gate.
type Config struct {
	Self outpost.Identity
	// Trust returns the trust list in force (it may be reloaded at any
	// time). nil means the node has no trust list.
	Trust func() Directory
	// Perms are the table permissions of the schema; nil allows every role
	// to write every table.
	Perms *policy.Permissions
	// Relays are the roles whose nodes may forward changes that other
	// nodes originated; nil means DefaultRelays.
	Relays []outpost.Role
}

// DefaultRelays are the roles that relay: masters and nodes (DESIGN.md
// section 2). Edges relay only their own writes.
var DefaultRelays = []outpost.Role{outpost.RoleMaster, outpost.RoleNode}

// Gate is the admission decision for remote changes. It is safe for
// concurrent use.
type Gate struct {
	cfg Config
}

// New returns a Gate.
func New(cfg Config) *Gate {
	if cfg.Relays == nil {
		cfg.Relays = DefaultRelays
	}
	return &Gate{cfg: cfg}
}

// IsRelay reports whether nodes of role forward changes they did not
// originate.
func (g *Gate) IsRelay(role outpost.Role) bool { return slices.Contains(g.cfg.Relays, role) }

// Admit decides what to do with ch, received from the peer named sender.
func (g *Gate) Admit(sender string, ch *outpost.Change) outpost.Admission {
	name, inc, ok := strings.Cut(ch.Origin, "/")
	if !ok || name == "" || inc == "" || strings.Contains(inc, "/") {
		return refuse(RuleOriginMalformed, "origin %q is not NAME/incarnation", ch.Origin)
	}
	var dir Directory
	if g.cfg.Trust != nil {
		dir = g.cfg.Trust()
	}
	if dir == nil {
		return refuse(RuleNoTrustList, "this node has no trust list, so it cannot judge change origins")
	}
	lookup := func(n string) (outpost.Identity, bool) {
		if n == g.cfg.Self.Name {
			return g.cfg.Self, true
		}
		p, ok := dir.ByName(n)
		return p.Identity, ok
	}
	if sender != name {
		from, ok := lookup(sender)
		if !ok {
			return refuse(RuleSenderUnknown, "sender %s is not on the trust list", sender)
		}
		if !g.IsRelay(from.Role) {
			return refuse(RuleNotSender, "%s (%s) sent a change claiming origin %s; a %s relays only its own writes", sender, from.Role, name, from.Role)
		}
	}
	origin, ok := lookup(name)
	if !ok {
		return outpost.Admission{Verdict: outpost.Hold, Rule: RuleOriginUnknown,
			Reason: fmt.Sprintf("origin %s is not on this node's trust list yet; held until the trust list names it", name)}
	}
	if strings.EqualFold(ch.Table, "outpost_slugs") {
		if len(ch.PK) != 1 {
			return refuse(RuleBadKey, "slug registry change with %d key values", len(ch.PK))
		}
		slug, _ := ch.PK[0].(string)
		if !SlugOf(slug, origin.Code) {
			return refuse(RuleSlugNotOrigin, "%s may not write slug %q: a node writes only its own slugs (ending in -%s)", name, slug, origin.Code)
		}
		return outpost.Admitted
	}
	if err := g.cfg.Perms.Check(policy.PartyOf(origin), ch.Table); err != nil {
		return refuse(RuleTablePermission, "%v", err)
	}
	return outpost.Admitted
}

func refuse(rule, format string, args ...any) outpost.Admission {
	return outpost.Admission{Verdict: outpost.Refuse, Rule: rule, Reason: fmt.Sprintf(format, args...)}
}

// SlugOf reports whether slug was issued by the node with code: it ends in
// -code or -code-N.
func SlugOf(slug, code string) bool {
	if strings.HasSuffix(slug, "-"+code) {
		return true
	}
	i := strings.LastIndex(slug, "-"+code+"-")
	if i < 0 {
		return false
	}
	rest := slug[i+len(code)+2:]
	return rest != "" && strings.Trim(rest, "0123456789") == ""
}
