package store

import (
	"context"
	"errors"
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
	ps, err := s.reads.get(bctx, c.sql)
	if err != nil {
		return nil, s.readErr(err)
	}
	// The query runs on a connection of its own for the watchdog to
	// interrupt, inside a read transaction so the cached statement is reused
	// on it. The driver and database/sql get no cancellable context: they
	// would interrupt the first step only, or close the connection under
	// the watchdog.
	conn, err := s.rdb.Conn(bctx)
	if err != nil {
		return nil, s.queryErr(bctx, err)
	}
	defer conn.Close()
	var h handle
	if err := conn.Raw(func(dc any) error {
		var err error
		h, _, err = rawHandle(dc)
		return err
	}); err != nil {
		return nil, s.readErr(err)
	}
	plain := context.WithoutCancel(bctx)
	tx, err := conn.BeginTx(plain, nil)
	if err != nil {
		return nil, s.readErr(err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	stop := watch(bctx, h)
	defer stop() // before the deferred Rollback and conn.Close
	rows, err := tx.StmtContext(plain, ps).QueryContext(plain, c.args...)
	if err != nil {
		return nil, s.queryErr(bctx, err)
	}
	cols, data, err := scanAll(rows, s.opts.MaxRows, s.opts.MaxResultBytes)
	if err != nil {
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
