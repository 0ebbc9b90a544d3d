package store

import (
	"context"
	"database/sql"
	"fmt"
)

// LocalTx is a transaction on a node's local tables: tables that are not
// replicated and have no capture triggers (a service's own state, e.g. the
// beacon log). It runs on the writer inside a commit group, so it is durable
// together with the group's other transactions (one fsync), and it takes no
// db_version: it is not something to replicate and wakes no sync stream.
// It is valid only inside the function passed to WriteLocal.
type LocalTx struct{ tx *Tx }

// WriteLocal runs fn as one transaction on local tables in the next commit
// group and returns once the group is durable. If fn fails, only its own
// changes are rolled back. Once queued the transaction runs even if ctx
// ends (the caller learns whether it committed). fn runs on the writer
// goroutine and must be quick.
//
// Only Outpost's own code calls this: the statements run without the app
// authorizer, so they may write the outpost_* tables clients cannot.
func (s *Store) WriteLocal(ctx context.Context, fn func(*LocalTx) error) error {
	_, err := s.submitRemote(ctx, true, func(tx *Tx) error { return fn(&LocalTx{tx: tx}) })
	return err
}

// WriteLocalSingle is WriteLocal for a transaction of one statement that
// writes (and any reads): it runs without a savepoint, because SQLite undoes
// a failed statement by itself, which saves two statements per transaction
// on the hot path of an intake. fn must not run a second writing statement.
func (s *Store) WriteLocalSingle(ctx context.Context, fn func(*LocalTx) error) error {
	j := &job{ctx: context.WithoutCancel(ctx), fn: func(tx *Tx) error { return fn(&LocalTx{tx: tx}) },
		capture: false, meta: true, single: true, done: make(chan struct{})}
	_, err := s.enqueue(ctx, j)
	return err
}

// Exec runs a statement (prepared once and cached) in the transaction.
func (t *LocalTx) Exec(query string, args ...any) (sql.Result, error) {
	st, err := t.tx.s.stmts.get(t.tx.ctx, query)
	if err != nil {
		return nil, fmt.Errorf("prepare local statement: %w", err)
	}
	return st.ExecContext(t.tx.ctx, args...)
}

// Query runs a query in the transaction; it sees the transaction's own
// writes. Close the rows before the next statement.
func (t *LocalTx) Query(query string, args ...any) (*sql.Rows, error) {
	st, err := t.tx.s.stmts.get(t.tx.ctx, query)
	if err != nil {
		return nil, fmt.Errorf("prepare local query: %w", err)
	}
	return st.QueryContext(t.tx.ctx, args...)
}

// QueryRow runs a query expected to return at most one row.
func (t *LocalTx) QueryRow(query string, args ...any) *sql.Row {
	st, err := t.tx.s.stmts.get(t.tx.ctx, query)
	if err != nil {
		// A Row cannot carry a prepare error: run it unprepared, which
		// reports the same error from Scan.
		return t.tx.s.conn.QueryRowContext(t.tx.ctx, query, args...)
	}
	return st.QueryRowContext(t.tx.ctx, args...)
}

// EnsureLocalTables runs DDL that creates local tables and indexes (CREATE
// ... IF NOT EXISTS) in one transaction of the writer.
func (s *Store) EnsureLocalTables(ctx context.Context, ddl []string) error {
	return s.WriteLocal(ctx, func(tx *LocalTx) error {
		for _, stmt := range ddl {
			if _, err := s.conn.ExecContext(tx.tx.ctx, stmt); err != nil {
				return fmt.Errorf("create local table: %w", err)
			}
		}
		return nil
	})
}

// ReadLocal runs fn in one read transaction on a reader connection: it sees
// one committed snapshot. The connections are read-only.
func (s *Store) ReadLocal(ctx context.Context, fn func(*sql.Tx) error) error {
	if s.closed.Load() {
		return errClosing()
	}
	tx, err := s.rdb.BeginTx(ctx, nil)
	if err != nil {
		return s.readErr(err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	return fn(tx)
}
