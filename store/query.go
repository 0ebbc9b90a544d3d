package store

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"

	"github.com/outpost-edge/outpost"
)

// Rows is the answer to a query.
type Rows struct {
	Columns []string
	Rows    [][]any
}

var readVerbs = map[string]bool{"SELECT": true, "VALUES": true, "EXPLAIN": true, "PRAGMA": true}

// Query runs one read-only statement on a reader connection. A statement
// that would write is refused with CodeReadOnly.
func (s *Store) Query(ctx context.Context, st Statement) (*Rows, error) {
	if s.closed.Load() {
		return nil, &Error{Code: CodeUnavailable, Statement: -1, Message: "the store is closed", Err: outpost.ErrClosed}
	}
	c, err := check(st, -1, false)
	if err != nil {
		return nil, err
	}
	if v := c.verb; !readVerbs[v] {
		return nil, errorf(CodeReadOnly, -1, "/v1/query only runs reads (SELECT, VALUES, EXPLAIN, read-only PRAGMA) but this is %s; send writes to /v1/exec", strings.TrimSpace(v))
	}
	bctx, cancel := s.budget(ctx)
	defer cancel()
	// The query runs on a connection of its own for the watchdog to
	// interrupt, with the driver's statement prepared once on that
	// connection (connStmts): one statement, so its own read transaction.
	// The driver and database/sql get no cancellable context: they would
	// interrupt the first step only, or close the connection under the
	// watchdog.
	conn, err := s.rdb.Conn(bctx)
	if err != nil {
		return nil, s.queryErr(bctx, err)
	}
	defer conn.Close()
	plain := context.WithoutCancel(bctx)
	var cols []string
	var data [][]any
	prepared := false
	err = conn.Raw(func(dc any) error {
		h, _, err := rawHandle(dc)
		if err != nil {
			return err
		}
		s.qstmts.acquire(dc)
		defer s.qstmts.release(dc)
		st, err := s.qstmts.get(plain, dc, c.sql)
		if err != nil {
			return err
		}
		args, err := namedValues(dc, c.args)
		if err != nil {
			return err
		}
		q, ok := st.(driver.StmtQueryContext)
		if !ok {
			return fmt.Errorf("sqlite driver statement %T cannot query with a context", st)
		}
		prepared = true
		stop := watch(bctx, h)
		defer stop() // before the rows are closed and the connection goes back
		rows, err := q.QueryContext(plain, args)
		if err != nil {
			return err
		}
		defer rows.Close()
		cols, data, err = scanDriverRows(rows, s.opts.MaxRows, s.opts.MaxResultBytes)
		return err
	})
	if err != nil {
		if !prepared {
			return nil, s.readErr(err)
		}
		return nil, s.queryErr(bctx, err)
	}
	return &Rows{Columns: cols, Rows: data}, nil
}

// queryErr classifies a query's error; one the watchdog caused is a
// timeout, a cancellation by the caller, or the store closing.
func (s *Store) queryErr(bctx context.Context, err error) error {
	if bctx.Err() != nil && (isInterrupt(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		e := s.budgetErr(bctx, -1)
		if e.Code == CodeUnavailable && s.halt.Err() == nil {
			return bctx.Err() // the caller went away
		}
		return e
	}
	return s.readErr(err)
}

func (s *Store) readErr(err error) error {
	e := classify(err, -1, "")
	if e.Code == CodeNotAllowed {
		e.Code = CodeReadOnly
		e.Message = "/v1/query only runs reads: no writes, ATTACH, or PRAGMA that sets a value; send writes to /v1/exec"
	}
	if strings.Contains(e.Message, "outpost_slug() issues a slug") {
		e.Code = CodeReadOnly
	}
	return e
}
