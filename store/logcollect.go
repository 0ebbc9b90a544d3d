package store

import (
	"context"
	"fmt"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/hlc"
)

// CollectLog removes, per origin, the log entries up to floor[origin] (no
// further than what this node holds) and raises that origin's floor: a
// puller that lacks a collected entry gets a snapshot instead
// (SnapshotNeededError). It returns how many entries were removed.
func (s *Store) CollectLog(ctx context.Context, floor Knowledge) (int64, error) {
	var removed int64
	_, err := s.submitRemote(ctx, true, func(tx *Tx) error {
		removed = 0
		for o, f := range floor {
			through, old, err := s.knownOf(tx.ctx, o)
			if err != nil {
				return err
			}
			f = min(f, through)
			if f <= old {
				continue
			}
			res, err := s.conn.ExecContext(tx.ctx, `DELETE FROM outpost_log WHERE origin = ? AND seq <= ?`, o, f)
			if err != nil {
				return fmt.Errorf("collect log of %s: %w", o, err)
			}
			n, _ := res.RowsAffected()
			removed += n
			if _, err := s.conn.ExecContext(tx.ctx, `UPDATE outpost_known SET floor = ? WHERE origin = ?`, f, o); err != nil {
				return fmt.Errorf("collect log of %s: %w", o, err)
			}
		}
		if removed > 0 {
			// Give the freed pages back to the file system (a database
			// created before auto_vacuum was set ignores this).
			if _, err := s.conn.ExecContext(tx.ctx, `PRAGMA incremental_vacuum`); err != nil {
				return fmt.Errorf("collect log: vacuum: %w", err)
			}
		}
		return nil
	})
	return removed, err
}

// AdoptKnowledge records that this node now holds the state of every
// origin through k[origin] (a snapshot was merged): its knowledge rises to
// k, and where it rises past the entries this node has, so does its floor
// (it cannot serve the entries in between).
func (s *Store) AdoptKnowledge(ctx context.Context, k Knowledge) error {
	_, err := s.submitRemote(ctx, true, func(tx *Tx) error {
		for o, t := range k {
			through, _, err := s.knownOf(tx.ctx, o)
			if err != nil {
				return err
			}
			if t <= through {
				continue
			}
			// The timestamp of the entry at t is not known here (0).
			if _, err := s.conn.ExecContext(tx.ctx, `INSERT INTO outpost_known (origin, through, floor, hlc) VALUES (?1, ?2, ?2, 0)
ON CONFLICT (origin) DO UPDATE SET through = excluded.through, floor = excluded.floor, hlc = 0`, o, t); err != nil {
				return fmt.Errorf("adopt knowledge of %s: %w", o, err)
			}
			// Entries above the old through that arrived meanwhile stay:
			// the log keeps only what follows the floor.
			if _, err := s.conn.ExecContext(tx.ctx, `DELETE FROM outpost_log WHERE origin = ? AND seq <= ?`, o, t); err != nil {
				return fmt.Errorf("adopt knowledge of %s: %w", o, err)
			}
		}
		return nil
	})
	if err == nil {
		s.broadcast()
	}
	return err
}

// EntriesBefore returns, per origin, the last sequence of the entries
// whose timestamp is before cutoff (the entries a retention collects).
func (s *Store) EntriesBefore(ctx context.Context, cutoff time.Time) (Knowledge, error) {
	k := Knowledge{}
	h := int64(hlc.FromParts(cutoff.UnixMilli(), 0))
	rows, err := s.replDB.QueryContext(ctx, `SELECT origin, max(seq) FROM outpost_log WHERE hlc < ? GROUP BY origin`, h)
	if err != nil {
		return nil, fmt.Errorf("entries before %s: %w", cutoff, err)
	}
	defer rows.Close()
	for rows.Next() {
		var o string
		var t int64
		if err := rows.Scan(&o, &t); err != nil {
			return nil, fmt.Errorf("entries before %s: %w", cutoff, err)
		}
		k[o] = t
	}
	return k, rows.Err()
}

// LogStats counts the log entries held and collected.
type LogStats struct {
	Origins int64 `json:"origins"`
	Entries int64 `json:"entries"`
	Bytes   int64 `json:"bytes"`
}

// LogStats returns the size of the log.
func (s *Store) LogStats(ctx context.Context) (LogStats, error) {
	var st LogStats
	err := s.replDB.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM outpost_known), count(*), coalesce(sum(length(body) + length(sig)), 0) FROM outpost_log`).Scan(&st.Origins, &st.Entries, &st.Bytes)
	if err != nil {
		return st, fmt.Errorf("log stats: %w", err)
	}
	return st, nil
}

// WithoutHeld lowers a knowledge vector read for a snapshot: an origin some
// of whose changes this node holds without having applied them (clock
// drift, schema, constraints) is left out, since the state would not show
// them; a puller then asks for that origin's entries instead.
func (s *Store) WithoutHeld(ctx context.Context, k Knowledge) (Knowledge, error) {
	rows, err := s.replDB.QueryContext(ctx, `SELECT DISTINCT sender FROM outpost_held`)
	if err != nil {
		return nil, fmt.Errorf("held origins: %w", err)
	}
	defer rows.Close()
	held := map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("held origins: %w", err)
		}
		held[name] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("held origins: %w", err)
	}
	out := Knowledge{}
	for o, t := range k {
		if !held[outpost.OriginName(o)] {
			out[o] = t
		}
	}
	return out, nil
}
