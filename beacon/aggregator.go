package beacon

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/outpost-edge/outpost/policy"
	"github.com/outpost-edge/outpost/store"
)

// Routes of the peer listener (docs/BEACONS.md).
const (
	PullPath    = "/beacon/v1/pull"    // edge: an aggregator pulls the log (policy.Pull)
	SummaryPath = "/beacon/v1/summary" // aggregator: coverage for the cross-check (policy.Call)
	RangePath   = "/beacon/v1/range"   // aggregator: beacons it holds, for a repair (policy.Call)
)

// Defaults of an aggregator.
const (
	DefaultRetention     = 24 * time.Hour
	DefaultCheckInterval = 10 * time.Second
	DefaultCheckHorizon  = time.Hour
	DefaultPullWait      = 5 * time.Second
	PullBatch            = 5000    // most beacons in one pull answer
	PullBatchBytes       = 1 << 20 // about the most bytes of bodies in one answer
	maxAnswerBytes       = 8 << 20 // an answer larger than this is refused
	maxSeq               = 1 << 53
)

// Transport calls other nodes over the peer transport (peer.Client).
type Transport interface {
	Do(ctx context.Context, name string, action policy.Action, method, path string, body []byte) (*http.Response, error)
}

// AggregatorConfig configures an aggregator.
type AggregatorConfig struct {
	Self      string // this node's name
	Store     Store
	Transport Transport // nil: no pulls and no cross-check (tests feed Apply)
	// Edges lists the nodes to pull beacons from; Peers the other
	// aggregators to cross-check with. Both are asked again every few
	// seconds (the trust list may change).
	Edges, Peers  func() []string
	Rollups       []Rollup      // nil = DefaultRollup
	Retention     time.Duration // received beacons kept (for repairs); 0 = DefaultRetention
	CheckInterval time.Duration // between cross-checks; 0 = DefaultCheckInterval, negative = never
	CheckHorizon  time.Duration // how far back a cross-check looks; 0 = DefaultCheckHorizon
	PullWait      time.Duration // how long an edge holds a pull with nothing new; 0 = DefaultPullWait
	// ExportDir, if set, receives Parquet files of the received beacons
	// (export.go), one per closed window, looked for every ExportInterval
	// (0 = DefaultExportInterval). A window is closed ExportLateness (0 =
	// DefaultExportLateness) after its end if every edge was pulled that
	// far and the cross-check agrees, and ExportMaxWait (0 =
	// DefaultExportMaxWait) after its end in any case.
	ExportDir      string
	ExportInterval time.Duration
	ExportLateness time.Duration
	ExportMaxWait  time.Duration
	Now            func() time.Time
	Logger         *slog.Logger
}

