// Package sqltext is a small, exact lexer for SQLite SQL text.
//
// It exists so that callers can reason about SQL before handing it to
// SQLite: refuse strings that smuggle several statements into one (the
// modernc.org/sqlite driver silently executes all of them), split a schema
// file into statements, find keywords outside strings, comments and quoted
// identifiers, and classify a statement by its verb.
//
// The tokenizer follows SQLite's own (tokenize.c) byte for byte where it
// matters for statement boundaries. Where SQLite would reject a token
// ("unrecognized token"), this package returns an error too, and it is
// stricter than SQLite in a few places that are never needed in practice
// (NUL bytes, unterminated block comments, Tcl-style "$name(...)" variables),
// so that it can never see fewer statements than SQLite does.
package sqltext

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Lexical errors are returned as *PosError values that wrap
// one of these; use errors.Is to test for them.
var (
	// ErrUnterminated reports a string literal, blob literal, quoted
	// identifier, block comment or CREATE TRIGGER body that is not closed
	// before the end of the input.
	ErrUnterminated = errors.New("sqltext: unterminated")

	// ErrIllegal reports input that SQLite's tokenizer rejects (or that this
	// package refuses for safety), such as "!", "^", "1abc", a malformed
	// blob literal, a bare "$" or a NUL byte.
	ErrIllegal = errors.New("sqltext: illegal token")

	// ErrEmpty reports that the input contains no statement at all, only
	// whitespace, comments and semicolons.
	ErrEmpty = errors.New("sqltext: no statement")

	// ErrMultipleStatements reports that the input contains more than one
	// statement.
	ErrMultipleStatements = errors.New("sqltext: multiple statements")
)

// PosError is an error located at a byte offset of the SQL text. Err is one
// of the package's sentinel errors and is returned by Unwrap.
type PosError struct {
	Err  error  // sentinel error, e.g. ErrUnterminated
	What string // what was being scanned, e.g. "string literal"
	Pos  int    // byte offset in the SQL text
}

// Error implements error.
func (e *PosError) Error() string {
	return fmt.Sprintf("%v: %s at offset %d", e.Err, e.What, e.Pos)
}

// Unwrap returns the sentinel error.
func (e *PosError) Unwrap() error { return e.Err }

func posErr(err error, pos int, what string) error {
	return &PosError{Err: err, What: what, Pos: pos}
}

// Kind is the kind of a Token.
type Kind uint8

// Token kinds. Whitespace and comments produce no tokens.
const (
	// Word is a bare word: a keyword or an unquoted identifier. SQLite
	// keywords are case-insensitive; compare with Token.IsWord.
	Word Kind = iota + 1
	// QuotedIdent is an identifier in "double quotes", `backquotes` or
	// [brackets]. Text includes the quotes.
	QuotedIdent
	// String is a 'single-quoted' string literal ('' escapes a quote).
	// Text includes the quotes.
	String
	// Blob is a blob literal x'0A1b' or X'..'.
	Blob
	// Number is a numeric literal: 12, 1.5, .5, 1e-3, 0x1F, 1_000.
	Number
	// Param is a bound parameter: ?, ?NNN, :name, @name, $name (also the
	// SQLite/Tcl forms #name and $a::b).
	Param
	// Semicolon is ";".
	Semicolon
	// Operator is any other operator or punctuation: ( ) , . + - * / % =
	// == < <= <> << > >= >> != | || & ~ -> ->>.
	Operator
)

var kindNames = [...]string{
	Word:        "Word",
	QuotedIdent: "QuotedIdent",
	String:      "String",
	Blob:        "Blob",
	Number:      "Number",
	Param:       "Param",
	Semicolon:   "Semicolon",
	Operator:    "Operator",
}

// String returns the name of the kind, e.g. "Word".
func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Token is one lexical token of SQL text.
type Token struct {
	Kind Kind
	Text string // exact source text, including any quotes or prefix
	Pos  int    // byte offset of Text in the SQL text
}

// End returns the byte offset just past the token.
func (t Token) End() int { return t.Pos + len(t.Text) }

// IsWord reports whether t is a bare Word equal to w, ignoring ASCII case
// (the way SQLite matches keywords).
func (t Token) IsWord(w string) bool {
	return t.Kind == Word && equalFoldASCII(t.Text, w)
}

