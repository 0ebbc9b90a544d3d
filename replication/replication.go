// Package replication runs the sync protocol of DESIGN.md section 6 over the
// peer transport: a streaming pull that stays open and delivers new groups as
// they commit, push with acknowledgement, per-peer cursors that reset on a
// new incarnation, echo suppression, and jittered backoff. Who pulls from and
// pushes to whom follows the policy.
package replication

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/identity"
	"github.com/outpost-edge/outpost/peer"
	"github.com/outpost-edge/outpost/policy"
	"github.com/outpost-edge/outpost/store"
	"github.com/outpost-edge/outpost/trust"
	"github.com/outpost-edge/outpost/wire"
)

// Paths of the sync routes.
const (
	ChangesPath = "/sync/v1/changes"
)

// Config configures a Replicator.
type Config struct {
	Self      outpost.Identity
	Store     Store
	Trust     *trust.Store
	Policy    *policy.Matrix
	Client    Transport
	Hello     func() peer.Hello // this node's hello, to negotiate
	Logger    *slog.Logger
	BatchSize int           // changes per pull/push batch; 0 = 5000
	Heartbeat time.Duration // stream heartbeat; 0 = 1s
	// MaxHeartbeat is how far the heartbeat of an idle pull stream grows
	// (doubling from Heartbeat) for a puller that asks for it (quiet=1);
	// the puller's watchdog follows the value announced in the
	// HeaderHeartbeatMax response header. 0 = 10 x Heartbeat.
	MaxHeartbeat time.Duration
	// HelloInterval is how long a connected loop may go without saying
	// hello: the liveness backstop of an idle link (hellos otherwise go
	// only on connect, when the pull cursor moved, and on a trust list
	// reload). 0 = 30 x Heartbeat.
	HelloInterval time.Duration
	// MaxBatchBytes bounds the approximate bytes of one batch read to serve
	// or push (a larger group goes alone); 0 = store.DefaultMaxBatchBytes.
	MaxBatchBytes int
	// Limits bound the frames sent and received, and the size of a group
	// sent in parts (MaxGroupBytes); zero fields = wire.DefaultLimits.
	Limits wire.Limits
	// MaxPushBytes bounds one push body; a larger one is cut off (413).
	// 0 = 2 x Limits.MaxGroupBytes.
	MaxPushBytes int64
	// PushReadTimeout is how long a push body may go without delivering a
	// frame before it is cut off; 0 = 30s.
	PushReadTimeout time.Duration
	// MaxStreamsPerPeer and MaxStreams bound the sync requests (pull
	// streams, pushes) served at once for one peer and in total; beyond,
	// 429 too_many_streams or 503 server_busy. 0 = 4 and DefaultMaxStreams.
	MaxStreamsPerPeer, MaxStreams int
	// MaxServeBatches bounds the batches being read and written to pull
	// streams at once (0 = 64): open streams are cheap, a batch in flight
	// holds up to MaxBatchBytes, so memory is bounded by this, not by the
	// number of streams. A batch not written within BatchWriteTimeout
	// (0 = 30s; a puller that stopped reading) ends its stream.
	MaxServeBatches   int
	BatchWriteTimeout time.Duration
	// Refusals, if set, counts streams refused for load and groups that
	// could not be sent (the peer server's counters).
	Refusals *peer.Refusals
	// PushAll pushes to every peer the policy allows; by default a node
	// pushes only to its farm siblings (everything else reaches peers by
	// their pulls).
	PushAll bool
	// OnCaughtUp is called the first time a pull from any peer has caught
	// up with what that peer had when the pull started; and again after
	// each new incarnation this node takes (a restored database, see
	// regressed), the first time a pull started under the new incarnation
	// (from 0) has caught up, or at once if this node pulls from no peer.
	// It runs under the lock that orders it with rotations, so it must be
	// quick and must not call back into the Replicator.
	OnCaughtUp func()
	// LogRetention bounds how long a log entry is kept for a puller that
	// has not acknowledged it (0 = DefaultLogRetention); CollectEvery is
	// how often the log is collected (0 = DefaultCollectEvery).
	LogRetention, CollectEvery time.Duration
	// TombstoneEvery is how often a node reports its knowledge to the
	// masters and collects the tombstones their decisions cover
	// (tombstones.go); 0 = DefaultTombstoneEvery.
	TombstoneEvery time.Duration
	MinBackoff     time.Duration // 0 = 100ms
	MaxBackoff     time.Duration // 0 = 5s
}

