// Package outpost holds the domain types shared by every part of an Outpost
// node: node identity and roles, replicated changes, and sentinel errors.
//
// The packages below it each do one job (hlc, ids, store, api, node, ...);
// cmd/outpost wires them into the single static binary.
package outpost

import (
	"encoding/binary"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Version is the release of this build; overridden at link time with
// -ldflags "-X github.com/outpost-edge/outpost.Version=v1.2.3".
var Version = "dev"

// ProtocolVersion is the node-to-node protocol this build speaks.
const ProtocolVersion = 2

// MinProtocolVersion is the oldest protocol this build still speaks.
const MinProtocolVersion = 1

// Role is what a node is in the fleet: master, node or edge.
type Role string

// The three roles of DESIGN.md section 2.
const (
	RoleMaster Role = "master"
	RoleNode   Role = "node"
	RoleEdge   Role = "edge"
)

// ParseRole returns the Role named by s.
func ParseRole(s string) (Role, error) {
	switch r := Role(strings.ToLower(strings.TrimSpace(s))); r {
	case RoleMaster, RoleNode, RoleEdge:
		return r, nil
	}
	return "", fmt.Errorf("%w: role %q is not one of master, node, edge", ErrInvalidIdentity, s)
}

// Identity is who a node is: the fields every ID, slug and trust-list entry
// is built from.
type Identity struct {
	Name     string `json:"name"`     // unique node name, e.g. EDGE01
	Location string `json:"location"` // location code, e.g. LHR
	Farm     string `json:"farm"`     // farm of an edge, e.g. lhr; may be empty for masters and nodes
	Role     Role   `json:"role"`
	Code     string `json:"code"` // NNLL: two digits then two lowercase letters, e.g. 43ax
}

var (
	nameRE     = regexp.MustCompile(`^[A-Z0-9][A-Z0-9_]{0,31}$`)
	locationRE = regexp.MustCompile(`^[A-Z0-9]{2,8}$`)
	farmRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)
	codeRE     = regexp.MustCompile(`^[0-9]{2}[a-z]{2}$`)
)

// Validate checks every field of the identity and names the one to fix.
func (id Identity) Validate() error {
	if !nameRE.MatchString(id.Name) {
		return fmt.Errorf("%w: name %q must be 1-32 characters of A-Z, 0-9 and _ starting with a letter or digit (e.g. EDGE01)", ErrInvalidIdentity, id.Name)
	}
	if !locationRE.MatchString(id.Location) {
		return fmt.Errorf("%w: location %q must be 2-8 characters of A-Z and 0-9 (e.g. LHR)", ErrInvalidIdentity, id.Location)
	}
	if _, err := ParseRole(string(id.Role)); err != nil || string(id.Role) != strings.ToLower(string(id.Role)) {
		return fmt.Errorf("%w: role %q must be master, node or edge", ErrInvalidIdentity, id.Role)
	}
	if id.Farm != "" && !farmRE.MatchString(id.Farm) {
		return fmt.Errorf("%w: farm %q must be 1-32 characters of a-z, 0-9 and - (e.g. lhr)", ErrInvalidIdentity, id.Farm)
	}
	if id.Role == RoleEdge && id.Farm == "" {
		return fmt.Errorf("%w: edge %s has no farm; every edge belongs to a farm (e.g. --farm lhr)", ErrInvalidIdentity, id.Name)
	}
	if !codeRE.MatchString(id.Code) {
		return fmt.Errorf("%w: code %q must be NNLL, two digits then two lowercase letters (e.g. 43ax)", ErrInvalidIdentity, id.Code)
	}
	return nil
}

// Sentinel errors. Packages wrap them with context; callers test with errors.Is.
var (
	// ErrInvalidIdentity reports a malformed node identity.
	ErrInvalidIdentity = errors.New("invalid identity")
	// ErrInvalidSchema reports a schema file that breaks a rule of DESIGN.md section 3.
	ErrInvalidSchema = errors.New("invalid schema")
	// ErrClosed reports use of a closed store or node.
	ErrClosed = errors.New("closed")
	// ErrNotReady reports an operation refused until the node has caught up
	// (e.g. issuing slugs on a new incarnation).
	ErrNotReady = errors.New("not ready")
)

