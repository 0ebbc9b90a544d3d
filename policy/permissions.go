package policy

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/sqltext"
)

// ErrWriteRefused reports a change whose origin node's role may not write
// its table.
var ErrWriteRefused = errors.New("write refused")

// Permissions says which roles may write which tables, as declared by
// "-- outpost: table <name> writable by <roles>" directives in a schema file.
// A nil *Permissions lets every role write every table. Permissions are
// immutable and safe for concurrent use.
type Permissions struct {
	tables map[string]tableRule // by lower-cased table name
}

type tableRule struct {
	name    string         // as written in the directive
	writers []outpost.Role // canonical order, no duplicates
	line    int
}

// ParsePermissions reads the write-permission directives of a schema file.
// Errors name the line and wrap ErrInvalidPolicy; every bad directive is
// reported.
func ParsePermissions(schemaSQL string) (*Permissions, error) {
	p := &Permissions{tables: map[string]tableRule{}}
	var errs []error
	for _, lc := range sqltext.LineComments(schemaSQL) {
		m := directiveRE.FindStringSubmatchIndex(lc.Text)
		if m == nil || isSearchDirective(lc.Text[m[1]:]) {
			continue // (search indexes are package schema's)
		}
		rule, err := parseDirective(lc.Text[m[1]:])
		if err == nil {
			rule.line = lc.Line
			key := lowerASCII(rule.name)
			if first, dup := p.tables[key]; dup {
				err = fmt.Errorf("second directive for table %q (the first is on line %d); list all its writers in one directive", rule.name, first.line)
			} else {
				p.tables[key] = rule
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: schema line %d: %s", ErrInvalidPolicy, lc.Line, err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

// directiveRE matches the start of a directive in the text of a "--" comment.
var directiveRE = regexp.MustCompile(`(?i)^\s*outpost\s*:`)

const directiveForm = `want "-- outpost: table <name> writable by <role>[, <role>...]", e.g. "-- outpost: table prices writable by master, node"`

// isSearchDirective reports whether the text after "outpost:" is a search
// index directive ("search <index> on <table> (...)").
func isSearchDirective(s string) bool {
	f := strings.Fields(s)
	return len(f) > 0 && strings.EqualFold(f[0], "search")
}

// parseDirective parses the text after "outpost:".
func parseDirective(s string) (tableRule, error) {
	word := func(want string) error {
		s = strings.TrimLeft(s, " \t\r")
		w := s[:len(s)-len(strings.TrimLeft(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"))]
		if !strings.EqualFold(w, want) {
			got := strings.Fields(s)
			if len(got) == 0 {
				return fmt.Errorf("malformed directive: missing %q; %s", want, directiveForm)
			}
			return fmt.Errorf("malformed directive: found %q where %q belongs; %s", got[0], want, directiveForm)
		}
		s = s[len(w):]
		return nil
	}
	if err := word("table"); err != nil {
		return tableRule{}, err
	}
	s = strings.TrimLeft(s, " \t\r")
	name, rest, err := scanTableName(s)
	if err != nil {
		return tableRule{}, err
	}
	s = rest
	if err := word("writable"); err != nil {
		return tableRule{}, err
	}
	if err := word("by"); err != nil {
		return tableRule{}, err
	}
	names := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\r' })
	if len(names) == 0 {
		return tableRule{}, fmt.Errorf("malformed directive: no roles after \"writable by\" for table %q; %s", name, directiveForm)
	}
	var writers []outpost.Role
	for _, n := range names {
		r, err := parseRoleName(n)
		if err != nil {
			return tableRule{}, fmt.Errorf("table %q: %w", name, err)
		}
		if !slices.Contains(writers, r) {
			writers = append(writers, r)
		}
	}
	slices.SortFunc(writers, func(a, b outpost.Role) int { return roleRank(a) - roleRank(b) })
	return tableRule{name: name, writers: writers}, nil
}

// scanTableName reads a plain or quoted SQLite identifier at the start of s
// and returns it unquoted with the text after it.
func scanTableName(s string) (name, rest string, err error) {
	if s == "" {
		return "", "", fmt.Errorf("malformed directive: missing table name; %s", directiveForm)
	}
	switch q := s[0]; q {
	case '"', '`', '[':
		closer := q
		if q == '[' {
			closer = ']'
		}
		var b strings.Builder
		for i := 1; i < len(s); i++ {
			if s[i] != closer {
				b.WriteByte(s[i])
				continue
			}
			if closer != ']' && i+1 < len(s) && s[i+1] == closer { // doubled quote
				b.WriteByte(closer)
				i++
				continue
			}
			if b.Len() == 0 {
				return "", "", fmt.Errorf("malformed directive: empty table name; %s", directiveForm)
			}
			return b.String(), s[i+1:], checkAfterName(s[i+1:], s[:i+1])
		}
		return "", "", fmt.Errorf("malformed directive: unterminated quoted table name %s", s)
	}
	end := strings.IndexFunc(s, func(r rune) bool { return r == ' ' || r == '\t' || r == '\r' })
	if end < 0 {
		end = len(s)
	}
	name = s[:end]
	if !identRE.MatchString(name) {
		return "", "", fmt.Errorf("malformed directive: table name %q is not a plain identifier (letters, digits, _ and $, not starting with a digit); quote it like \"my table\" if it really is the name", name)
	}
	return name, s[end:], nil
}

func checkAfterName(rest, quoted string) error {
	if rest != "" && rest[0] != ' ' && rest[0] != '\t' && rest[0] != '\r' {
		return fmt.Errorf("malformed directive: want a space after table name %s; %s", quoted, directiveForm)
	}
	return nil
}

var identRE = regexp.MustCompile(`^[A-Za-z_\x80-\x{10FFFF}][A-Za-z0-9_$\x80-\x{10FFFF}]*$`)

// CanWrite reports whether a node of the given role may write table (matched
// case-insensitively). A table without a directive is writable by every
// role; an unknown role may write nothing.
func (p *Permissions) CanWrite(role outpost.Role, table string) bool {
	if !validRole(role) {
		return false
	}
	w := p.Writers(table)
	return w == nil || slices.Contains(w, role)
}

// Check returns nil if origin may write table, and otherwise an error
// wrapping ErrWriteRefused that names the origin, the table and its writers,
// e.g. `edge EDGE01 may not write table "prices" (writable by master, node)`.
func (p *Permissions) Check(origin Party, table string) error {
	if p.CanWrite(origin.Role, table) {
		return nil
	}
	return &writeRefusedError{origin: origin, table: table, writers: p.Writers(table)}
}

// Writers returns the roles that may write table, in the order master, node,
// edge, or nil if the table has no directive (every role may write it).
func (p *Permissions) Writers(table string) []outpost.Role {
	if p == nil {
		return nil
	}
	r, ok := p.tables[lowerASCII(table)]
	if !ok {
		return nil
	}
	return slices.Clone(r.writers)
}

// Tables returns the tables that have a directive, as the directives spell
// them, sorted case-insensitively.
func (p *Permissions) Tables() []string {
	if p == nil || len(p.tables) == 0 {
		return nil
	}
	keys := make([]string, 0, len(p.tables))
	for k := range p.tables {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = p.tables[k].name
	}
	return names
}

type writeRefusedError struct {
	origin  Party
	table   string
	writers []outpost.Role
}

func (e *writeRefusedError) Error() string {
	if !validRole(e.origin.Role) {
		return fmt.Sprintf("%s may not write table %q (%q is not a role)", e.origin, e.table, e.origin.Role)
	}
	ws := make([]string, len(e.writers))
	for i, w := range e.writers {
		ws[i] = string(w)
	}
	return fmt.Sprintf("%s may not write table %q (writable by %s)", e.origin, e.table, strings.Join(ws, ", "))
}

func (e *writeRefusedError) Unwrap() error { return ErrWriteRefused }

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
