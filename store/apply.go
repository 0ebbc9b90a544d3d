package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/fxamacker/cbor/v2"
	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/capture"
	"github.com/outpost-edge/outpost/hlc"
	"github.com/outpost-edge/outpost/merge"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Cursor kinds kept per peer in outpost_peers.
const (
	CursorPull = "pull" // we pulled the peer's groups up to dbv (its numbering)
	CursorPush = "push" // we pushed our groups up to dbv (our numbering)
	CursorRecv = "recv" // we received the peer's pushes up to dbv (its numbering)
)

// ApplyResult says what an Apply did.
type ApplyResult struct {
	Through   int64 // the peer's db_version the cursor now stands at
	DBVersion int64 // the local db_version the groups were committed as (0 if nothing committed)
	Applied   int   // changes that changed local state
	Ignored   int   // changes that lost to or equalled local state
	Refused   int   // changes refused by the origin's table permissions
	Pending   int   // changes kept for a table or column this schema lacks
	// Drift is set when a group was held back because a change's clock is
	// too far ahead; groups before it were applied, the rest must be sent
	// again later.
	Drift error
}

// ReplStats count replication work since Open.
type ReplStats struct {
	Applied, Ignored, Refused, Pending, Drifted int64
}

type replStats struct {
	applied, ignored, refused, pending, drifted atomic.Int64
}

// ReplStats returns the replication counters.
func (s *Store) ReplStats() ReplStats {
	return ReplStats{Applied: s.repl.applied.Load(), Ignored: s.repl.ignored.Load(), Refused: s.repl.refused.Load(),
		Pending: s.repl.pending.Load(), Drifted: s.repl.drifted.Load()}
}

// Cursor returns the cursor of kind for peer and the peer incarnation it
// belongs to.
func (s *Store) Cursor(ctx context.Context, peer, kind string) (dbv int64, incarnation string, err error) {
	row := s.rdb.QueryRowContext(ctx, `SELECT dbv, incarnation FROM outpost_peers WHERE name = ? AND kind = ?`, peer, kind)
	if err := row.Scan(&dbv, &incarnation); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, "", fmt.Errorf("cursor %s/%s: %w", peer, kind, err)
	}
	return dbv, incarnation, nil
}

// SetCursor durably sets a cursor (e.g. after a push was acknowledged, or to
// reset it for a new peer incarnation).
func (s *Store) SetCursor(ctx context.Context, peer, kind, incarnation string, dbv int64) error {
	_, err := s.submitRemote(ctx, true, func(tx *Tx) error { return tx.setCursor(peer, kind, incarnation, dbv) })
	return err
}

func (tx *Tx) setCursor(peer, kind, incarnation string, dbv int64) error {
	st, err := tx.s.stmts.get(tx.ctx, `INSERT INTO outpost_peers (name, kind, incarnation, dbv) VALUES (?, ?, ?, ?) ON CONFLICT (name, kind) DO UPDATE SET incarnation = excluded.incarnation, dbv = excluded.dbv`)
	if err != nil {
		return err
	}
	_, err = st.ExecContext(tx.ctx, peer, kind, incarnation, dbv)
	return err
}

// submitRemote runs fn as a transaction that does not capture (it writes
// clock rows itself).
func (s *Store) submitRemote(ctx context.Context, meta bool, fn func(*Tx) error) (int64, error) {
	j := &job{ctx: context.WithoutCancel(ctx), fn: fn, capture: false, meta: meta, done: make(chan struct{})}
	return s.enqueue(ctx, j)
}

// Apply merges groups received from peer (of incarnation inc) in one local
// transaction and moves the peer's cursor of kind to through (the peer's
// db_version everything up to which has been received) in the same
// transaction. Readers see all of it or none.
func (s *Store) Apply(ctx context.Context, peer, kind, inc string, groups []outpost.Group, through int64) (ApplyResult, error) {
	var res ApplyResult
	// Hold back everything from the first group with a change too far in
	// the future; it is not lost: the sender keeps it and sends it again.
	for i, g := range groups {
		if err := s.driftCheck(g); err != nil {
			res.Drift = err
			s.repl.drifted.Add(1)
			through = min(through, g.DBV-1)
			groups = groups[:i]
			break
		}
	}
	dbv, err := s.submitRemote(ctx, len(groups) == 0, func(tx *Tx) error {
		res = ApplyResult{Drift: res.Drift}
		for _, g := range groups {
			for k := range g.Changes {
				if err := tx.applyChange(&g.Changes[k], &res); err != nil {
					return fmt.Errorf("apply %s group %d: %w", peer, g.DBV, err)
				}
			}
		}
		return tx.setCursor(peer, kind, inc, through)
	})
	if err != nil {
		return res, err
	}
	res.Through, res.DBVersion = through, dbv
	s.repl.applied.Add(int64(res.Applied))
	s.repl.ignored.Add(int64(res.Ignored))
	s.repl.refused.Add(int64(res.Refused))
	s.repl.pending.Add(int64(res.Pending))
	return res, nil
}

