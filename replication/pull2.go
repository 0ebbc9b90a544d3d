package replication

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/peer"
	"github.com/outpost-edge/outpost/store"
	"github.com/outpost-edge/outpost/wire"
)

// errGap marks entries that did not follow what this node holds (another
// source ran ahead of this one): the pull starts again from its knowledge.
var errGap = errors.New("entries do not follow what this node holds")

// pull2 is a protocol 2 pull: it posts this node's knowledge and the
// origins it wants from this peer (sources.go), then applies the entries
// the peer streams until the stream breaks or the source choice changes.
func (l *loop) pull2(h peer.Hello) error {
	st := l.r.cfg.Store
	l.r.rotateMu.Lock()
	epoch := l.r.epoch
	l.fromZero.Store(false) // knowledge, not a cursor, says where to start
	origin := st.Origin()
	l.r.rotateMu.Unlock()
	known, err := st.Knowledge(l.ctx)
	if err != nil {
		return fmt.Errorf("read knowledge: %w", err)
	}
	only, except := l.r.sourceFilter(l)
	body, err := cbor.Marshal(PullRequest{Origin: origin, Known: known, Only: only, Except: except, Quiet: true})
	if err != nil {
		return fmt.Errorf("pull request: %w", err)
	}
	peerOrigin := l.peer.Name + "/" + h.Incarnation
	acked := known[peerOrigin]
	l.cursor.Store(acked)
	ps, err := l.openPull(epoch, http.MethodPost, EntriesPath, body, true)
	if ps == nil || err != nil {
		return err
	}
	defer ps.close()
	l.connected(true)
	defer l.connected(false)
	ps.spawn(func() { l.watchPeer(ps.ctx, h.Incarnation, acked, ps.cancel) })
	ps.spawn(func() { l.watchSources(ps.ctx, only, except, ps.cancel) })
	p := &puller2{l: l, peerOrigin: peerOrigin, epoch: epoch, act: ps.act, got: store.Knowledge{}, gotMoved: make(chan struct{}, 1)}
	ps.spawn(func() { l.sendAcks(ps.ctx, origin, &p.gotMu, p.got, p.gotMoved) })
	err = p.read(trafficReader{ps.resp.Body, &l.r.traffic.pullBytes})
	if errors.Is(err, errSnapshotNeeded) {
		ps.cancel()
		if serr := l.snapshot(l.peer); serr != nil {
			return serr
		}
		return nil // pull again, from the adopted knowledge
	}
	if ps.ctx.Err() != nil && l.ctx.Err() == nil && !errors.Is(err, errApply) {
		if l.resourced.Swap(false) {
			return nil // the source choice changed: ask again at once
		}
		return fmt.Errorf("stream dropped (silent for too long, or the peer changed): %w", err)
	}
	return err
}

// connected records that the loop's stream is up or down (sources.go
// reads it to choose sources).
func (l *loop) connected(up bool) {
	now := time.Now()
	l.mu.Lock()
	l.st.Connected = up
	if up {
		l.st.LastError = ""
	} else {
		l.lostAt = now
	}
	l.mu.Unlock()
}

// puller2 reads one protocol 2 stream and applies what it carries.
type puller2 struct {
	l          *loop
	peerOrigin string // the peer's own current origin (its entries are acked)
	epoch      int64
	act        *activity
	batch      []outpost.Entry
	bytes      int
	gotMu      sync.Mutex
	got        store.Knowledge // how far this node holds the origins this stream brought (acks)
	gotMoved   chan struct{}   // signalled when got moved
}

