package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/wire"
)

// heldDDL keeps the changes a node received but could not judge yet (see
// outpost.Hold): one row per change, with the rule that held it and the
// peer that sent it (the sender is judged again too).
var heldDDL = []string{
	`CREATE TABLE IF NOT EXISTS outpost_held (id INTEGER PRIMARY KEY, rule TEXT NOT NULL, sender TEXT NOT NULL, tbl TEXT NOT NULL, change BLOB NOT NULL, held_at INTEGER NOT NULL)`,
	`CREATE INDEX IF NOT EXISTS outpost_held_rule ON outpost_held (rule)`,
	`CREATE INDEX IF NOT EXISTS outpost_held_sender ON outpost_held (sender)`,
}

// ErrHeldFull reports that holding more changes would pass the bound on
// held changes (Options.MaxHeld, MaxHeldPerSender). The Apply that hit it
// changed nothing: the sender keeps the changes and retries later.
var ErrHeldFull = errors.New("held changes at their bound")

// Defaults of the bounds on held changes.
const (
	DefaultMaxHeld          = 200_000
	DefaultMaxHeldPerSender = 100_000
	DefaultMaxAhead         = time.Hour
)

// holdBudget counts, within one transaction, how many changes are held in
// all and per sender, starting from the durable counts read once.
type holdBudget struct {
	loaded   bool
	total    int64
	bySender map[string]int64
}