// Tokens returns all tokens of sql, skipping whitespace and comments. It
// fails with a *PosError wrapping ErrUnterminated or ErrIllegal.
func Tokens(sql string) ([]Token, error) {
	l := newLexer(sql)
	var toks []Token
	for {
		tok, ok, err := l.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			return toks, nil
		}
		toks = append(toks, tok)
	}
}

// lexer scans tokens lazily, so that callers that only need a prefix of the
// text (FirstKeyword, Verb) need not tokenize all of it.
type lexer struct {
	src string
	pos int
	err error // sticky error
}

func newLexer(src string) *lexer {
	l := &lexer{src: src}
	// SQLite stops reading at a NUL byte (C string), and drivers differ in
	// whether they pass the length. Refuse NUL anywhere, even in literals.
	if i := strings.IndexByte(src, 0); i >= 0 {
		l.err = posErr(ErrIllegal, i, "NUL byte")
	}
	return l
}

// next returns the next token; ok is false at the end of the input.
func (l *lexer) next() (tok Token, ok bool, err error) {
	if l.err != nil {
		return Token{}, false, l.err
	}
	tok, ok, err = l.scan()
	if err != nil {
		l.err = err
	}
	return tok, ok, err
}

func (l *lexer) scan() (Token, bool, error) {
	s := l.src
	for l.pos < len(s) {
		start := l.pos
		switch c := s[start]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r':
			// As in SQLite, a vertical tab continues whitespace but cannot
			// start it.
			l.pos++
			for l.pos < len(s) && isSpace(s[l.pos]) {
				l.pos++
			}
		case c == '-' && at(s, start+1) == '-':
			// The newline is not part of the comment (it matters for a
			// following vertical tab, see above).
			if i := strings.IndexByte(s[start+2:], '\n'); i >= 0 {
				l.pos = start + 2 + i
			} else {
				l.pos = len(s)
			}
		case c == '/' && at(s, start+1) == '*':
			// SQLite accepts an unterminated block comment at the end of the
			// input; refuse it so that nothing can hide behind it.
			i := strings.Index(s[start+2:], "*/")
			if i < 0 {
				return Token{}, false, posErr(ErrUnterminated, start, "block comment")
			}
			l.pos = start + 2 + i + 2
		default:
			kind, n, err := scanToken(s, start)
			if err != nil {
				return Token{}, false, err
			}
			l.pos = start + n
			return Token{Kind: kind, Text: s[start : start+n], Pos: start}, true, nil
		}
	}
	return Token{}, false, nil
}

// scanToken scans the token at s[start] (not whitespace or a comment) and
// returns its kind and length.
func scanToken(s string, start int) (Kind, int, error) {
	z := s[start:]
	c := z[0]
	switch {
	case c == '\'':
		n, ok := scanQuoted(z, '\'')
		if !ok {
			return 0, 0, posErr(ErrUnterminated, start, "string literal")
		}
		return String, n, nil
	case c == '"' || c == '`':
		n, ok := scanQuoted(z, c)
		if !ok {
			return 0, 0, posErr(ErrUnterminated, start, "quoted identifier")
		}
		return QuotedIdent, n, nil
	case c == '[':
		i := strings.IndexByte(z, ']')
		if i < 0 {
			return 0, 0, posErr(ErrUnterminated, start, "bracketed identifier")
		}
		return QuotedIdent, i + 1, nil
	case (c == 'x' || c == 'X') && at(z, 1) == '\'':
		i := 2
		for i < len(z) && isHex(z[i]) {
			i++
		}
		if i < len(z) && z[i] == '\'' && i%2 == 0 {
			return Blob, i + 1, nil
		}
		if strings.IndexByte(z[2:], '\'') < 0 {
			return 0, 0, posErr(ErrUnterminated, start, "blob literal")
		}
		return 0, 0, posErr(ErrIllegal, start, "malformed blob literal")
	case isIdentStart(c):
		i := 1
		for i < len(z) && isIdentChar(z[i]) {
			i++
		}
		return Word, i, nil
	case isDigit(c) || (c == '.' && isDigit(at(z, 1))):
		n := scanNumber(z)
		if n < len(z) && isIdentChar(z[n]) {
			return 0, 0, posErr(ErrIllegal, start, "malformed number")
		}
		return Number, n, nil
	case c == '?':
		i := 1
		for i < len(z) && isDigit(z[i]) {
			i++
		}
		return Param, i, nil
	case c == '$' || c == '@' || c == ':' || c == '#':
		return scanVariable(z, start)
	case c == ';':
		return Semicolon, 1, nil
	}
	if n := scanOperator(z); n > 0 {
		return Operator, n, nil
	}
	return 0, 0, posErr(ErrIllegal, start, fmt.Sprintf("unexpected character %q", c))
}

