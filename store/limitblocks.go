package store

import (
	"context"
	"fmt"
)

// PutLimitBlock records, durably and replicated, that the rate limiter key
// is blocked until the given Unix ms (a past time unblocks it). It returns
// the db_version of the write.
func (s *Store) PutLimitBlock(ctx context.Context, key string, until int64) (int64, error) {
	return s.Write(ctx, func(tx *Tx) error {
		st, err := s.stmts.get(tx.ctx, `INSERT INTO outpost_limit_blocks (key, until, node) VALUES (?, ?, ?)
			ON CONFLICT (key) DO UPDATE SET until = excluded.until, node = excluded.node`)
		if err != nil {
			return fmt.Errorf("limit block: %w", err)
		}
		if _, err := st.ExecContext(tx.ctx, key, until, s.opts.Identity.Name); err != nil {
			return &Error{Code: CodeInternal, Statement: -1, Message: "limit block: " + err.Error(), Err: err}
		}
		return nil
	})
}

// LimitBlocks returns the blocked keys whose block ends after the given Unix
// ms: key -> until.
func (s *Store) LimitBlocks(ctx context.Context, after int64) (map[string]int64, error) {
	rows, err := s.Query(ctx, Statement{SQL: `SELECT key, until FROM outpost_limit_blocks WHERE until > ?`, Args: []any{after}})
	if err != nil {
		return nil, fmt.Errorf("limit blocks: %w", err)
	}
	out := make(map[string]int64, len(rows.Rows))
	for _, r := range rows.Rows {
		k, _ := r[0].(string)
		u, _ := r[1].(int64)
		out[k] = u
	}
	return out, nil
}
