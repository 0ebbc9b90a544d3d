package beacon

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost/store"
)

// Defaults of the intake.
const (
	DefaultBudget = 256 << 20 // bytes of beacons kept on an edge
	DefaultAcks   = 2         // aggregators that must acknowledge a beacon before it is deleted
	// RowOverhead is what one stored beacon is counted for beyond its body
	// in the budget (key, receive time, b-tree cell).
	RowOverhead = 32
	// deleteChunk bounds the beacons deleted in one transaction.
	deleteChunk = 20_000
)

// ErrFull is returned when a batch does not fit in the disk budget: the edge
// keeps what it has (nothing is dropped) and the client retries later.
var ErrFull = errors.New("the beacon disk budget is full until aggregators collect")

// ErrHandingOff is returned by Append once HandOff began: the edge is
// shutting down with a data directory that does not survive it, and takes
// no beacon it could not hand to the aggregators first.
var ErrHandingOff = errors.New("this edge is shutting down and hands its beacons off to the aggregators; it takes no new ones")

// LogConfig configures an edge's beacon log.
type LogConfig struct {
	Store  Store
	Budget int64 // bytes (bodies + RowOverhead each) kept; 0 = DefaultBudget
	Acks   int   // acknowledgements before deletion; 0 = DefaultAcks
	// Aggregators, if set, lists the aggregators whose acknowledgements
	// count (the masters and nodes of the trust list, asked again at each
	// acknowledgement): one removed from the list keeps its recorded
	// acknowledgement, but it no longer lets the edge delete anything.
	// Nil: every acknowledgement counts (a standalone node).
	Aggregators func() []string
	Now         func() time.Time
	Logger      *slog.Logger
}

// Log is an edge's durable beacon log.
type Log struct {
	cfg LogConfig
	log *slog.Logger

	stored   atomic.Int64 // bytes counted against the budget (reserved included)
	count    atomic.Int64 // beacons stored
	last     atomic.Int64 // last seq committed
	floor    atomic.Int64 // every seq <= floor is deleted
	accepted atomic.Int64
	full     atomic.Int64 // batches refused for the budget

	mu   sync.Mutex
	wake chan struct{} // closed at the next append
	// handingOff refuses new appends (HandOff); inflight counts the
	// appends past that check and not finished.
	handingOff bool
	inflight   int
	acks       map[string]int64
	id         string // this log's identity: random, made with the log (a new disk is a new log)
	// lastRecv is the last receive time issued; only the writer goroutine
	// (Append's transaction) touches it after Open.
	lastRecv int64
	ackMu    sync.Mutex // serializes Ack (deletion)

	// Acknowledgements noted by pulls (NoteAck), recorded by the acker
	// goroutine off the pull's path.
	noted    map[string]int64
	ackWake  chan struct{}
	ackStop  chan struct{}
	ackDone  chan struct{}
	stopOnce sync.Once
}

