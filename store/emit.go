package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/outpost-edge/outpost"
)

// DefaultMaxBatchBytes bounds the approximate bytes of one ChangesSince batch
// when the filter sets none.
const DefaultMaxBatchBytes = 4 << 20

// ChangeFilter selects what ChangesSinceFilter returns.
type ChangeFilter struct {
	// Exclude leaves out changes of this exact origin (the requester's
	// current incarnation: echo suppression). Changes of the requester's
	// earlier incarnations are kept, so a node that lost its own writes
	// (restored from a backup) gets them back.
	Exclude string
	// OwnOnly keeps only changes this node originated (any incarnation of
	// its name): an edge relays nothing but its own writes.
	OwnOnly bool
	// MaxChanges bounds the changes of one batch (about: whole groups); 0 =
	// 5000.
	MaxChanges int
	// MaxBytes bounds the approximate bytes of one batch (see ChangeBytes);
	// 0 = DefaultMaxBatchBytes.
	MaxBytes int
	// KeysOnly returns, for tables not in Values, changes that carry only
	// Table, PK and Col (no CL, HLC, Origin or Val): what a reader that only
	// needs to know which rows changed (the purge watcher) wants, read from
	// the clock tables' dbv index alone. Not with Exclude or OwnOnly, which
	// need the origin.
	KeysOnly bool
	// Values lists the tables whose changes KeysOnly still returns whole.
	Values []string
}

// ChangesSince returns this node's groups with db_version in (since, ...],
// oldest first, whole groups only, about maxChanges changes at most (a
// single larger group is returned whole), read from one consistent snapshot.
// Changes whose origin is exclude (the requester's current incarnation) are
// left out, so a group may come back empty or be skipped; through is the
// db_version up to which everything was considered, for the caller's cursor.
func (s *Store) ChangesSince(ctx context.Context, since int64, exclude string, maxChanges int) (groups []outpost.Group, through int64, err error) {
	return s.ChangesSinceFilter(ctx, since, ChangeFilter{Exclude: exclude, MaxChanges: maxChanges})
}

