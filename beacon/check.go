package beacon

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/policy"
	"github.com/outpost-edge/outpost/store"
)

// Summary is an aggregator's coverage since a time: its cursor per edge and
// per (edge, minute of receive time) the count and lowest and highest seq
// it holds. Within one edge and minute the seqs are one range (receive time
// never goes back along the sequence), so count < hi - lo + 1 is a hole.
type Summary struct {
	Aggregator string           `json:"aggregator"`
	Since      int64            `json:"since_ms"`
	Cursors    map[string]int64 `json:"cursors"`
	Windows    []Window         `json:"windows"`
}

// Window is one (edge, minute) of a Summary.
type Window struct {
	Edge   string `json:"edge"`
	Minute int64  `json:"minute_ms"`
	coverage
}

// Problem is a gap or a disagreement the cross-check found.
type Problem struct {
	Kind       string    `json:"kind"` // gap (this aggregator lacks seqs) or peer_gap (another does)
	Edge       string    `json:"edge"`
	From       int64     `json:"from_seq"`
	To         int64     `json:"to_seq"`
	Minute     int64     `json:"minute_ms,omitempty"`
	Aggregator string    `json:"aggregator"`     // the aggregator that lacks the range
	Peer       string    `json:"peer,omitempty"` // the one it was compared with
	Have       int64     `json:"have"`           // beacons the lacking aggregator holds in the range's minute
	Want       int64     `json:"want"`           // what the other holds (or the range's length)
	State      string    `json:"state"`          // open, repaired, unrepairable
	Detected   time.Time `json:"detected"`
	Repaired   time.Time `json:"repaired,omitzero"`
	Err        string    `json:"error,omitempty"`
}

// CheckReport is the answer of GET /v1/beacons/check.
type CheckReport struct {
	Aggregator string          `json:"aggregator"`
	CheckedAt  time.Time       `json:"checked_at,omitzero"`
	Peers      []PeerCheck     `json:"peers"`
	Open       int             `json:"open"`
	Problems   []Problem       `json:"problems"`
	Links      []linkState     `json:"links"`
	Stats      AggregatorStats `json:"stats"`
	Export     *ExportReport   `json:"export,omitempty"` // with --beacon-export-dir
}

// ExportReport says how far the Parquet export may go: the last closed
// window and what keeps the next one open.
type ExportReport struct {
	ClosedThrough string `json:"closed_through,omitempty"` // start of the last closed window (RFC 3339)
	HeldBy        string `json:"held_by,omitempty"`
}

// PeerCheck is the outcome of comparing with one other aggregator.
type PeerCheck struct {
	Name    string `json:"name"`
	OK      bool   `json:"ok"`
	Windows int    `json:"windows_compared"`
	Err     string `json:"error,omitempty"`
}

type checkState struct {
	mu       sync.Mutex
	run      sync.Mutex // one check at a time
	at       time.Time
	peers    []PeerCheck
	problems map[string]*Problem // by kind/edge/from/to
	found    map[string]int64    // problems detected, by kind
}

// Coverage returns this aggregator's Summary since a Unix ms.
func (a *Aggregator) Coverage(ctx context.Context, since int64) (*Summary, error) {
	s := &Summary{Aggregator: a.cfg.Self, Since: since, Cursors: map[string]int64{}}
	a.mu.Lock()
	for e, c := range a.cursors {
		s.Cursors[e] = c
	}
	a.mu.Unlock()
	err := a.cfg.Store.ReadLocal(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT edge, minute, count, lo, hi FROM outpost_beacon_coverage WHERE minute >= ? ORDER BY edge, minute`, since)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var w Window
			if err := rows.Scan(&w.Edge, &w.Minute, &w.Count, &w.Lo, &w.Hi); err != nil {
				return err
			}
			s.Windows = append(s.Windows, w)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("beacon coverage: %w", err)
	}
	return s, nil
}

// Range returns the received beacons of edge with from <= seq <= to, at
// most PullBatch and about PullBatchBytes of bodies, in seq order.
func (a *Aggregator) Range(ctx context.Context, edge string, from, to int64) ([]Beacon, error) {
	var out []Beacon
	err := a.cfg.Store.ReadLocal(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT seq, recv_ms, body FROM outpost_beacon_recv WHERE edge = ? AND seq >= ? AND seq <= ? ORDER BY seq LIMIT ?`, edge, from, to, PullBatch)
		if err != nil {
			return err
		}
		defer rows.Close()
		n := 0
		for rows.Next() {
			var b Beacon
			var body string
			if err := rows.Scan(&b.Seq, &b.RecvMS, &body); err != nil {
				return err
			}
			b.Body = []byte(body)
			out = append(out, b)
			if n += len(body); n >= PullBatchBytes {
				break
			}
		}
		return rows.Err()
	})
	return out, err
}