// hold keeps ch durably (in the transaction) to be judged again later.
func (tx *Tx) hold(sender string, ch *outpost.Change, a outpost.Admission, res *ApplyResult) error {
	s := tx.s
	b := &tx.budget
	if !b.loaded {
		if err := s.conn.QueryRowContext(tx.ctx, `SELECT count(*) FROM outpost_held`).Scan(&b.total); err != nil {
			return fmt.Errorf("count held changes: %w", err)
		}
		b.bySender, b.loaded = map[string]int64{}, true
	}
	if _, ok := b.bySender[sender]; !ok {
		var n int64
		if err := s.conn.QueryRowContext(tx.ctx, `SELECT count(*) FROM outpost_held WHERE sender = ?`, sender).Scan(&n); err != nil {
			return fmt.Errorf("count held changes: %w", err)
		}
		b.bySender[sender] = n
	}
	if b.total >= int64(s.opts.MaxHeld) || b.bySender[sender] >= int64(s.opts.MaxHeldPerSender) {
		return fmt.Errorf("%w: %d held in all (bound %d), %d from %s (bound %d); the newest was held for %s: %s",
			ErrHeldFull, b.total, s.opts.MaxHeld, b.bySender[sender], sender, s.opts.MaxHeldPerSender, a.Rule, a.Reason)
	}
	enc, err := wire.EncodeChange(ch)
	if err != nil {
		// The wire decoder accepted it, so this cannot happen; refusing
		// keeps a bug here from stalling the link.
		tx.refuse(sender, ch, "unencodable", err.Error(), res)
		return nil
	}
	st, err := s.stmts.get(tx.ctx, `INSERT INTO outpost_held (rule, sender, tbl, change, held_at) VALUES (?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	if _, err := st.ExecContext(tx.ctx, a.Rule, sender, ch.Table, enc, s.opts.Now().UnixMilli()); err != nil {
		return fmt.Errorf("hold change: %w", err)
	}
	b.total++
	b.bySender[sender]++
	res.Held++
	if a.Rule != RuleDrift {
		s.refusals.logOnce(s, "replication: holding change", sender, ch, a.Rule, a.Reason)
	}
	return nil
}

// refuse counts and logs a refused change; it is never applied.
func (tx *Tx) refuse(sender string, ch *outpost.Change, rule, reason string, res *ApplyResult) {
	res.Refused++
	tx.s.refusals.add(sender, rule, ch.Origin)
	tx.s.refusals.logOnce(tx.s, "replication: refused change", sender, ch, rule, reason)
}

// Refusal is a count of changes refused from one sender under one rule,
// with the origin the last of them claimed.
type Refusal struct {
	Sender     string `json:"sender"`
	Rule       string `json:"rule"`
	Count      int64  `json:"count"`
	LastOrigin string `json:"last_origin"`
}

type refusals struct {
	mu     sync.Mutex
	counts map[[2]string]*Refusal
	logged map[[2]string]time.Time
}

// maxOriginLen bounds the claimed origin kept per sender and rule (a
// hostile peer chooses it).
const maxOriginLen = 128

func (r *refusals) add(sender, rule, origin string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.counts == nil {
		r.counts = map[[2]string]*Refusal{}
	}
	k := [2]string{sender, rule}
	c := r.counts[k]
	if c == nil {
		c = &Refusal{Sender: sender, Rule: rule}
		r.counts[k] = c
	}
	c.Count++
	if len(origin) > maxOriginLen {
		origin = origin[:maxOriginLen]
	}
	c.LastOrigin = strings.ToValidUTF8(origin, "?")
}

// logOnce logs a refused or held change, at most once per sender and rule
// every ten seconds, so a hostile peer cannot flood the log.
func (r *refusals) logOnce(s *Store, msg, sender string, ch *outpost.Change, rule, reason string) {
	k := [2]string{sender, rule}
	now := time.Now()
	r.mu.Lock()
	if r.logged == nil {
		r.logged = map[[2]string]time.Time{}
	}
	last, seen := r.logged[k]
	if seen && now.Sub(last) < 10*time.Second {
		r.mu.Unlock()
		return
	}
	r.logged[k] = now
	r.mu.Unlock()
	s.log.Warn(msg, "sender", sender, "origin", ch.Origin, "table", ch.Table, "col", ch.Col, "rule", rule, "reason", reason)
}

// Refusals returns how many changes were refused since Open, per sender and
// rule, sorted.
func (s *Store) Refusals() []Refusal {
	s.refusals.mu.Lock()
	out := make([]Refusal, 0, len(s.refusals.counts))
	for _, c := range s.refusals.counts {
		out = append(out, *c)
	}
	s.refusals.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Sender != out[j].Sender {
			return out[i].Sender < out[j].Sender
		}
		return out[i].Rule < out[j].Rule
	})
	return out
}

// HeldForDrift reports whether changes are held because their origin's
// clock is ahead of this node's (they apply once the clock catches up).
func (s *Store) HeldForDrift() bool { return s.driftHeld.Load() }

// OldestHeld returns when the oldest change held under rule was held, and
// false if none is.
func (s *Store) OldestHeld(ctx context.Context, rule string) (time.Time, bool, error) {
	var ms sql.NullInt64
	if err := s.rdb.QueryRowContext(ctx, `SELECT min(held_at) FROM outpost_held WHERE rule = ?`, rule).Scan(&ms); err != nil {
		return time.Time{}, false, fmt.Errorf("oldest held change: %w", err)
	}
	if !ms.Valid {
		return time.Time{}, false, nil
	}
	return time.UnixMilli(ms.Int64), true, nil
}

// Held returns how many changes are held, per rule.
func (s *Store) Held(ctx context.Context) (map[string]int64, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT rule, count(*) FROM outpost_held GROUP BY rule`)
	if err != nil {
		return nil, fmt.Errorf("held changes: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var rule string
		var n int64
		if err := rows.Scan(&rule, &n); err != nil {
			return nil, fmt.Errorf("held changes: %w", err)
		}
		out[rule] = n
	}
	return out, rows.Err()
}

// recheckBatch is the most held changes judged again in one transaction.
const recheckBatch = 5000

// Recheck judges held changes again (all of them, or those held under the
// given rules) and applies what is now admitted, in transactions of up to
// recheckBatch changes; what is still undecided stays held, what is now
// refused is dropped and counted. Call it when what the changes waited for
// may have arrived: a trust list reload (origin_unknown), a schema upgrade
// (schema, constraint; done at Open), the clock moving on (drift; done by
// the store itself).
func (s *Store) Recheck(ctx context.Context, rules ...string) (ApplyResult, error) {
	var total ApplyResult
	// No shortcut on the committed count: a change held by a transaction
	// not yet committed must be judged too, and the writer runs this after
	// it. A recheck that merges nothing takes no db_version.
	after := int64(0)
	for {
		var res ApplyResult
		var last int64
		var n int
		_, err := s.submitRemote(ctx, false, func(tx *Tx) error {
			res, last, n = ApplyResult{}, after, 0
			tx.budget = holdBudget{}
			q := `SELECT id, sender, change FROM outpost_held WHERE id > ?`
			args := []any{after}
			if len(rules) > 0 {
				q += ` AND rule IN (?` + strings.Repeat(", ?", len(rules)-1) + `)`
				for _, r := range rules {
					args = append(args, r)
				}
			}
			q += fmt.Sprintf(` ORDER BY id LIMIT %d`, recheckBatch)
			rows, err := s.conn.QueryContext(tx.ctx, q, args...)
			if err != nil {
				return fmt.Errorf("read held changes: %w", err)
			}
			type held struct {
				id     int64
				sender string
				ch     outpost.Change
				err    error
			}
			var batch []held
			for rows.Next() {
				var h held
				var b []byte
				if err := rows.Scan(&h.id, &h.sender, &b); err != nil {
					rows.Close()
					return fmt.Errorf("read held changes: %w", err)
				}
				h.ch, h.err = wire.DecodeChange(b)
				batch = append(batch, h)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("read held changes: %w", err)
			}
			del, err := s.stmts.get(tx.ctx, `DELETE FROM outpost_held WHERE id = ?`)
			if err != nil {
				return err
			}
			for _, h := range batch {
				last, n = h.id, n+1
				if _, err := del.ExecContext(tx.ctx, h.id); err != nil {
					return fmt.Errorf("release held change %d: %w", h.id, err)
				}
			}
			// Judged again after the batch left the table, so a change held
			// again is counted against the bound once.
			for i := range batch {
				h := &batch[i]
				if h.err != nil {
					tx.refuse(h.sender, &outpost.Change{Table: "?"}, "undecodable", h.err.Error(), &res)
					continue
				}
				sender := h.sender
				if sender == "" {
					// Kept before senders were recorded (the old pending
					// table): judged as sent by its origin.
					sender = outpost.OriginName(h.ch.Origin)
				}
				if err := tx.recheckOne(sender, &h.ch, &res); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("recheck held changes: %w", err)
		}
		s.account(res)
		total.Applied += res.Applied
		total.Ignored += res.Ignored
		total.Refused += res.Refused
		total.Held += res.Held
		if n < recheckBatch {
			return total, nil
		}
		after = last
	}
}

// recheckOne judges one held change as if it had just arrived.
func (tx *Tx) recheckOne(sender string, ch *outpost.Change, res *ApplyResult) error {
	g := outpost.Group{DBV: 1, Changes: []outpost.Change{*ch}}
	return tx.applyGroup(sender, &g, res)
}

// migrateHeld moves changes kept by an older version (outpost_pending, for
// unknown tables and columns) into outpost_held. It runs in the schema
// transaction at Open.
func (s *Store) migrateHeld(ctx context.Context) error {
	var n int
	if err := s.conn.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'outpost_pending'`).Scan(&n); err != nil {
		return fmt.Errorf("migrate pending changes: %w", err)
	}
	if n == 0 {
		return nil
	}
	if _, err := s.conn.ExecContext(ctx, `INSERT INTO outpost_held (rule, sender, tbl, change, held_at) SELECT ?, '', tbl, change, 0 FROM outpost_pending ORDER BY id`, RuleSchema); err != nil {
		return fmt.Errorf("migrate pending changes: %w", err)
	}
	if _, err := s.conn.ExecContext(ctx, `DROP TABLE outpost_pending`); err != nil {
		return fmt.Errorf("migrate pending changes: %w", err)
	}
	return nil
}

// recheckHeld re-judges every held change at Open (the schema, the trust
// list or the constraints may have changed since they were held).
func (s *Store) recheckHeld(ctx context.Context) error {
	var n int64
	if err := s.conn.QueryRowContext(ctx, `SELECT count(*) FROM outpost_held`).Scan(&n); err != nil || n == 0 {
		return err
	}
	res, err := s.Recheck(ctx)
	if err != nil {
		return err
	}
	s.log.Info("judged held changes again", "applied", res.Applied, "ignored", res.Ignored, "refused", res.Refused, "still_held", res.Held)
	return nil
}

// driftLoop re-judges changes held for clock drift while there are any,
// twice a second, until the store closes.
func (s *Store) driftLoop() {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-s.closing:
			return
		case <-tick.C:
		}
		if !s.driftHeld.Load() {
			continue
		}
		s.driftHeld.Store(false)
		res, err := s.Recheck(context.Background(), RuleDrift)
		if err != nil {
			if !s.closed.Load() {
				s.log.Warn("recheck changes held for drift", "err", err)
			}
			s.driftHeld.Store(true)
			continue
		}
		if res.Held > 0 {
			s.driftHeld.Store(true)
		}
	}
}
