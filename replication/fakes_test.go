package replication

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/identity"
	"github.com/outpost-edge/outpost/peer"
	"github.com/outpost-edge/outpost/policy"
	"github.com/outpost-edge/outpost/store"
	"github.com/outpost-edge/outpost/wire"
)

// fakeStore is a Store that records applies and can make them slow.
type fakeStore struct {
	mu       sync.Mutex
	origin   string
	inc      string
	dbv      int64
	cursors  map[string][2]any // peer/kind -> {dbv, incarnation}
	applies  []applyCall
	onApply  func() // runs inside Apply (e.g. a slow apply)
	notify   chan struct{}
	rotated  int
	applyErr error
	fps      map[string]store.Fingerprint // peer/kind -> fingerprint kept with the cursor
	// match answers MatchFingerprint (FingerprintUnknown if nil).
	match func(inc string, fp store.Fingerprint) store.FingerprintMatch
}

type applyCall struct {
	peer, kind, inc string
	groups          []outpost.Group
	through         int64
}

func newFakeStore() *fakeStore {
	return &fakeStore{origin: "SELF/s1", inc: "s1", cursors: map[string][2]any{}, fps: map[string]store.Fingerprint{}, notify: make(chan struct{})}
}

func (s *fakeStore) Origin() string      { s.mu.Lock(); defer s.mu.Unlock(); return s.origin }
func (s *fakeStore) Incarnation() string { s.mu.Lock(); defer s.mu.Unlock(); return s.inc }
func (s *fakeStore) DBVersion() int64    { s.mu.Lock(); defer s.mu.Unlock(); return s.dbv }
func (s *fakeStore) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.notify
}

func (s *fakeStore) Cursor(_ context.Context, p, kind string) (int64, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.cursors[p+"/"+kind]
	if !ok {
		return 0, "", nil
	}
	return c[0].(int64), c[1].(string), nil
}

func (s *fakeStore) SetCursor(_ context.Context, p, kind, inc string, dbv int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.cursors[p+"/"+kind]; ok && (c[1].(string) != inc || s.fps[p+"/"+kind].DBV > dbv) {
		delete(s.fps, p+"/"+kind)
	}
	s.cursors[p+"/"+kind] = [2]any{dbv, inc}
	return nil
}

func (s *fakeStore) Apply(_ context.Context, p, kind, inc string, groups []outpost.Group, through int64) (store.ApplyResult, error) {
	if s.onApply != nil {
		s.onApply()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.applyErr != nil {
		return store.ApplyResult{}, s.applyErr
	}
	s.applies = append(s.applies, applyCall{p, kind, inc, append([]outpost.Group(nil), groups...), through})
	s.cursors[p+"/"+kind] = [2]any{through, inc}
	var fp store.Fingerprint
	if kind == store.CursorPull {
		if fp = store.GroupFingerprint(p+"/"+inc, groups); !fp.IsZero() {
			s.fps[p+"/"+kind] = fp
		}
	}
	return store.ApplyResult{Through: through, Applied: countChanges(groups), Fingerprint: fp}, nil
}

func (s *fakeStore) CursorFingerprint(_ context.Context, p, kind string) (store.Fingerprint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fps[p+"/"+kind], nil
}

func (s *fakeStore) MatchFingerprint(_ context.Context, inc string, fp store.Fingerprint) (store.FingerprintMatch, error) {
	s.mu.Lock()
	match := s.match
	s.mu.Unlock()
	if match == nil {
		return store.FingerprintUnknown, nil
	}
	return match(inc, fp), nil
}

func (s *fakeStore) ChangesSinceFilter(_ context.Context, since int64, _ store.ChangeFilter) ([]outpost.Group, int64, error) {
	return nil, max(since, s.DBVersion()), nil
}

func (s *fakeStore) RotateIncarnation(context.Context, string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rotated++
	s.inc = fmt.Sprintf("s%d", s.rotated+1)
	s.origin = "SELF/" + s.inc
	return s.inc, nil
}

func (s *fakeStore) applied() []applyCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]applyCall(nil), s.applies...)
}

// scriptTransport answers hellos as configured and serves each pull as a
// pipe the test writes frames into.
type scriptTransport struct {
	mu       sync.Mutex
	hello    peer.Hello
	helloErr error
	hellos   int
	helloQs  []url.Values // of every hello
	header   http.Header  // of every stream's response
	streams  chan *script // one per Do
	queries  []url.Values // of every Do
}