// Check compares this aggregator's coverage with every other aggregator's
// and with itself, records the problems (logged, counted) and repairs this
// aggregator's gaps by pulling the ranges again. It returns the report.
func (a *Aggregator) Check(ctx context.Context) CheckReport {
	a.check.run.Lock()
	defer a.check.run.Unlock()
	now := a.cfg.Now()
	since := minuteOf(now.Add(-a.cfg.CheckHorizon).UnixMilli())
	if r := minuteOf(now.Add(-a.cfg.Retention).UnixMilli()) + 60_000; r > since {
		since = r
	}
	mine, err := a.Coverage(ctx, since)
	if err != nil {
		a.log.Warn("beacon cross-check: read own coverage", "err", err)
		return a.Report()
	}
	var peers []PeerCheck
	var found []Problem
	found = append(found, a.selfGaps(mine)...)
	for _, p := range a.cfg.Peers() {
		pc := PeerCheck{Name: p}
		theirs, err := a.peerCoverage(ctx, p, since)
		if err != nil {
			pc.Err = err.Error()
			peers = append(peers, pc)
			continue
		}
		probs, n := compare(mine, theirs)
		pc.OK, pc.Windows = true, n
		peers = append(peers, pc)
		found = append(found, probs...)
	}
	// Repair this aggregator's gaps; note the others'.
	for i := range found {
		p := &found[i]
		p.Detected, p.State = now, "open"
		key := fmt.Sprintf("%s/%s/%d/%d/%s", p.Kind, p.Edge, p.From, p.To, p.Aggregator)
		a.check.mu.Lock()
		old := a.check.problems[key]
		if old == nil {
			if a.check.found == nil {
				a.check.found = map[string]int64{}
			}
			a.check.found[p.Kind]++
			a.log.Warn("beacon cross-check: "+p.Kind, "edge", p.Edge, "from_seq", p.From, "to_seq", p.To,
				"aggregator", p.Aggregator, "peer", p.Peer, "have", p.Have, "want", p.Want)
			cp := *p
			a.check.problems[key] = &cp
			old = &cp
		}
		a.check.mu.Unlock()
		if p.Kind != "gap" || old.State == "repaired" {
			continue
		}
		err := a.repair(ctx, p.Edge, p.From, p.To)
		a.check.mu.Lock()
		if err != nil {
			old.Err = err.Error()
			old.State = "unrepairable"
			a.log.Warn("beacon cross-check: repair failed", "edge", p.Edge, "from_seq", p.From, "to_seq", p.To, "aggregator", a.cfg.Self, "err", err)
		} else {
			old.State, old.Repaired, old.Err = "repaired", a.cfg.Now(), ""
			a.log.Info("beacon cross-check: repaired", "edge", p.Edge, "from_seq", p.From, "to_seq", p.To, "aggregator", a.cfg.Self)
		}
		a.check.mu.Unlock()
	}
	// A peer's gap that is no longer reported was repaired by the peer.
	current := map[string]bool{}
	for _, p := range found {
		current[fmt.Sprintf("%s/%s/%d/%d/%s", p.Kind, p.Edge, p.From, p.To, p.Aggregator)] = true
	}
	a.check.mu.Lock()
	for k, p := range a.check.problems {
		if p.State == "open" && p.Kind == "peer_gap" && !current[k] {
			p.State, p.Repaired = "repaired", a.cfg.Now()
		}
		if p.State != "open" && a.cfg.Now().Sub(p.Detected) > a.cfg.CheckHorizon {
			delete(a.check.problems, k)
		}
	}
	a.check.at, a.check.peers = now, peers
	a.check.mu.Unlock()
	return a.Report()
}

