// Package sqldriver registers the database/sql driver "outpost", built on
// package client, so the standard library and tools built on it work with
// an Outpost node:
//
//	import _ "github.com/outpost-edge/outpost/client/sqldriver"
//
//	db, err := sql.Open("outpost", "http://127.0.0.1:7700?token="+os.Getenv("OUTPOST_API_TOKEN"))
//	_, err = db.ExecContext(ctx, `INSERT INTO pages (id, title) VALUES (outpost_id(), ?)`, "Hi")
//	err = db.QueryRowContext(ctx, `SELECT count(*) FROM pages`).Scan(&n)
//
// The data source name is the node's API URL. Its query parameters are
// options, not sent to the node: token (the bearer token), retries
// (Options.MaxRetries).
//
// Semantics:
//
//   - Exec goes to POST /v1/exec as a one-statement transaction, with an
//     Idempotency-Key so the client's retries cannot apply it twice.
//     Result.RowsAffected is the node's count; LastInsertId is not
//     supported (use RETURNING, or outpost_id() and a key you choose).
//   - Query goes to POST /v1/query (a read-only connection). A statement that
//     writes (INSERT ... RETURNING) is refused there before anything runs,
//     and is then sent to /v1/exec, so Query works for RETURNING too.
//   - Transactions are buffered in the client: the statements Exec'd in a
//     sql.Tx are sent together as one /v1/exec transaction at Commit (all
//     apply or none do); Rollback discards them. Inside a Tx, Exec's Result
//     is not known until Commit (RowsAffected returns an error), and
//     Query is refused (the node has no interactive transactions) unless
//     the Tx was begun with sql.TxOptions{ReadOnly: true}, where each
//     query runs on its own and Exec is refused. Isolation levels other
//     than the default are refused. Errors of a commit are those of the
//     /v1/exec request, with Statement the index within the Tx.
//   - Arguments are positional (?, ?NNN, :name by position); sql.Named
//     arguments are refused. Values are those of package client.
//   - Column types: DatabaseTypeName is the SQLite storage class of the
//     column's first non-NULL value in the result ("INTEGER", "REAL",
//     "TEXT", "BLOB"; "" if all are NULL), ScanType its Go type; the node
//     does not send declared types.
package sqldriver

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net/url"
	"reflect"
	"strconv"
	"time"

	"github.com/outpost-edge/outpost/client"
)

// DriverName is the name the driver is registered under.
const DriverName = "outpost"

func init() { sql.Register(DriverName, Driver{}) }

// Driver is the database/sql driver for Outpost.
type Driver struct{}

// Open implements driver.Driver.
func (d Driver) Open(dsn string) (driver.Conn, error) {
	c, err := d.OpenConnector(dsn)
	if err != nil {
		return nil, err
	}
	return c.Connect(context.Background())
}

// OpenConnector implements driver.DriverContext: dsn is parsed once.
func (Driver) OpenConnector(dsn string) (driver.Connector, error) {
	c, err := ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	return &connector{c: c}, nil
}

// ParseDSN returns the client for a data source name (see the package doc).
func ParseDSN(dsn string) (*client.Client, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return nil, fmt.Errorf("outpost: bad data source name: %w", err)
	}
	var opts client.Options
	q := u.Query()
	for k, v := range q {
		switch k {
		case "token":
			opts.Token = v[0]
		case "retries":
			n, err := strconv.Atoi(v[0])
			if err != nil {
				return nil, fmt.Errorf("outpost: data source name: retries=%q is not an integer", v[0])
			}
			opts.MaxRetries = n
			if n == 0 {
				opts.MaxRetries = -1
			}
		default:
			return nil, fmt.Errorf("outpost: data source name: unknown option %q (known: token, retries)", k)
		}
	}
	u.RawQuery = ""
	return client.Open(u.String(), opts)
}

// Connector returns a connector of c, for sql.OpenDB.
func Connector(c *client.Client) driver.Connector { return &connector{c: c} }

type connector struct{ c *client.Client }

