package api

import (
	"encoding/json"
	"unicode/utf8"
)

// fastDecode decodes the common forms of /v1/exec and /v1/query bodies in
// one pass without reflection: {"statements":[{"sql":"...","args":[...]}]}
// and {"sql":"...","args":[...]}, with member names exactly as documented,
// each at most once, strings without escapes, and args that are strings,
// numbers, true, false or null. It fills dst exactly as the strict decoder
// (encoding/json with UseNumber, then checkMembers) would, and returns
// false, leaving dst untouched, for anything else: the strict decoder then
// decodes the body or explains what is wrong with it.
func fastDecode(body []byte, dst any) bool {
	p := fastParser{b: body}
	switch d := dst.(type) {
	case *execRequest:
		var req execRequest
		if !p.execRequest(&req) || !p.end() {
			return false
		}
		*d = req
		return true
	case *queryRequest:
		var req queryRequest
		if !p.statement(&req.SQL, &req.Args) || req.SQL == nil || !p.end() {
			return false
		}
		*d = req
		return true
	}
	return false
}

type fastParser struct {
	b       []byte
	i       int
	lastSQL string // statements of one request often repeat their SQL: kept once
}

func (p *fastParser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// eat skips whitespace and then c, if it is next.
func (p *fastParser) eat(c byte) bool {
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *fastParser) end() bool {
	p.ws()
	return p.i == len(p.b)
}

// members calls member for each member name of an object, after its ':'.
func (p *fastParser) members(member func(name string) bool) bool {
	if !p.eat('{') {
		return false
	}
	if p.eat('}') {
		return true
	}
	for {
		p.ws()
		name, ok := p.str()
		if !ok || !p.eat(':') || !member(name) {
			return false
		}
		if p.eat('}') {
			return true
		}
		if !p.eat(',') {
			return false
		}
	}
}

func (p *fastParser) execRequest(req *execRequest) bool {
	seen := false
	ok := p.members(func(name string) bool {
		if name != "statements" || seen {
			return false
		}
		seen = true
		if !p.eat('[') {
			return false
		}
		req.Statements = []stmtJSON{}
		if p.eat(']') {
			return true
		}
		for {
			var st stmtJSON
			if !p.statement(&st.SQL, &st.Args) || st.SQL == nil {
				return false
			}
			req.Statements = append(req.Statements, st)
			if p.eat(']') {
				return true
			}
			if !p.eat(',') {
				return false
			}
		}
	})
	return ok && seen
}

// statement reads {"sql":"...","args":[...]}.
func (p *fastParser) statement(sql **string, args *[]any) bool {
	return p.members(func(name string) bool {
		switch name {
		case "sql":
			if *sql != nil {
				return false
			}
			p.ws()
			start := p.i
			if p.lastSQL != "" && len(p.b)-start > len(p.lastSQL)+1 && p.b[start] == '"' &&
				p.b[start+1+len(p.lastSQL)] == '"' && string(p.b[start+1:start+1+len(p.lastSQL)]) == p.lastSQL {
				// The same text as the last statement's, which was checked.
				p.i = start + len(p.lastSQL) + 2
				s := p.lastSQL
				*sql = &s
				return true
			}
			s, ok := p.str()
			if !ok {
				return false
			}
			p.lastSQL = s
			*sql = &s
			return true
		case "args":
			if *args != nil || !p.eat('[') {
				return false
			}
			a := []any{}
			if !p.eat(']') {
				for {
					p.ws()
					v, ok := p.scalar()
					if !ok {
						return false
					}
					a = append(a, v)
					if p.eat(']') {
						break
					}
					if !p.eat(',') {
						return false
					}
				}
			}
			*args = a
			return true
		}
		return false
	})
}

// str reads a string with no escapes, no control characters and valid
// UTF-8 (which encoding/json would keep byte for byte).
func (p *fastParser) str() (string, bool) {
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return "", false
	}
	start := p.i + 1
	ascii := true
	for j := start; j < len(p.b); j++ {
		switch c := p.b[j]; {
		case c == '"':
			s := p.b[start:j]
			if !ascii && !utf8.Valid(s) {
				return "", false
			}
			p.i = j + 1
			return string(s), true
		case c == '\\' || c < 0x20:
			return "", false
		case c >= 0x80:
			ascii = false
		}
	}
	return "", false
}

// scalar reads a string, number, true, false or null.
func (p *fastParser) scalar() (any, bool) {
	if p.i >= len(p.b) {
		return nil, false
	}
	switch c := p.b[p.i]; {
	case c == '"':
		return p.str()
	case c == '-' || (c >= '0' && c <= '9'):
		n := p.number()
		if n == 0 {
			return nil, false
		}
		v := json.Number(p.b[p.i : p.i+n])
		p.i += n
		return v, true
	}
	for _, lit := range [...]struct {
		text string
		v    any
	}{{"true", true}, {"false", false}, {"null", nil}} {
		if len(p.b)-p.i >= len(lit.text) && string(p.b[p.i:p.i+len(lit.text)]) == lit.text {
			p.i += len(lit.text)
			return lit.v, true
		}
	}
	return nil, false
}

// number returns the length of the JSON number at p.i (0: none):
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (p *fastParser) number() int {
	b, j := p.b, p.i
	digits := func() int {
		k := j
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		return j - k
	}
	if j < len(b) && b[j] == '-' {
		j++
	}
	switch {
	case j < len(b) && b[j] == '0':
		j++
	case j < len(b) && b[j] >= '1' && b[j] <= '9':
		digits()
	default:
		return 0
	}
	if j < len(b) && b[j] == '.' {
		j++
		if digits() == 0 {
			return 0
		}
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		j++
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		if digits() == 0 {
			return 0
		}
	}
	// A number ends at a delimiter; "01" or "1x" is not one value.
	if j < len(b) {
		switch b[j] {
		case ' ', '\t', '\n', '\r', ',', ']', '}':
		default:
			return 0
		}
	}
	return j - p.i
}
