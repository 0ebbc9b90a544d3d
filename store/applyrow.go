package store

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/capture"
	"github.com/outpost-edge/outpost/hlc"
	"github.com/outpost-edge/outpost/merge"
)

// A new row arrives as a run of changes: its sentinel (col "") and then a
// change per column, all of one live causal length (the origin emits them
// in that order). Applied one by one that is a lookup and two to four
// statements per change; when this node holds nothing of the row, the
// outcome is known up front (the row enters that life with those columns),
// so applyNewRow writes it with one INSERT of the data row and one
// multi-row INSERT of its clock rows. Anything else (a row this node
// knows, a change the gate does not admit outright, a table with CHECK
// constraints or triggers, a value the constraints refuse) goes the
// change-by-change way, which decides the same.

// newRowRun returns how many changes from chs[0] form a new-row run of rt
// (0 if chs[0] does not start one): the sentinel, then distinct known
// columns of the same key and causal length.
func newRowRun(rt *replTable, chs []outpost.Change) int {
	first := &chs[0]
	if first.Col != "" || !merge.Alive(first.CL) || first.CL > MaxCL || len(first.PK) != len(rt.pk) {
		return 0
	}
	n := 1
	seen := map[string]bool{}
	for n < len(chs) {
		ch := &chs[n]
		if ch.Col == "" || ch.CL != first.CL || !strings.EqualFold(ch.Table, first.Table) || !samePK(ch.PK, first.PK) {
			break
		}
		col := ch.Col
		if !rt.colSet[col] {
			name, ok := rt.colFold[strings.ToLower(col)]
			if !ok {
				return 0 // a column this schema lacks: held, one by one
			}
			col = name
		}
		if seen[col] {
			return 0
		}
		seen[col] = true
		n++
	}
	return n
}

// samePK compares two keys value by value, type included.
func samePK(a, b []any) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		switch x := a[i].(type) {
		case []byte:
			y, ok := b[i].([]byte)
			if !ok || string(x) != string(y) {
				return false
			}
		default:
			if a[i] != b[i] {
				return false
			}
		}
	}
	return true
}

// applyNewRow applies the run chs (see newRowRun) as one new row if every
// change is admitted and this node holds nothing of the row; it reports
// whether it did (false: nothing was written, apply them one by one).
func (tx *Tx) applyNewRow(sender string, rt *replTable, chs []outpost.Change, res *ApplyResult) (bool, error) {
	s := tx.s
	if rt.guarded {
		return false, nil
	}
	keys := make([]string, len(chs))
	for i := range chs {
		ch := &chs[i]
		if s.beyondHorizon(ch) {
			return false, nil
		}
		if s.opts.Gate != nil {
			if a := s.opts.Gate.Admit(sender, ch); a.Verdict != outpost.Admit {
				return false, nil
			}
		}
		if i > 0 && !rt.colSet[ch.Col] {
			ch.Col = rt.colFold[strings.ToLower(ch.Col)]
		}
		keys[i] = seenKey(ch)
		if s.seen.has(keys[i], ch) {
			return false, nil
		}
	}
	first := &chs[0]
	st, err := s.stmts.get(tx.ctx, rt.anyClk)
	if err != nil {
		return false, err
	}
	var cl int64
	switch err := st.QueryRowContext(tx.ctx, first.PK...).Scan(&cl); {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return false, err
	default:
		return false, nil // this node knows the row
	}
	cols := make([]string, 0, len(chs)-1)
	args := append(make([]any, 0, len(first.PK)+len(chs)), first.PK...)
	for _, ch := range chs[1:] {
		cols = append(cols, ch.Col)
		args = append(args, ch.Val)
	}
	exec := func(q string, args ...any) error {
		st, err := s.stmts.get(tx.ctx, q)
		if err != nil {
			return err
		}
		_, err = st.ExecContext(tx.ctx, args...)
		return err
	}
	if err := exec(rt.delRow, first.PK...); err != nil {
		return false, err
	}
	if err := exec(rt.insertRow(cols), args...); err != nil {
		if isConstraint(err) {
			// The statement was undone; one by one, the change the
			// constraints refuse is held.
			return false, nil
		}
		return false, err
	}
	dbv := tx.tc.dbv
	cargs := make([]any, 0, len(chs)*(len(first.PK)+5))
	for i := range chs {
		ch := &chs[i]
		cargs = append(append(cargs, first.PK...), ch.Col, ch.CL, int64(ch.HLC), ch.Origin, dbv)
	}
	if err := exec(rt.insertClock(len(chs)), cargs...); err != nil {
		return false, fmt.Errorf("new row of %s: clock rows: %w", rt.name, err)
	}
	tx.tc.wrote = true
	for i := range chs {
		ch := &chs[i]
		// Admitted and not beyond the horizon; the group passed the drift
		// check, so the clock moves past it.
		_ = s.clock.Observe(hlc.Timestamp(ch.HLC))
		tx.tc.seen = append(tx.tc.seen, seenEntry{keys[i], seenVersion{ch.CL, ch.HLC, ch.Origin}})
	}
	if rt.name == "outpost_slugs" {
		if slug, ok := first.PK[0].(string); ok && outpost.OriginName(first.Origin) == s.opts.Identity.Name {
			s.slugs.Observe(slug)
		}
	}
	res.Applied += len(chs)
	return true, nil
}

// insertRow is the INSERT of a data row with the key and these columns
// (the others take their defaults).
func (rt *replTable) insertRow(cols []string) string {
	key := strings.Join(cols, "\x00")
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if q, ok := rt.insCols[key]; ok {
		return q
	}
	names := make([]string, 0, len(rt.pk)+len(cols))
	for _, c := range rt.pk {
		names = append(names, capture.Quote(c))
	}
	for _, c := range cols {
		names = append(names, capture.Quote(c))
	}
	q := fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", capture.Quote(rt.name), strings.Join(names, ", "), placeholders(len(names)))
	if rt.insCols == nil {
		rt.insCols = map[string]string{}
	}
	if len(rt.insCols) < 256 {
		rt.insCols[key] = q
	}
	return q
}

// insertClock is the INSERT of n clock rows (pk..., col, cl, hlc, origin,
// dbv each).
func (rt *replTable) insertClock(n int) string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if q, ok := rt.insClock[n]; ok {
		return q
	}
	var pkc []string
	for i := range rt.pk {
		pkc = append(pkc, capture.PKCol(i))
	}
	row := "(" + placeholders(len(rt.pk)+5) + ")"
	rows := make([]string, n)
	for i := range rows {
		rows[i] = row
	}
	q := fmt.Sprintf("INSERT INTO %s (%s, col, cl, hlc, origin, dbv) VALUES %s", capture.Quote(capture.ClockTable(rt.name)), strings.Join(pkc, ", "), strings.Join(rows, ", "))
	if rt.insClock == nil {
		rt.insClock = map[int]string{}
	}
	rt.insClock[n] = q
	return q
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}