func (c *connector) Connect(context.Context) (driver.Conn, error) { return &conn{c: c.c}, nil }
func (c *connector) Driver() driver.Driver                        { return Driver{} }

// conn is stateless but for an open transaction: HTTP requests carry none.
type conn struct {
	c  *client.Client
	tx *tx
}

var (
	_ driver.ExecerContext      = (*conn)(nil)
	_ driver.QueryerContext     = (*conn)(nil)
	_ driver.ConnBeginTx        = (*conn)(nil)
	_ driver.Pinger             = (*conn)(nil)
	_ driver.NamedValueChecker  = (*conn)(nil)
	_ driver.ConnPrepareContext = (*conn)(nil)
)

func (c *conn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

func (c *conn) PrepareContext(_ context.Context, query string) (driver.Stmt, error) {
	return &stmt{c: c, query: query}, nil
}

func (c *conn) Close() error { c.tx = nil; return nil }

func (c *conn) Begin() (driver.Tx, error) { return c.BeginTx(context.Background(), driver.TxOptions{}) }

func (c *conn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if c.tx != nil {
		return nil, errors.New("outpost: a transaction is already open on this connection")
	}
	if opts.Isolation != driver.IsolationLevel(sql.LevelDefault) {
		return nil, fmt.Errorf("outpost: isolation level %v is not supported: a transaction is sent as one /v1/exec at Commit", sql.IsolationLevel(opts.Isolation))
	}
	c.tx = &tx{c: c, ctx: ctx, readOnly: opts.ReadOnly}
	return c.tx, nil
}

func (c *conn) Ping(ctx context.Context) error { return c.c.Ping(ctx) }

// CheckNamedValue accepts the values package client sends, as they are.
func (c *conn) CheckNamedValue(nv *driver.NamedValue) error {
	if nv.Name != "" {
		return fmt.Errorf("outpost: named argument %q: arguments are positional (use :%s in the SQL and pass it by position)", nv.Name, nv.Name)
	}
	switch v := nv.Value.(type) {
	case driver.Valuer:
		var err error
		nv.Value, err = v.Value()
		return err
	case nil, int64, float64, string, []byte, bool, int, int32, int16, int8, uint32, uint16, uint8, uint, uint64, float32:
		return nil
	}
	if _, ok := nv.Value.(time.Time); ok {
		return nil
	}
	return driver.ErrSkip // default conversion
}

func args(nv []driver.NamedValue) []any {
	out := make([]any, len(nv))
	for i, v := range nv {
		out[i] = v.Value
	}
	return out
}

func (c *conn) ExecContext(ctx context.Context, query string, nv []driver.NamedValue) (driver.Result, error) {
	if c.tx != nil {
		return c.tx.exec(query, args(nv))
	}
	res, err := c.c.Exec(ctx, client.Stmt(query, args(nv)...))
	if err != nil {
		return nil, err
	}
	return result{n: res.Results[0].RowsAffected}, nil
}

func (c *conn) QueryContext(ctx context.Context, query string, nv []driver.NamedValue) (driver.Rows, error) {
	if c.tx != nil && !c.tx.readOnly {
		return nil, errors.New("outpost: Query inside a transaction is not supported: the statements of a sql.Tx are sent together at Commit; query before Begin or after Commit, use RETURNING in a write, or begin the Tx with sql.TxOptions{ReadOnly: true}")
	}
	a := args(nv)
	q, err := c.c.Query(ctx, query, a...)
	var ce *client.Error
	if errors.As(err, &ce) && ce.Code == "read_only" && c.tx == nil {
		// A write with RETURNING: refused before anything ran; run it
		// as a transaction of its own.
		res, err := c.c.Exec(ctx, client.Stmt(query, a...))
		if err != nil {
			return nil, err
		}
		r := res.Results[0]
		return newRows(r.Columns, r.Rows), nil
	}
	if err != nil {
		return nil, err
	}
	return newRows(q.Columns, q.Rows), nil
}

type result struct{ n int64 }

func (r result) LastInsertId() (int64, error) {
	return 0, errors.New("outpost: LastInsertId is not supported; use RETURNING")
}
func (r result) RowsAffected() (int64, error) { return r.n, nil }

// pending is the Result of an Exec inside a transaction, known at Commit.
type pending struct{}

func (pending) LastInsertId() (int64, error) {
	return 0, errors.New("outpost: LastInsertId is not supported; use RETURNING")
}
func (pending) RowsAffected() (int64, error) {
	return 0, errors.New("outpost: inside a transaction the rows affected are known only at Commit (the statements are sent together then)")
}

type tx struct {
	c        *conn
	ctx      context.Context // BeginTx's: it bounds the Commit
	readOnly bool
	stmts    []client.Statement
}

func (t *tx) exec(query string, a []any) (driver.Result, error) {
	if t.readOnly {
		return nil, errors.New("outpost: Exec in a read-only transaction")
	}
	t.stmts = append(t.stmts, client.Stmt(query, a...))
	return pending{}, nil
}

// Commit sends the buffered statements as one /v1/exec transaction.
func (t *tx) Commit() error {
	t.c.tx = nil
	if len(t.stmts) == 0 {
		return nil
	}
	_, err := t.c.c.Exec(t.ctx, t.stmts...)
	return err
}

func (t *tx) Rollback() error {
	t.c.tx = nil
	return nil
}

type stmt struct {
	c     *conn
	query string
}

func (s *stmt) Close() error  { return nil }
func (s *stmt) NumInput() int { return -1 } // the node checks the count
func (s *stmt) Exec(a []driver.Value) (driver.Result, error) {
	return s.ExecContext(context.Background(), named(a))
}
func (s *stmt) Query(a []driver.Value) (driver.Rows, error) {
	return s.QueryContext(context.Background(), named(a))
}
func (s *stmt) ExecContext(ctx context.Context, nv []driver.NamedValue) (driver.Result, error) {
	return s.c.ExecContext(ctx, s.query, nv)
}
func (s *stmt) QueryContext(ctx context.Context, nv []driver.NamedValue) (driver.Rows, error) {
	return s.c.QueryContext(ctx, s.query, nv)
}

func named(a []driver.Value) []driver.NamedValue {
	out := make([]driver.NamedValue, len(a))
	for i, v := range a {
		out[i] = driver.NamedValue{Ordinal: i + 1, Value: v}
	}
	return out
}

type rows struct {
	cols  []string
	data  [][]any
	i     int
	types []reflect.Type
	names []string
}

var (
	_ driver.RowsColumnTypeDatabaseTypeName = (*rows)(nil)
	_ driver.RowsColumnTypeScanType         = (*rows)(nil)
	_ driver.RowsColumnTypeNullable         = (*rows)(nil)
)

func newRows(cols []string, data [][]any) *rows {
	r := &rows{cols: cols, data: data, types: make([]reflect.Type, len(cols)), names: make([]string, len(cols))}
	for k := range cols {
		r.types[k] = reflect.TypeFor[any]()
		for _, row := range data {
			if k < len(row) && row[k] != nil {
				r.types[k] = reflect.TypeOf(row[k])
				switch row[k].(type) {
				case int64:
					r.names[k] = "INTEGER"
				case float64:
					r.names[k] = "REAL"
				case string:
					r.names[k] = "TEXT"
				case []byte:
					r.names[k] = "BLOB"
				}
				break
			}
		}
	}
	return r
}

func (r *rows) Columns() []string { return r.cols }
func (r *rows) Close() error      { r.data = nil; return nil }
func (r *rows) Next(dest []driver.Value) error {
	if r.i >= len(r.data) {
		return io.EOF
	}
	for k, v := range r.data[r.i] {
		dest[k] = v
	}
	r.i++
	return nil
}
func (r *rows) ColumnTypeDatabaseTypeName(i int) string { return r.names[i] }
func (r *rows) ColumnTypeScanType(i int) reflect.Type   { return r.types[i] }
func (r *rows) ColumnTypeNullable(int) (bool, bool)     { return true, false }