// Report returns the state of the last cross-check.
func (a *Aggregator) Report() CheckReport {
	r := CheckReport{Aggregator: a.cfg.Self, Stats: a.Stats()}
	a.check.mu.Lock()
	r.CheckedAt = a.check.at
	r.Peers = append([]PeerCheck{}, a.check.peers...)
	for _, p := range a.check.problems {
		r.Problems = append(r.Problems, *p)
		if p.State != "repaired" {
			r.Open++
		}
	}
	a.check.mu.Unlock()
	sort.Slice(r.Problems, func(i, j int) bool {
		pi, pj := r.Problems[i], r.Problems[j]
		if pi.Edge != pj.Edge {
			return pi.Edge < pj.Edge
		}
		return pi.From < pj.From
	})
	a.mu.Lock()
	for _, l := range a.links {
		r.Links = append(r.Links, *l)
	}
	a.mu.Unlock()
	sort.Slice(r.Links, func(i, j int) bool { return r.Links[i].Edge < r.Links[j].Edge })
	if r.Problems == nil {
		r.Problems = []Problem{}
	}
	if a.cfg.ExportDir != "" {
		w, why := a.ClosedThrough(a.cfg.Now())
		r.Export = &ExportReport{HeldBy: why}
		if w > minWindow {
			r.Export.ClosedThrough = time.UnixMilli(w).UTC().Format(time.RFC3339)
		}
	}
	return r
}

