package sqltext

// Statement boundaries follow sqlite3_complete(): a semicolon ends a
// statement unless it is inside the body of a CREATE [TEMP] TRIGGER, which
// runs from the TRIGGER keyword to the first "END" that directly follows a
// semicolon ("...; END"). Inside a trigger body a CASE expression's END can
// never directly follow a semicolon, and the trigger's own END always does,
// so this needs no CASE/END counting and is not fooled by a column named
// "end" (END is not a reserved word in SQLite).

// Token classes and states of the sqlite3_complete() state machine.
const (
	tkSemi = iota
	tkOther
	tkExplain
	tkCreate
	tkTemp
	tkTrigger
	tkEnd
)

const (
	stStart   = iota // start of a statement
	stNormal         // inside an ordinary statement
	stExplain        // after a leading EXPLAIN
	stCreate         // after a leading CREATE [TEMP]
	stTrigger        // inside CREATE TRIGGER
	stSemi           // inside CREATE TRIGGER, just after a ";"
	stEnd            // just after "; END" of CREATE TRIGGER
)

var trans = [7][7]uint8{
	//             SEMI     OTHER      EXPLAIN    CREATE     TEMP       TRIGGER    END
	stStart:   {stStart, stNormal, stExplain, stCreate, stNormal, stNormal, stNormal},
	stNormal:  {stStart, stNormal, stNormal, stNormal, stNormal, stNormal, stNormal},
	stExplain: {stStart, stExplain, stNormal, stCreate, stNormal, stNormal, stNormal},
	stCreate:  {stStart, stNormal, stNormal, stNormal, stCreate, stTrigger, stNormal},
	stTrigger: {stSemi, stTrigger, stTrigger, stTrigger, stTrigger, stTrigger, stTrigger},
	stSemi:    {stSemi, stTrigger, stTrigger, stTrigger, stTrigger, stTrigger, stEnd},
	stEnd:     {stStart, stTrigger, stTrigger, stTrigger, stTrigger, stTrigger, stTrigger},
}

func tokenClass(t Token) int {
	switch t.Kind {
	case Semicolon:
		return tkSemi
	case Word:
		switch len(t.Text) {
		case 3:
			if t.IsWord("END") {
				return tkEnd
			}
		case 4:
			if t.IsWord("TEMP") {
				return tkTemp
			}
		case 6:
			if t.IsWord("CREATE") {
				return tkCreate
			}
		case 7:
			if t.IsWord("EXPLAIN") {
				return tkExplain
			}
			if t.IsWord("TRIGGER") {
				return tkTrigger
			}
		case 9:
			if t.IsWord("TEMPORARY") {
				return tkTemp
			}
		}
	}
	return tkOther
}

// span is a statement as byte offsets [start, end) into the SQL text.
type span struct{ start, end int }

func split(sql string) ([]span, error) {
	l := newLexer(sql)
	var out []span
	state := stStart
	cur := span{start: -1}
	for {
		tok, ok, err := l.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		state = int(trans[state][tokenClass(tok)])
		if state == stStart { // a statement-ending semicolon
			if cur.start >= 0 {
				out = append(out, cur)
				cur = span{start: -1}
			}
			continue
		}
		if cur.start < 0 {
			cur.start = tok.Pos
		}
		cur.end = tok.End()
	}
	if state == stTrigger || state == stSemi {
		return nil, posErr(ErrUnterminated, cur.start, "CREATE TRIGGER (no \"; END\")")
	}
	if cur.start >= 0 {
		out = append(out, cur)
	}
	return out, nil
}

// Split splits sql into statements at top-level semicolons, the way SQLite
// does when it prepares one statement after another: semicolons inside
// string literals, quoted identifiers, comments and the BEGIN ... END body
// of a CREATE TRIGGER do not split. Each statement is returned without its
// terminating semicolon and without surrounding whitespace and comments
// (comments inside a statement are kept). Empty statements are dropped, so
// Split returns no statements (and no error) for input that holds only
// whitespace, comments and semicolons (the result is nil).
//
// Lexical errors, and a CREATE TRIGGER whose body is never closed, are
// returned as a *PosError wrapping ErrUnterminated or ErrIllegal.
func Split(sql string) ([]string, error) {
	spans, err := split(sql)
	if err != nil || len(spans) == 0 {
		return nil, err
	}
	stmts := make([]string, len(spans))
	for i, s := range spans {
		stmts[i] = sql[s.start:s.end]
	}
	return stmts, nil
}

// Single returns the only statement in sql, as Split would (without the
// trailing semicolon or surrounding whitespace and comments). It fails with
// ErrEmpty if there is no statement, with a *PosError wrapping
// ErrMultipleStatements (at the start of the second statement) if there is
// more than one, and with Split's errors for malformed text.
func Single(sql string) (string, error) {
	spans, err := split(sql)
	if err != nil {
		return "", err
	}
	switch len(spans) {
	case 0:
		return "", ErrEmpty
	case 1:
		return sql[spans[0].start:spans[0].end], nil
	}
	return "", posErr(ErrMultipleStatements, spans[1].start, "second statement")
}
