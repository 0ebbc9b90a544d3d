package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/outpost-edge/outpost"
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

// Gate decides, for every change received from a peer, whether it is
// merged, refused or held (package admission). The store adds the checks
// only it can make: schema, clock, bounds and local constraints.
type Gate interface {
	Admit(sender string, ch *outpost.Change) outpost.Admission
}

// MaxCL is the largest causal length a node accepts from a peer. A row's
// causal length grows by one per delete or re-insert, so no honest history
// comes near it, and it leaves room to count on without leaving int64.
const MaxCL = 1 << 40

// Store-side rules of refused and held changes (see package admission for
// the gate's).
const (
	RuleCLRange    = "cl_out_of_range"       // refused: causal length above MaxCL
	RuleHLCRange   = "hlc_out_of_range"      // refused: timestamp beyond the hold horizon
	RuleBadKey     = "primary_key_malformed" // refused: wrong number of key values
	RuleSchema     = "schema"                // held: table or column not in this schema yet
	RuleDrift      = "drift"                 // held: clock too far ahead of this node's
	RuleConstraint = "constraint"            // held: the local constraints reject the value
)

// ApplyResult says what an Apply did.
type ApplyResult struct {
	Through   int64 // the peer's db_version the cursor now stands at
	DBVersion int64 // the local db_version the groups were committed as (0 if nothing committed)
	Applied   int   // changes that changed local state
	Ignored   int   // changes that lost to or equalled local state
	Refused   int   // changes refused (see Store.Refusals for why)
	Held      int   // changes held to be judged again later (see Store.Held)
	// Fingerprint is what a pull apply stored with the cursor: the
	// fingerprint of the last group of these that carried the peer's own
	// changes; zero if none did (the stored one stays).
	Fingerprint Fingerprint
	// Drift is never set any more: a group too far ahead is held, and the
	// rest applied. Kept for callers compiled against the old contract.
	Drift error
}

// ReplStats count replication work since Open.
type ReplStats struct {
	Applied, Ignored, Refused, Held int64
}

type replStats struct {
	applied, ignored, refused, held atomic.Int64
}

// ReplStats returns the replication counters.
func (s *Store) ReplStats() ReplStats {
	return ReplStats{Applied: s.repl.applied.Load(), Ignored: s.repl.ignored.Load(),
		Refused: s.repl.refused.Load(), Held: s.repl.held.Load()}
}

// Cursor returns the cursor of kind for peer and the peer incarnation it
// belongs to.
func (s *Store) Cursor(ctx context.Context, peer, kind string) (dbv int64, incarnation string, err error) {
	row := s.replDB.QueryRowContext(ctx, `SELECT dbv, incarnation FROM outpost_peers WHERE name = ? AND kind = ?`, peer, kind)
	if err := row.Scan(&dbv, &incarnation); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, "", fmt.Errorf("cursor %s/%s: %w", peer, kind, err)
	}
	return dbv, incarnation, nil
}

// SetCursor durably sets a cursor (e.g. after a push was acknowledged, or to
// reset it for a new peer incarnation). A pull cursor's fingerprint stays
// while it is for the same incarnation and at or below the cursor, and is
// cleared otherwise.
func (s *Store) SetCursor(ctx context.Context, peer, kind, incarnation string, dbv int64) error {
	_, err := s.submitRemote(ctx, true, func(tx *Tx) error { return tx.setCursor(peer, kind, incarnation, dbv, Fingerprint{}) })
	return err
}

// CursorFingerprint returns the fingerprint kept with the cursor of kind
// for peer (see Fingerprint): of the peer incarnation Cursor returns, at or
// below the cursor; zero if unknown.
func (s *Store) CursorFingerprint(ctx context.Context, peer, kind string) (Fingerprint, error) {
	var fp Fingerprint
	var h int64
	row := s.replDB.QueryRowContext(ctx, `SELECT fp_dbv, fp_hlc FROM outpost_peers WHERE name = ? AND kind = ?`, peer, kind)
	if err := row.Scan(&fp.DBV, &h); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return Fingerprint{}, fmt.Errorf("cursor fingerprint %s/%s: %w", peer, kind, err)
	}
	fp.HLC = uint64(h)
	return fp, nil
}

// setCursor moves a cursor; fp, if not zero, becomes its fingerprint.
func (tx *Tx) setCursor(peer, kind, incarnation string, dbv int64, fp Fingerprint) error {
	st, err := tx.s.stmts.get(tx.ctx, `INSERT INTO outpost_peers (name, kind, incarnation, dbv, fp_dbv, fp_hlc) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
ON CONFLICT (name, kind) DO UPDATE SET incarnation = excluded.incarnation, dbv = excluded.dbv,
	fp_dbv = CASE WHEN excluded.fp_dbv > 0 THEN excluded.fp_dbv WHEN outpost_peers.incarnation <> excluded.incarnation OR outpost_peers.fp_dbv > excluded.dbv THEN 0 ELSE outpost_peers.fp_dbv END,
	fp_hlc = CASE WHEN excluded.fp_dbv > 0 THEN excluded.fp_hlc WHEN outpost_peers.incarnation <> excluded.incarnation OR outpost_peers.fp_dbv > excluded.dbv THEN 0 ELSE outpost_peers.fp_hlc END`)
	if err != nil {
		return err
	}
	_, err = st.ExecContext(tx.ctx, peer, kind, incarnation, dbv, fp.DBV, int64(fp.HLC))
	return err
}