// Aggregator pulls beacon logs from edges, counts each (edge, seq) once,
// keeps the rollups and cross-checks with the other aggregators.
type Aggregator struct {
	cfg AggregatorConfig
	log *slog.Logger

	mu      sync.Mutex
	cursors map[string]int64  // by log key (NAME/LOGID)
	current map[string]string // edge name -> key of its current log
	loops   map[string]context.CancelFunc
	links   map[string]*linkState
	// through is, by log key, the edge's receive time (its clock, Unix ms)
	// through which this aggregator holds everything of the log: the
	// receive time of the beacon at the cursor, or the edge's time of an
	// answer that reached the end of the log. Kept in memory: the first
	// pulls after a restart learn it again.
	through map[string]int64

	// arrival numbers received beacons in commit order (for the export);
	// only the writer goroutine (Apply's transaction) touches it after Open.
	arrival  int64
	exportMu sync.Mutex

	stats aggStats
	check checkState

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type aggStats struct {
	received   atomic.Int64 // beacons stored (first delivery)
	duplicates atomic.Int64 // deliveries of an (edge, seq) already stored
	refused    atomic.Int64 // pull answers refused (forged or malformed)
	skipped    atomic.Int64 // seqs deleted at an edge before this aggregator pulled them
	repaired   atomic.Int64 // beacons stored by repairs
}

// linkState is the state of the pull from one edge, for the check report.
type linkState struct {
	Edge    string    `json:"edge"`
	Log     string    `json:"log"` // key of the edge's current log
	Cursor  int64     `json:"cursor"`
	EdgeLog int64     `json:"edge_last_seq"`
	Err     string    `json:"error,omitempty"`
	At      time.Time `json:"at"`
}

// OpenAggregator creates the aggregator's tables if needed and loads its
// cursors. Start begins pulling.
func OpenAggregator(ctx context.Context, cfg AggregatorConfig) (*Aggregator, error) {
	if cfg.Rollups == nil {
		cfg.Rollups = []Rollup{DefaultRollup}
	}
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.CheckInterval == 0 {
		cfg.CheckInterval = DefaultCheckInterval
	}
	if cfg.CheckHorizon <= 0 {
		cfg.CheckHorizon = DefaultCheckHorizon
	}
	if cfg.PullWait <= 0 {
		cfg.PullWait = DefaultPullWait
	}
	if cfg.ExportInterval <= 0 {
		cfg.ExportInterval = DefaultExportInterval
	}
	if cfg.ExportLateness <= 0 {
		cfg.ExportLateness = DefaultExportLateness
	}
	if cfg.ExportMaxWait <= 0 {
		cfg.ExportMaxWait = DefaultExportMaxWait
	}
	cfg.ExportMaxWait = max(cfg.ExportMaxWait, cfg.ExportLateness)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Edges == nil {
		cfg.Edges = func() []string { return nil }
	}
	if cfg.Peers == nil {
		cfg.Peers = func() []string { return nil }
	}
	seen := map[string]bool{}
	for _, r := range cfg.Rollups {
		if seen[r.Name] {
			return nil, fmt.Errorf("beacon aggregator: rollup %q declared twice", r.Name)
		}
		seen[r.Name] = true
	}
	if err := cfg.Store.EnsureLocalTables(ctx, aggDDL); err != nil {
		return nil, fmt.Errorf("beacon aggregator: %w", err)
	}
	a := &Aggregator{cfg: cfg, log: cfg.Logger, cursors: map[string]int64{}, current: map[string]string{}, loops: map[string]context.CancelFunc{}, links: map[string]*linkState{}, through: map[string]int64{}}
	a.check.problems = map[string]*Problem{}
	err := cfg.Store.ReadLocal(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT edge, through FROM outpost_beacon_cursors ORDER BY updated_ms`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var key string
			var t int64
			if err := rows.Scan(&key, &t); err != nil {
				return err
			}
			a.cursors[key] = t
			if name, _, ok := strings.Cut(key, "/"); ok {
				a.current[name] = key // the most recently moved wins
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT max(coalesce((SELECT max(arrival) FROM outpost_beacon_recv), 0),
			coalesce((SELECT max(value) FROM outpost_beacon_export WHERE key IN ('done', 'pending', 'legacy_done', 'mark', 'pending_mark')), 0))`).Scan(&a.arrival)
	})
	if err != nil {
		return nil, fmt.Errorf("beacon aggregator: load cursors: %w", err)
	}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	return a, nil
}

// Rollups returns the declared rollups.
func (a *Aggregator) RollupSpecs() []Rollup { return a.cfg.Rollups }

// Start begins pulling from the edges, cross-checking and expiring old
// received beacons.
func (a *Aggregator) Start() {
	if a.cfg.Transport == nil {
		return
	}
	a.wg.Add(1)
	go a.manage()
}

// Stop ends every loop and waits for them.
func (a *Aggregator) Stop() {
	a.cancel()
	a.wg.Wait()
}

