package identity

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/outpost-edge/outpost"
)

// ErrInvalidLine reports a public identity line that ParseLine cannot accept.
var ErrInvalidLine = errors.New("invalid identity line")

// Peer is one entry of a trust list: a peer's identity, its public key and,
// if it listens, the address to reach it at.
type Peer struct {
	outpost.Identity
	Key  ed25519.PublicKey // pinned against the peer's TLS certificate
	Addr string            // host:port; empty if the peer is never dialled
}

// noFarm is the farm value written for a node without a farm.
const noFarm = "-"

// lineFields are the fields of an identity line, in the order Line writes them.
var lineFields = []string{"name", "role", "farm", "location", "code", "key", "addr"}

// requiredFields must appear in every identity line.
var requiredFields = []string{"name", "role", "location", "code", "key"}

// Line returns the public identity line of a node, which a peer pastes into
// its trust list, e.g.
//
//	name=EDGE01 role=edge farm=lhr location=LHR code=43ax key=ed25519:... addr=host:7701
//
// An empty farm is written as "farm=-"; an empty addr is left out.
func Line(id outpost.Identity, pub ed25519.PublicKey, addr string) string {
	farm := id.Farm
	if farm == "" {
		farm = noFarm
	}
	var b strings.Builder
	fmt.Fprintf(&b, "name=%s role=%s farm=%s location=%s code=%s key=%s",
		id.Name, id.Role, farm, id.Location, id.Code, EncodePublicKey(pub))
	if addr != "" {
		b.WriteString(" addr=")
		b.WriteString(addr)
	}
	return b.String()
}

// ParseLine parses one line written by Line. Fields are field=value pairs
// separated by whitespace, in any order. name, role, location, code and key
// are required; farm may be left out or "-" when the role is not edge; addr
// may be left out. An unknown, repeated, empty or missing field, a bad key or
// address, or an identity that fails Validate is an error naming the field;
// errors wrap ErrInvalidLine and, where they apply, ErrInvalidKey or
// outpost.ErrInvalidIdentity. Comments and blank lines are the trust-list
// reader's business, not ParseLine's.
func ParseLine(s string) (Peer, error) {
	tokens := strings.Fields(s)
	if len(tokens) == 0 {
		return Peer{}, fmt.Errorf("%w: empty line", ErrInvalidLine)
	}
	vals := make(map[string]string, len(tokens))
	for _, tok := range tokens {
		name, val, ok := strings.Cut(tok, "=")
		if !ok {
			return Peer{}, fmt.Errorf("%w: %q is not field=value", ErrInvalidLine, tok)
		}
		if !slices.Contains(lineFields, name) {
			return Peer{}, fmt.Errorf("%w: unknown field %q (fields are %s)", ErrInvalidLine, name, strings.Join(lineFields, ", "))
		}
		if _, dup := vals[name]; dup {
			return Peer{}, fmt.Errorf("%w: field %s appears twice", ErrInvalidLine, name)
		}
		if val == "" {
			return Peer{}, fmt.Errorf("%w: field %s is empty", ErrInvalidLine, name)
		}
		vals[name] = val
	}
	for _, name := range requiredFields {
		if _, ok := vals[name]; !ok {
			return Peer{}, fmt.Errorf("%w: missing field %s", ErrInvalidLine, name)
		}
	}

	p := Peer{Identity: outpost.Identity{
		Name:     vals["name"],
		Location: vals["location"],
		Farm:     vals["farm"],
		Role:     outpost.Role(vals["role"]),
		Code:     vals["code"],
	}}
	if p.Farm == noFarm {
		p.Farm = ""
	}
	if err := p.Identity.Validate(); err != nil {
		return Peer{}, fmt.Errorf("%w: %w", ErrInvalidLine, err)
	}
	key, err := DecodePublicKey(vals["key"])
	if err != nil {
		return Peer{}, fmt.Errorf("%w: field key: %w", ErrInvalidLine, err)
	}
	p.Key = key
	if addr, ok := vals["addr"]; ok {
		if err := checkAddr(addr); err != nil {
			return Peer{}, fmt.Errorf("%w: field addr: %v", ErrInvalidLine, err)
		}
		p.Addr = addr
	}
	return p, nil
}

// Line returns the peer's identity line; ParseLine(p.Line()) gives p back.
func (p Peer) Line() string {
	return Line(p.Identity, p.Key, p.Addr)
}

// checkAddr accepts host:port with a non-empty host and a port in 1-65535.
func checkAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q must be host:port: %v", addr, err)
	}
	if host == "" {
		return fmt.Errorf("%q has no host", addr)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q has port %q, want 1-65535", addr, port)
	}
	return nil
}
