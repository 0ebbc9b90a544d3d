package store

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

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
	return s.exec(ctx, stmts, nil)
}

// exec is Exec with an optional then run in the same transaction (ExecThen).
func (s *Store) exec(ctx context.Context, stmts []Statement, then func(*Tx, []Result) error) ([]Result, int64, error) {
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
	// One statement that returns no rows needs no savepoint. (With RETURNING
	// the changes are made before rows are read, and reading can still fail.)
	single := len(stmts) == 1 && (!checked[0].returning || checked[0].read) && then == nil
	dbv, err := s.submit(ctx, single, func(tx *Tx) error {
		for i, c := range checked {
			r, err := tx.appExec(c, i)
			if err != nil {
				return err
			}
			results[i] = r
		}
		if then != nil {
			return then(tx, results)
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
	verb      string
}

// check refuses what must never reach SQLite: several statements in one
// string, a wrong number of arguments, a statement that would end the
// writer's transaction.
func check(st Statement, i int, write bool) (checkedStmt, error) {
	sh, err := shapeOf(st.SQL)
	if err != nil {
		if e, ok := err.(*Error); ok {
			e2 := *e
			e2.Statement = i
			return checkedStmt{}, &e2
		}
		return checkedStmt{}, err
	}
	if want := len(sh.names) - 1; want != len(st.Args) {
		return checkedStmt{}, errorf(CodeWrongArgCount, i, "the statement has %d parameter(s) but %d arg(s) were given", want, len(st.Args))
	}
	if write && sh.rollback {
		return checkedStmt{}, errorf(CodeNotAllowed, i, "ROLLBACK (including INSERT OR ROLLBACK) is not allowed: it would end the shared commit group; a failing statement already rolls back the whole request")
	}
	return checkedStmt{sql: st.SQL, args: bindArgs(st.Args, sh.names), returning: sh.returning, read: sh.read, verb: sh.verb}, nil
}

// shape is what the lexer tells about a statement; it depends only on the
// text, so it is cached for statements an app repeats.
type shape struct {
	names     []string // parameter names by index, see paramNames
	verb      string
	returning bool
	read      bool
	rollback  bool
}

const maxShapes = 4096

var (
	shapes  sync.Map // sql -> *shape
	nShapes atomic.Int64
)

func shapeOf(sql string) (*shape, error) {
	if v, ok := shapes.Load(sql); ok {
		return v.(*shape), nil
	}
	toks, err := sqltext.Tokens(sql)
	if err != nil {
		return nil, errorf(CodeSyntax, -1, "%v", err)
	}
	if _, err := sqltext.Single(sql); err != nil {
		switch {
		case errors.Is(err, sqltext.ErrMultipleStatements):
			return nil, errorf(CodeMultipleStatements, -1, "the sql string holds more than one statement; send each as its own entry in \"statements\" (they still run in one transaction)")
		case errors.Is(err, sqltext.ErrEmpty):
			return nil, errorf(CodeEmptyStatement, -1, "the sql string holds no statement")
		default:
			return nil, errorf(CodeSyntax, -1, "%v", err)
		}
	}
	sh := &shape{names: paramNames(toks), verb: sqltext.Verb(sql)}
	switch sh.verb {
	case "SELECT", "VALUES":
		sh.returning, sh.read = true, true
	}
	for _, t := range toks {
		if t.Kind != sqltext.Word {
			continue
		}
		switch strings.ToUpper(t.Text) {
		case "RETURNING":
			sh.returning = true
		case "ROLLBACK":
			sh.rollback = true
		}
	}
	if nShapes.Load() < maxShapes {
		if _, loaded := shapes.LoadOrStore(sql, sh); !loaded {
			nShapes.Add(1)
		}
	}
	return sh, nil
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

// appExec runs one client statement on the writer connection, within the
// transaction's time budget (see startBudget).
func (tx *Tx) appExec(c checkedStmt, i int) (Result, error) {
	s := tx.s
	if err := tx.ctx.Err(); err != nil {
		return Result{}, err
	}
	bctx := tx.startBudget()
	if bctx.Err() != nil {
		tx.tc.interrupted = true
		return Result{}, s.budgetErr(bctx, i)
	}
	// The driver gets no cancellable context: it would interrupt only
	// while the first row is computed; the watchdog covers every step.
	ctx := context.WithoutCancel(tx.ctx)
	s.appMode, s.denied = true, ""
	st, err := s.appStmts.get(ctx, c.sql)
	s.appMode = false
	if err != nil {
		return Result{}, tx.stmtErr(bctx, err, i)
	}
	if !c.returning {
		res, err := st.ExecContext(ctx, c.args...)
		if err != nil {
			return Result{}, tx.stmtErr(bctx, err, i)
		}
		n, _ := res.RowsAffected()
		return Result{RowsAffected: n}, nil
	}
	rows, err := st.QueryContext(ctx, c.args...)
	if err != nil {
		return Result{}, tx.stmtErr(bctx, err, i)
	}
	cols, data, err := scanAll(rows, s.opts.MaxRows, s.opts.MaxResultBytes)
	if err != nil {
		return Result{}, tx.stmtErr(bctx, err, i)
	}
	r := Result{Columns: cols, Rows: data}
	if !c.read {
		r.RowsAffected = int64(len(data)) // RETURNING gives one row per changed row
	}
	return r, nil
}

// startBudget starts the transaction's time budget and its watchdog at the
// first client statement, and returns the budget's context.
func (tx *Tx) startBudget() context.Context {
	if tx.sctx == nil {
		ctx, cancel := tx.s.budget(context.Background())
		stop := watch(ctx, tx.s.wh)
		tx.s.busy.Store(true)
		tx.sctx = ctx
		tx.endSctx = func() { stop(); cancel(); tx.s.busy.Store(false) }
	}
	return tx.sctx
}

// endBudget stops the watchdog; the writer calls it when the transaction's
// function returns, before it runs statements of its own.
func (tx *Tx) endBudget() {
	if tx.endSctx != nil {
		tx.endSctx()
		tx.endSctx = nil
	}
}

// stmtErr classifies a client statement's error; one the watchdog caused
// becomes a timeout (or closing) error and marks the transaction.
func (tx *Tx) stmtErr(bctx context.Context, err error, i int) error {
	if bctx.Err() != nil && isInterrupt(err) {
		tx.tc.interrupted = true
		return tx.s.budgetErr(bctx, i)
	}
	return tx.classify(err, i)
}

func (tx *Tx) classify(err error, i int) error {
	if tx.tc.funcErr != nil {
		return classify(tx.tc.funcErr, i, "")
	}
	return classify(err, i, tx.s.denied)
}

// DefaultMaxResultBytes bounds a result's size when Options.MaxResultBytes
// is 0; it is also the longest string or blob a connection may build
// (SQLITE_LIMIT_LENGTH).
const DefaultMaxResultBytes = 64 << 20

// scanAll reads every row as SQLite-typed values, at most maxRows rows and
// about maxBytes bytes (strings and blobs by length, other values 8).
func scanAll(rows *sql.Rows, maxRows int, maxBytes int64) ([]string, [][]any, error) {
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, nil, err
	}
	data := [][]any{}
	var size int64
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
		for _, v := range row {
			switch v := v.(type) {
			case string:
				size += int64(len(v))
			case []byte:
				size += int64(len(v))
			default:
				size += 8
			}
		}
		if size > maxBytes {
			return nil, nil, errorf(CodeResultTooLarge, -1, "the result is over the %d-byte limit (--max-result-bytes); select fewer columns or rows (LIMIT, or page with a WHERE on the key)", maxBytes)
		}
		data = append(data, row)
	}
	return cols, data, rows.Err()
}
