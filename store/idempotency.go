package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/outpost-edge/outpost"
)

// idempotencyDDL keeps the responses of applied /v1/exec requests that
// carried an Idempotency-Key (see package api). The table is local: it has
// no capture triggers and is never replicated, because a key is remembered
// by the node that applied it. A row is written inside the same transaction
// as the statements it answers for (ExecThen), so "applied" and
// "remembered" cannot disagree, whatever the crash.
var idempotencyDDL = []string{
	`CREATE TABLE IF NOT EXISTS outpost_idempotency (key TEXT PRIMARY KEY NOT NULL, hash BLOB NOT NULL, status INTEGER NOT NULL, body BLOB, dbv INTEGER NOT NULL, created INTEGER NOT NULL)`,
	`CREATE INDEX IF NOT EXISTS outpost_idempotency_created ON outpost_idempotency (created)`,
}

// Remembered is a response kept under an idempotency key.
type Remembered struct {
	Hash    []byte    // fingerprint of the request it answered
	Status  int       // HTTP status of the response
	Body    []byte    // response body; nil when it was too large to keep
	DBV     int64     // db_version the request committed as
	Created time.Time // when the request was applied (millisecond precision)
}

// ExecThen is Exec with then run inside the same transaction, after the
// statements succeeded and before the commit: what then writes commits or
// rolls back with them. then gets the statements' results; tx.DBVersion is
// the db_version the transaction will commit as. An error from then fails
// the whole transaction. then runs on the writer goroutine and must be
// quick.
func (s *Store) ExecThen(ctx context.Context, stmts []Statement, then func(tx *Tx, results []Result) error) ([]Result, int64, error) {
	return s.exec(ctx, stmts, then)
}

// Remembered returns the response kept under key, or nil if there is none.
// It reads committed state on a reader connection.
func (s *Store) Remembered(ctx context.Context, key string) (*Remembered, error) {
	if s.closed.Load() {
		return nil, &Error{Code: CodeUnavailable, Statement: -1, Message: "the store is closed", Err: outpost.ErrClosed}
	}
	var (
		r       Remembered
		created int64
	)
	err := s.rdb.QueryRowContext(ctx, `SELECT hash, status, body, dbv, created FROM outpost_idempotency WHERE key = ?`, key).
		Scan(&r.Hash, &r.Status, &r.Body, &r.DBV, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read idempotency key: %w", err)
	}
	r.Created = time.UnixMilli(created)
	return &r, nil
}

// Remember keeps r under key in the transaction, replacing an older entry
// of the same key (one that expired). Only for use inside ExecThen's then.
func (tx *Tx) Remember(key string, r Remembered) error {
	ctx := context.Background()
	st, err := tx.s.stmts.get(ctx, `INSERT INTO outpost_idempotency (key, hash, status, body, dbv, created) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (key) DO UPDATE SET hash = excluded.hash, status = excluded.status, body = excluded.body, dbv = excluded.dbv, created = excluded.created`)
	if err != nil {
		return fmt.Errorf("remember idempotency key: %w", err)
	}
	if _, err := st.ExecContext(ctx, key, r.Hash, r.Status, r.Body, r.DBV, r.Created.UnixMilli()); err != nil {
		return &Error{Code: CodeInternal, Statement: -1, Message: "remember idempotency key: " + err.Error(), Err: err}
	}
	return nil
}

// ForgetRemembered deletes, in the transaction, the entries created before
// before, and beyond the newest maxEntries entries or maxBytes bytes of
// bodies (0 = no such bound). It returns how many it deleted.
func (tx *Tx) ForgetRemembered(before time.Time, maxEntries int, maxBytes int64) (int64, error) {
	ctx := context.Background()
	st, err := tx.s.stmts.get(ctx, `DELETE FROM outpost_idempotency WHERE created < ?1 OR key IN (
	SELECT key FROM (SELECT key, row_number() OVER w AS n, sum(coalesce(length(body), 0)) OVER w AS bytes
		FROM outpost_idempotency WINDOW w AS (ORDER BY created DESC, key))
	WHERE (?2 > 0 AND n > ?2) OR (?3 > 0 AND bytes > ?3))`)
	if err != nil {
		return 0, fmt.Errorf("forget idempotency keys: %w", err)
	}
	res, err := st.ExecContext(ctx, before.UnixMilli(), maxEntries, maxBytes)
	if err != nil {
		return 0, &Error{Code: CodeInternal, Statement: -1, Message: "forget idempotency keys: " + err.Error(), Err: err}
	}
	n, _ := res.RowsAffected()
	return n, nil
}
