package replication

import (
	"context"
	"net/http"
	"sync"

	"github.com/outpost-edge/outpost/policy"
)

// pullStream is one open pull request (either protocol): its context,
// which the loop cancels to reconnect, the goroutines that watch it, and
// the watchdog's view of its activity.
type pullStream struct {
	ctx    context.Context
	cancel context.CancelFunc
	act    *activity
	resp   *http.Response
	wg     sync.WaitGroup
}

// spawn runs f beside the stream; close waits for it.
func (s *pullStream) spawn(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// close ends the stream and waits for its goroutines.
func (s *pullStream) close() {
	if s.resp != nil {
		s.resp.Body.Close()
	}
	s.cancel()
	s.wg.Wait()
}

// openPull sends the pull request of the stream that started in epoch, with
// a watchdog that drops the stream once it has been silent for four
// heartbeats (four of the longest the peer announces for an idle stream; a
// local apply in progress is not silence): a peer gone without a FIN. It
// returns nil, nil when this node took a new incarnation since epoch (its
// reconnect may have missed this stream: start over under the new one).
// logAcks marks a protocol 2 stream (acks count the peer's log). The
// caller closes the stream.
func (l *loop) openPull(epoch int64, method, path string, body []byte, logAcks bool) (*pullStream, error) {
	s := &pullStream{}
	s.ctx, s.cancel = context.WithCancel(l.ctx)
	l.mu.Lock()
	l.stream = s.cancel
	if logAcks {
		l.logAcks = true
	}
	l.mu.Unlock()
	if l.r.currentEpoch() != epoch {
		s.close()
		return nil, nil
	}
	s.act = newActivity(4 * l.r.cfg.Heartbeat)
	s.spawn(func() { l.watchdog(s.ctx, s.act, s.cancel) })
	l.r.traffic.pulls.Add(1)
	resp, err := l.r.cfg.Client.Do(s.ctx, l.peer.Name, policy.Pull, method, path, body)
	if err != nil {
		s.close()
		return nil, err
	}
	s.resp = resp
	if hb := announcedHeartbeat(resp.Header); hb > 0 {
		s.act.limit.Store(int64(4 * max(hb, l.r.cfg.Heartbeat)))
	}
	return s, nil
}