// peersColumns are the columns added to outpost_peers after it was first
// created, each with its definition.
var peersColumns = []struct{ name, def string }{
	{"fp_dbv", "fp_dbv INTEGER NOT NULL DEFAULT 0"},
	{"fp_hlc", "fp_hlc INTEGER NOT NULL DEFAULT 0"},
}

// migratePeers adds the columns outpost_peers lacks (a database created by
// an older build). It runs at open, in the schema transaction.
func (s *Store) migratePeers(ctx context.Context) error {
	return s.addColumns(ctx, "outpost_peers", peersColumns)
}

// knownColumns are the columns added to outpost_known after it was first
// created.
var knownColumns = []struct{ name, def string }{
	{"hlc", "hlc INTEGER NOT NULL DEFAULT 0"},
}

// addColumns adds to table the columns of cols it lacks (a database
// created by an older build), in the schema transaction.
func (s *Store) addColumns(ctx context.Context, table string, cols []struct{ name, def string }) error {
	have := map[string]bool{}
	rows, err := s.conn.QueryContext(ctx, `SELECT name FROM pragma_table_info(?)`, table)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", table, err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return fmt.Errorf("migrate %s: %w", table, err)
		}
		have[name] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("migrate %s: %w", table, err)
	}
	for _, c := range cols {
		if have[c.name] {
			continue
		}
		if _, err := s.conn.ExecContext(ctx, "ALTER TABLE "+table+" ADD COLUMN "+c.def); err != nil {
			return fmt.Errorf("migrate %s: add %s: %w", table, c.name, err)
		}
	}
	return nil
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
//
// Every change is judged first (the Gate, then the store's own checks):
// admitted changes are merged; refused ones are counted and never applied;
// changes that cannot be judged yet are held durably in the same
// transaction and judged again later (Recheck), so the cursor may pass
// them without losing them. A group with a change too far in the future is
// held whole, so a receiver never shows part of it; the groups around it
// are applied.
//
// Apply fails, and moves no cursor, only when the store fails or when the
// held changes would exceed their bound (ErrHeldFull): then the sender
// keeps the changes and sends them again later.
func (s *Store) Apply(ctx context.Context, peer, kind, inc string, groups []outpost.Group, through int64) (ApplyResult, error) {
	var res ApplyResult
	dbv, err := s.submitRemote(ctx, len(groups) == 0, func(tx *Tx) error {
		res = ApplyResult{}
		tx.budget = holdBudget{}
		for gi := range groups {
			if err := tx.applyGroup(peer, &groups[gi], &res); err != nil {
				return fmt.Errorf("apply %s group %d: %w", peer, groups[gi].DBV, err)
			}
		}
		if kind == CursorPull {
			// The fingerprint of what was received, kept with the cursor
			// so the peer can tell whether it was restored (see
			// Fingerprint).
			res.Fingerprint = GroupFingerprint(peer+"/"+inc, groups)
		}
		return tx.setCursor(peer, kind, inc, through, res.Fingerprint)
	})
	if err != nil {
		return res, err
	}
	res.Through, res.DBVersion = through, dbv
	s.account(res)
	return res, nil
}

func (s *Store) account(res ApplyResult) {
	s.repl.applied.Add(int64(res.Applied))
	s.repl.ignored.Add(int64(res.Ignored))
	s.repl.refused.Add(int64(res.Refused))
	s.repl.held.Add(int64(res.Held))
}

// applyGroup judges and merges one group: a group with a change too far
// ahead of this node's clock is held whole.
func (tx *Tx) applyGroup(sender string, g *outpost.Group, res *ApplyResult) error {
	s := tx.s
	drifted := false
	for k := range g.Changes {
		ch := &g.Changes[k]
		if s.beyondHorizon(ch) {
			continue // refused one by one below
		}
		// Only checked here: the clock moves past a change when it is
		// merged, so a refused change cannot move it.
		if err := s.clock.Check(hlc.Timestamp(ch.HLC)); err != nil {
			drifted = true
			break
		}
	}
	for k := 0; k < len(g.Changes); k++ {
		ch := &g.Changes[k]
		if !drifted {
			if rt := s.tables[strings.ToLower(ch.Table)]; rt != nil {
				if n := newRowRun(rt, g.Changes[k:]); n > 0 {
					done, err := tx.applyNewRow(sender, rt, g.Changes[k:k+n], res)
					if err != nil {
						return err
					}
					if done {
						k += n - 1
						continue
					}
				}
			}
		}
		if drifted && !s.beyondHorizon(ch) && ch.CL <= MaxCL {
			if s.opts.Gate != nil {
				// What the gate refuses now is refused now, not held.
				if a := s.opts.Gate.Admit(sender, ch); a.Verdict == outpost.Refuse {
					tx.refuse(sender, ch, a.Rule, a.Reason, res)
					continue
				}
			}
			if err := tx.hold(sender, ch, outpost.Admission{Verdict: outpost.Hold, Rule: RuleDrift,
				Reason: fmt.Sprintf("group %d has a change further ahead than the drift limit %s; held until this node's clock catches up", g.DBV, s.opts.MaxDrift)}, res); err != nil {
				return err
			}
			continue
		}
		if err := tx.admitChange(sender, ch, res); err != nil {
			return err
		}
	}
	if drifted {
		s.driftHeld.Store(true)
	}
	return nil
}