// Replicator runs one pull loop and/or one push loop per peer.
type Replicator struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	loops  map[string]*loop // by peer name + "/" + direction
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	started bool

	streams *streamLimiter
	batches chan struct{} // slots of MaxServeBatches
	ackMu   sync.Mutex
	acks    map[string]PullAck // by peer name
	// rotateMu orders the new incarnations this node takes with the pulls
	// that start and catch up: epoch counts the incarnations taken since
	// Start (a pull remembers the epoch it started in), signalled is the
	// last epoch OnCaughtUp was called for (-1: none yet).
	rotateMu  sync.Mutex
	epoch     int64
	signalled int64
	traffic   traffic
	deps      deps  // who pulls from this node, and how far (collect.go)
	tomb      tombs // tombstone reports and decisions (tombstones.go)
	// sleep waits between attempts (replaced in tests).
	sleep func(ctx context.Context, d time.Duration) bool
}

// New returns a replicator; register its routes with Routes and start it with Start.
func New(cfg Config) *Replicator {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 5000
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = time.Second
	}
	if cfg.MaxHeartbeat <= 0 {
		cfg.MaxHeartbeat = 10 * cfg.Heartbeat
	}
	cfg.MaxHeartbeat = max(cfg.MaxHeartbeat, cfg.Heartbeat)
	if cfg.HelloInterval <= 0 {
		cfg.HelloInterval = 30 * cfg.Heartbeat
	}
	if cfg.LogRetention <= 0 {
		cfg.LogRetention = DefaultLogRetention
	}
	if cfg.CollectEvery <= 0 {
		cfg.CollectEvery = DefaultCollectEvery
	}
	if cfg.TombstoneEvery <= 0 {
		cfg.TombstoneEvery = DefaultTombstoneEvery
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Second
	}
	if cfg.MaxBatchBytes <= 0 {
		cfg.MaxBatchBytes = store.DefaultMaxBatchBytes
	}
	cfg.Limits = cfg.Limits.WithDefaults()
	if cfg.MaxPushBytes <= 0 {
		cfg.MaxPushBytes = 2 * int64(cfg.Limits.MaxGroupBytes)
	}
	if cfg.PushReadTimeout <= 0 {
		cfg.PushReadTimeout = 30 * time.Second
	}
	if cfg.MaxStreamsPerPeer <= 0 {
		cfg.MaxStreamsPerPeer = 4
	}
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = DefaultMaxStreams
	}
	if cfg.MaxServeBatches <= 0 {
		cfg.MaxServeBatches = 64
	}
	if cfg.BatchWriteTimeout <= 0 {
		cfg.BatchWriteTimeout = 30 * time.Second
	}
	return &Replicator{cfg: cfg, log: cfg.Logger, loops: map[string]*loop{},
		streams: newStreamLimiter(cfg.MaxStreamsPerPeer, cfg.MaxStreams), acks: map[string]PullAck{},
		batches:   make(chan struct{}, cfg.MaxServeBatches),
		signalled: -1, sleep: sleepCtx}
}

// sleepCtx waits d or until ctx ends, reporting whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Start launches the loops the policy calls for, and follows trust list reloads.
func (r *Replicator) Start() {
	r.mu.Lock()
	r.ctx, r.cancel = context.WithCancel(context.Background())
	first := !r.started
	r.started = true
	r.mu.Unlock()
	r.reconcile()
	if first && r.cfg.Trust != nil {
		r.cfg.Trust.OnChange(func(trust.Diff) { r.reconcile() })
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.collectLoop(r.ctx)
	}()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.tombstoneLoop(r.ctx)
	}()
}

// Stop ends every loop and waits for them.
func (r *Replicator) Stop() {
	r.mu.Lock()
	if r.cancel != nil {
		r.cancel()
	}
	r.loops = map[string]*loop{}
	r.mu.Unlock()
	r.wg.Wait()
}

// Targets returns the peers this node pulls from and pushes to.
func (r *Replicator) Targets() (pull, push []identity.Peer) {
	self := policy.PartyOf(r.cfg.Self)
	for _, p := range r.cfg.Trust.List().Others() {
		if p.Addr == "" {
			continue
		}
		if r.cfg.Policy.Check(self, peer.Party(p), policy.Pull).Allowed {
			pull = append(pull, p)
		}
		sibling := r.cfg.Self.Role == outpost.RoleEdge && p.Role == outpost.RoleEdge && p.Farm == r.cfg.Self.Farm
		if (r.cfg.PushAll || sibling) && r.cfg.Policy.Check(self, peer.Party(p), policy.Push).Allowed {
			push = append(push, p)
		}
	}
	return pull, push
}