// Change is one replicated fact: the state of one column of one row (or,
// with Col == "", the row's life itself) as its origin last wrote it.
// DESIGN.md section 4 says how a node merges it.
type Change struct {
	Table  string `cbor:"1,keyasint" json:"table"`
	PK     []any  `cbor:"2,keyasint" json:"pk"`            // primary key values, in key order
	Col    string `cbor:"3,keyasint" json:"col,omitempty"` // "" = the row sentinel (its causal length)
	Val    any    `cbor:"4,keyasint" json:"val,omitempty"` // int64, float64, string, []byte or nil
	CL     int64  `cbor:"5,keyasint" json:"cl"`            // causal length: odd = alive, even = deleted
	HLC    uint64 `cbor:"6,keyasint" json:"hlc"`           // hybrid logical time of the write
	Origin string `cbor:"7,keyasint" json:"origin"`        // NAME/incarnation of the node that wrote it
}

// Group is the changes a node committed under one of its db_versions.
// Readers at a receiver see a group whole or not at all.
type Group struct {
	DBV     int64    `cbor:"1,keyasint" json:"db_version"`
	Changes []Change `cbor:"2,keyasint" json:"changes"`
}

// Entry is one entry of an origin's log (protocol 2, docs/PROTOCOL2.md): the
// changes one of the origin's commit groups made, numbered by the origin's
// own gapless sequence, signed by the origin's key and forwarded unchanged
// on every hop. A commit group too large for one entry is a chain of
// entries with consecutive sequence numbers, each but the last with More
// set; a receiver applies a chain whole.
type Entry struct {
	Origin string `cbor:"1,keyasint"`           // NAME/incarnation of the origin
	Seq    int64  `cbor:"2,keyasint"`           // the origin's sequence, from 1, gapless
	HLC    uint64 `cbor:"3,keyasint"`           // the latest timestamp among its changes
	More   bool   `cbor:"4,keyasint,omitempty"` // the next entry belongs to the same commit group
	Body   []byte `cbor:"5,keyasint"`           // the changes, as wire.EncodeBody writes them
	Sig    []byte `cbor:"6,keyasint"`           // ed25519 over SignedMessage
}

// SignedMessage is what an entry's origin signs: a domain prefix, the
// origin, the sequence, the timestamp, the More flag and the body.
func (e *Entry) SignedMessage() []byte {
	b := make([]byte, 0, 32+len(e.Origin)+len(e.Body))
	b = append(b, "outpost-log-1\x00"...)
	b = append(b, e.Origin...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Seq))
	b = binary.BigEndian.AppendUint64(b, e.HLC)
	if e.More {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	return append(b, e.Body...)
}

// Verdict is what a node does with a change received from a peer.
type Verdict uint8

// The verdicts of admission (docs/ARCHITECTURE.md, "Trust model").
const (
	// Admit merges the change by the rules of section 4.
	Admit Verdict = iota
	// Refuse never applies the change; it is counted and logged with the
	// sender, the claimed origin and the rule it broke.
	Refuse
	// Hold keeps the change durably without applying it, because it cannot
	// be judged yet (origin not on the trust list yet, table or column not
	// in the schema yet, clock too far ahead, a value the local constraints
	// reject); it is judged again later and never skipped past.
	Hold
)

// String names the verdict: "admit", "refuse" or "hold".
func (v Verdict) String() string {
	switch v {
	case Admit:
		return "admit"
	case Refuse:
		return "refuse"
	case Hold:
		return "hold"
	}
	return fmt.Sprintf("Verdict(%d)", uint8(v))
}

// Admission is a verdict and, unless it is Admit, the rule that decided it
// (a stable, short name such as "origin_not_sender") and a message that says
// why in words.
type Admission struct {
	Verdict Verdict
	Rule    string
	Reason  string
}

// Admitted is the Admission that lets a change be merged.
var Admitted = Admission{Verdict: Admit}

// OriginName returns the node name of an origin NAME/incarnation.
func OriginName(origin string) string {
	name, _, _ := strings.Cut(origin, "/")
	return name
}