func (a *Aggregator) peerCoverage(ctx context.Context, peer string, since int64) (*Summary, error) {
	resp, err := a.cfg.Transport.Do(ctx, peer, policy.Call, "GET", SummaryPath+"?since="+strconv.FormatInt(since, 10), nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var s Summary
	if err := decodeLimited(resp.Body, &s); err != nil {
		return nil, fmt.Errorf("coverage of %s: %w", peer, err)
	}
	if s.Aggregator != peer {
		return nil, fmt.Errorf("coverage of %s names aggregator %q", peer, s.Aggregator)
	}
	return &s, nil
}

// selfGaps finds holes in this aggregator's own coverage: inside a minute
// (count below the range's length) and between consecutive minutes of an
// edge (the next minute does not start after the last one ended), up to
// its cursor.
func (a *Aggregator) selfGaps(s *Summary) []Problem {
	var out []Problem
	byEdge := map[string][]Window{}
	for _, w := range s.Windows {
		byEdge[w.Edge] = append(byEdge[w.Edge], w)
	}
	for e, ws := range byEdge {
		for i, w := range ws {
			if n := w.Hi - w.Lo + 1; w.Count < n {
				out = append(out, Problem{Kind: "gap", Edge: e, From: w.Lo, To: w.Hi, Minute: w.Minute, Aggregator: s.Aggregator, Have: w.Count, Want: n})
			}
			if i > 0 && w.Lo > ws[i-1].Hi+1 {
				out = append(out, Problem{Kind: "gap", Edge: e, From: ws[i-1].Hi + 1, To: w.Lo - 1, Minute: w.Minute, Aggregator: s.Aggregator, Have: 0, Want: w.Lo - 1 - ws[i-1].Hi})
			}
		}
	}
	return out
}

// compare returns the windows where one side holds fewer beacons than the
// other, among those both have pulled through (below both cursors), and
// how many windows it compared.
func compare(mine, theirs *Summary) ([]Problem, int) {
	type pair struct{ m, t *coverage }
	ws := map[string]map[int64]*pair{}
	add := func(s *Summary, me bool) {
		for i := range s.Windows {
			w := &s.Windows[i]
			if ws[w.Edge] == nil {
				ws[w.Edge] = map[int64]*pair{}
			}
			p := ws[w.Edge][w.Minute]
			if p == nil {
				p = &pair{}
				ws[w.Edge][w.Minute] = p
			}
			if me {
				p.m = &w.coverage
			} else {
				p.t = &w.coverage
			}
		}
	}
	add(mine, true)
	add(theirs, false)
	var out []Problem
	n := 0
	for e, byMin := range ws {
		through := min(mine.Cursors[e], theirs.Cursors[e])
		for m, p := range byMin {
			hi := max(hiOf(p.m), hiOf(p.t))
			if hi > through {
				continue // not pulled through by both yet
			}
			n++
			cm, ct := countOf(p.m), countOf(p.t)
			if cm == ct {
				continue
			}
			lo := min(loOf(p.m), loOf(p.t))
			if cm < ct {
				out = append(out, Problem{Kind: "gap", Edge: e, From: lo, To: hi, Minute: m, Aggregator: mine.Aggregator, Peer: theirs.Aggregator, Have: cm, Want: ct})
			} else {
				out = append(out, Problem{Kind: "peer_gap", Edge: e, From: lo, To: hi, Minute: m, Aggregator: theirs.Aggregator, Peer: mine.Aggregator, Have: ct, Want: cm})
			}
		}
	}
	return out, n
}

func countOf(c *coverage) int64 {
	if c == nil {
		return 0
	}
	return c.Count
}

func hiOf(c *coverage) int64 {
	if c == nil {
		return 0
	}
	return c.Hi
}

func loOf(c *coverage) int64 {
	if c == nil {
		return 1 << 62
	}
	return c.Lo
}

// repair pulls the seqs from..to of a log (key NAME/LOGID) again, from
// the edge while it has them (and still has that log), otherwise from the
// other aggregators, and stores the missing ones. It fails if the range is
// still not whole afterwards.
func (a *Aggregator) repair(ctx context.Context, key string, from, to int64) error {
	if a.cfg.Transport == nil {
		return fmt.Errorf("no transport")
	}
	name, _, _ := strings.Cut(key, "/")
	sources := append([]string{name}, a.cfg.Peers()...)
	var errs []string
	for _, src := range sources {
		missing, err := a.missing(ctx, key, from, to)
		if err != nil {
			return err
		}
		if missing == 0 {
			return nil
		}
		if err := a.repairFrom(ctx, src, key, from, to); err != nil {
			errs = append(errs, src+": "+err.Error())
		}
	}
	missing, err := a.missing(ctx, key, from, to)
	if err != nil {
		return err
	}
	if missing > 0 {
		return fmt.Errorf("%d of seqs %d..%d still missing (%v)", missing, from, to, errs)
	}
	return nil
}

// repairFrom pulls the range from one source, batch by batch.
func (a *Aggregator) repairFrom(ctx context.Context, src, key string, from, to int64) error {
	name, id, _ := strings.Cut(key, "/")
	for next := from; next <= to; {
		var (
			ans  *PullAnswer
			err  error
			want = key
		)
		if src == name {
			q := url.Values{"from": {strconv.FormatInt(next, 10)}, "to": {strconv.FormatInt(to, 10)}, "repair": {"1"}, "log": {id}}
			ans, err = a.fetch(ctx, name, policy.Pull, PullPath+"?"+q.Encode())
			if err == nil && ans.Log != id {
				return nil // the edge has another log now
			}
			want = name
		} else {
			q := url.Values{"edge": {key}, "from": {strconv.FormatInt(next, 10)}, "to": {strconv.FormatInt(to, 10)}}
			ans, err = a.fetch(ctx, src, policy.Call, RangePath+"?"+q.Encode())
		}
		if err != nil {
			return err
		}
		if err := validate(ans, want, next, to, false); err != nil {
			a.stats.refused.Add(1)
			return fmt.Errorf("refused answer: %w", err)
		}
		if len(ans.Beacons) == 0 {
			return nil
		}
		n, err := a.Apply(ctx, key, ans.Beacons, -1)
		if err != nil {
			return err
		}
		a.stats.repaired.Add(int64(n))
		next = ans.Beacons[len(ans.Beacons)-1].Seq + 1
	}
	return nil
}

// missing counts the seqs from..to of edge this aggregator does not hold.
func (a *Aggregator) missing(ctx context.Context, edge string, from, to int64) (int64, error) {
	var n int64
	err := a.cfg.Store.ReadLocal(ctx, func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `SELECT count(*) FROM outpost_beacon_recv WHERE edge = ? AND seq >= ? AND seq <= ?`, edge, from, to).Scan(&n)
	})
	return to - from + 1 - n, err
}