// reconcile starts loops for new targets and stops those no longer wanted.
func (r *Replicator) reconcile() {
	pull, push := r.Targets()
	preferred := preferredHub(r.cfg.Self, pull)
	want := map[string]func() *loop{}
	for _, p := range pull {
		want[p.Name+"/pull"] = func() *loop {
			l := r.newLoop(p, policy.Pull)
			l.standby = r.standbyFor(p, policy.Pull, preferred)
			return l
		}
	}
	for _, p := range push {
		want[p.Name+"/push"] = func() *loop { return r.newLoop(p, policy.Push) }
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx == nil || r.ctx.Err() != nil {
		return
	}
	for k, l := range r.loops {
		if _, ok := want[k]; !ok {
			l.cancel()
			delete(r.loops, k)
		}
	}
	for k, mk := range want {
		if l, ok := r.loops[k]; ok {
			// The trust list changed: a loop that stays says hello again
			// (the peer's key, address or role may be new).
			l.nudge()
			continue
		}
		l := mk()
		r.loops[k] = l
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			l.run()
		}()
	}
}

// loop is one direction of sync with one peer.
type loop struct {
	r      *Replicator
	peer   identity.Peer
	action policy.Action
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	st     LinkStatus
	inc    string             // the peer's incarnation
	stream context.CancelFunc // ends the current pull stream (reconnect)
	// cursor is the pull cursor durably applied, reported to the peer in
	// hellos (pull acks), with fp, its fingerprint (under mu).
	cursor atomic.Int64
	fp     store.Fingerprint
	// fromZero makes the next pull start from 0 (this node took a new
	// incarnation: what peers left out as its echo must come again).
	fromZero atomic.Bool
	// moved is signalled when a pull apply moved the cursor (an ack is
	// due); poke when the loop should say hello now (trust list reload).
	moved, poke chan struct{}
	// standby is the key of the loop this pull loop stands by for ("" =
	// none): it pulls only while that one is unavailable (standby.go).
	standby string
	// released marks a standby stream ended because the preferred link
	// is back (not an error).
	released atomic.Bool
	// Protocol 2 (under mu but resourced): logAcks marks acks of log
	// sequences (not db_versions); lostAt is when the stream last went
	// down (or the loop started); resourced marks a stream ended because
	// the source choice changed.
	logAcks   bool
	lostAt    time.Time
	resourced atomic.Bool
}

// signal wakes whoever waits on ch, without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// nudge makes the loop say hello at its next chance.
func (l *loop) nudge() { signal(l.poke) }