type script struct {
	ctx context.Context
	pw  *io.PipeWriter
}

// send writes frames to the stream in one write (so they arrive together).
func (s *script) send(tb testing.TB, frames ...wire.Frame) {
	tb.Helper()
	var buf bytes.Buffer
	w := wire.NewWriter(&buf)
	for _, f := range frames {
		if err := w.Write(f); err != nil {
			tb.Fatal(err)
		}
	}
	if _, err := s.pw.Write(buf.Bytes()); err != nil {
		tb.Fatalf("stream write: %v", err)
	}
}

func newScript(h peer.Hello) *scriptTransport {
	return &scriptTransport{hello: h, streams: make(chan *script, 16)}
}

func (t *scriptTransport) HelloWith(_ context.Context, _ string, q url.Values) (peer.Hello, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.hellos++
	t.helloQs = append(t.helloQs, q)
	return t.hello, t.helloErr
}

// helloQueries returns the query of every hello so far.
func (t *scriptTransport) helloQueries() []url.Values {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]url.Values(nil), t.helloQs...)
}

func (t *scriptTransport) Do(ctx context.Context, _ string, _ policy.Action, _, path string, _ []byte) (*http.Response, error) {
	u, _ := url.Parse(path)
	t.mu.Lock()
	t.queries = append(t.queries, u.Query())
	hdr := t.header.Clone()
	t.mu.Unlock()
	pr, pw := io.Pipe()
	go func() {
		<-ctx.Done()
		pw.CloseWithError(ctx.Err())
	}()
	t.streams <- &script{ctx: ctx, pw: pw}
	return &http.Response{StatusCode: http.StatusOK, Header: hdr, Body: pr}, nil
}

func (t *scriptTransport) dials() []url.Values {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]url.Values(nil), t.queries...)
}

// next waits for the loop's next stream.
func (t *scriptTransport) next(tb testing.TB) *script {
	tb.Helper()
	select {
	case s := <-t.streams:
		return s
	case <-time.After(10 * time.Second):
		tb.Fatal("the loop never opened a stream")
		return nil
	}
}

// inproc is a Transport to replicators in this process: requests go
// straight to their handlers, with the caller as the authenticated peer.
type inproc struct {
	self    identity.Peer
	mu      sync.Mutex
	servers map[string]*inprocPeer
	wg      sync.WaitGroup
}

func (t *inproc) server(name string) (*inprocPeer, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.servers[name]
	return s, ok
}

type inprocPeer struct {
	r     *Replicator
	hello func() peer.Hello
	mux   *http.ServeMux
}

func newInproc(self identity.Peer) *inproc {
	return &inproc{self: self, servers: map[string]*inprocPeer{}}
}

func (t *inproc) add(name string, r *Replicator, hello func() peer.Hello) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+ChangesPath, r.serveChanges)
	mux.HandleFunc("POST "+ChangesPath, r.receivePush)
	mux.HandleFunc("POST "+EntriesPath, r.serveEntries)
	mux.HandleFunc("GET "+SnapshotPath, r.serveSnapshot)
	mux.HandleFunc("POST "+AckPath, r.serveAck)
	mux.HandleFunc("POST "+ReportPath, r.serveReport)
	t.mu.Lock()
	t.servers[name] = &inprocPeer{r: r, hello: hello, mux: mux}
	t.mu.Unlock()
}

func (t *inproc) HelloWith(_ context.Context, name string, q url.Values) (peer.Hello, error) {
	s, ok := t.server(name)
	if !ok {
		return peer.Hello{}, errors.New("no such peer")
	}
	if len(q) > 0 {
		s.r.observeHello(t.self, q)
	}
	return s.hello(), nil
}

// pipeResponse is a streaming http.ResponseWriter over a pipe.
type pipeResponse struct {
	hdr    http.Header
	pw     *io.PipeWriter
	status int
	ready  chan struct{}
	once   sync.Once
	buf    bytes.Buffer // the body of a non-2xx answer
}

func (p *pipeResponse) Header() http.Header { return p.hdr }
func (p *pipeResponse) WriteHeader(code int) {
	p.once.Do(func() { p.status = code; close(p.ready) })
}
func (p *pipeResponse) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	if p.status/100 != 2 {
		return p.buf.Write(b)
	}
	return p.pw.Write(b)
}
func (p *pipeResponse) Flush() {}