// OpenLog creates the log's tables if needed and loads its state.
func OpenLog(ctx context.Context, cfg LogConfig) (*Log, error) {
	if cfg.Budget <= 0 {
		cfg.Budget = DefaultBudget
	}
	if cfg.Acks <= 0 {
		cfg.Acks = DefaultAcks
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Store.EnsureLocalTables(ctx, logDDL); err != nil {
		return nil, fmt.Errorf("beacon log: %w", err)
	}
	l := &Log{cfg: cfg, log: cfg.Logger, wake: make(chan struct{}), acks: map[string]int64{},
		noted: map[string]int64{}, ackWake: make(chan struct{}, 1), ackStop: make(chan struct{}), ackDone: make(chan struct{})}
	var id int64
	if err := cfg.Store.WriteLocal(ctx, func(tx *store.LocalTx) error {
		err := tx.QueryRow(`SELECT value FROM outpost_beacon_state WHERE key = 'log_id'`).Scan(&id)
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		id = int64(binary.BigEndian.Uint64(b[:]) >> 1)
		_, err = tx.Exec(`INSERT INTO outpost_beacon_state (key, value) VALUES ('log_id', ?)`, id)
		return err
	}); err != nil {
		return nil, fmt.Errorf("beacon log: identity: %w", err)
	}
	l.id = strconv.FormatInt(id, 36)
	err := cfg.Store.ReadLocal(ctx, func(tx *sql.Tx) error {
		var last, floor, n, bytes, recv int64
		if err := tx.QueryRowContext(ctx, `SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'outpost_beacon_log'), 0),
			coalesce((SELECT value FROM outpost_beacon_state WHERE key = 'floor'), 0),
			(SELECT count(*) FROM outpost_beacon_log), (SELECT coalesce(sum(length(body)), 0) FROM outpost_beacon_log),
			max(coalesce((SELECT value FROM outpost_beacon_state WHERE key = 'last_recv'), 0), coalesce((SELECT max(recv_ms) FROM outpost_beacon_log), 0))`).Scan(&last, &floor, &n, &bytes, &recv); err != nil {
			return err
		}
		l.lastRecv = recv
		l.last.Store(last)
		l.floor.Store(floor)
		l.count.Store(n)
		l.stored.Store(bytes + n*RowOverhead)
		rows, err := tx.QueryContext(ctx, `SELECT aggregator, through FROM outpost_beacon_acks`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var a string
			var t int64
			if err := rows.Scan(&a, &t); err != nil {
				return err
			}
			l.acks[a] = t
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("beacon log: load: %w", err)
	}
	go l.acker()
	return l, nil
}

// NoteAck notes that aggregator acknowledged every beacon up to through;
// the acknowledgement is recorded, and what enough aggregators acknowledged
// deleted, by a goroutine of the log, so a pull does not wait for that
// transaction. A noted acknowledgement lost in a crash is noted again by
// the aggregator's next pull.
func (l *Log) NoteAck(aggregator string, through int64) {
	l.mu.Lock()
	if through > l.noted[aggregator] {
		l.noted[aggregator] = through
	}
	l.mu.Unlock()
	select {
	case l.ackWake <- struct{}{}:
	default:
	}
}

func (l *Log) acker() {
	defer close(l.ackDone)
	for {
		select {
		case <-l.ackStop:
			return
		case <-l.ackWake:
		}
		l.mu.Lock()
		noted := l.noted
		l.noted = map[string]int64{}
		l.mu.Unlock()
		for a, t := range noted {
			if err := l.Ack(context.Background(), a, t); err != nil {
				l.log.Warn("beacon: record acknowledgement", "aggregator", a, "through", t, "err", err)
			}
		}
	}
}

// Close stops the acker goroutine (after the acknowledgement it is
// recording, if any).
func (l *Log) Close() {
	l.stopOnce.Do(func() { close(l.ackStop) })
	<-l.ackDone
}

// Append stores bodies (each checked by ParseOne) durably, in one
// transaction of the store's group commit, and returns the sequence numbers
// of the first and last. Either all are stored or none. It returns ErrFull
// when the batch does not fit in the budget.
func (l *Log) Append(ctx context.Context, bodies []json.RawMessage) (first, last int64, err error) {
	if len(bodies) == 0 {
		return 0, 0, nil
	}
	l.mu.Lock()
	if l.handingOff {
		l.mu.Unlock()
		return 0, 0, ErrHandingOff
	}
	l.inflight++
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.inflight--
		l.mu.Unlock()
	}()
	var size int64
	for _, b := range bodies {
		size += int64(len(b)) + RowOverhead
	}
	if l.stored.Add(size) > l.cfg.Budget {
		l.stored.Add(-size)
		l.full.Add(1)
		return 0, 0, ErrFull
	}
	now := l.cfg.Now().UnixMilli()
	err = l.cfg.Store.WriteLocalSingle(ctx, func(tx *store.LocalTx) error {
		// Runs on the writer goroutine, so lastRecv needs no lock; the
		// receive time never goes back along the sequence, so the beacons
		// of one edge in one window are one range of seqs. (If this
		// transaction rolls back, lastRecv only stays a little ahead.)
		recv := max(now, l.lastRecv)
		var res sql.Result
		var err error
		if len(bodies) == 1 {
			res, err = tx.Exec(`INSERT INTO outpost_beacon_log (recv_ms, body) VALUES (?, ?)`, recv, string(bodies[0]))
		} else {
			// One statement for the batch: json_each hands back each
			// object's text as it was (compacted at intake), in order.
			res, err = tx.Exec(`INSERT INTO outpost_beacon_log (recv_ms, body) SELECT ?, value FROM json_each(?) ORDER BY key`, recv, joinArray(bodies))
		}
		if err != nil {
			return fmt.Errorf("store beacons: %w", err)
		}
		n, _ := res.RowsAffected()
		id, _ := res.LastInsertId()
		if n != int64(len(bodies)) {
			return fmt.Errorf("store beacons: %d of %d stored", n, len(bodies))
		}
		first, last = id-n+1, id
		l.lastRecv = recv
		return nil
	})
	if err != nil {
		l.stored.Add(-size)
		return 0, 0, err
	}
	l.count.Add(int64(len(bodies)))
	l.accepted.Add(int64(len(bodies)))
	l.mu.Lock()
	if last > l.last.Load() {
		l.last.Store(last)
	}
	close(l.wake)
	l.wake = make(chan struct{})
	l.mu.Unlock()
	return first, last, nil
}

// HandOff prepares the shutdown of an edge whose data directory does not
// survive it (--ephemeral): from now on Append refuses with ErrHandingOff,
// and HandOff waits until the appends under way finished and every beacon
// taken in is acknowledged by LogConfig.Acks aggregators (and so deleted),
// or ctx ends. Beacons are durable only on this disk until then; on a
// persistent disk there is no need (they are collected after the restart).
func (l *Log) HandOff(ctx context.Context) error {
	l.mu.Lock()
	l.handingOff = true
	l.mu.Unlock()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		l.mu.Lock()
		busy := l.inflight
		l.mu.Unlock()
		floor, last := l.floor.Load(), l.last.Load()
		if busy == 0 && floor >= last {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("beacon hand-off: seqs %d..%d not acknowledged by %d aggregators (%d appends under way): %w",
				floor+1, last, l.cfg.Acks, busy, ctx.Err())
		case <-tick.C:
		}
	}
}

// HandingOff reports whether HandOff began.
func (l *Log) HandingOff() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.handingOff
}

