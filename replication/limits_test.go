package replication

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/peer"
	"github.com/outpost-edge/outpost/store"
	"github.com/outpost-edge/outpost/wire"
)

func errCode(tb testing.TB, body []byte) string {
	tb.Helper()
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		tb.Fatalf("error body %q: %v", body, err)
	}
	return e.Error.Code
}

// TestServe_StreamLimits (item 8): streams beyond the per-peer bound get
// 429 too_many_streams, beyond the total 503 server_busy; a slot freed is
// usable again.
func TestServe_StreamLimits(t *testing.T) {
	st := newFakeStore()
	r := testReplicator(t, selfID, st, nil, func(c *Config) {
		c.MaxStreamsPerPeer, c.MaxStreams = 2, 3
		c.Refusals = peer.NewRefusals()
	})
	open := func(name string) (func(), int, []byte) {
		ctx, cancel := context.WithCancel(context.Background())
		p := ident(name, "01ma", outpost.RoleMaster)
		req := httptest.NewRequest(http.MethodGet, ChangesPath+"?since=0&origin="+name+"/x", nil).WithContext(peer.NewContext(ctx, p))
		rw := &pipeResponse{hdr: http.Header{}, ready: make(chan struct{})}
		pr, pw := io.Pipe()
		rw.pw = pw
		done := make(chan struct{})
		go func() {
			defer close(done)
			r.serveChanges(rw, req)
			rw.WriteHeader(http.StatusOK)
			pw.Close()
		}()
		go io.Copy(io.Discard, pr) //nolint:errcheck // drains the stream
		<-rw.ready
		stop := func() {
			cancel()
			<-done
		}
		if rw.status != http.StatusOK {
			<-done
		}
		return stop, rw.status, rw.buf.Bytes()
	}
	stop1, c1, _ := open("M1")
	stop2, c2, _ := open("M1")
	if c1 != 200 || c2 != 200 {
		t.Fatalf("first streams: %d %d", c1, c2)
	}
	_, c3, b3 := open("M1")
	if c3 != http.StatusTooManyRequests || errCode(t, b3) != "too_many_streams" {
		t.Fatalf("third stream of one peer: %d %s", c3, b3)
	}
	stop4, c4, _ := open("M2")
	_, c5, b5 := open("M3")
	if c4 != 200 || c5 != http.StatusServiceUnavailable || errCode(t, b5) != "server_busy" {
		t.Fatalf("over the total: %d, %d %s", c4, c5, b5)
	}
	stop1()
	stop6, c6, _ := open("M3")
	if c6 != 200 {
		t.Fatalf("after a stream ended: %d", c6)
	}
	for _, stop := range []func(){stop2, stop4, stop6} {
		stop()
	}
	if n := r.cfg.Refusals.Total("too_many_streams") + r.cfg.Refusals.Total("server_busy"); n != 2 {
		t.Fatalf("%d refusals counted, want 2", n)
	}
}

// countingReader counts the bytes read from it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// endless is an endless stream of bytes.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 0x01
	}
	return len(p), nil
}

// TestPush_BoundedBody (item 8): a push declaring a body over the limit is
// refused before it is read; one that sends more than the limit is cut off
// after about the limit; a frame over the frame limit is refused at its
// length prefix; a valid push is applied in batches.
func TestPush_BoundedBody(t *testing.T) {
	st := newFakeStore()
	r := testReplicator(t, selfID, st, nil, func(c *Config) {
		c.MaxPushBytes = 1 << 20
		c.BatchSize = 2
		c.Refusals = peer.NewRefusals()
	})
	push := func(body io.Reader, length int64) (int, []byte) {
		req := httptest.NewRequest(http.MethodPost, ChangesPath+"?through=9&incarnation=p1", body)
		req.ContentLength = length
		req = req.WithContext(peer.NewContext(context.Background(), peer1))
		rw := httptest.NewRecorder()
		r.receivePush(rw, req)
		return rw.Code, rw.Body.Bytes()
	}
	declared := &countingReader{r: endless{}}
	if code, body := push(declared, 200<<20); code != http.StatusRequestEntityTooLarge || errCode(t, body) != "push_too_large" || declared.n != 0 {
		t.Fatalf("declared 200 MiB: %d %s after reading %d bytes", code, body, declared.n)
	}
	// Valid frames, endlessly: cut at the byte limit.
	var frames bytes.Buffer
	w := wire.NewWriter(&frames)
	for i := int64(1); i <= 9; i++ {
		if err := w.Write(wire.GroupFrame(group(i, "k"))); err != nil {
			t.Fatal(err)
		}
	}
	frame := frames.Bytes()
	undeclared := &countingReader{r: io.MultiReader(bytes.NewReader(frame), endless{})}
	if code, _ := push(undeclared, -1); code/100 != 4 || undeclared.n > 2<<20 {
		t.Fatalf("endless body: %d after reading %d bytes", code, undeclared.n)
	}
	// A length prefix over the frame limit is refused without reading on.
	var huge bytes.Buffer
	_ = binary.Write(&huge, binary.BigEndian, uint32(1<<31))
	prefixed := &countingReader{r: io.MultiReader(&huge, endless{})}
	if code, body := push(prefixed, -1); code != http.StatusRequestEntityTooLarge || prefixed.n > 256<<10 {
		t.Fatalf("2 GiB frame: %d %s after reading %d bytes", code, body, prefixed.n)
	}
	before := len(st.applied())
	code, body := push(bytes.NewReader(frame), int64(len(frame)))
	if code != http.StatusOK || !strings.Contains(string(body), `"applied_through":9`) {
		t.Fatalf("valid push: %d %s", code, body)
	}
	calls := st.applied()[before:]
	if len(calls) < 4 || calls[len(calls)-1].through != 9 {
		t.Fatalf("%d applies for 9 groups in batches of 2", len(calls))
	}
	if c, _, _ := st.Cursor(context.Background(), "PEER1", store.CursorRecv); c != 9 {
		t.Fatalf("recv cursor %d, want 9", c)
	}
}