// manage keeps one pull loop per edge, runs the cross-check and the expiry.
func (a *Aggregator) manage() {
	defer a.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastCheck, lastExpire, lastExport := a.cfg.Now(), time.Time{}, a.cfg.Now()
	for {
		want := map[string]bool{}
		for _, e := range a.cfg.Edges() {
			want[e] = true
		}
		a.mu.Lock()
		for e, stop := range a.loops {
			if !want[e] {
				stop()
				delete(a.loops, e)
			}
		}
		for e := range want {
			if a.loops[e] == nil {
				ctx, cancel := context.WithCancel(a.ctx)
				a.loops[e] = cancel
				a.wg.Add(1)
				go a.pullLoop(ctx, e)
			}
		}
		a.mu.Unlock()
		if a.cfg.CheckInterval > 0 && a.cfg.Now().Sub(lastCheck) >= a.cfg.CheckInterval {
			lastCheck = a.cfg.Now()
			ctx, cancel := context.WithTimeout(a.ctx, 30*time.Second)
			a.Check(ctx)
			cancel()
		}
		if a.cfg.ExportDir != "" && a.cfg.Now().Sub(lastExport) >= a.cfg.ExportInterval {
			lastExport = a.cfg.Now()
			if _, err := a.Export(a.ctx); err != nil && a.ctx.Err() == nil {
				a.log.Warn("beacon: export", "dir", a.cfg.ExportDir, "err", err)
			}
		}
		if a.cfg.Now().Sub(lastExpire) >= time.Minute {
			lastExpire = a.cfg.Now()
			if err := a.expire(a.ctx); err != nil && a.ctx.Err() == nil {
				a.log.Warn("beacon: expire received beacons", "err", err)
			}
		}
		select {
		case <-a.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Cursor returns the highest seq pulled in order from edge: an edge name
// (its current log) or a log key NAME/LOGID.
func (a *Aggregator) Cursor(edge string) int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	if k, ok := a.current[edge]; ok {
		return a.cursors[k]
	}
	return a.cursors[edge]
}

// LogKey returns the key (NAME/LOGID) of the edge's current log, or "" if
// this aggregator has not pulled from it yet. Received beacons, coverage and
// cross-check problems are by log key.
func (a *Aggregator) LogKey(edge string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.current[edge]
}

func logKey(name, id string) string { return name + "/" + id }

// pullLoop pulls edge's log from the cursor, forever: each answer is
// stored with the new cursor in one transaction, and the next request
// (from the new cursor) acknowledges it.
func (a *Aggregator) pullLoop(ctx context.Context, edge string) {
	defer a.wg.Done()
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		err := a.pullOnce(ctx, edge)
		a.mu.Lock()
		ls := a.links[edge]
		if ls == nil {
			ls = &linkState{Edge: edge}
			a.links[edge] = ls
		}
		ls.Log, ls.Cursor, ls.At = a.current[edge], a.cursors[a.current[edge]], a.cfg.Now()
		ls.Err = ""
		if err != nil {
			ls.Err = err.Error()
		}
		a.mu.Unlock()
		if err == nil {
			backoff = 200 * time.Millisecond
			continue
		}
		if ctx.Err() != nil {
			return
		}
		a.log.Debug("beacon: pull failed", "edge", edge, "err", err, "retry_in", backoff.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// pullOnce makes one pull request and stores its answer.
func (a *Aggregator) pullOnce(ctx context.Context, edge string) error {
	key := a.LogKey(edge)
	_, id, _ := strings.Cut(key, "/")
	cur := a.Cursor(edge)
	q := url.Values{"from": {strconv.FormatInt(cur+1, 10)}, "wait": {strconv.FormatInt(a.cfg.PullWait.Milliseconds(), 10)}, "log": {id}}
	if id == "" {
		q.Set("wait", "0") // first contact: learn the log
	}
	ans, err := a.fetch(ctx, edge, policy.Pull, PullPath+"?"+q.Encode())
	if err != nil {
		return err
	}
	if ans.Log == "" || strings.Contains(ans.Log, "/") {
		a.stats.refused.Add(1)
		return fmt.Errorf("answer of %s names no log", edge)
	}
	if ans.Log != id {
		// The edge has another log than the cursor is for (first
		// contact, or its disk was replaced): pull that one from its own
		// cursor, keeping what was received from the old one.
		nk := logKey(edge, ans.Log)
		if id != "" {
			a.log.Warn("beacon: the edge has a new log; pulling it from the start", "edge", edge, "old", key, "new", nk)
		}
		a.mu.Lock()
		a.current[edge] = nk
		a.mu.Unlock()
		return nil
	}
	if err := validate(ans, edge, cur+1, 0, true); err != nil {
		a.stats.refused.Add(1)
		a.log.Warn("beacon: refused a pull answer", "edge", edge, "from", cur+1, "err", err)
		return err
	}
	a.mu.Lock()
	ls := a.links[edge]
	if ls == nil {
		ls = &linkState{Edge: edge}
		a.links[edge] = ls
	}
	ls.EdgeLog = ans.Last
	a.mu.Unlock()
	next := cur
	if n := len(ans.Beacons); n > 0 {
		next = ans.Beacons[n-1].Seq
	}
	if ans.Floor > next {
		// The edge deleted beacons this aggregator never pulled (enough
		// others acknowledged them); the cross-check repairs the range
		// from them.
		a.stats.skipped.Add(ans.Floor - next)
		a.log.Warn("beacon: the edge deleted beacons before this aggregator pulled them; the cross-check repairs them from another aggregator",
			"edge", key, "from", next+1, "to", ans.Floor)
		next = ans.Floor
	}
	if next > cur || !a.hasCursor(key) {
		if _, err := a.Apply(ctx, key, ans.Beacons, next); err != nil {
			return err
		}
	}
	// How far in the edge's time this aggregator now holds the log (for
	// closing export windows): to the last beacon pulled, or, at the end
	// of the log, to the edge's time of the answer (not past this
	// aggregator's own clock).
	t := int64(0)
	if n := len(ans.Beacons); n > 0 {
		t = ans.Beacons[n-1].RecvMS
	}
	if next >= ans.Last && ans.Now > 0 {
		t = max(t, min(ans.Now, a.cfg.Now().UnixMilli()))
	}
	a.mu.Lock()
	a.through[key] = max(a.through[key], t)
	a.mu.Unlock()
	return nil
}

func (a *Aggregator) hasCursor(key string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.cursors[key]
	return ok
}

// PullAnswer is the JSON answer of the pull and range routes.
type PullAnswer struct {
	Edge  string `json:"edge"`
	Log   string `json:"log,omitempty"` // the edge's log identity (pull)
	Floor int64  `json:"floor"`         // every seq <= floor is deleted at the edge (pull); 0 (range)
	Last  int64  `json:"last_seq"`      // the edge's last seq (pull); the aggregator's cursor (range)
	// Now is the edge's clock (Unix ms) when it read the answer (pull):
	// with the answer at the end of its log, the edge holds nothing
	// received before then that the answer lacks (within the export's
	// lateness allowance).
	Now     int64    `json:"now_ms,omitempty"`
	Beacons []Beacon `json:"beacons"`
}

// fetch calls a peer route and decodes its answer, bounded in size.
func (a *Aggregator) fetch(ctx context.Context, name string, action policy.Action, path string) (*PullAnswer, error) {
	resp, err := a.cfg.Transport.Do(ctx, name, action, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var ans PullAnswer
	dec := json.NewDecoder(io.LimitReader(resp.Body, maxAnswerBytes))
	if err := dec.Decode(&ans); err != nil {
		return nil, fmt.Errorf("decode answer of %s: %w", name, err)
	}
	return &ans, nil
}

// validate refuses an answer that is not what was asked: another edge's
// beacons, seqs out of the asked range, out of order or (for an in-order
// pull) not contiguous, malformed bodies.
func validate(ans *PullAnswer, edge string, from, to int64, inOrder bool) error {
	if ans.Edge != edge {
		return fmt.Errorf("answer names edge %q, asked %q", ans.Edge, edge)
	}
	if ans.Floor < 0 || ans.Last < 0 || ans.Last > maxSeq || ans.Floor > ans.Last {
		return fmt.Errorf("answer claims floor %d and last seq %d", ans.Floor, ans.Last)
	}
	if len(ans.Beacons) > PullBatch {
		return fmt.Errorf("answer holds %d beacons, more than %d", len(ans.Beacons), PullBatch)
	}
	want := max(from, ans.Floor+1)
	var prev, prevRecv int64
	for i, b := range ans.Beacons {
		switch {
		case b.Seq < from || (to > 0 && b.Seq > to):
			return fmt.Errorf("seq %d outside the range asked (%d..%d)", b.Seq, from, to)
		case inOrder && b.Seq != want+int64(i):
			return fmt.Errorf("seq %d where %d was due (a gap or a forged range)", b.Seq, want+int64(i))
		case i > 0 && b.Seq <= prev:
			return fmt.Errorf("seq %d after %d (out of order)", b.Seq, prev)
		case inOrder && b.Seq > ans.Last:
			return fmt.Errorf("seq %d past the edge's last seq %d", b.Seq, ans.Last)
		case i > 0 && inOrder && b.RecvMS < prevRecv:
			return fmt.Errorf("seq %d received before seq %d", b.Seq, prev)
		case b.Edge != "" && b.Edge != edge:
			return fmt.Errorf("seq %d names edge %q", b.Seq, b.Edge)
		case len(b.Body) == 0 || len(b.Body) > MaxBeaconBytes || b.Body[0] != '{' || !utf8.Valid(b.Body) || !json.Valid(b.Body):
			return fmt.Errorf("seq %d: malformed body", b.Seq)
		}
		prev, prevRecv = b.Seq, b.RecvMS
	}
	return nil
}

// Apply stores beacons of a log (key NAME/LOGID) that are not stored yet, adds them to the
// rollups and the coverage, and (cursor >= 0) moves the edge's cursor to at
// least cursor, all in one transaction: each (edge, seq) is counted once
// however often it is delivered. It returns how many were new.
func (a *Aggregator) Apply(ctx context.Context, edge string, bs []Beacon, cursor int64) (int, error) {
	contribs := make([][]contribution, len(bs))
	payload := make([]byte, 0, 64*len(bs))
	payload = append(payload, '[')
	for i, b := range bs {
		contribs[i] = contributions(a.cfg.Rollups, b.RecvMS, b.Body)
		if i > 0 {
			payload = append(payload, ',')
		}
		payload = append(payload, '[')
		payload = strconv.AppendInt(payload, b.Seq, 10)
		payload = append(payload, ',')
		payload = strconv.AppendInt(payload, b.RecvMS, 10)
		payload = append(payload, ',')
		payload = append(payload, b.Body...)
		payload = append(payload, ']')
	}
	payload = append(payload, ']')
	var inserted int
	err := a.cfg.Store.WriteLocal(ctx, func(tx *store.LocalTx) error {
		inserted = 0
		aggs := map[rollKey]*agg{}
		cov := map[int64]*coverage{}
		// One statement for the batch; RETURNING names the beacons that
		// were new (OR IGNORE returns nothing for a duplicate). Arrival
		// numbers are taken on the writer goroutine, in commit order; one
		// not used (a duplicate, a rollback) is a harmless hole.
		base := a.arrival
		a.arrival += int64(len(bs))
		rows, err := tx.Query(`INSERT OR IGNORE INTO outpost_beacon_recv (edge, seq, recv_ms, body, arrival)
			SELECT ?1, value ->> 0, value ->> 1, value -> 2, ?2 + key FROM json_each(?3) WHERE true RETURNING seq`, edge, base+1, string(payload))
		if err != nil {
			return fmt.Errorf("store received beacons: %w", err)
		}
		var fresh []int64
		for rows.Next() {
			var seq int64
			if err := rows.Scan(&seq); err != nil {
				rows.Close()
				return fmt.Errorf("store received beacons: %w", err)
			}
			fresh = append(fresh, seq)
		}
		if err := rows.Close(); err != nil {
			return fmt.Errorf("store received beacons: %w", err)
		}
		isNew := make(map[int64]bool, len(fresh))
		for _, seq := range fresh {
			isNew[seq] = true
		}
		for i, b := range bs {
			if !isNew[b.Seq] {
				continue
			}
			inserted++
			for _, c := range contribs[i] {
				g := aggs[c.key]
				if g == nil {
					g = &agg{}
					aggs[c.key] = g
				}
				g.add(c)
			}
			m := minuteOf(b.RecvMS)
			if c := cov[m]; c == nil {
				cov[m] = &coverage{Count: 1, Lo: b.Seq, Hi: b.Seq}
			} else {
				c.Count++
				c.Lo, c.Hi = min(c.Lo, b.Seq), max(c.Hi, b.Seq)
			}
		}
		if err := writeRollups(tx, aggs); err != nil {
			return err
		}
		for m, c := range cov {
			if _, err := tx.Exec(`INSERT INTO outpost_beacon_coverage (edge, minute, count, lo, hi) VALUES (?, ?, ?, ?, ?)
				ON CONFLICT (edge, minute) DO UPDATE SET count = count + excluded.count, lo = min(lo, excluded.lo), hi = max(hi, excluded.hi)`,
				edge, m, c.Count, c.Lo, c.Hi); err != nil {
				return fmt.Errorf("write coverage: %w", err)
			}
		}
		if cursor >= 0 {
			if _, err := tx.Exec(`INSERT INTO outpost_beacon_cursors (edge, through, updated_ms) VALUES (?, ?, ?)
				ON CONFLICT (edge) DO UPDATE SET through = max(through, excluded.through), updated_ms = excluded.updated_ms`, edge, cursor, a.cfg.Now().UnixMilli()); err != nil {
				return fmt.Errorf("write beacon cursor: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	a.stats.received.Add(int64(inserted))
	a.stats.duplicates.Add(int64(len(bs) - inserted))
	if cursor >= 0 {
		a.mu.Lock()
		if c, ok := a.cursors[edge]; !ok || cursor > c {
			a.cursors[edge] = cursor
		}
		a.mu.Unlock()
	}
	return inserted, nil
}

// writeRollups merges rows into the stored rollups.
func writeRollups(tx *store.LocalTx, aggs map[rollKey]*agg) error {
	for k, g := range aggs {
		var (
			count    int64
			sums     string
			sketches []byte
		)
		err := tx.QueryRow(`SELECT count, sums, sketches FROM outpost_beacon_rollups WHERE rollup = ? AND window_ms = ? AND dims = ?`, k.rollup, k.window, k.dims).Scan(&count, &sums, &sketches)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return fmt.Errorf("read rollup: %w", err)
		default:
			if err := g.merge(count, sums, sketches); err != nil {
				return err
			}
		}
		s, sk, err := g.encode()
		if err != nil {
			return fmt.Errorf("encode rollup: %w", err)
		}
		if _, err := tx.Exec(`INSERT INTO outpost_beacon_rollups (rollup, window_ms, dims, count, sums, sketches) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (rollup, window_ms, dims) DO UPDATE SET count = excluded.count, sums = excluded.sums, sketches = excluded.sketches`,
			k.rollup, k.window, k.dims, g.count, s, sk); err != nil {
			return fmt.Errorf("write rollup: %w", err)
		}
	}
	return nil
}

// coverage is what an aggregator holds of one edge in one minute.
type coverage struct {
	Count int64 `json:"count"`
	Lo    int64 `json:"lo"`
	Hi    int64 `json:"hi"`
}

func minuteOf(ms int64) int64 { return ms - mod(ms, 60_000) }

// expire deletes received beacons and coverage older than the retention
// (the rollups stay).
func (a *Aggregator) expire(ctx context.Context) error {
	before := a.cfg.Now().Add(-a.cfg.Retention).UnixMilli()
	// What is not exported yet stays, however old.
	cond, args := "true", []any{before}
	if a.cfg.ExportDir != "" {
		s, err := a.exportState(ctx)
		if err != nil {
			return err
		}
		cond, args = exportedSQL, []any{s.Legacy, s.Window, s.Mark, before}
	}
	for {
		var n int64
		err := a.cfg.Store.WriteLocal(ctx, func(tx *store.LocalTx) error {
			res, err := tx.Exec(`DELETE FROM outpost_beacon_recv WHERE (edge, seq) IN (SELECT edge, seq FROM outpost_beacon_recv WHERE recv_ms < ?`+
				fmt.Sprint(len(args))+` AND `+cond+` LIMIT 20000)`, args...)
			if err != nil {
				return err
			}
			n, _ = res.RowsAffected()
			// Coverage older than the retention is no longer checked.
			_, err = tx.Exec(`DELETE FROM outpost_beacon_coverage WHERE minute < ?`, minuteOf(before))
			return err
		})
		if err != nil || n < 20000 {
			return err
		}
	}
}
