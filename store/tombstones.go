package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/outpost-edge/outpost/capture"
)

// Tombstones counts deleted rows whose tombstone (sentinel with an even
// causal length) is kept, over every replicated table.
func (s *Store) Tombstones(ctx context.Context) (int64, error) {
	var total int64
	for _, rt := range s.tableOrder {
		var n int64
		q := fmt.Sprintf(`SELECT count(*) FROM %s WHERE %s`, capture.Quote(capture.ClockTable(rt.name)), capture.TombstoneWhere)
		if err := s.rdb.QueryRowContext(ctx, q).Scan(&n); err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// Point is a place in an origin's log: a sequence and the timestamp of the
// entry at it (0 when unknown).
type Point struct {
	Seq int64  `cbor:"1,keyasint"`
	HLC uint64 `cbor:"2,keyasint"`
}

// KnowledgePoints returns what this node holds of every origin's log, with
// the timestamp of the last entry held where it is known.
func (s *Store) KnowledgePoints(ctx context.Context) (map[string]Point, error) {
	out := map[string]Point{}
	rows, err := s.replDB.QueryContext(ctx, `SELECT origin, through, hlc FROM outpost_known`)
	if err != nil {
		return nil, fmt.Errorf("read knowledge: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var o string
		var t, h int64
		if err := rows.Scan(&o, &t, &h); err != nil {
			return nil, fmt.Errorf("read knowledge: %w", err)
		}
		out[o] = Point{Seq: t, HLC: uint64(h)}
	}
	return out, rows.Err()
}

// TombstoneResult says what a CollectTombstones did.
type TombstoneResult struct {
	Collected int64 // tombstones removed
	Remaining int64 // tombstones still kept (not covered, or held back)
	// HeldTables are tables skipped because changes for them are held
	// (see Store.Held): a held change may be older than a tombstone.
	HeldTables []string
}

// CollectTombstones removes the tombstones the cut covers: the sentinel of a
// deleted row whose version (hlc, origin) has hlc <= cut[origin].HLC. The
// caller vouches that the cut is causally stable at this node (docs/
// PROTOCOL2.md, "Tombstones"): every change that could still arrive for a
// covered row belongs to a later life, because this node already holds
// every write made before its writer learned of the delete. Each table's
// causal-length floor rises to the largest collected, so a new local row
// outranks a tombstone still kept elsewhere. Tables with held changes are
// left alone. Freed pages go back to the file system.
//
// The collection takes no db_version and wakes no puller: the visible data
// does not change.
func (s *Store) CollectTombstones(ctx context.Context, cut map[string]Point) (TombstoneResult, error) {
	var res TombstoneResult
	_, err := s.submitRemote(ctx, true, func(tx *Tx) error {
		res = TombstoneResult{}
		c := s.conn
		stmts := []string{
			`CREATE TEMP TABLE IF NOT EXISTS outpost_gc_cut (origin TEXT PRIMARY KEY NOT NULL, hlc INTEGER NOT NULL) WITHOUT ROWID`,
			`DELETE FROM temp.outpost_gc_cut`,
		}
		for _, q := range stmts {
			if _, err := c.ExecContext(tx.ctx, q); err != nil {
				return fmt.Errorf("collect tombstones: %w", err)
			}
		}
		n := 0
		for o, p := range cut {
			if p.HLC == 0 || p.Seq <= 0 {
				continue
			}
			if _, err := c.ExecContext(tx.ctx, `INSERT INTO temp.outpost_gc_cut (origin, hlc) VALUES (?, ?)`, o, int64(p.HLC)); err != nil {
				return fmt.Errorf("collect tombstones: %w", err)
			}
			n++
		}
		held := map[string]bool{}
		rows, err := c.QueryContext(tx.ctx, `SELECT DISTINCT lower(tbl) FROM outpost_held`)
		if err != nil {
			return fmt.Errorf("collect tombstones: held tables: %w", err)
		}
		for rows.Next() {
			var t string
			if err := rows.Scan(&t); err != nil {
				rows.Close()
				return fmt.Errorf("collect tombstones: held tables: %w", err)
			}
			held[t] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("collect tombstones: held tables: %w", err)
		}
		for _, rt := range s.tableOrder {
			ct := capture.Quote(capture.ClockTable(rt.name))
			covered := capture.TombstoneWhere + ` AND hlc <= (SELECT g.hlc FROM temp.outpost_gc_cut g WHERE g.origin = ` + ct + `.origin)`
			if held[strings.ToLower(rt.name)] {
				res.HeldTables = append(res.HeldTables, rt.name)
			} else if n > 0 {
				var maxCL, count int64
				if err := c.QueryRowContext(tx.ctx, `SELECT coalesce(max(cl), 0), count(*) FROM `+ct+` WHERE `+covered).Scan(&maxCL, &count); err != nil {
					return fmt.Errorf("collect tombstones of %s: %w", rt.name, err)
				}
				if count > 0 {
					if _, err := c.ExecContext(tx.ctx, `DELETE FROM `+ct+` WHERE `+covered); err != nil {
						return fmt.Errorf("collect tombstones of %s: %w", rt.name, err)
					}
					if _, err := c.ExecContext(tx.ctx, `INSERT INTO `+capture.FloorTable+` (tbl, floor) VALUES (?1, ?2) ON CONFLICT (tbl) DO UPDATE SET floor = max(floor, excluded.floor)`, rt.name, maxCL); err != nil {
						return fmt.Errorf("collect tombstones of %s: raise floor: %w", rt.name, err)
					}
					res.Collected += count
					if err := s.mergeSearch(tx, rt.name); err != nil {
						return err
					}
				}
			}
			var left int64
			if err := c.QueryRowContext(tx.ctx, `SELECT count(*) FROM `+ct+` WHERE `+capture.TombstoneWhere).Scan(&left); err != nil {
				return fmt.Errorf("count tombstones of %s: %w", rt.name, err)
			}
			res.Remaining += left
		}
		if res.Collected > 0 {
			if _, err := c.ExecContext(tx.ctx, `PRAGMA incremental_vacuum`); err != nil {
				return fmt.Errorf("collect tombstones: vacuum: %w", err)
			}
		}
		return nil
	})
	if err == nil && res.Collected > 0 {
		s.collected.Add(res.Collected)
	}
	return res, err
}

// searchMergePages bounds the work of one merge of a search index after a
// collection (pages written).
const searchMergePages = 2000

// mergeSearch merges the segments of table's search indexes (bounded), so
// the entries of deleted rows leave the index too: FTS5 keeps delete
// markers in its segments until they are merged.
func (s *Store) mergeSearch(tx *Tx, table string) error {
	for _, ix := range s.schema.Search {
		if !strings.EqualFold(ix.Table, table) {
			continue
		}
		q := fmt.Sprintf(`INSERT INTO %s (%s, rank) VALUES ('merge', %d)`, capture.Quote(ix.Name), capture.Quote(ix.Name), -searchMergePages)
		if _, err := s.conn.ExecContext(tx.ctx, q); err != nil {
			return fmt.Errorf("collect tombstones of %s: merge search index %s: %w", table, ix.Name, err)
		}
	}
	return nil
}

// PublishFloors writes this node's table floors that its row of the
// replicated capture.SharedFloorTable does not show yet (a local write,
// replicated like any other), so a node that bootstraps from a snapshot
// learns them; it writes nothing when they are all there.
func (s *Store) PublishFloors(ctx context.Context) error {
	q := `SELECT l.tbl, l.floor FROM ` + capture.FloorTable + ` l LEFT JOIN ` + capture.SharedFloorTable + ` r ON r.tbl = l.tbl AND r.node = ? WHERE r.floor IS NULL OR r.floor < l.floor`
	rows, err := s.rdb.QueryContext(ctx, q, s.opts.Identity.Name)
	if err != nil {
		return fmt.Errorf("publish floors: %w", err)
	}
	type floor struct {
		tbl string
		f   int64
	}
	var todo []floor
	for rows.Next() {
		var f floor
		if err := rows.Scan(&f.tbl, &f.f); err != nil {
			rows.Close()
			return fmt.Errorf("publish floors: %w", err)
		}
		todo = append(todo, f)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(todo) == 0 {
		return err
	}
	_, err = s.Write(ctx, func(tx *Tx) error {
		for _, f := range todo {
			if _, err := tx.ExecInternal(`INSERT INTO `+capture.SharedFloorTable+` (tbl, node, floor) VALUES (?, ?, ?) ON CONFLICT (tbl, node) DO UPDATE SET floor = max(floor, excluded.floor)`,
				f.tbl, s.opts.Identity.Name, f.f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("publish floors: %w", err)
	}
	return nil
}

// TombstonesCollected counts the tombstones collected since Open.
func (s *Store) TombstonesCollected() int64 { return s.collected.Load() }

// Floors returns each table's causal-length floor (tables without one are
// left out).
func (s *Store) Floors(ctx context.Context) (map[string]int64, error) {
	out := map[string]int64{}
	rows, err := s.rdb.QueryContext(ctx, `SELECT tbl, floor FROM `+capture.FloorTable)
	if err != nil {
		return nil, fmt.Errorf("read floors: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var t string
		var f int64
		if err := rows.Scan(&t, &f); err != nil {
			return nil, fmt.Errorf("read floors: %w", err)
		}
		out[t] = f
	}
	return out, rows.Err()
}
