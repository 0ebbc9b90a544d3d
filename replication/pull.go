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
	"github.com/outpost-edge/outpost/peer"
	"github.com/outpost-edge/outpost/policy"
	"github.com/outpost-edge/outpost/store"
	"github.com/outpost-edge/outpost/wire"
)

// pull streams the peer's groups from this node's cursor and applies them,
// a batch per transaction, until the stream breaks.
func (l *loop) pull() error {
	h, cursor, err := l.start(store.CursorPull)
	if err != nil {
		return err
	}
	st := l.r.cfg.Store
	target := h.DBVersion // caught up once the cursor reaches this
	q := url.Values{"since": {strconv.FormatInt(cursor, 10)}, "origin": {st.Origin()}}
	// The stream carries a frame at least every heartbeat; a stream silent
	// for several is dead (a peer gone without a FIN) and is dropped so the
	// loop dials again.
	sctx, cancelStream := context.WithCancel(l.ctx)
	defer cancelStream()
	var lastFrame atomic.Int64
	lastFrame.Store(time.Now().UnixNano())
	go func() {
		limit := 4 * l.r.cfg.Heartbeat
		tick := time.NewTicker(l.r.cfg.Heartbeat)
		defer tick.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-tick.C:
				if time.Since(time.Unix(0, lastFrame.Load())) > limit {
					l.r.log.Info("sync: pull stream silent; reconnecting", "peer", l.peer.Name, "silent_for", limit)
					cancelStream()
					return
				}
			}
		}
	}()
	resp, err := l.r.cfg.Client.Do(sctx, l.peer.Name, policy.Pull, http.MethodGet, ChangesPath+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	l.update(func(s *LinkStatus) { s.Connected, s.Cursor, s.LastError = true, cursor, "" })
	l.checkCaughtUp(cursor, target)
	// The stream shows the peer's progress only as fast as this node reads
	// it; ask the peer directly now and then so the lag is true while this
	// node is behind.
	watchCtx, stopWatch := context.WithCancel(l.ctx)
	defer stopWatch()
	go l.watchPeer(watchCtx, cancelStream)

	br := bufio.NewReaderSize(resp.Body, 256<<10)
	rd := wire.NewReader(br, wire.DefaultLimits)
	var batch []outpost.Group
	changes := 0
	var pendingThrough int64 // a progress frame whose batch is still being extended
	for {
		f, err := rd.Read()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("stream ended")
			}
			if sctx.Err() != nil && l.ctx.Err() == nil {
				return errors.New("stream silent for too long")
			}
			return err
		}
		lastFrame.Store(time.Now().UnixNano())
		switch f.Type {
		case wire.FrameGroup:
			batch = append(batch, *f.Group)
			changes += len(f.Group.Changes)
		case wire.FrameProgress:
			if br.Buffered() > 0 && changes < l.r.cfg.BatchSize*4 {
				// More has arrived already: take it into the same local
				// transaction (one fsync) instead of falling behind.
				pendingThrough = f.DBV
				continue
			}
			res, err := st.Apply(l.ctx, l.peer.Name, store.CursorPull, h.Incarnation, batch, f.DBV)
			if err != nil {
				return err
			}
			batch, changes, pendingThrough = batch[:0], 0, 0
			cursor = res.Through
			l.update(func(s *LinkStatus) {
				s.Cursor = cursor
				s.PeerDBVersion = max(s.PeerDBVersion, f.DBV)
				s.Applied += int64(res.Applied)
				s.Refused += int64(res.Refused)
				s.behind(time.Now())
			})
			l.checkCaughtUp(cursor, target)
			if res.Drift != nil {
				// Held back, not lost: reconnect from the cursor after a pause.
				return res.Drift
			}
		case wire.FrameHeartbeat:
			if pendingThrough > 0 {
				res, err := st.Apply(l.ctx, l.peer.Name, store.CursorPull, h.Incarnation, batch, pendingThrough)
				if err != nil {
					return err
				}
				batch, changes, pendingThrough = batch[:0], 0, 0
				cursor = res.Through
				if res.Drift != nil {
					return res.Drift
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

func (l *loop) watchPeer(ctx context.Context, dead func()) {
	tick := time.NewTicker(l.r.cfg.Heartbeat)
	defer tick.Stop()
	failed := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			h, err := l.r.cfg.Client.Hello(hctx, l.peer.Name)
			cancel()
			if err != nil {
				if failed++; failed >= 3 {
					dead() // the peer has not answered for several heartbeats
					return
				}
				continue
			}
			failed = 0
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

// Routes registers the sync routes on the peer server.
func (r *Replicator) Routes(s *peer.Server) {
	s.Handle("GET "+ChangesPath, policy.Pull, http.HandlerFunc(r.serveChanges))
	s.Handle("POST "+ChangesPath, policy.Push, http.HandlerFunc(r.receivePush))
}

// serveChanges streams groups with db_version > since, then stays open and
// sends new groups as they commit, with heartbeats. Changes that originated
// at the requester's current incarnation are left out.
func (r *Replicator) serveChanges(w http.ResponseWriter, req *http.Request) {
	p, _ := peer.From(req.Context())
	since, err := strconv.ParseInt(req.URL.Query().Get("since"), 10, 64)
	if err != nil || since < 0 {
		peer.WriteError(w, http.StatusBadRequest, "bad_request", "since must be a db_version >= 0")
		return
	}
	origin := req.URL.Query().Get("origin")
	if originName(origin) != p.Name {
		peer.WriteError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("origin %q is not %s's (NAME/incarnation)", origin, p.Name))
		return
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		peer.WriteError(w, http.StatusInternalServerError, "internal", "streaming unsupported")
		return
	}
	w.Header().Set("Content-Type", "application/x-outpost-frames")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	fw := wire.NewWriter(bw)
	flush := func() error {
		if err := bw.Flush(); err != nil {
			return err
		}
		fl.Flush()
		return nil
	}
	st := r.cfg.Store
	ctx := req.Context()
	tick := time.NewTicker(r.cfg.Heartbeat)
	defer tick.Stop()
	for {
		changed := st.Changed()
		groups, through, err := st.ChangesSince(ctx, since, origin, r.cfg.BatchSize)
		if err != nil {
			if ctx.Err() == nil {
				_ = fw.Write(wire.Frame{Type: wire.FrameError, Message: err.Error()})
				_ = flush()
			}
			return
		}
		for i := range groups {
			if err := fw.Write(wire.Frame{Type: wire.FrameGroup, Group: &groups[i]}); err != nil {
				return
			}
		}
		if through > since {
			if err := fw.Write(wire.Frame{Type: wire.FrameProgress, DBV: through}); err != nil {
				return
			}
			if err := flush(); err != nil {
				return
			}
			since = through
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-tick.C:
			if err := fw.Write(wire.Frame{Type: wire.FrameHeartbeat, DBV: st.DBVersion()}); err != nil {
				return
			}
			if err := flush(); err != nil {
				return
			}
		}
	}
}