// scanQuoted scans a token delimited by q in which a doubled q stands for
// one q. It returns the length including both delimiters.
func scanQuoted(z string, q byte) (int, bool) {
	for i := 1; i < len(z); i++ {
		if z[i] == q {
			if at(z, i+1) == q {
				i++
				continue
			}
			return i + 1, true
		}
	}
	return 0, false
}

// scanNumber mirrors SQLite: decimal or hex digits with "_" separators,
// optional fraction and exponent. It returns the length of the number.
func scanNumber(z string) int {
	digits := func(i int, ok func(byte) bool) int {
		for i < len(z) && (ok(z[i]) || z[i] == '_') {
			i++
		}
		return i
	}
	if z[0] == '0' && (at(z, 1) == 'x' || at(z, 1) == 'X') && isHex(at(z, 2)) {
		return digits(3, isHex)
	}
	i := digits(0, isDigit)
	if at(z, i) == '.' {
		i = digits(i+1, isDigit)
	}
	if e := at(z, i); (e == 'e' || e == 'E') &&
		(isDigit(at(z, i+1)) || ((at(z, i+1) == '+' || at(z, i+1) == '-') && isDigit(at(z, i+2)))) {
		i = digits(i+2, isDigit)
	}
	return i
}

// scanVariable scans a named parameter starting with $, @, : or #.
func scanVariable(z string, start int) (Kind, int, error) {
	n := 0 // identifier characters seen
	i := 1
	for ; i < len(z); i++ {
		c := z[i]
		if isIdentChar(c) {
			n++
		} else if c == '(' && n > 0 {
			// SQLite reads a Tcl array variable "$a(...)" up to the next ")"
			// or whitespace, semicolons and quotes included. Nobody needs
			// it; refuse it rather than risk disagreeing with SQLite.
			return 0, 0, posErr(ErrIllegal, start, "Tcl-style variable")
		} else if c == ':' && at(z, i+1) == ':' {
			i++
		} else {
			break
		}
	}
	if n == 0 {
		return 0, 0, posErr(ErrIllegal, start, "parameter without a name")
	}
	return Param, i, nil
}

// scanOperator returns the length of the operator at z[0], or 0 if z[0]
// starts no operator.
func scanOperator(z string) int {
	c, d := z[0], at(z, 1)
	switch c {
	case '(', ')', ',', '.', '+', '*', '/', '%', '&', '~':
		return 1
	case '-':
		if d == '>' {
			if at(z, 2) == '>' {
				return 3
			}
			return 2
		}
		return 1
	case '=':
		if d == '=' {
			return 2
		}
		return 1
	case '<':
		if d == '=' || d == '>' || d == '<' {
			return 2
		}
		return 1
	case '>':
		if d == '=' || d == '>' {
			return 2
		}
		return 1
	case '!':
		if d == '=' {
			return 2
		}
	case '|':
		if d == '|' {
			return 2
		}
		return 1
	}
	return 0
}

// at returns s[i], or 0 if i is out of range (like reading a C string's
// terminator).
func at(s string, i int) byte {
	if i < len(s) {
		return s[i]
	}
	return 0
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isHex(c byte) bool {
	return isDigit(c) || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

// isIdentStart reports whether c can start a bare word. Like SQLite, every
// byte >= 0x80 counts as a letter.
func isIdentStart(c byte) bool {
	return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || c == '_' || c >= 0x80
}

// isIdentChar reports whether c can continue a bare word ("$" can).
func isIdentChar(c byte) bool { return isIdentStart(c) || isDigit(c) || c == '$' }

// equalFoldASCII compares a and b ignoring ASCII case only; SQLite does not
// fold non-ASCII letters (unlike strings.EqualFold, which maps the Kelvin
// sign to "k").
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if upperASCII(a[i]) != upperASCII(b[i]) {
			return false
		}
	}
	return true
}

func upperASCII(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - ('a' - 'A')
	}
	return c
}

// toUpperASCII upper-cases the ASCII letters of s.
func toUpperASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		b[i] = upperASCII(c)
	}
	return string(b)
}
