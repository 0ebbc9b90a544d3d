package replication

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/outpost-edge/outpost/wire"
)

// frameStream is the answer side of a served stream (pull streams of both
// protocols, snapshots): buffered frames, counted as served bytes, flushed
// to the peer on demand.
type frameStream struct {
	fw *wire.Writer
	bw *bufio.Writer
	fl http.Flusher // nil where the transport cannot flush (in-process)
	rc *http.ResponseController
}

// openStream answers 200 with a frame stream; a quiet stream announces the
// longest heartbeat interval of an idle stream (HeaderHeartbeatMax).
func (r *Replicator) openStream(w http.ResponseWriter, quiet bool) *frameStream {
	fl, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/x-outpost-frames")
	if quiet {
		w.Header().Set(HeaderHeartbeatMax, strconv.FormatInt(r.cfg.MaxHeartbeat.Milliseconds(), 10))
	}
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(trafficWriter{w, &r.traffic.serveBytes}, 64<<10)
	return &frameStream{fw: wire.NewWriterLimits(bw, r.cfg.Limits), bw: bw, fl: fl, rc: http.NewResponseController(w)}
}

// flush sends what is buffered.
func (s *frameStream) flush() error {
	if err := s.bw.Flush(); err != nil {
		return err
	}
	if s.fl != nil {
		s.fl.Flush()
	}
	return nil
}

// fail ends the stream with an error frame saying why (not when the peer
// is gone or the stream itself broke: nobody would read it).
func (s *frameStream) fail(ctx context.Context, err error) {
	if ctx.Err() == nil && !errors.Is(err, errStreamWrite) {
		_ = s.fw.Write(wire.ErrorFrame(err.Error()))
		_ = s.flush()
	}
}

// serveLoop runs a pull stream: next sends the next batch (reporting
// whether it sent anything) until there is nothing more; then the stream
// waits for the next commit, sending heartbeat() frames while idle (for a
// quiet puller the interval doubles from Heartbeat up to MaxHeartbeat and
// drops back once batches flow). Before every batch, ended says why the
// stream must end ("" = it goes on), e.g. this node took a new incarnation.
func (r *Replicator) serveLoop(ctx context.Context, s *frameStream, quiet bool, ended func() string, next func() (bool, error), heartbeat func() wire.Frame) {
	st := r.cfg.Store
	interval := r.cfg.Heartbeat
	tick := time.NewTimer(interval)
	defer tick.Stop()
	sent := false // something other than a heartbeat went since the last one
	for {
		changed := st.Changed()
		if why := ended(); why != "" {
			_ = s.fw.Write(wire.ErrorFrame(why))
			_ = s.flush()
			return
		}
		more, err := next()
		if err != nil {
			s.fail(ctx, err)
			return
		}
		if more {
			sent = true
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-tick.C:
			if err := s.fw.Write(heartbeat()); err != nil {
				return
			}
			if err := s.flush(); err != nil {
				return
			}
			switch {
			case sent:
				interval = r.cfg.Heartbeat
			case quiet:
				interval = min(2*interval, r.cfg.MaxHeartbeat)
			}
			sent = false
			tick.Reset(interval)
		}
	}
}
