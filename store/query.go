package store

import (
	"context"

	"github.com/outpost-edge/outpost"
	"strings"
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
	ps, err := s.reads.get(ctx, c.sql)
	if err != nil {
		return nil, s.readErr(err)
	}
	rows, err := ps.QueryContext(ctx, c.args...)
	if err != nil {
		return nil, s.readErr(err)
	}
	cols, data, err := scanAll(rows, s.opts.MaxRows)
	if err != nil {
		return nil, s.readErr(err)
	}
	return &Rows{Columns: cols, Rows: data}, nil
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
