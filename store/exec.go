package store

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"

	"github.com/outpost-edge/outpost/sqltext"
)

// Statement is one SQL statement and its positional arguments. Arguments are
// int64, float64, string, []byte or nil.
type Statement struct {
	SQL  string
	Args []any
}

// Result is what one statement of an Exec did. Columns and Rows are set when
// the statement has a RETURNING clause.
type Result struct {
	RowsAffected int64
	Columns      []string
	Rows         [][]any
}

// MaxStatements is the most statements one Exec may carry.
const MaxStatements = 1000

// Exec runs the statements as one local transaction: all apply or none do. It
// returns once the transaction is durable, with the db_version it committed
// as. Errors are *Error with a stable code.
func (s *Store) Exec(ctx context.Context, stmts []Statement) ([]Result, int64, error) {
	if len(stmts) == 0 {
		return nil, 0, errorf(CodeBadRequest, -1, "no statements: send at least one in \"statements\"")
	}
	if len(stmts) > MaxStatements {
		return nil, 0, errorf(CodeTooManyStatements, -1, "%d statements in one request; the limit is %d", len(stmts), MaxStatements)
	}
	checked := make([]checkedStmt, len(stmts))
	for i, st := range stmts {
		c, err := check(st, i, true)
		if err != nil {
			return nil, 0, err
		}
		checked[i] = c
	}
	results := make([]Result, len(stmts))
	dbv, err := s.Write(ctx, func(tx *Tx) error {
		for i, c := range checked {
			r, err := tx.appExec(c, i)
			if err != nil {
				return err
			}
			results[i] = r
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return results, dbv, nil
}

type checkedStmt struct {
	sql       string
	args      []any
	returning bool // the statement returns rows (RETURNING, SELECT, VALUES)
	read      bool // SELECT or VALUES: it changes nothing
}

// check refuses what must never reach SQLite: several statements in one
// string, a wrong number of arguments, a statement that would end the
// writer's transaction.
func check(st Statement, i int, write bool) (checkedStmt, error) {
	toks, err := sqltext.Tokens(st.SQL)
	if err != nil {
		return checkedStmt{}, errorf(CodeSyntax, i, "%v", err)
	}
	if _, err := sqltext.Single(st.SQL); err != nil {
		switch {
		case errors.Is(err, sqltext.ErrMultipleStatements):
			return checkedStmt{}, errorf(CodeMultipleStatements, i, "the sql string holds more than one statement; send each as its own entry in \"statements\" (they still run in one transaction)")
		case errors.Is(err, sqltext.ErrEmpty):
			return checkedStmt{}, errorf(CodeEmptyStatement, i, "the sql string holds no statement")
		default:
			return checkedStmt{}, errorf(CodeSyntax, i, "%v", err)
		}
	}
	names := paramNames(toks)
	if want := len(names) - 1; want != len(st.Args) {
		return checkedStmt{}, errorf(CodeWrongArgCount, i, "the statement has %d parameter(s) but %d arg(s) were given", want, len(st.Args))
	}
	c := checkedStmt{sql: st.SQL, args: bindArgs(st.Args, names)}
	switch sqltext.Verb(st.SQL) {
	case "SELECT", "VALUES":
		c.returning, c.read = true, true
	}
	for _, t := range toks {
		if t.Kind != sqltext.Word {
			continue
		}
		switch strings.ToUpper(t.Text) {
		case "RETURNING":
			c.returning = true
		case "ROLLBACK":
			if write {
				return checkedStmt{}, errorf(CodeNotAllowed, i, "ROLLBACK (including INSERT OR ROLLBACK) is not allowed: it would end the shared commit group; a failing statement already rolls back the whole request")
			}
		}
	}
	return c, nil
}

// paramNames numbers the statement's parameters the way SQLite does (?
// takes the next index, ?NNN sets it, a named parameter takes the next index
// the first time it appears) and returns, per index from 1, the name to bind
// the positional arg under: "" for ?, ?NNN and $NNN-style numbered names
// (which the driver binds by position), the name without its prefix
// otherwise. len(result)-1 is sqlite3_bind_parameter_count.
func paramNames(toks []sqltext.Token) []string {
	names := []string{""}
	seen := map[string]int{}
	set := func(idx int, name string) {
		for len(names) <= idx {
			names = append(names, "")
		}
		names[idx] = name
	}
	for _, t := range toks {
		if t.Kind != sqltext.Param {
			continue
		}
		switch {
		case t.Text == "?":
			set(len(names), "")
		case t.Text[0] == '?':
			if k, err := strconv.Atoi(t.Text[1:]); err == nil && k >= len(names) {
				set(k, "")
			}
		default:
			if _, ok := seen[t.Text]; ok {
				continue
			}
			seen[t.Text] = len(names)
			name := t.Text[1:]
			if _, err := strconv.Atoi(name); err == nil {
				name = ""
			}
			set(len(names), name)
		}
	}
	return names
}

// bindArgs turns positional args into what the driver binds: an arg for a
// named parameter is passed under that name.
func bindArgs(args []any, names []string) []any {
	out := make([]any, len(args))
	for k, a := range args {
		if k+1 < len(names) && names[k+1] != "" {
			out[k] = sql.Named(names[k+1], a)
		} else {
			out[k] = a
		}
	}
	return out
}

// appExec runs one client statement on the writer connection.
//
// The client's context is checked before each statement but not passed into
// SQLite: interrupting a statement would make SQLite roll back the whole
// commit group, not just this client's savepoint.
func (tx *Tx) appExec(c checkedStmt, i int) (Result, error) {
	s := tx.s
	if err := tx.ctx.Err(); err != nil {
		return Result{}, err
	}
	ctx := context.WithoutCancel(tx.ctx)
	s.appMode, s.denied = true, ""
	st, err := s.appStmts.get(ctx, c.sql)
	s.appMode = false
	if err != nil {
		return Result{}, tx.classify(err, i)
	}
	if !c.returning {
		res, err := st.ExecContext(ctx, c.args...)
		if err != nil {
			return Result{}, tx.classify(err, i)
		}
		n, _ := res.RowsAffected()
		return Result{RowsAffected: n}, nil
	}
	rows, err := st.QueryContext(ctx, c.args...)
	if err != nil {
		return Result{}, tx.classify(err, i)
	}
	cols, data, err := scanAll(rows, s.opts.MaxRows)
	if err != nil {
		return Result{}, tx.classify(err, i)
	}
	r := Result{Columns: cols, Rows: data}
	if !c.read {
		r.RowsAffected = int64(len(data)) // RETURNING gives one row per changed row
	}
	return r, nil
}

func (tx *Tx) classify(err error, i int) error {
	if tx.tc.funcErr != nil {
		return classify(tx.tc.funcErr, i, "")
	}
	return classify(err, i, tx.s.denied)
}

// scanAll reads every row as SQLite-typed values.
func scanAll(rows *sql.Rows, maxRows int) ([]string, [][]any, error) {
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, nil, err
	}
	data := [][]any{}
	for rows.Next() {
		if len(data) >= maxRows {
			return nil, nil, errorf(CodeResultTooLarge, -1, "the result has more than %d rows; add a LIMIT or page with a WHERE on the key", maxRows)
		}
		row := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for k := range row {
			ptrs[k] = &row[k]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, nil, err
		}
		data = append(data, row)
	}
	return cols, data, rows.Err()
}
