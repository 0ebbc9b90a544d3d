package search

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/outpost-edge/outpost/sqltext"
)

// Form is the shape of a search directive, for error messages.
const Form = `"-- outpost: search <index> on <table> (<column>[, <column>...]) [tokenize '<tokenizer>']", e.g. "-- outpost: search pages_fts on pages (title, body)"`

var directiveRE = regexp.MustCompile(`(?i)^\s*outpost\s*:\s*search\b`)

// Directives returns the search directives of a schema file, and one
// message per malformed one (naming its line and the fix).
func Directives(schemaSQL string) ([]Index, []string) {
	var out []Index
	var problems []string
	for _, c := range sqltext.LineComments(schemaSQL) {
		m := directiveRE.FindStringIndex(c.Text)
		if m == nil {
			continue
		}
		ix, err := parse(c.Text[m[1]:])
		if err != nil {
			problems = append(problems, fmt.Sprintf("line %d: search directive: %v; want %s", c.Line, err, Form))
			continue
		}
		ix.Line = c.Line
		out = append(out, ix)
	}
	return out, problems
}

// parse reads "<index> on <table> (<col>, ...) [tokenize '<spec>']".
func parse(s string) (Index, error) {
	toks, err := sqltext.Tokens(s)
	if err != nil {
		return Index{}, err
	}
	i := 0
	next := func() (sqltext.Token, bool) {
		if i >= len(toks) {
			return sqltext.Token{}, false
		}
		i++
		return toks[i-1], true
	}
	ident := func(what string) (string, error) {
		t, ok := next()
		if !ok {
			return "", fmt.Errorf("missing %s", what)
		}
		name, ok := Unquote(t)
		if !ok {
			return "", fmt.Errorf("%q is not a name (%s)", t.Text, what)
		}
		return name, nil
	}
	punct := func(p string) error {
		t, ok := next()
		if !ok {
			return fmt.Errorf("missing %q", p)
		}
		if t.Text != p {
			return fmt.Errorf("found %q where %q belongs", t.Text, p)
		}
		return nil
	}
	var ix Index
	if ix.Name, err = ident("the index name"); err != nil {
		return ix, err
	}
	if t, ok := next(); !ok || !t.IsWord("on") {
		return ix, fmt.Errorf("missing \"on\" after the index name %q", ix.Name)
	}
	if ix.Table, err = ident("the table name"); err != nil {
		return ix, err
	}
	if err := punct("("); err != nil {
		return ix, err
	}
	for {
		c, err := ident("a column name")
		if err != nil {
			return ix, err
		}
		if containsFold(ix.Columns, c) {
			return ix, fmt.Errorf("column %q is listed twice", c)
		}
		ix.Columns = append(ix.Columns, c)
		t, ok := next()
		if !ok {
			return ix, fmt.Errorf("missing \")\" after the columns")
		}
		if t.Text == ")" {
			break
		}
		if t.Text != "," {
			return ix, fmt.Errorf("found %q where \",\" or \")\" belongs", t.Text)
		}
	}
	if t, ok := next(); ok {
		if !t.IsWord("tokenize") {
			return ix, fmt.Errorf("found %q after the columns; only \"tokenize '<tokenizer>'\" may follow", t.Text)
		}
		spec, ok := next()
		if !ok || spec.Kind != sqltext.String {
			return ix, fmt.Errorf("tokenize takes a string literal, e.g. tokenize 'porter unicode61'")
		}
		ix.Tokenize = strings.ReplaceAll(spec.Text[1:len(spec.Text)-1], "''", "'")
		if strings.TrimSpace(ix.Tokenize) == "" {
			return ix, fmt.Errorf("empty tokenizer")
		}
		if t, ok := next(); ok {
			return ix, fmt.Errorf("unexpected %q at the end", t.Text)
		}
	}
	return ix, nil
}

// Unquote returns the name a bare or quoted identifier token stands for.
func Unquote(t sqltext.Token) (string, bool) {
	switch t.Kind {
	case sqltext.Word:
		return t.Text, true
	case sqltext.QuotedIdent:
		q, body := t.Text[0], t.Text[1:len(t.Text)-1]
		switch q {
		case '"':
			body = strings.ReplaceAll(body, `""`, `"`)
		case '`':
			body = strings.ReplaceAll(body, "``", "`")
		}
		return body, body != ""
	}
	return "", false
}
