// Package trust reads the trust list: the one file that names every node of
// the fleet with the public key its TLS certificate must carry and the
// address to reach it at (DESIGN.md section 2). A node talks only to keys on
// its list; an unknown key gets nothing.
//
// # File format
//
// One node per line, written exactly as `outpost id --data DIR
// [--peer-addr HOST:PORT]` prints it on that node (see identity.Line):
// field=value pairs separated by spaces or tabs, in any order.
//
//	# Outpost fleet trust list, the same file on every node.
//	name=MASTER1 role=master farm=- location=FRA code=01mm key=ed25519:iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w addr=master1.example.com:7701
//
//	# London farm
//	name=EDGE01 role=edge farm=lhr location=LHR code=43ax key=ed25519:gTl3Dqh9F19Wo1Rmw0x-zMuNipG07jeiXfYPW4_Js5Q addr=10.0.0.7:7701  # rack 3
//	name=EDGE02 role=edge farm=lhr location=LHR code=44bx key=ed25519:7UkoxijRwsbq6QM4kFmVYSlZJzpcY_k2NsFGFKyHN9E
//
// The fields:
//
//   - name: the node's unique name, e.g. EDGE01 (required)
//   - role: master, node or edge (required)
//   - farm: the farm of an edge, e.g. lhr (required for edges; "-" or left
//     out for masters and nodes)
//   - location: the location code, e.g. LHR (required)
//   - code: the node's short code NNLL, two digits then two lowercase
//     letters, e.g. 43ax (required)
//   - key: the node's ed25519 public key, "ed25519:" and unpadded base64url
//     (required)
//   - addr: host:port of the node's peer listener (optional; leave it out
//     for a node that is never dialled, e.g. an edge behind NAT)
//
// Blank lines are ignored, and so is everything from a # that starts a line
// or follows a space or tab.
//
// The rules: every name, key and code appears once. The list may include the
// node reading it (a list shared by the whole fleet does); that entry must
// match the node's own identity and key, and no other entry may carry the
// node's key. A list without any peer is valid.
//
// Parse and Load report every broken rule at once, each with its line
// number and the fix, in an *Error that wraps ErrInvalid. A Store holds the
// current List and swaps in a new one on Reload, e.g. on SIGHUP.
package trust

import (
	"bufio"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/identity"
)

// ErrInvalid reports a trust list that breaks a rule of the file format. The
// error that wraps it is an *Error listing every problem.
var ErrInvalid = errors.New("invalid trust list")

// maxLineSize bounds one line; an identity line is about 150 bytes.
const maxLineSize = 64 << 10

// idHint is the fix for any line that does not describe its node correctly.
const idHint = "replace the line with what `outpost id` prints on that node"

// Problem is one broken rule on one line of a trust list.
type Problem struct {
	Line int    // 1-based line number
	Msg  string // what is wrong and how to fix it
	Err  error  // the underlying error, e.g. from identity.ParseLine; may be nil
}

// Error returns "line N: " and the message.
func (p Problem) Error() string {
	return fmt.Sprintf("line %d: %s", p.Line, p.Msg)
}

// Unwrap returns the underlying error, if any.
func (p Problem) Unwrap() error {
	return p.Err
}

// Error reports every problem of a trust list at once. It wraps ErrInvalid
// and each Problem, so errors.Is also finds e.g. identity.ErrInvalidLine.
type Error struct {
	Path     string    // the file read, or "" for Parse
	Problems []Problem // in line order; never empty
}

// Error returns one problem on one line, or a count followed by one problem
// per line.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(ErrInvalid.Error())
	if e.Path != "" {
		b.WriteString(" ")
		b.WriteString(e.Path)
	}
	if len(e.Problems) == 1 {
		b.WriteString(": ")
		b.WriteString(e.Problems[0].Error())
		return b.String()
	}
	fmt.Fprintf(&b, ": %d problems:", len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n\t")
		b.WriteString(p.Error())
	}
	return b.String()
}