// reconnect ends the loop's current stream, if any; the loop dials again.
func (l *loop) reconnect() {
	l.mu.Lock()
	cancel := l.stream
	l.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

func (r *Replicator) newLoop(p identity.Peer, a policy.Action) *loop {
	ctx, cancel := context.WithCancel(r.ctx)
	return &loop{r: r, peer: p, action: a, ctx: ctx, cancel: cancel,
		moved: make(chan struct{}, 1), poke: make(chan struct{}, 1), lostAt: time.Now(),
		st: LinkStatus{Peer: p.Name, Role: string(p.Role), Farm: p.Farm, Direction: string(a)}}
}

func (l *loop) run() {
	backoff := l.r.cfg.MinBackoff
	for l.ctx.Err() == nil {
		if l.standby != "" && !l.awaitNeed() {
			return
		}
		start := time.Now()
		var err error
		if l.action == policy.Pull && l.standby != "" {
			done := make(chan struct{})
			go l.releaseWhenPreferred(done)
			err = l.pull()
			close(done)
			if l.released.Swap(false) {
				l.update(func(s *LinkStatus) { s.Connected = false })
				backoff = l.r.cfg.MinBackoff
				continue
			}
		} else if l.action == policy.Pull {
			err = l.pull()
		} else {
			err = l.push()
		}
		if l.ctx.Err() != nil {
			return
		}
		l.update(func(s *LinkStatus) {
			s.Connected = false
			if err != nil {
				s.LastError = err.Error()
				s.Errors++
			}
		})
		if time.Since(start) > 10*time.Second {
			backoff = l.r.cfg.MinBackoff // it had been working
		}
		// Full jitter: a peer that is down costs a log line and a metric.
		wait := time.Duration(rand.Int64N(int64(backoff))) + backoff/2
		if err != nil {
			// The first failure after a working link is news; retries are not.
			lvl := slog.LevelDebug
			if time.Since(start) > time.Second || backoff == l.r.cfg.MinBackoff {
				lvl = slog.LevelInfo
			}
			// As text ("1.2s"): a JSON log would show a duration as nanoseconds.
			l.r.log.Log(l.ctx, lvl, "sync: link down", "peer", l.peer.Name, "direction", l.action, "err", err, "retry_in", wait.Round(time.Millisecond).String())
		}
		if !l.r.sleep(l.ctx, wait) {
			return
		}
		backoff = min(backoff*2, l.r.cfg.MaxBackoff)
	}
}

// hello learns the peer's incarnation and checks the protocol; q (e.g. a
// pull ack) goes along as the query.
func (l *loop) hello(q url.Values) (peer.Hello, error) {
	ctx, cancel := context.WithTimeout(l.ctx, 10*time.Second)
	defer cancel()
	h, err := l.r.sayHello(ctx, l.peer.Name, q)
	if err != nil {
		return h, err
	}
	if h.Name != l.peer.Name {
		return h, fmt.Errorf("peer at %s says it is %s, not %s", l.peer.Addr, h.Name, l.peer.Name)
	}
	if _, err := Negotiate(l.r.cfg.Hello(), h); err != nil {
		return h, err
	}
	l.mu.Lock()
	l.inc = h.Incarnation
	l.st.Incarnation = h.Incarnation
	l.st.PeerDBVersion = max(l.st.PeerDBVersion, h.DBVersion)
	l.mu.Unlock()
	return h, nil
}

// start says hello and returns the cursor of kind to resume from: the stored
// one, or 0 when the peer has a new incarnation since (it renumbered), and
// for a pull the fingerprint kept with it. A pull loop's hello carries its
// stored cursor as a pull ack (pulled=N&incarnation=INC&fp=DBV:HLC), so the
// peer learns it (and detects its own restore) on every connect.
func (l *loop) start(kind string) (peer.Hello, int64, store.Fingerprint, error) {
	var fp store.Fingerprint
	cursor, inc, err := l.r.cfg.Store.Cursor(l.ctx, l.peer.Name, kind)
	if err == nil && kind == store.CursorPull {
		fp, err = l.r.cfg.Store.CursorFingerprint(l.ctx, l.peer.Name, kind)
	}
	if err != nil {
		return peer.Hello{}, 0, fp, fmt.Errorf("read %s cursor for %s: %w", kind, l.peer.Name, err)
	}
	var q url.Values
	if kind == store.CursorPull && inc != "" {
		q = ackQuery(cursor, inc, fp)
	}
	h, err := l.hello(q)
	if err != nil {
		return h, 0, fp, err
	}
	if inc != h.Incarnation {
		if inc != "" {
			l.r.log.Info("sync: peer has a new incarnation; starting from 0", "peer", l.peer.Name, "cursor", kind, "old", inc, "new", h.Incarnation)
		}
		cursor, fp = 0, store.Fingerprint{}
	} else if kind == store.CursorPull && cursor > h.DBVersion {
		// The peer is behind what this node has already pulled from it
		// under the same incarnation: its database was restored from an
		// older copy. The pull request tells it (it takes a new
		// incarnation); this node then starts from 0.
		l.r.log.Warn("sync: peer's db_version is behind this node's cursor for it; it was restored from an older copy and is told to take a new incarnation",
			"peer", l.peer.Name, "cursor", cursor, "peer_db_version", h.DBVersion, "incarnation", inc)
	}
	return h, cursor, fp, nil
}

// Negotiate picks the protocol version two nodes speak: the highest both
// know, if it is at least what each still requires.
func Negotiate(a, b peer.Hello) (int, error) {
	v := min(a.Protocol, b.Protocol)
	if v < a.MinProtocol || v < b.MinProtocol {
		return 0, fmt.Errorf("protocol mismatch: %s speaks %d..%d, %s speaks %d..%d", a.Name, a.MinProtocol, a.Protocol, b.Name, b.MinProtocol, b.Protocol)
	}
	return v, nil
}

func (l *loop) update(f func(*LinkStatus)) {
	l.mu.Lock()
	f(&l.st)
	l.mu.Unlock()
}

// ackQuery is the hello query of a pull ack: this node has durably pulled
// the peer's changes through cursor, of the peer's incarnation inc; fp (if
// known) is the fingerprint of the last of the peer's own groups among them.
func ackQuery(cursor int64, inc string, fp store.Fingerprint) url.Values {
	q := url.Values{"pulled": {strconv.FormatInt(cursor, 10)}, "incarnation": {inc}}
	if !fp.IsZero() {
		q.Set("fp", fp.String())
	}
	return q
}

func originName(origin string) string {
	name, _, _ := strings.Cut(origin, "/")
	return name
}
