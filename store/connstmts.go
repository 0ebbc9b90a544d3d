package store

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"io"
	"sync"
)

// connStmts caches the driver's prepared statements of client queries per
// reader connection. A point read then neither parses its SQL again nor
// needs a transaction: database/sql reuses a statement prepared on the pool
// for a given connection only inside a transaction, whose BEGIN and ROLLBACK
// the driver parses anew every time (a third of a point read's CPU).
//
// A connection's statements are used only by the query holding that
// connection (database/sql hands it to one caller at a time, inside
// Conn.Raw). The pool never closes an idle connection (no lifetime or idle
// limit, see openReaderDB); one it discards after an interrupt has its
// statements closed first (release).
type connStmts struct {
	mu     sync.Mutex
	max    int                            // statements per connection; beyond, the connection's cache starts over
	m      map[any]map[string]driver.Stmt // driver connection -> SQL -> statement
	busy   map[any]bool                   // connections a query holds
	closed bool
}

func newConnStmts(max int) *connStmts {
	return &connStmts{max: max, m: map[any]map[string]driver.Stmt{}, busy: map[any]bool{}}
}

// acquire marks dc as held by a query; release ends that, and closes dc's
// statements if close ran meanwhile.
func (c *connStmts) acquire(dc any) {
	c.mu.Lock()
	c.busy[dc] = true
	c.mu.Unlock()
}

// A connection the pool is about to discard (the driver reports it invalid
// after an interrupted statement) has its statements closed here, while it
// is still open.
func (c *connStmts) release(dc any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.busy, dc)
	if v, ok := dc.(driver.Validator); c.closed || (ok && !v.IsValid()) {
		c.closeConnLocked(dc)
	}
}

// get returns dc's statement for query, preparing it on first use. The
// caller holds dc (acquire).
func (c *connStmts) get(ctx context.Context, dc any, query string) (driver.Stmt, error) {
	c.mu.Lock()
	st := c.m[dc][query]
	c.mu.Unlock()
	if st != nil {
		return st, nil
	}
	p, ok := dc.(driver.ConnPrepareContext)
	if !ok {
		return nil, fmt.Errorf("sqlite driver connection %T cannot prepare with a context", dc)
	}
	st, err := p.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	stmts := c.m[dc]
	if stmts == nil {
		stmts = map[string]driver.Stmt{}
		c.m[dc] = stmts
	}
	if len(stmts) >= c.max {
		// Many distinct statements: start over rather than track recency.
		for k, old := range stmts {
			old.Close()
			delete(stmts, k)
		}
	}
	stmts[query] = st
	return st, nil
}

func (c *connStmts) closeConnLocked(dc any) {
	// A connection already closed (discarded after a panic) cannot
	// finalize its statements any more; they go with it.
	if h, _, err := rawHandle(dc); err == nil && h != 0 {
		for _, st := range c.m[dc] {
			st.Close()
		}
	}
	delete(c.m, dc)
}

// close closes the statements of every connection no query holds; a held
// connection's are closed when its query releases it.
func (c *connStmts) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for dc := range c.m {
		if !c.busy[dc] {
			c.closeConnLocked(dc)
		}
	}
}

// namedValues converts a statement's args as database/sql does for a driver
// without its own value checker: sql.Named names an arg, others are
// positional, each value through driver.DefaultParameterConverter.
func namedValues(dc any, args []any) ([]driver.NamedValue, error) {
	out := make([]driver.NamedValue, len(args))
	checker, _ := dc.(driver.NamedValueChecker)
	for i, a := range args {
		nv := driver.NamedValue{Ordinal: i + 1, Value: a}
		if na, ok := a.(sql.NamedArg); ok {
			nv.Name, nv.Value = na.Name, na.Value
		}
		if checker != nil {
			err := checker.CheckNamedValue(&nv)
			if err == nil {
				out[i] = nv
				continue
			}
			if err != driver.ErrSkip {
				return nil, fmt.Errorf("sql: converting argument %d: %w", i+1, err)
			}
		}
		v, err := driver.DefaultParameterConverter.ConvertValue(nv.Value)
		if err != nil {
			return nil, fmt.Errorf("sql: converting argument %d type: %w", i+1, err)
		}
		nv.Value = v
		out[i] = nv
	}
	return out, nil
}

// scanDriverRows is scanAll for a driver's rows: the values as database/sql
// would scan them into *any (a []byte copied), with the same limits.
func scanDriverRows(rows driver.Rows, maxRows int, maxBytes int64) ([]string, [][]any, error) {
	cols := rows.Columns()
	data := [][]any{}
	dest := make([]driver.Value, len(cols))
	var size int64
	for {
		err := rows.Next(dest)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		if len(data) >= maxRows {
			return nil, nil, errorf(CodeResultTooLarge, -1, "the result has more than %d rows; add a LIMIT or page with a WHERE on the key", maxRows)
		}
		row := make([]any, len(cols))
		for k, v := range dest {
			switch x := v.(type) {
			case string:
				size += int64(len(x))
			case []byte:
				size += int64(len(x))
				v = bytes.Clone(x)
			default:
				size += 8
			}
			row[k] = v
		}
		if size > maxBytes {
			return nil, nil, errorf(CodeResultTooLarge, -1, "the result is over the %d-byte limit (--max-result-bytes); select fewer columns or rows (LIMIT, or page with a WHERE on the key)", maxBytes)
		}
		data = append(data, row)
	}
	return cols, data, nil
}