// Unwrap returns ErrInvalid followed by every Problem.
func (e *Error) Unwrap() []error {
	errs := make([]error, 0, 1+len(e.Problems))
	errs = append(errs, ErrInvalid)
	for _, p := range e.Problems {
		errs = append(errs, p)
	}
	return errs
}

// List is a parsed, checked trust list. It is immutable once built and safe
// for concurrent use; the zero value and nil are empty lists.
type List struct {
	peers  []identity.Peer
	byName map[string]int // name -> index in peers
	byKey  map[string]int // string(key) -> index in peers
	self   string         // name of the node that read the list; "" if none
}

// Load reads and checks the trust list in the file at path for the node
// with identity self and public key selfKey; see Parse. An unreadable file
// is an error that does not wrap ErrInvalid (errors.Is(err, fs.ErrNotExist)
// tells a missing one).
func Load(path string, self outpost.Identity, selfKey ed25519.PublicKey) (*List, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("trust list: %w (create it with one `outpost id` line per node of the fleet)", err)
	}
	defer f.Close()
	return parse(f, path, self, selfKey)
}

// Parse reads and checks a trust list (see the package documentation for
// the format) for the node with identity self and public key selfKey. Every
// broken rule is reported at once in an *Error that wraps ErrInvalid:
//
//   - a line identity.ParseLine rejects (e.g. a code not of the NNLL form,
//     or an edge without a farm; the Problem wraps the ParseLine error)
//   - a name, key or code that an earlier line already has
//   - this node's entry (same name as self) with a key other than selfKey,
//     or with a role, farm, location or code other than self's
//   - another name with selfKey
//
// The list need not include this node. A zero self and an empty selfKey
// skip the checks against this node, for tools that check a list on a
// machine that is not a node; the list then has no self entry to leave out
// of Others. A read error is returned as it is, not wrapped in ErrInvalid.
func Parse(r io.Reader, self outpost.Identity, selfKey ed25519.PublicKey) (*List, error) {
	return parse(r, "", self, selfKey)
}

// parse implements Parse and Load; path is only for the error message.
func parse(r io.Reader, path string, self outpost.Identity, selfKey ed25519.PublicKey) (*List, error) {
	b := &builder{
		self:    self,
		selfKey: selfKey,
		byName:  make(map[string]int),
		byKey:   make(map[string]int),
		byCode:  make(map[string]int),
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLineSize)
	n := 0
	for sc.Scan() {
		n++
		text := sc.Text()
		if n == 1 {
			text = strings.TrimPrefix(text, "\uFEFF") // a byte order mark from some editors
		}
		if text = strings.TrimSpace(stripComment(text)); text != "" {
			b.add(n, text)
		}
	}
	if err := sc.Err(); err != nil {
		if !errors.Is(err, bufio.ErrTooLong) {
			where := "trust list"
			if path != "" {
				where += " " + path
			}
			return nil, fmt.Errorf("read %s: %w", where, err)
		}
		b.problem(n+1, err, "line is longer than %d bytes, and an identity line is about 150; is this the trust list?", maxLineSize)
	}
	if len(b.problems) > 0 {
		return nil, &Error{Path: path, Problems: b.problems}
	}

	l := &List{peers: b.peers, byName: b.byName, byKey: b.byKey}
	if _, ok := l.byName[self.Name]; ok {
		l.self = self.Name
	}
	return l, nil
}

// stripComment cuts s at the first # that starts it or follows a space or
// tab. A # inside a token (none of the fields can hold one) is left for
// ParseLine to reject.
func stripComment(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '#' && (i == 0 || s[i-1] == ' ' || s[i-1] == '\t') {
			return s[:i]
		}
	}
	return s
}

// builder collects the peers and the problems of a list being parsed.
type builder struct {
	self    outpost.Identity
	selfKey ed25519.PublicKey

	peers  []identity.Peer
	lines  []int          // line number of each peer
	byName map[string]int // first peer with each name, key and code
	byKey  map[string]int
	byCode map[string]int

	problems []Problem
}