func (t *inproc) Do(ctx context.Context, name string, _ policy.Action, method, path string, body []byte) (*http.Response, error) {
	s, ok := t.server(name)
	if !ok {
		return nil, errors.New("no such peer")
	}
	req := httptest.NewRequest(method, path, bytes.NewReader(body)).WithContext(peer.NewContext(ctx, t.self))
	pr, pw := io.Pipe()
	rw := &pipeResponse{hdr: http.Header{}, pw: pw, ready: make(chan struct{})}
	done := make(chan struct{})
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer close(done)
		s.mux.ServeHTTP(rw, req)
		rw.WriteHeader(http.StatusOK)
		pw.Close()
	}()
	go func() {
		select {
		case <-ctx.Done():
			pr.CloseWithError(ctx.Err())
		case <-done:
		}
	}()
	<-rw.ready
	if rw.status/100 != 2 {
		<-done
		return nil, &peer.StatusError{Status: rw.status, Message: rw.buf.String()}
	}
	return &http.Response{StatusCode: rw.status, Header: rw.hdr.Clone(), Body: pr}, nil
}

// peerHello is the hello of a fake peer named PEER1.
func peerHello(inc string, dbv int64) peer.Hello {
	return peer.Hello{Name: "PEER1", Role: "master", Protocol: 1, MinProtocol: outpost.MinProtocolVersion,
		Incarnation: inc, DBVersion: dbv, Features: Features()}
}

var peer1 = identity.Peer{Identity: outpost.Identity{Name: "PEER1", Location: "FRA", Role: outpost.RoleMaster, Code: "01ma"}}

// testReplicator returns a started (loop-less) replicator for tests; its
// loops end with the test.
func testReplicator(t *testing.T, self outpost.Identity, st Store, tr Transport, mod func(*Config)) *Replicator {
	t.Helper()
	cfg := Config{Self: self, Store: st, Client: tr, Heartbeat: 20 * time.Millisecond,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		Hello: func() peer.Hello {
			return peer.Hello{Name: self.Name, Protocol: 1, MinProtocol: outpost.MinProtocolVersion}
		}}
	if mod != nil {
		mod(&cfg)
	}
	r := New(cfg)
	r.ctx, r.cancel = context.WithCancel(context.Background())
	t.Cleanup(func() {
		r.cancel()
		r.wg.Wait()
	})
	return r
}

// runLoop starts one loop of r with p, stopped at the end of the test.
func runLoop(r *Replicator, p identity.Peer, a policy.Action) *loop {
	l := r.newLoop(p, a)
	r.mu.Lock()
	r.loops[p.Name+"/"+string(a)] = l
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		l.run()
	}()
	return l
}

// eventually polls cond until it holds or 10 seconds pass.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var selfID = outpost.Identity{Name: "SELF", Location: "AMS", Role: outpost.RoleNode, Code: "02no"}

func change(pk string, val any) outpost.Change {
	return outpost.Change{Table: "pages", PK: []any{pk}, Col: "title", Val: val, CL: 1, HLC: 1 << 20, Origin: "PEER1/p1"}
}

// The fake speaks protocol 1 only: no log.
func (f *fakeStore) Knowledge(context.Context) (store.Knowledge, error) {
	return store.Knowledge{}, nil
}
func (f *fakeStore) EntriesFor(context.Context, store.Knowledge, store.EntryFilter) ([]outpost.Entry, error) {
	return nil, nil
}
func (f *fakeStore) ApplyEntries(context.Context, string, []outpost.Entry) (store.EntryResult, error) {
	return store.EntryResult{}, nil
}
func (f *fakeStore) AdoptKnowledge(context.Context, store.Knowledge) error      { return nil }
func (f *fakeStore) CollectLog(context.Context, store.Knowledge) (int64, error) { return 0, nil }
func (f *fakeStore) KnowledgePoints(context.Context) (map[string]store.Point, error) {
	return map[string]store.Point{}, nil
}
func (f *fakeStore) PublishFloors(context.Context) error { return nil }
func (f *fakeStore) CollectTombstones(context.Context, map[string]store.Point) (store.TombstoneResult, error) {
	return store.TombstoneResult{}, nil
}
func (f *fakeStore) EntriesBefore(context.Context, time.Time) (store.Knowledge, error) {
	return store.Knowledge{}, nil
}
func (f *fakeStore) WithoutHeld(_ context.Context, k store.Knowledge) (store.Knowledge, error) {
	return k, nil
}
