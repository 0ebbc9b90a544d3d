package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/identity"
	"github.com/outpost-edge/outpost/peer"
	"github.com/outpost-edge/outpost/policy"
)

// errUnreachable is what a call across a cut, or to or from a stopped node,
// fails with (as a refused connection would).
var errUnreachable = errors.New("sim: unreachable (partitioned or stopped)")

// link is one node's replication.Transport: calls go straight to the
// handlers of the node named, after the checks a peer.Client and a
// peer.Server make (trust list, policy on both sides) and the fleet's cuts,
// with the link's latency, and every byte counted at both ends.
type link struct {
	f    *Fleet
	self *node
}

// call is one open request (a pull stream or a push), ended when a cut or
// a stop separates its ends.
type call struct {
	from, to *node
	cancel   context.CancelFunc
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// dial does the checks of a call to name for action ("" for a hello) and
// returns the target and the caller as the target's trust list knows it.
func (l *link) dial(name string, action policy.Action) (*node, identity.Peer, error) {
	from := l.self
	// Client side (peer.Client.Check): the target must be on this node's
	// trust list and the policy must allow the action.
	p, ok := from.trust.List().ByName(name)
	if !ok {
		return nil, identity.Peer{}, fmt.Errorf("%w: %s", peer.ErrUnknownPeer, name)
	}
	if action != "" {
		if d := l.f.policy.Check(peer.Party(from.id), peer.Party(p), action); !d.Allowed {
			return nil, identity.Peer{}, &peer.PolicyError{Decision: d}
		}
	}
	to := l.f.byName[name]
	if to == nil || !l.f.reachable(from, to) {
		return nil, identity.Peer{}, fmt.Errorf("peer %s: %w", name, errUnreachable)
	}
	// Server side (peer.Server's guard): the caller's key must be on the
	// target's trust list, and the policy must allow the action there too.
	caller, ok := to.trust.List().ByKey(from.id.Key)
	if !ok {
		return nil, identity.Peer{}, &peer.StatusError{Status: http.StatusForbidden, Code: "unknown_key", Message: "key is not on the trust list"}
	}
	if action != "" {
		if d := l.f.policy.Check(peer.Party(caller), peer.Party(to.id), action); !d.Allowed {
			return nil, identity.Peer{}, &peer.StatusError{Status: http.StatusForbidden, Code: "policy_refused", Message: d.Reason, Rule: d.Rule}
		}
	}
	return to, caller, nil
}

// HelloWith answers with the target's hello after a round trip; the query
// (a pull ack) is observed as the peer server would.
func (l *link) HelloWith(ctx context.Context, name string, q url.Values) (peer.Hello, error) {
	to, caller, err := l.dial(name, "")
	if err != nil {
		return peer.Hello{}, err
	}
	lat := l.f.latency(l.self, to)
	reqBytes := int64(len(peer.HelloPath)) + 64
	if len(q) > 0 {
		reqBytes += int64(len(q.Encode())) + 1
	}
	l.self.sent.Add(reqBytes)
	if err := sleep(ctx, lat); err != nil {
		return peer.Hello{}, err
	}
	if !l.f.reachable(l.self, to) {
		return peer.Hello{}, fmt.Errorf("peer %s: %w", name, errUnreachable)
	}
	to.recv.Add(reqBytes)
	if len(q) > 0 {
		to.r.ObserveHello(caller, q)
	}
	h := to.hello()
	b, _ := json.Marshal(h)
	to.sent.Add(int64(len(b)) + 64)
	if err := sleep(ctx, lat); err != nil {
		return peer.Hello{}, err
	}
	l.self.recv.Add(int64(len(b)) + 64)
	return h, nil
}

// Do serves the request with the target's sync handler; the response body
// streams through a pipe, each write delivered after the link's latency.
func (l *link) Do(ctx context.Context, name string, action policy.Action, method, path string, body []byte) (*http.Response, error) {
	to, caller, err := l.dial(name, action)
	if err != nil {
		return nil, err
	}
	f, from := l.f, l.self
	lat := f.latency(from, to)
	reqBytes := int64(len(path)+len(body)) + 64
	from.sent.Add(reqBytes)
	if err := sleep(ctx, lat); err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(peer.NewContext(ctx, caller))
	c := &call{from: from, to: to, cancel: cancel}
	if !f.open(c) {
		cancel()
		return nil, fmt.Errorf("peer %s: %w", name, errUnreachable)
	}
	to.recv.Add(reqBytes)
	req, err := http.NewRequestWithContext(sctx, method, "http://"+name+path, bytes.NewReader(body))
	if err != nil {
		f.close(c)
		return nil, err
	}
	pr, pw := io.Pipe()
	rw := &response{hdr: http.Header{}, pw: pw, ready: make(chan struct{}), ctx: sctx, lat: lat, from: from, to: to}
	done := make(chan struct{})
	f.wg.Add(2)
	go func() {
		defer f.wg.Done()
		defer close(done)
		defer f.close(c)
		to.handler.ServeHTTP(rw, req)
		rw.WriteHeader(http.StatusOK)
		pw.Close()
	}()
	go func() {
		defer f.wg.Done()
		select {
		case <-sctx.Done():
			pr.CloseWithError(fmt.Errorf("peer %s: stream cut: %w", name, context.Cause(sctx)))
		case <-done:
		}
	}()
	select {
	case <-rw.ready:
	case <-sctx.Done():
		<-done
		return nil, fmt.Errorf("peer %s: %w", name, sctx.Err())
	}
	if rw.status/100 != 2 {
		<-done
		var e struct {
			Error struct{ Code, Message, Rule string } `json:"error"`
		}
		_ = json.Unmarshal(rw.buf.Bytes(), &e)
		return nil, &peer.StatusError{Status: rw.status, Code: e.Error.Code, Message: e.Error.Message, Rule: e.Error.Rule}
	}
	return &http.Response{StatusCode: rw.status, Header: rw.hdr.Clone(), Body: &body2{pr, cancel}}, nil
}

// body2 ends the call when the caller closes the body.
type body2 struct {
	*io.PipeReader
	cancel context.CancelFunc
}

func (b *body2) Close() error {
	b.cancel()
	return b.PipeReader.Close()
}

// response is a streaming http.ResponseWriter over a pipe; every write
// reaches the reader one latency later and is counted at both ends.
type response struct {
	hdr      http.Header
	pw       *io.PipeWriter
	status   int
	ready    chan struct{}
	once     sync.Once
	buf      bytes.Buffer // the body of a non-2xx answer
	ctx      context.Context
	lat      time.Duration
	from, to *node
}

func (p *response) Header() http.Header { return p.hdr }
func (p *response) WriteHeader(code int) {
	p.once.Do(func() {
		p.status = code
		p.to.sent.Add(64)
		p.from.recv.Add(64)
		close(p.ready)
	})
}

func (p *response) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	if p.status/100 != 2 {
		return p.buf.Write(b)
	}
	p.to.sent.Add(int64(len(b)))
	if err := sleep(p.ctx, p.lat); err != nil {
		return 0, err
	}
	n, err := p.pw.Write(b)
	p.from.recv.Add(int64(n))
	return n, err
}

func (p *response) Flush() {}