// problem records a problem on line n.
func (b *builder) problem(n int, err error, format string, args ...any) {
	b.problems = append(b.problems, Problem{Line: n, Msg: fmt.Sprintf(format, args...), Err: err})
}

// add parses line n, with its comment and outer space removed, and checks it
// against this node and the lines before it.
func (b *builder) add(n int, text string) {
	p, err := identity.ParseLine(text)
	if err != nil {
		b.problems = append(b.problems, Problem{Line: n, Msg: malformed(text, err), Err: err})
		return
	}
	i := len(b.peers)
	b.peers = append(b.peers, p)
	b.lines = append(b.lines, n)
	key := string(p.Key)
	isSelfName := b.self.Name != "" && p.Name == b.self.Name
	isSelfKey := len(b.selfKey) > 0 && p.Key.Equal(b.selfKey)

	// The same node listed twice collides on name, key and code with the
	// same earlier line: report that once, as the duplicate name.
	dupOf := -1
	if j, dup := b.byName[p.Name]; dup {
		dupOf = j
		b.problem(n, nil, "%s is already listed on line %d; each node is listed once: remove one of the two lines (keep the one that matches `outpost id` on %s)",
			p.Name, b.lines[j], p.Name)
	} else {
		b.byName[p.Name] = i
		if isSelfName {
			b.checkSelf(n, p)
		}
	}

	switch j, dup := b.byKey[key]; {
	case isSelfKey && !isSelfName:
		b.problem(n, nil, "%s has this node's key %s, but this node is %s; a key belongs to one node: remove the line, or if it is meant to be this node, %s",
			p.Name, identity.EncodePublicKey(p.Key), b.self.Name, idHint)
	case dup && j != dupOf && !isSelfKey:
		b.problem(n, nil, "%s has the same key as %s on line %d; each node has its own key: remove the stale line, or if both machines really share the key, run `outpost keygen --force` on one of them and paste its new `outpost id` line",
			p.Name, b.peers[j].Name, b.lines[j])
	case !dup:
		b.byKey[key] = i
	}

	if j, dup := b.byCode[p.Code]; dup && j != dupOf {
		b.problem(n, nil, "code %s of %s is already the code of %s on line %d; codes are unique in the trust list: give one of the two nodes another code (`outpost keygen --force --code NNLL` on it) and paste its new `outpost id` line",
			p.Code, p.Name, b.peers[j].Name, b.lines[j])
	} else if !dup {
		b.byCode[p.Code] = i
	}
}

// checkSelf compares this node's entry p, on line n, with its own identity
// and key.
func (b *builder) checkSelf(n int, p identity.Peer) {
	if len(b.selfKey) > 0 && !p.Key.Equal(b.selfKey) {
		b.problem(n, nil, "the trust list says %s has key %s but this node's key is %s; update the list with `outpost id` output",
			p.Name, identity.EncodePublicKey(p.Key), identity.EncodePublicKey(b.selfKey))
	}
	var listed, own []string
	field := func(name, inList, inSelf string) {
		if inList != inSelf {
			listed = append(listed, name+"="+orDash(inList))
			own = append(own, name+"="+orDash(inSelf))
		}
	}
	field("role", string(p.Role), string(b.self.Role))
	field("farm", p.Farm, b.self.Farm)
	field("location", p.Location, b.self.Location)
	field("code", p.Code, b.self.Code)
	if len(listed) > 0 {
		b.problem(n, nil, "the trust list says %s has %s but this node's identity has %s; update the list with `outpost id` output",
			p.Name, strings.Join(listed, " "), strings.Join(own, " "))
	}
}

