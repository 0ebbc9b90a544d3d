package store

import (
	"context"
	"database/sql"
	"fmt"
	"sort"

	"github.com/outpost-edge/outpost"
)

// ChangesSince returns this node's groups with db_version in (since, ...],
// oldest first, whole groups only, about maxChanges changes at most (a
// single larger group is returned whole), read from one consistent snapshot.
// Changes whose origin is exclude (the requester's current incarnation) are
// left out, so a group may come back empty or be skipped; through is the
// db_version up to which everything was considered, for the caller's cursor.
func (s *Store) ChangesSince(ctx context.Context, since int64, exclude string, maxChanges int) (groups []outpost.Group, through int64, err error) {
	if s.closed.Load() {
		return nil, since, &Error{Code: CodeUnavailable, Statement: -1, Message: "the store is closed", Err: outpost.ErrClosed}
	}
	conn, err := s.replDB.Conn(ctx)
	if err != nil {
		return nil, since, fmt.Errorf("changes since %d: %w", since, err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
		return nil, since, fmt.Errorf("changes since %d: %w", since, err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "COMMIT") //nolint:errcheck // read-only
	var committed int64
	if err := conn.QueryRowContext(ctx, `SELECT coalesce((SELECT value FROM outpost_meta WHERE key = 'db_version'), 0)`).Scan(&committed); err != nil {
		return nil, since, fmt.Errorf("changes since %d: %w", since, err)
	}
	if committed <= since {
		return nil, committed, nil
	}
	// Read windows of db_versions until enough changes are found; a window
	// grows while it finds few.
	upTo := since
	window := int64(256)
	var all []outpost.Change
	var dbvs []int64
	for upTo < committed && len(all) < maxChanges {
		hi := min(committed, upTo+window)
		chs, vs, err := s.readWindow(ctx, conn, upTo, hi)
		if err != nil {
			return nil, since, fmt.Errorf("changes since %d: %w", since, err)
		}
		all, dbvs = append(all, chs...), append(dbvs, vs...)
		upTo = hi
		if len(chs) < maxChanges/4 && window < 1<<20 {
			window *= 2
		}
	}
	for i, ch := range all {
		if ch.Origin == exclude {
			continue
		}
		if n := len(groups); n == 0 || groups[n-1].DBV != dbvs[i] {
			groups = append(groups, outpost.Group{DBV: dbvs[i]})
		}
		g := &groups[len(groups)-1]
		g.Changes = append(g.Changes, ch)
	}
	return groups, upTo, nil
}

// readWindow reads every table's clock rows with dbv in (lo, hi], in
// db_version order (tables in schema order within one db_version).
func (s *Store) readWindow(ctx context.Context, conn *sql.Conn, lo, hi int64) ([]outpost.Change, []int64, error) {
	type item struct {
		ch  outpost.Change
		dbv int64
	}
	var items []item
	for _, rt := range s.tableOrder {
		rows, err := conn.QueryContext(ctx, rt.emit, lo, hi)
		if err != nil {
			return nil, nil, fmt.Errorf("table %q: %w", rt.name, err)
		}
		n := len(rt.pk)
		for rows.Next() {
			dest := make([]any, n+6)
			ptrs := make([]any, len(dest))
			for k := range dest {
				ptrs[k] = &dest[k]
			}
			if err := rows.Scan(ptrs...); err != nil {
				rows.Close()
				return nil, nil, fmt.Errorf("table %q: %w", rt.name, err)
			}
			for k := range dest {
				// The driver reads a zero-length BLOB as []byte(nil),
				// which would bind as NULL at the receiver.
				if b, ok := dest[k].([]byte); ok && b == nil {
					dest[k] = []byte{}
				}
			}
			ch := outpost.Change{Table: rt.name, PK: dest[:n:n], Val: dest[n+5]}
			ch.Col, _ = dest[n].(string)
			ch.CL, _ = dest[n+1].(int64)
			h, _ := dest[n+2].(int64)
			ch.HLC = uint64(h)
			ch.Origin, _ = dest[n+3].(string)
			dbv, _ := dest[n+4].(int64)
			if ch.Col == "" {
				ch.Val = nil
			}
			items = append(items, item{ch, dbv})
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("table %q: %w", rt.name, err)
		}
	}
	sort.SliceStable(items, func(i, j int) bool { return items[i].dbv < items[j].dbv })
	chs := make([]outpost.Change, len(items))
	dbvs := make([]int64, len(items))
	for i, it := range items {
		chs[i], dbvs[i] = it.ch, it.dbv
	}
	return chs, dbvs, nil
}
