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
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/policy"
	"github.com/outpost-edge/outpost/store"
	"github.com/outpost-edge/outpost/wire"
)

// activity is what the pull watchdog watches: the last frame read, and
// whether a local apply is running (time spent applying is not silence).
type activity struct {
	last  atomic.Int64 // unix nanoseconds
	busy  atomic.Int32
	nowFn func() time.Time
}

func newActivity() *activity {
	a := &activity{nowFn: time.Now}
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
	h, cursor, err := l.start(store.CursorPull)
	if err != nil {
		return err
	}
	st := l.r.cfg.Store
	if l.fromZero.Swap(false) && cursor > 0 {
		// Durably, so a restart does not resume past the changes peers
		// left out as an echo of the old incarnation.
		if err := st.SetCursor(l.ctx, l.peer.Name, store.CursorPull, h.Incarnation, 0); err != nil {
			l.fromZero.Store(true)
			return err
		}
		cursor = 0
	}
	l.cursor.Store(cursor)
	q := url.Values{"since": {strconv.FormatInt(cursor, 10)}, "origin": {st.Origin()},
		"incarnation": {h.Incarnation}, "parts": {"1"}}
	sctx, cancelStream := context.WithCancel(l.ctx)
	var wg sync.WaitGroup
	defer func() {
		cancelStream()
		wg.Wait()
	}()
	l.mu.Lock()
	l.stream = cancelStream
	l.mu.Unlock()
	act := newActivity()
	// The stream carries a frame at least every heartbeat; a stream silent
	// for several (a peer gone without a FIN) is dropped so the loop dials
	// again. A local apply in progress is not silence.
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.watchdog(sctx, act, cancelStream)
	}()
	resp, err := l.r.cfg.Client.Do(sctx, l.peer.Name, policy.Pull, http.MethodGet, ChangesPath+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	l.update(func(s *LinkStatus) { s.Connected, s.Cursor, s.LastError = true, cursor, "" })
	l.checkCaughtUp(cursor, h.DBVersion)
	// The stream shows the peer's progress only as fast as this node reads
	// it; ask the peer directly now and then so the lag is true while this
	// node is behind (and tell it how far this node has pulled).
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.watchPeer(sctx, h.Incarnation, cancelStream)
	}()
	p := &puller{l: l, inc: h.Incarnation, target: h.DBVersion, act: act}
	err = p.read(resp.Body)
	if sctx.Err() != nil && l.ctx.Err() == nil && !errors.Is(err, errApply) {
		return fmt.Errorf("stream dropped (silent for too long, or the peer changed): %w", err)
	}
	return err
}

// errApply marks a local apply failure.
var errApply = errors.New("apply")

// watchdog drops the stream when it has been silent for four heartbeats.
func (l *loop) watchdog(ctx context.Context, act *activity, dead func()) {
	limit := 4 * l.r.cfg.Heartbeat
	tick := time.NewTicker(l.r.cfg.Heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if act.silentFor() > limit {
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
	l.cursor.Store(cursor)
	l.update(func(s *LinkStatus) {
		s.Cursor = cursor
		s.PeerDBVersion = max(s.PeerDBVersion, through)
		s.Applied += int64(res.Applied)
		s.Refused += int64(res.Refused)
		s.Held += int64(res.Held)
		s.behind(time.Now())
	})
	l.checkCaughtUp(cursor, p.target)
	return nil
}

// watchPeer says hello every heartbeat: it learns the peer's db_version
// (the lag), tells the peer how far this node has durably pulled (pull
// acks), and drops the stream when the peer stops answering or has a new
// incarnation.
func (l *loop) watchPeer(ctx context.Context, inc string, dead func()) {
	tick := time.NewTicker(l.r.cfg.Heartbeat)
	defer tick.Stop()
	failed := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			q := url.Values{"pulled": {strconv.FormatInt(l.cursor.Load(), 10)}, "incarnation": {inc}}
			hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			h, err := l.r.cfg.Client.HelloWith(hctx, l.peer.Name, q)
			cancel()
			if err != nil {
				if failed++; failed >= 3 {
					dead() // the peer has not answered for several heartbeats
					return
				}
				continue
			}
			failed = 0
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
}

func (l *loop) checkCaughtUp(cursor, target int64) {
	if cursor >= target && l.r.cfg.OnCaughtUp != nil {
		l.r.caughtUp.Do(l.r.cfg.OnCaughtUp)
	}
}