// ID returns the log's identity. Aggregators key what they pull by edge
// name and log identity, so an edge whose disk was replaced (a new log,
// numbered from 1 again) is not mistaken for the old one.
func (l *Log) ID() string { return l.id }

// Last returns the last sequence number committed.
func (l *Log) Last() int64 { return l.last.Load() }

// Floor returns the highest deleted sequence number (all below are too).
func (l *Log) Floor() int64 { return l.floor.Load() }

// Wait returns when a beacon after seq after is committed, ctx ends or d
// passed.
func (l *Log) Wait(ctx context.Context, after int64, d time.Duration) {
	l.mu.Lock()
	ch := l.wake
	l.mu.Unlock()
	if l.last.Load() > after {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	case <-ctx.Done():
	}
}

// Read returns the stored beacons with from <= seq <= to (to <= 0: no upper
// bound), at most max of them and about maxBytes, in seq order.
func (l *Log) Read(ctx context.Context, from, to int64, max int, maxBytes int) ([]Beacon, error) {
	if to <= 0 {
		to = 1<<62 - 1
	}
	var out []Beacon
	err := l.cfg.Store.ReadLocal(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT seq, recv_ms, body FROM outpost_beacon_log WHERE seq >= ? AND seq <= ? ORDER BY seq LIMIT ?`, from, to, max)
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
			b.Body = json.RawMessage(body)
			out = append(out, b)
			if n += len(body); n >= maxBytes {
				break
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("read beacons: %w", err)
	}
	return out, nil
}

// Ack records that aggregator has durably stored every beacon up to
// through, and deletes the beacons that enough aggregators (LogConfig.Acks)
// have acknowledged, in transactions of at most deleteChunk beacons. An
// acknowledgement never moves back.
func (l *Log) Ack(ctx context.Context, aggregator string, through int64) error {
	l.ackMu.Lock()
	defer l.ackMu.Unlock()
	through = min(through, l.last.Load())
	l.mu.Lock()
	prev, known := l.acks[aggregator]
	l.mu.Unlock()
	if (known && through <= prev) || through < 0 {
		return nil
	}
	acks := map[string]int64{aggregator: through}
	l.mu.Lock()
	for a, t := range l.acks {
		if a != aggregator {
			acks[a] = t
		}
	}
	l.mu.Unlock()
	upTo := kthHighest(l.counted(acks), l.cfg.Acks)
	record := true
	for record || l.floor.Load() < upTo {
		floor := l.floor.Load()
		var deleted, freed int64
		newFloor := floor
		err := l.cfg.Store.WriteLocal(ctx, func(tx *store.LocalTx) error {
			deleted, freed, newFloor = 0, 0, floor
			if record {
				if _, err := tx.Exec(`INSERT INTO outpost_beacon_acks (aggregator, through, at_ms) VALUES (?, ?, ?)
					ON CONFLICT (aggregator) DO UPDATE SET through = excluded.through, at_ms = excluded.at_ms`, aggregator, through, l.cfg.Now().UnixMilli()); err != nil {
					return fmt.Errorf("record beacon ack: %w", err)
				}
			}
			if upTo <= floor {
				return nil
			}
			to := min(upTo, floor+deleteChunk)
			if err := tx.QueryRow(`SELECT count(*), coalesce(sum(length(body)), 0) FROM outpost_beacon_log WHERE seq > ? AND seq <= ?`, floor, to).Scan(&deleted, &freed); err != nil {
				return fmt.Errorf("count acknowledged beacons: %w", err)
			}
			if _, err := tx.Exec(`INSERT INTO outpost_beacon_state (key, value) VALUES ('floor', ?1),
				('last_recv', max(coalesce((SELECT value FROM outpost_beacon_state WHERE key = 'last_recv'), 0), coalesce((SELECT recv_ms FROM outpost_beacon_log WHERE seq = ?1), 0)))
				ON CONFLICT (key) DO UPDATE SET value = excluded.value`, to); err != nil {
				return fmt.Errorf("write beacon floor: %w", err)
			}
			if _, err := tx.Exec(`DELETE FROM outpost_beacon_log WHERE seq > ? AND seq <= ?`, floor, to); err != nil {
				return fmt.Errorf("delete acknowledged beacons: %w", err)
			}
			newFloor = to
			return nil
		})
		if err != nil {
			return err
		}
		if record {
			record = false
			l.mu.Lock()
			l.acks[aggregator] = through
			l.mu.Unlock()
		}
		if newFloor == floor {
			break
		}
		l.floor.Store(newFloor)
		l.count.Add(-deleted)
		l.stored.Add(-(freed + deleted*RowOverhead))
	}
	return nil
}

// counted returns the acknowledgements that count: those of aggregators
// on LogConfig.Aggregators (all without it).
func (l *Log) counted(acks map[string]int64) map[string]int64 {
	if l.cfg.Aggregators == nil {
		return acks
	}
	out := make(map[string]int64, len(acks))
	for _, a := range l.cfg.Aggregators() {
		if t, ok := acks[a]; ok {
			out[a] = t
		}
	}
	return out
}

// kthHighest returns the k-th highest acknowledgement (0 if fewer than k
// aggregators acknowledged): every seq up to it is held by k aggregators.
func kthHighest(acks map[string]int64, k int) int64 {
	if len(acks) < k {
		return 0
	}
	v := make([]int64, 0, len(acks))
	for _, t := range acks {
		v = append(v, t)
	}
	sort.Slice(v, func(i, j int) bool { return v[i] > v[j] })
	return v[k-1]
}

// LogStats describe an edge's log.
type LogStats struct {
	LogID         string           `json:"log_id"`
	LastSeq       int64            `json:"last_seq"`
	Floor         int64            `json:"floor"`
	StoredBeacons int64            `json:"stored_beacons"`
	StoredBytes   int64            `json:"stored_bytes"`
	BudgetBytes   int64            `json:"budget_bytes"`
	Accepted      int64            `json:"accepted"`
	RefusedFull   int64            `json:"refused_full"`
	Acks          map[string]int64 `json:"acks"`
	AcksNeeded    int              `json:"acks_needed"`
	// AcksIgnored names the aggregators in Acks that are no longer on the
	// trust list: their acknowledgements do not count.
	AcksIgnored []string `json:"acks_ignored,omitempty"`
}

// Stats returns the log's state.
func (l *Log) Stats() LogStats {
	s := LogStats{LogID: l.id, LastSeq: l.last.Load(), Floor: l.floor.Load(), StoredBeacons: l.count.Load(), StoredBytes: l.stored.Load(),
		BudgetBytes: l.cfg.Budget, Accepted: l.accepted.Load(), RefusedFull: l.full.Load(), Acks: map[string]int64{}, AcksNeeded: l.cfg.Acks}
	l.mu.Lock()
	for a, t := range l.acks {
		s.Acks[a] = t
	}
	l.mu.Unlock()
	counted := l.counted(s.Acks)
	for a := range s.Acks {
		if _, ok := counted[a]; !ok {
			s.AcksIgnored = append(s.AcksIgnored, a)
		}
	}
	sort.Strings(s.AcksIgnored)
	return s
}

// joinArray makes one JSON array of the bodies.
func joinArray(bodies []json.RawMessage) string {
	n := 2
	for _, b := range bodies {
		n += len(b) + 1
	}
	out := make([]byte, 0, n)
	out = append(out, '[')
	for i, b := range bodies {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, b...)
	}
	return string(append(out, ']'))
}