// orDash returns s, or "-" if s is empty, as an identity line writes it.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// malformed returns the message for a line ParseLine rejected with err: its
// reason without the sentinel prefixes, and the fix.
func malformed(text string, err error) string {
	fields := rawFields(text)
	if missingFarm(fields, err) {
		return fmt.Sprintf("edge %s has no farm; every edge belongs to a farm: add farm=<its farm> (e.g. farm=lhr), or %s", fields["name"], idHint)
	}
	msg := strings.TrimPrefix(err.Error(), identity.ErrInvalidLine.Error()+": ")
	msg = strings.TrimPrefix(msg, outpost.ErrInvalidIdentity.Error()+": ")
	if strings.Contains(text, "#") {
		msg += " (a comment needs a space or tab before its #)"
	}
	if errors.Is(err, outpost.ErrInvalidIdentity) || strings.HasPrefix(msg, "field ") {
		return msg + "; fix it, or " + idHint
	}
	return msg + "; a line is field=value pairs: name=EDGE01 role=edge farm=lhr location=LHR code=43ax key=ed25519:... addr=host:port (" + idHint + ")"
}

// rawFields splits an identity line the way ParseLine does, keeping the
// first value of each field, for messages about a line it rejected.
func rawFields(text string) map[string]string {
	m := make(map[string]string)
	for _, tok := range strings.Fields(text) {
		if name, val, ok := strings.Cut(tok, "="); ok {
			if _, seen := m[name]; !seen {
				m[name] = val
			}
		}
	}
	return m
}

// missingFarm reports whether ParseLine rejected a line with err because it
// describes an edge without a farm. Identity.Validate checks the name,
// location and role before the farm, and the code after it, so the missing
// farm is what failed if giving the edge a farm changes the verdict.
func missingFarm(fields map[string]string, err error) bool {
	if !errors.Is(err, outpost.ErrInvalidIdentity) {
		return false
	}
	id := outpost.Identity{
		Name:     fields["name"],
		Location: fields["location"],
		Farm:     fields["farm"],
		Role:     outpost.Role(fields["role"]),
		Code:     fields["code"],
	}
	if id.Farm == "-" {
		id.Farm = ""
	}
	if id.Role != outpost.RoleEdge || id.Farm != "" {
		return false
	}
	withFarm := id
	withFarm.Farm = "x"
	before, after := id.Validate(), withFarm.Validate()
	return before != nil && (after == nil || after.Error() != before.Error())
}

// ByKey returns the peer with public key pub.
func (l *List) ByKey(pub ed25519.PublicKey) (identity.Peer, bool) {
	if l == nil || len(pub) != ed25519.PublicKeySize {
		return identity.Peer{}, false
	}
	i, ok := l.byKey[string(pub)]
	if !ok {
		return identity.Peer{}, false
	}
	return clonePeer(l.peers[i]), true
}

// ByName returns the peer named name.
func (l *List) ByName(name string) (identity.Peer, bool) {
	if l == nil {
		return identity.Peer{}, false
	}
	i, ok := l.byName[name]
	if !ok {
		return identity.Peer{}, false
	}
	return clonePeer(l.peers[i]), true
}

// Peers returns every peer, this node's entry included, in file order. The
// slice and its keys are the caller's.
func (l *List) Peers() []identity.Peer {
	if l == nil {
		return nil
	}
	out := make([]identity.Peer, len(l.peers))
	for i, p := range l.peers {
		out[i] = clonePeer(p)
	}
	return out
}

// Others returns every peer except this node's own entry, in file order:
// the nodes this node may talk to. The slice and its keys are the caller's.
func (l *List) Others() []identity.Peer {
	if l == nil {
		return nil
	}
	out := make([]identity.Peer, 0, len(l.peers))
	for _, p := range l.peers {
		if l.self == "" || p.Name != l.self {
			out = append(out, clonePeer(p))
		}
	}
	return out
}

// Len returns the number of peers, this node's entry included.
func (l *List) Len() int {
	if l == nil {
		return 0
	}
	return len(l.peers)
}

// clonePeer returns p with its own copy of the key, so that callers cannot
// change the list.
func clonePeer(p identity.Peer) identity.Peer {
	p.Key = slices.Clone(p.Key)
	return p
}