// DropRange deletes the received beacons from..to of edge and takes them
// out of the rollups and the coverage, as if this aggregator had never
// received them (fault injection: the cross-check must find and repair the
// gap). It returns how many it deleted.
func (a *Aggregator) DropRange(ctx context.Context, edge string, from, to int64) (int64, error) {
	var n int64
	err := a.cfg.Store.WriteLocal(ctx, func(tx *store.LocalTx) error {
		n = 0
		var lo, hi sql.NullInt64
		if err := tx.QueryRow(`SELECT min(recv_ms), max(recv_ms) FROM outpost_beacon_recv WHERE edge = ? AND seq >= ? AND seq <= ?`, edge, from, to).Scan(&lo, &hi); err != nil {
			return err
		}
		if !lo.Valid {
			return nil
		}
		res, err := tx.Exec(`DELETE FROM outpost_beacon_recv WHERE edge = ? AND seq >= ? AND seq <= ?`, edge, from, to)
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		return a.rebuild(tx, edge, lo.Int64, hi.Int64)
	})
	return n, err
}

// rebuild recomputes, from the received beacons, the rollup rows whose
// windows overlap the receive times lo..hi and edge's coverage there.
func (a *Aggregator) rebuild(tx *store.LocalTx, edge string, lo, hi int64) error {
	for _, r := range a.cfg.Rollups {
		w := r.Window.Milliseconds()
		start, end := lo-mod(lo, w), hi-mod(hi, w)+w
		if _, err := tx.Exec(`DELETE FROM outpost_beacon_rollups WHERE rollup = ? AND window_ms >= ? AND window_ms < ?`, r.Name, start, end); err != nil {
			return err
		}
		aggs := map[rollKey]*agg{}
		rows, err := tx.Query(`SELECT recv_ms, body FROM outpost_beacon_recv WHERE recv_ms >= ? AND recv_ms < ?`, start, end)
		if err != nil {
			return err
		}
		for rows.Next() {
			var ms int64
			var body string
			if err := rows.Scan(&ms, &body); err != nil {
				rows.Close()
				return err
			}
			for _, c := range contributions([]Rollup{r}, ms, []byte(body)) {
				g := aggs[c.key]
				if g == nil {
					g = &agg{}
					aggs[c.key] = g
				}
				g.add(c)
			}
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := writeRollups(tx, aggs); err != nil {
			return err
		}
	}
	start, end := minuteOf(lo), minuteOf(hi)+60_000
	if _, err := tx.Exec(`DELETE FROM outpost_beacon_coverage WHERE edge = ? AND minute >= ? AND minute < ?`, edge, start, end); err != nil {
		return err
	}
	_, err := tx.Exec(`INSERT INTO outpost_beacon_coverage (edge, minute, count, lo, hi)
		SELECT edge, recv_ms - (recv_ms % 60000), count(*), min(seq), max(seq) FROM outpost_beacon_recv
		WHERE edge = ? AND recv_ms >= ? AND recv_ms < ? GROUP BY 1, 2`, edge, start, end)
	return err
}