// beyondHorizon reports whether a change's timestamp is so far ahead that
// it is refused rather than held (Options.MaxAhead).
func (s *Store) beyondHorizon(ch *outpost.Change) bool {
	return hlc.Timestamp(ch.HLC).Millis() > s.opts.Now().Add(s.opts.MaxAhead).UnixMilli()
}

// admitChange judges one remote change and merges it if admitted.
func (tx *Tx) admitChange(sender string, ch *outpost.Change, res *ApplyResult) error {
	s := tx.s
	switch {
	case ch.CL > MaxCL:
		tx.refuse(sender, ch, RuleCLRange, fmt.Sprintf("causal length %d is over the bound %d", ch.CL, int64(MaxCL)), res)
		return nil
	case s.beyondHorizon(ch):
		tx.refuse(sender, ch, RuleHLCRange, fmt.Sprintf("timestamp %s is more than %s ahead of this node's clock", hlc.Timestamp(ch.HLC), s.opts.MaxAhead), res)
		return nil
	}
	if s.opts.Gate != nil {
		switch a := s.opts.Gate.Admit(sender, ch); a.Verdict {
		case outpost.Refuse:
			tx.refuse(sender, ch, a.Rule, a.Reason, res)
			return nil
		case outpost.Hold:
			return tx.hold(sender, ch, a, res)
		}
	}
	rt := s.tables[strings.ToLower(ch.Table)]
	if rt != nil && ch.Col != "" && !rt.colSet[ch.Col] {
		if name, ok := rt.colFold[strings.ToLower(ch.Col)]; ok {
			ch.Col = name // the same column, spelled in another case
		}
	}
	if rt == nil || (ch.Col != "" && !rt.colSet[ch.Col]) {
		what := fmt.Sprintf("table %q", ch.Table)
		if rt != nil {
			what = fmt.Sprintf("column %q of table %q", ch.Col, ch.Table)
		}
		return tx.hold(sender, ch, outpost.Admission{Verdict: outpost.Hold, Rule: RuleSchema,
			Reason: what + " is not in this node's schema yet; held until the schema has it"}, res)
	}
	if len(ch.PK) != len(rt.pk) {
		tx.refuse(sender, ch, RuleBadKey, fmt.Sprintf("%d key values for a key of %d columns", len(ch.PK), len(rt.pk)), res)
		return nil
	}
	return tx.merge(sender, rt, ch, res)
}

// merge applies an admitted change by the rules of DESIGN.md section 4.
func (tx *Tx) merge(sender string, rt *replTable, ch *outpost.Change, res *ApplyResult) error {
	s := tx.s
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
	// The group passed the drift check, so this cannot fail; a later local
	// write gets a later timestamp than every change merged here.
	_ = s.clock.Observe(hlc.Timestamp(ch.HLC))
	act := merge.Decide(local, ch.Col, ch.CL, v)
	if act == merge.Ignore {
		res.Ignored++
		return nil
	}
	// A value the receiver's constraints refuse (NOT NULL, CHECK, a user
	// trigger's RAISE) must not half-apply the change nor stall the link:
	// such changes run under a savepoint and are held on a constraint
	// error (a newer version, or a schema that accepts the value, lets them
	// through later).
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
			return tx.hold(sender, ch, outpost.Admission{Verdict: outpost.Hold, Rule: RuleConstraint,
				Reason: fmt.Sprintf("the local constraints reject it: %v", err)}, res)
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
	if rt.name == "outpost_slugs" && merge.Alive(ch.CL) {
		// A rebuilt node learns the slugs it issued in an earlier life as
		// they come back, so it never issues one twice.
		if slug, ok := ch.PK[0].(string); ok && outpost.OriginName(ch.Origin) == s.opts.Identity.Name {
			s.slugs.Observe(slug)
		}
	}
	res.Applied++
	return nil
}

// writeChange carries out a merge decision in SQL.
func (tx *Tx) writeChange(rt *replTable, ch *outpost.Change, act merge.Action) error {
	s := tx.s
	dbv := tx.tc.dbv
	tx.tc.wrote = true
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