func (s *Store) driftCheck(g outpost.Group) error {
	for _, ch := range g.Changes {
		if err := s.clock.Observe(hlc.Timestamp(ch.HLC)); err != nil {
			return fmt.Errorf("group %d from %s: %w", g.DBV, ch.Origin, err)
		}
	}
	return nil
}

// applyChange merges one remote change (DESIGN.md section 4).
func (tx *Tx) applyChange(ch *outpost.Change, res *ApplyResult) error {
	s := tx.s
	rt := s.tables[strings.ToLower(ch.Table)]
	if rt != nil && len(ch.PK) != len(rt.pk) {
		// Malformed (or a key change no schema rollout allows): refusing
		// it, rather than failing the batch, keeps one bad change from
		// stalling the link forever.
		res.Refused++
		s.log.Warn("replication: refused change with a wrong key", "table", ch.Table, "origin", ch.Origin, "key_values", len(ch.PK), "want", len(rt.pk))
		return nil
	}
	if rt == nil || (ch.Col != "" && !rt.colSet[ch.Col]) {
		res.Pending++
		return tx.keepPending(ch)
	}
	if s.opts.RemoteCheck != nil {
		if err := s.opts.RemoteCheck(ch); err != nil {
			res.Refused++
			s.log.Warn("replication: refused change", "table", ch.Table, "origin", ch.Origin, "err", err)
			return nil
		}
	}
	key := seenKey(ch)
	if s.seen.has(key, ch) {
		res.Ignored++
		return nil
	}
	local, err := tx.local(rt, ch)
	if err != nil {
		return err
	}
	v := merge.Version{HLC: ch.HLC, Origin: ch.Origin}
	act := merge.Decide(local, ch.Col, ch.CL, v)
	if act == merge.Ignore {
		res.Ignored++
		return nil
	}
	// A value the receiver's constraints refuse (NOT NULL, CHECK, a user
	// trigger's RAISE) must not half-apply the change nor stall the link:
	// such changes run under a savepoint and are refused on a constraint
	// error, like a change the origin may not write.
	guard := rt.guarded || (ch.Col != "" && rt.notNull[ch.Col])
	if guard {
		if err := s.control(tx.ctx, "SAVEPOINT outpost_change"); err != nil {
			return err
		}
	}
	err = tx.writeChange(rt, ch, act)
	if guard {
		if err != nil && isConstraint(err) {
			if rerr := s.control(tx.ctx, "ROLLBACK TO outpost_change"); rerr != nil {
				return rerr
			}
			if rerr := s.control(tx.ctx, "RELEASE outpost_change"); rerr != nil {
				return rerr
			}
			res.Refused++
			s.log.Warn("replication: refused change the local constraints reject", "table", ch.Table, "col", ch.Col, "origin", ch.Origin, "err", err)
			return nil
		}
		if err == nil {
			err = s.control(tx.ctx, "RELEASE outpost_change")
		}
	}
	if err != nil {
		return err
	}
	if act == merge.NewLife || act == merge.ApplyColumn {
		tx.tc.seen = append(tx.tc.seen, seenEntry{key, seenVersion{ch.CL, ch.HLC, ch.Origin}})
	}
	res.Applied++
	return nil
}

// writeChange carries out a merge decision in SQL.
func (tx *Tx) writeChange(rt *replTable, ch *outpost.Change, act merge.Action) error {
	s := tx.s
	dbv := tx.tc.dbv
	exec := func(q string, args ...any) error {
		st, err := s.stmts.get(tx.ctx, q)
		if err != nil {
			return err
		}
		_, err = st.ExecContext(tx.ctx, args...)
		return err
	}
	pk := ch.PK
	with := func(args ...any) []any { return append(append([]any{}, pk...), args...) }
	switch act {
	case merge.NewLife:
		if err := exec(rt.upSent, with("", ch.CL, int64(ch.HLC), ch.Origin, dbv)...); err != nil {
			return err
		}
		if err := exec(rt.dropCol, pk...); err != nil {
			return err
		}
		if err := exec(rt.delRow, pk...); err != nil {
			return err
		}
		if merge.Alive(ch.CL) {
			if err := exec(rt.insRow, pk...); err != nil {
				return err
			}
			if ch.Col != "" {
				if err := exec(rt.setCol[ch.Col], append([]any{ch.Val}, pk...)...); err != nil {
					return err
				}
				if err := exec(rt.upSent, with(ch.Col, ch.CL, int64(ch.HLC), ch.Origin, dbv)...); err != nil {
					return err
				}
			}
		}
	case merge.ApplyColumn:
		if err := exec(rt.setCol[ch.Col], append([]any{ch.Val}, pk...)...); err != nil {
			return err
		}
		if err := exec(rt.upSent, with(ch.Col, ch.CL, int64(ch.HLC), ch.Origin, dbv)...); err != nil {
			return err
		}
	case merge.BumpSentinel:
		if err := exec(rt.bumpSen, append([]any{int64(ch.HLC), ch.Origin, dbv}, pk...)...); err != nil {
			return err
		}
	}
	return nil
}