func (p *puller2) read(body io.Reader) error {
	l := p.l
	br := bufio.NewReaderSize(body, 256<<10)
	rd := wire.NewReader(br, l.r.cfg.Limits)
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
		case wire.FrameEntries:
			p.batch = append(p.batch, f.Entries...)
			p.bytes += rd.LastFrameBytes()
			l.update(func(s *LinkStatus) { s.PeerDBVersion = max(s.PeerDBVersion, s.Cursor+int64(len(p.batch))) })
			if p.batch[len(p.batch)-1].More {
				if p.bytes > l.r.cfg.Limits.MaxGroupBytes {
					return fmt.Errorf("a chain of entries of %s is over %d bytes", p.batch[len(p.batch)-1].Origin, l.r.cfg.Limits.MaxGroupBytes)
				}
				continue // the rest of the chain follows
			}
			if br.Buffered() > 0 && len(p.batch) < l.r.cfg.BatchSize && p.bytes < l.r.cfg.MaxBatchBytes*4 {
				continue // more has arrived: one local transaction for all
			}
			if err := p.apply(); err != nil {
				return err
			}
		case wire.FrameHeartbeat:
			l.r.traffic.heartbeats.Add(1)
			// Entries held back for the frames that were buffered behind
			// them: nothing more follows for now, apply them.
			if n := len(p.batch); n > 0 && !p.batch[n-1].More {
				if err := p.apply(); err != nil {
					return err
				}
			}
			// The server sends a heartbeat only when it has nothing more
			// for this puller: caught up.
			l.update(func(s *LinkStatus) {
				s.PeerDBVersion = s.Cursor
				s.behind(time.Now())
			})
			l.r.checkCaughtUp(p.epoch, 0, 0)
		case wire.FrameError:
			if n := len(p.batch); n > 0 && !p.batch[n-1].More {
				if err := p.apply(); err != nil {
					return err
				}
			}
			if isSnapshotNeeded(f.Message) {
				return fmt.Errorf("%w: %s", errSnapshotNeeded, f.Message)
			}
			return fmt.Errorf("peer: %s", f.Message)
		default:
			return fmt.Errorf("peer sent a %s frame on a protocol 2 stream", f.Type)
		}
	}
}

// apply applies the batch of entries in one local transaction.
func (p *puller2) apply() error {
	l := p.l
	p.act.busy.Add(1)
	res, err := l.r.cfg.Store.ApplyEntries(l.ctx, l.peer.Name, p.batch)
	p.act.busy.Add(-1)
	p.act.touch()
	if err != nil {
		return fmt.Errorf("%w: %w", errApply, err)
	}
	own := l.cursor.Load()
	for _, e := range p.batch {
		if e.Origin == p.peerOrigin && e.Seq > own && res.Gaps == 0 {
			own = e.Seq
		}
	}
	if res.Gaps == 0 {
		p.gotMu.Lock()
		for _, e := range p.batch {
			p.got[e.Origin] = max(p.got[e.Origin], e.Seq)
		}
		p.gotMu.Unlock()
		signal(p.gotMoved)
	}
	n := int64(len(p.batch))
	p.batch, p.bytes = nil, 0
	if l.cursor.Swap(own) != own {
		signal(l.moved) // an ack is due
	}
	l.r.traffic.entries.Add(n)
	l.r.traffic.duplicates.Add(int64(res.Duplicates))
	l.update(func(s *LinkStatus) {
		s.Cursor += n
		s.Applied += int64(res.Applied)
		s.Refused += int64(res.Refused + res.Bad)
		s.Held += int64(res.Held)
		s.behind(time.Now())
	})
	if res.Gaps > 0 {
		return fmt.Errorf("%w: %d entries skipped; asking again", errGap, res.Gaps)
	}
	return nil
}

// watchSources ends the stream when the origins this loop should ask its
// peer for change (a direct source went down or came back).
func (l *loop) watchSources(ctx context.Context, only, except []string, dead func()) {
	tick := time.NewTicker(l.r.cfg.Heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		o, e := l.r.sourceFilter(l)
		if !slices.Equal(o, only) || !slices.Equal(e, except) {
			l.r.log.Debug("sync: sources changed; asking again", "peer", l.peer.Name, "only", o, "except", e)
			l.resourced.Store(true)
			dead()
			return
		}
	}
}
