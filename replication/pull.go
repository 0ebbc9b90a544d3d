package replication

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/store"
	"github.com/outpost-edge/outpost/wire"
)

// activity is what the pull watchdog watches: the last frame read, and
// whether a local apply is running (time spent applying is not silence).
type activity struct {
	last  atomic.Int64 // unix nanoseconds
	busy  atomic.Int32
	limit atomic.Int64 // the silence after which the stream is dropped
	nowFn func() time.Time
}

func newActivity(limit time.Duration) *activity {
	a := &activity{nowFn: time.Now}
	a.limit.Store(int64(limit))
	a.touch()
	return a
}

func (a *activity) touch() { a.last.Store(a.nowFn().UnixNano()) }

// silentFor is how long the stream has shown nothing; 0 while applying.
func (a *activity) silentFor() time.Duration {
	if a.busy.Load() > 0 {
		return 0
	}
	return a.nowFn().Sub(time.Unix(0, a.last.Load()))
}

// pull streams the peer's groups from this node's cursor and applies them,
// a batch per transaction, until the stream breaks.
func (l *loop) pull() error {
	h, cursor, fp, err := l.start(store.CursorPull)
	if err != nil {
		return err
	}
	if v, _ := Negotiate(l.r.cfg.Hello(), h); v >= 2 {
		return l.pull2(h)
	}
	st := l.r.cfg.Store
	// The connect hello reported the stored cursor (or, for a new
	// incarnation of the peer, nothing this one needs: its cursor is 0).
	acked := cursor
	// Taken together with respect to this node's new incarnations (see
	// regressed): the epoch this pull counts for, whether it must start
	// from 0, and the origin it names as this node's.
	l.r.rotateMu.Lock()
	epoch := l.r.epoch
	fromZero := l.fromZero.Swap(false)
	origin := st.Origin()
	l.r.rotateMu.Unlock()
	if fromZero && cursor > 0 {
		// Durably, so a restart does not resume past the changes peers
		// left out as an echo of the old incarnation.
		if err := st.SetCursor(l.ctx, l.peer.Name, store.CursorPull, h.Incarnation, 0); err != nil {
			l.fromZero.Store(true)
			return err
		}
		cursor, fp = 0, store.Fingerprint{}
	}
	l.cursor.Store(cursor)
	l.mu.Lock()
	l.fp = fp
	l.mu.Unlock()
	q := url.Values{"since": {strconv.FormatInt(cursor, 10)}, "origin": {origin},
		"incarnation": {h.Incarnation}, "parts": {"1"}, "quiet": {"1"}}
	if cursor > 0 && !fp.IsZero() {
		q.Set("fp", fp.String())
	}
	ps, err := l.openPull(epoch, http.MethodGet, ChangesPath+"?"+q.Encode(), nil, false)
	if ps == nil || err != nil {
		return err
	}
	defer ps.close()
	l.update(func(s *LinkStatus) { s.Connected, s.Cursor, s.LastError = true, cursor, "" })
	l.r.checkCaughtUp(epoch, cursor, h.DBVersion)
	// Tell the peer how far this node has pulled when that moves, and
	// check on it now and then; the hello answers keep the lag true while
	// this node is behind (the stream shows the peer's progress only as
	// fast as this node reads it).
	ps.spawn(func() { l.watchPeer(ps.ctx, h.Incarnation, acked, ps.cancel) })
	p := &puller{l: l, inc: h.Incarnation, target: h.DBVersion, epoch: epoch, act: ps.act}
	err = p.read(trafficReader{ps.resp.Body, &l.r.traffic.pullBytes})
	if ps.ctx.Err() != nil && l.ctx.Err() == nil && !errors.Is(err, errApply) {
		return fmt.Errorf("stream dropped (silent for too long, or the peer changed): %w", err)
	}
	return err
}

// errApply marks a local apply failure.
var errApply = errors.New("apply")

// announcedHeartbeat is the longest heartbeat interval a peer announces for
// an idle stream (HeaderHeartbeatMax, in milliseconds; at most a minute),
// or 0 if it announces none (it sends one every Heartbeat, as protocol 1
// peers do).
func announcedHeartbeat(h http.Header) time.Duration {
	ms, err := strconv.ParseInt(h.Get(HeaderHeartbeatMax), 10, 64)
	if err != nil || ms <= 0 {
		return 0
	}
	return min(time.Duration(ms)*time.Millisecond, time.Minute)
}

// watchdog drops the stream when it has been silent for act's limit (four
// heartbeats).
func (l *loop) watchdog(ctx context.Context, act *activity, dead func()) {
	tick := time.NewTicker(l.r.cfg.Heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if limit := time.Duration(act.limit.Load()); act.silentFor() > limit {
				l.r.log.Info("sync: pull stream silent; reconnecting", "peer", l.peer.Name, "silent_for", limit)
				dead()
				return
			}
		}
	}
}

// puller reads one pull stream and applies what it carries.
type puller struct {
	l       *loop
	inc     string // the peer's incarnation
	target  int64  // caught up once the cursor reaches this
	epoch   int64  // the Replicator's epoch the pull started in
	act     *activity
	batch   []outpost.Group
	changes int
	bytes   int
}