func isConstraint(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_CONSTRAINT
}

// local reads what this node holds for the change's row and column.
func (tx *Tx) local(rt *replTable, ch *outpost.Change) (merge.Local, error) {
	var l merge.Local
	if ch.Col == "" {
		st, err := tx.s.stmts.get(tx.ctx, rt.sent)
		if err != nil {
			return l, err
		}
		var h int64
		err = st.QueryRowContext(tx.ctx, ch.PK...).Scan(&l.CL, &h, &l.Sentinel.Origin)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return l, err
		}
		l.Sentinel.HLC = uint64(h)
		return l, nil
	}
	st, err := tx.s.stmts.get(tx.ctx, rt.colVer)
	if err != nil {
		return l, err
	}
	rows, err := st.QueryContext(tx.ctx, append(append([]any{}, ch.PK...), ch.Col)...)
	if err != nil {
		return l, err
	}
	defer rows.Close()
	for rows.Next() {
		var col, origin string
		var cl, h int64
		if err := rows.Scan(&col, &cl, &h, &origin); err != nil {
			return l, err
		}
		if col == "" {
			l.CL, l.Sentinel = cl, merge.Version{HLC: uint64(h), Origin: origin}
		} else {
			l.HasCol, l.Col = true, merge.Version{HLC: uint64(h), Origin: origin}
		}
	}
	return l, rows.Err()
}

var pendingEnc, _ = cbor.EncOptions{}.EncMode()

// keepPending stores a change for a table or column this schema lacks.
func (tx *Tx) keepPending(ch *outpost.Change) error {
	b, err := pendingEnc.Marshal(ch)
	if err != nil {
		return fmt.Errorf("keep pending change: %w", err)
	}
	st, err := tx.s.stmts.get(tx.ctx, `INSERT INTO outpost_pending (tbl, change) VALUES (?, ?)`)
	if err != nil {
		return err
	}
	_, err = st.ExecContext(tx.ctx, ch.Table, b)
	return err
}

// PendingCount returns how many changes wait for the schema to catch up.
func (s *Store) PendingCount(ctx context.Context) (int64, error) {
	var n int64
	err := s.rdb.QueryRowContext(ctx, `SELECT count(*) FROM outpost_pending`).Scan(&n)
	return n, err
}

var pendingDec, _ = cbor.DecOptions{IntDec: cbor.IntDecConvertSigned}.DecMode()

// applyPending applies the pending changes this schema now knows, in one
// transaction, and removes them.
func (s *Store) applyPending(ctx context.Context) (int, error) {
	if waiting, err := s.PendingCount(ctx); err != nil || waiting == 0 {
		return 0, err
	}
	n := 0
	_, err := s.submitRemote(ctx, false, func(tx *Tx) error {
		rows, err := s.conn.QueryContext(tx.ctx, `SELECT id, change FROM outpost_pending ORDER BY id`)
		if err != nil {
			return err
		}
		type pend struct {
			id int64
			ch outpost.Change
		}
		var ready []pend
		for rows.Next() {
			var p pend
			var b []byte
			if err := rows.Scan(&p.id, &b); err != nil {
				rows.Close()
				return err
			}
			if err := pendingDec.Unmarshal(b, &p.ch); err != nil {
				rows.Close()
				return fmt.Errorf("pending change %d: %w", p.id, err)
			}
			normalizeValues(&p.ch)
			rt := s.tables[strings.ToLower(p.ch.Table)]
			if rt != nil && (p.ch.Col == "" || rt.colSet[p.ch.Col]) {
				ready = append(ready, p)
			}
		}
		rows.Close()
		var res ApplyResult
		for _, p := range ready {
			if err := tx.applyChange(&p.ch, &res); err != nil {
				return err
			}
			if _, err := s.conn.ExecContext(tx.ctx, `DELETE FROM outpost_pending WHERE id = ?`, p.id); err != nil {
				return err
			}
		}
		n = len(ready)
		return nil
	})
	return n, err
}

// normalizeValues turns CBOR-decoded values back into SQLite types.
func normalizeValues(ch *outpost.Change) {
	fix := func(v any) any {
		switch x := v.(type) {
		case uint64:
			return int64(x)
		case float32:
			return float64(x)
		}
		return v
	}
	ch.Val = fix(ch.Val)
	for i := range ch.PK {
		ch.PK[i] = fix(ch.PK[i])
	}
}

// Tombstones counts deleted rows whose tombstone (sentinel with an even
// causal length) is kept, over every replicated table.
func (s *Store) Tombstones(ctx context.Context) (int64, error) {
	var total int64
	for _, rt := range s.tableOrder {
		var n int64
		q := fmt.Sprintf(`SELECT count(*) FROM %s WHERE col = '' AND cl %% 2 = 0`, capture.Quote(capture.ClockTable(rt.name)))
		if err := s.rdb.QueryRowContext(ctx, q).Scan(&n); err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}
