package sqltext

// HasKeyword reports whether the bare word kw (for example "RETURNING" or
// "AUTOINCREMENT") occurs in sql outside string literals, blob literals,
// comments, quoted identifiers and parameter names, ignoring ASCII case.
// It is conservative: an unquoted identifier spelled like the keyword (a
// column named "returning") counts too. Lexical errors are returned as in
// Tokens.
func HasKeyword(sql, kw string) (bool, error) {
	l := newLexer(sql)
	found := false
	for {
		tok, ok, err := l.next()
		if err != nil {
			return false, err
		}
		if !ok {
			return found, nil
		}
		// Keep scanning after a hit so that malformed text is reported.
		if tok.IsWord(kw) {
			found = true
		}
	}
}

// FirstKeyword returns the first token of sql upper-cased (ASCII only) if it
// is a bare word, and "" otherwise (empty input, a leading "(" or quoted
// name, or a lexical error before the first token). Leading whitespace and
// comments are skipped. For "WITH x AS (...) INSERT ..." it returns "WITH";
// see Verb.
func FirstKeyword(sql string) string {
	l := newLexer(sql)
	tok, ok, err := l.next()
	if err != nil || !ok || tok.Kind != Word {
		return ""
	}
	return toUpperASCII(tok.Text)
}

// Verb returns the main verb of the first statement in sql, upper-cased:
// like FirstKeyword, but a leading common-table-expression clause
//
//	WITH [RECURSIVE] name [(col, ...)] AS [[NOT] MATERIALIZED] (...), ...
//
// is skipped, so "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x"
// yields "INSERT". Typical results are SELECT, VALUES, INSERT, REPLACE,
// UPDATE, DELETE, CREATE, DROP, ALTER, PRAGMA, EXPLAIN, BEGIN, ... (EXPLAIN
// is not looked through). It returns "" if there is no leading bare word,
// if the WITH clause is malformed, or on a lexical error within the part
// that is scanned.
func Verb(sql string) string {
	l := newLexer(sql)
	tok, ok, err := l.next()
	if err != nil || !ok || tok.Kind != Word {
		return ""
	}
	if !tok.IsWord("WITH") {
		return toUpperASCII(tok.Text)
	}
	next := func() Token {
		t, ok, err := l.next()
		if err != nil || !ok {
			return Token{}
		}
		return t
	}
	// skipGroup skips a parenthesised group whose "(" was just read.
	skipGroup := func() bool {
		for depth := 1; depth > 0; {
			switch t := next(); {
			case t.Kind == 0:
				return false
			case t.Kind == Operator && t.Text == "(":
				depth++
			case t.Kind == Operator && t.Text == ")":
				depth--
			}
		}
		return true
	}
	isOp := func(t Token, op string) bool { return t.Kind == Operator && t.Text == op }

	tok = next()
	if tok.IsWord("RECURSIVE") {
		tok = next()
	}
	for {
		// CTE name: an identifier or (SQLite allows it) a string.
		if tok.Kind != Word && tok.Kind != QuotedIdent && tok.Kind != String {
			return ""
		}
		tok = next()
		if isOp(tok, "(") { // column list
			if !skipGroup() {
				return ""
			}
			tok = next()
		}
		if !tok.IsWord("AS") {
			return ""
		}
		tok = next()
		if tok.IsWord("NOT") {
			tok = next()
			if !tok.IsWord("MATERIALIZED") {
				return ""
			}
			tok = next()
		} else if tok.IsWord("MATERIALIZED") {
			tok = next()
		}
		if !isOp(tok, "(") || !skipGroup() {
			return ""
		}
		tok = next()
		if !isOp(tok, ",") {
			break
		}
		tok = next()
	}
	if tok.Kind != Word {
		return ""
	}
	return toUpperASCII(tok.Text)
}