func (p *puller) read(body io.Reader) error {
	l := p.l
	br := bufio.NewReaderSize(body, 256<<10)
	rd := wire.NewReader(br, l.r.cfg.Limits)
	var pending int64 // a progress frame whose batch is still being extended
	for {
		f, err := rd.Read()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("stream ended")
			}
			return err
		}
		p.act.touch()
		l.r.traffic.frames.Add(1)
		switch f.Type {
		case wire.FrameGroup:
			p.batch = append(p.batch, *f.Group)
			p.changes += len(f.Group.Changes)
			p.bytes += rd.LastFrameBytes()
		case wire.FrameProgress:
			if br.Buffered() > 0 && p.changes < l.r.cfg.BatchSize*4 && p.bytes < l.r.cfg.MaxBatchBytes*4 {
				// More has arrived already: take it into the same local
				// transaction (one fsync) instead of falling behind.
				pending = f.DBV
				continue
			}
			pending = 0
			if err := p.apply(f.DBV); err != nil {
				return err
			}
		case wire.FrameHeartbeat:
			l.r.traffic.heartbeats.Add(1)
			if pending > 0 {
				through := pending
				pending = 0
				if err := p.apply(through); err != nil {
					return err
				}
			}
			l.update(func(s *LinkStatus) {
				s.PeerDBVersion = max(s.PeerDBVersion, f.DBV)
				s.behind(time.Now())
			})
		case wire.FrameError:
			return fmt.Errorf("peer: %s", f.Message)
		}
	}
}

// apply is the one path by which a pull batch is applied: it moves the
// cursor, the link's counters and lag, and the caught-up state.
func (p *puller) apply(through int64) error {
	l := p.l
	p.act.busy.Add(1)
	res, err := l.r.cfg.Store.Apply(l.ctx, l.peer.Name, store.CursorPull, p.inc, p.batch, through)
	p.act.busy.Add(-1)
	p.act.touch()
	if err != nil {
		return fmt.Errorf("%w: %w", errApply, err)
	}
	p.batch, p.changes, p.bytes = nil, 0, 0
	cursor := res.Through
	if !res.Fingerprint.IsZero() {
		l.mu.Lock()
		l.fp = res.Fingerprint
		l.mu.Unlock()
	}
	if l.cursor.Swap(cursor) != cursor {
		signal(l.moved) // an ack is due
	}
	l.update(func(s *LinkStatus) {
		s.Cursor = cursor
		s.PeerDBVersion = max(s.PeerDBVersion, through)
		s.Applied += int64(res.Applied)
		s.Refused += int64(res.Refused)
		s.Held += int64(res.Held)
		s.behind(time.Now())
	})
	l.r.checkCaughtUp(p.epoch, cursor, p.target)
	return nil
}

// watchPeer says hello to the peer only when there is news: the pull
// cursor moved (a pull ack, pulled=N&incarnation=INC, at most one per
// heartbeat), the trust list was reloaded, or HelloInterval passed since
// the last one (the liveness backstop of an idle link). acked is the
// cursor the connect hello reported. A hello that fails is
// tried again every heartbeat; after three failures in a row, or when the
// peer answers with a new incarnation, the stream is dropped.
func (l *loop) watchPeer(ctx context.Context, inc string, acked int64, dead func()) {
	hb := l.r.cfg.Heartbeat
	tick := time.NewTicker(hb)
	defer tick.Stop()
	last := time.Now() // the connect hello
	failed := 0
	force := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.moved:
		case <-l.poke:
			force = true
		case <-tick.C:
		}
		cursor, since := l.cursor.Load(), time.Since(last)
		backstop := l.r.cfg.HelloInterval
		l.mu.Lock()
		if l.logAcks {
			// Protocol 2: the stream's heartbeats show the peer is alive
			// and an incarnation change ends the stream; the hello is a
			// rare backstop.
			backstop *= 10
		}
		l.mu.Unlock()
		if !force && !(cursor != acked && since >= hb) && since < backstop {
			continue
		}
		l.mu.Lock()
		fp := l.fp
		l.mu.Unlock()
		hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		q := ackQuery(cursor, inc, fp)
		l.mu.Lock()
		if l.logAcks {
			q.Set("log", "1") // cursor is the peer's log sequence (protocol 2)
		}
		l.mu.Unlock()
		h, err := l.r.sayHello(hctx, l.peer.Name, q)
		cancel()
		last = time.Now()
		if err != nil {
			if failed++; failed >= 3 {
				dead() // the peer has not answered several hellos in a row
				return
			}
			force = true // try again at the next heartbeat
			continue
		}
		failed, force, acked = 0, false, cursor
		if h.Incarnation != inc {
			l.r.log.Info("sync: peer has a new incarnation; reconnecting", "peer", l.peer.Name, "old", inc, "new", h.Incarnation)
			dead()
			return
		}
		l.update(func(s *LinkStatus) {
			s.PeerDBVersion = max(s.PeerDBVersion, h.DBVersion)
			s.behind(time.Now())
		})
	}
}

// checkCaughtUp calls OnCaughtUp when a pull that started in epoch has
// caught up (cursor at target), once per epoch: a pull that started before
// this node's latest new incarnation does not count.
func (r *Replicator) checkCaughtUp(epoch, cursor, target int64) {
	if cursor < target || r.cfg.OnCaughtUp == nil {
		return
	}
	r.rotateMu.Lock()
	defer r.rotateMu.Unlock()
	r.signalCaughtUp(epoch)
}

// signalCaughtUp calls OnCaughtUp for epoch if it is the current one and
// has not been signalled yet; rotateMu is held.
func (r *Replicator) signalCaughtUp(epoch int64) {
	if epoch != r.epoch || r.signalled >= epoch || r.cfg.OnCaughtUp == nil {
		return
	}
	r.signalled = epoch
	r.cfg.OnCaughtUp()
}

// currentEpoch returns the count of new incarnations taken since Start.
func (r *Replicator) currentEpoch() int64 {
	r.rotateMu.Lock()
	defer r.rotateMu.Unlock()
	return r.epoch
}