// ChangesSinceFilter is ChangesSince with a filter and a byte bound: a
// batch ends at the first group that would take it past f.MaxChanges changes
// or f.MaxBytes bytes, but always holds at least one group, so a caller
// makes progress whatever the size of a group. Groups are whole, from one
// read snapshot; through is the db_version everything up to which was
// considered.
func (s *Store) ChangesSinceFilter(ctx context.Context, since int64, f ChangeFilter) (groups []outpost.Group, through int64, err error) {
	if f.MaxChanges <= 0 {
		f.MaxChanges = 5000
	}
	if f.MaxBytes <= 0 {
		f.MaxBytes = DefaultMaxBatchBytes
	}
	if s.closed.Load() {
		return nil, since, &Error{Code: CodeUnavailable, Statement: -1, Message: "the store is closed", Err: outpost.ErrClosed}
	}
	emit := s.emitAll
	if f.KeysOnly {
		if f.Exclude != "" || f.OwnOnly {
			return nil, since, errors.New("changes since: KeysOnly cannot filter by origin (Exclude, OwnOnly)")
		}
		emit = s.keysSQL(f.Values)
	}
	// One read transaction (one snapshot); its statements are prepared once
	// per replication connection, not parsed again on every call.
	tx, err := s.replDB.BeginTx(ctx, nil)
	if err != nil {
		return nil, since, fmt.Errorf("changes since %d: %w", since, err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	query := func(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
		if st := s.replSt.lookup(q); st != nil {
			return tx.StmtContext(ctx, st).QueryContext(ctx, args...)
		}
		return tx.QueryContext(ctx, q, args...)
	}
	var committed int64
	rows, err := query(ctx, `SELECT coalesce((SELECT value FROM outpost_meta WHERE key = 'db_version'), 0)`)
	if err == nil {
		if rows.Next() {
			err = rows.Scan(&committed)
		}
		if cerr := rows.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = rows.Err()
		}
	}
	if err != nil {
		return nil, since, fmt.Errorf("changes since %d: %w", since, err)
	}
	if committed <= since {
		return nil, committed, nil
	}
	b := batcher{f: f, self: s.opts.Identity.Name, upTo: since}
	// Read windows of db_versions until the batch is full. A window grows
	// while it finds little and is sized by the density seen so far, so one
	// window holds about what the batch still has room for.
	window := int64(64)
	for b.upTo < committed && !b.full {
		lo, hi := b.upTo, min(committed, b.upTo+window)
		chs, vs, err := s.readWindowSQL(ctx, query, emit, lo, hi)
		if err != nil {
			return nil, since, fmt.Errorf("changes since %d: %w", since, err)
		}
		b.add(chs, vs, hi)
		window = nextWindow(window, hi-lo, len(chs), f.MaxChanges-b.changes)
	}
	return b.groups, b.upTo, nil
}

// nextWindow sizes the next read window from the density of the last one.
func nextWindow(window, span int64, found, room int) int64 {
	next := window * 4
	if found > 0 && span > 0 {
		perDBV := max(1, int64(found)/max(1, span))
		next = min(next, max(1, int64(room)/perDBV))
	}
	return max(1, min(next, 1<<20))
}

// batcher collects whole groups up to the filter's bounds.
type batcher struct {
	f       ChangeFilter
	self    string
	groups  []outpost.Group
	changes int
	bytes   int
	upTo    int64 // every db_version up to here is taken (or filtered out)
	full    bool
}

// add takes the changes of the window (lo, hi], in db_version order.
func (b *batcher) add(chs []outpost.Change, dbvs []int64, hi int64) {
	for i := 0; i < len(chs); {
		dbv := dbvs[i]
		g := outpost.Group{DBV: dbv}
		size := 0
		for ; i < len(chs) && dbvs[i] == dbv; i++ {
			ch := chs[i]
			if (b.f.Exclude != "" && ch.Origin == b.f.Exclude) || (b.f.OwnOnly && outpost.OriginName(ch.Origin) != b.self) {
				continue
			}
			g.Changes = append(g.Changes, ch)
			size += ChangeBytes(&ch)
		}
		if len(g.Changes) > 0 {
			if len(b.groups) > 0 && (b.changes+len(g.Changes) > b.f.MaxChanges || b.bytes+size > b.f.MaxBytes) {
				b.full = true
				b.upTo = dbv - 1
				return
			}
			b.groups = append(b.groups, g)
			b.changes += len(g.Changes)
			b.bytes += size
		}
		b.upTo = dbv
		if b.changes >= b.f.MaxChanges || b.bytes >= b.f.MaxBytes {
			b.full = true
			return
		}
	}
	b.upTo = hi
}

// ChangeBytes is the approximate size of a change on the wire and in
// memory: its names, key and value, plus a fixed overhead.
func ChangeBytes(ch *outpost.Change) int {
	n := 48 + len(ch.Table) + len(ch.Col) + len(ch.Origin) + valueBytes(ch.Val)
	for _, v := range ch.PK {
		n += valueBytes(v)
	}
	return n
}

func valueBytes(v any) int {
	switch x := v.(type) {
	case string:
		return len(x) + 8
	case []byte:
		return len(x) + 8
	}
	return 9
}

// keysSQL returns the KeysOnly statement with the tables in values whole
// ("" when the store reads per table: whole changes).
func (s *Store) keysSQL(values []string) string {
	if s.emitAll == "" {
		return ""
	}
	key := strings.ToLower(strings.Join(values, "\x00"))
	if q, ok := s.keysStmts.Load(key); ok {
		return q.(string)
	}
	with := map[string]bool{}
	for _, v := range values {
		with[strings.ToLower(v)] = true
	}
	q, _ := emitSQL(s.tableOrder, with)
	if s.nKeysStmts.Add(1) <= 16 {
		s.keysStmts.Store(key, q)
	}
	return q
}

// querier runs a query: a connection's QueryContext, or the writer's
// prepared statements (writerQuery).
type querier func(ctx context.Context, query string, args ...any) (*sql.Rows, error)

// writerQuery runs a query on the writer connection through its cache of
// prepared statements (the writer reads its own commit group back for the
// log).
func (s *Store) writerQuery(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := s.stmts.get(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// readWindow reads every table's clock rows with dbv in (lo, hi], in
// db_version order (tables in schema order within one db_version).
func (s *Store) readWindow(ctx context.Context, query querier, lo, hi int64) ([]outpost.Change, []int64, error) {
	return s.readWindowSQL(ctx, query, s.emitAll, lo, hi)
}

// readWindowSQL is readWindow with emit, a statement of emitSQL's shape
// ("" = one statement per table, whole changes).
func (s *Store) readWindowSQL(ctx context.Context, query querier, emit string, lo, hi int64) ([]outpost.Change, []int64, error) {
	if emit == "" {
		return s.readWindowPerTable(ctx, query, lo, hi)
	}
	rows, err := query(ctx, emit, lo, hi)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var items []emitItem
	width := 1 + s.emitPK + 6
	ptrs := make([]any, width)
	for rows.Next() {
		dest := make([]any, width)
		for k := range dest {
			ptrs[k] = &dest[k]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, nil, err
		}
		ti, _ := dest[0].(int64)
		if ti < 0 || int(ti) >= len(s.tableOrder) {
			return nil, nil, fmt.Errorf("read changes: table index %v out of range", dest[0])
		}
		rt := s.tableOrder[ti]
		n := len(rt.pk)
		// Key columns after the table's own are the padding (NULL).
		row := dest[1:]
		if n < s.emitPK {
			row = append(dest[1:1+n:1+n], dest[1+s.emitPK:]...)
		}
		items = append(items, emitRow(rt, row))
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	return sortedItems(items)
}

type emitItem struct {
	ch  outpost.Change
	dbv int64
}

// emitRow turns one row of a table's emit (its key, col, cl, hlc, origin,
// dbv and value) into a change.
func emitRow(rt *replTable, dest []any) emitItem {
	n := len(rt.pk)
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
	return emitItem{ch, dbv}
}

func sortedItems(items []emitItem) ([]outpost.Change, []int64, error) {
	sort.SliceStable(items, func(i, j int) bool { return items[i].dbv < items[j].dbv })
	chs := make([]outpost.Change, len(items))
	dbvs := make([]int64, len(items))
	for i, it := range items {
		chs[i], dbvs[i] = it.ch, it.dbv
	}
	return chs, dbvs, nil
}

// readWindowPerTable is readWindow with one statement per table.
func (s *Store) readWindowPerTable(ctx context.Context, query querier, lo, hi int64) ([]outpost.Change, []int64, error) {
	var items []emitItem
	for _, rt := range s.tableOrder {
		rows, err := query(ctx, rt.emit, lo, hi)
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
			items = append(items, emitRow(rt, dest))
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("table %q: %w", rt.name, err)
		}
	}
	return sortedItems(items)
}
