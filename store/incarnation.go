package store

import (
	"context"
	"fmt"
)

// RotateIncarnation gives the database a new incarnation: from now on this
// node's changes carry the origin NAME/new, and peers, seeing the new
// incarnation in its hello, reset their cursors for it and read its
// changes again from db_version 0.
//
// It is the cure for a database restored from a copy of its data directory:
// the copy has the old incarnation but a lower db_version, so peers whose
// cursors are past it would skip every db_version it issues again, and
// would echo-filter the writes it lost as its own. Under a new incarnation
// both come back. reason is logged.
func (s *Store) RotateIncarnation(ctx context.Context, reason string) (string, error) {
	inc := newIncarnation()
	old := s.Incarnation()
	_, err := s.submitRemote(ctx, true, func(tx *Tx) error {
		st, err := tx.s.stmts.get(tx.ctx, `INSERT INTO outpost_meta (key, value) VALUES ('incarnation', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`)
		if err != nil {
			return err
		}
		_, err = st.ExecContext(tx.ctx, inc)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("rotate incarnation: %w", err)
	}
	// Durable now. A local write committed between that and the swap
	// below still carries the old origin; peers read it again anyway,
	// from 0 under the new incarnation.
	s.incMu.Lock()
	s.incarnation = inc
	s.origin = s.opts.Identity.Name + "/" + inc
	s.incMu.Unlock()
	s.log.Warn("store: new incarnation", "old", old, "new", inc, "reason", reason)
	s.broadcast()
	return inc, nil
}
