package relay

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Close codes the relay uses besides the standard ones.
const (
	// CloseSlowConsumer: the client did not read fast enough; nothing is
	// lost, reconnect with since=<last hlc>.
	CloseSlowConsumer websocket.StatusCode = 4008
	// CloseShutdown: the node is shutting down; reconnect (elsewhere).
	CloseShutdown websocket.StatusCode = 4001
)

const (
	pingEvery    = 30 * time.Second
	writeTimeout = 10 * time.Second
)

func isWebSocket(req *http.Request) bool {
	return strings.EqualFold(req.Header.Get("Upgrade"), "websocket")
}

// clientFrame is any frame a client sends over the WebSocket.
type clientFrame struct {
	Type string          `json:"type"` // send | ack | read | join | leave
	To   string          `json:"to,omitempty"`
	Room string          `json:"room,omitempty"`
	ID   string          `json:"id,omitempty"` // send: client message id; ack/read: msg_id
	Body json.RawMessage `json:"body,omitempty"`
}

// The hijacked connection's buffers: net/http's are 4 KiB each; a chat
// frame is a few hundred bytes, and a larger one (up to the message limit)
// is read and written past the buffer.
const (
	wsReadBuffer  = 1 << 10
	wsWriteBuffer = 1 << 10
)

// smallBuffers hands coder/websocket the hijacked connection with buffers
// of wsReadBuffer and wsWriteBuffer bytes instead of net/http's.
type smallBuffers struct{ http.ResponseWriter }

func (s smallBuffers) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(s.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	// (The 101 answer was flushed before the hijack: brw.Writer is empty.)
	var rd io.Reader = nc
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		rd = io.MultiReader(bytes.NewReader(bytes.Clone(b)), nc)
	}
	return nc, bufio.NewReadWriter(bufio.NewReaderSize(rd, wsReadBuffer), bufio.NewWriterSize(nc, wsWriteBuffer)), nil
}

// serveWS accepts a WebSocket connection and returns: the connection then
// lives in one goroutine reading it (wsRead), a writer that runs only while
// frames are queued (wsWrite) and a ping timer, so the HTTP server's
// goroutine, request and buffers of the connection are released.
func (r *Relay) serveWS(w http.ResponseWriter, req *http.Request, user, device string, since int64) {
	ws, err := websocket.Accept(smallBuffers{w}, req, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return // Accept answered the client
	}
	ws.SetReadLimit(int64(r.cfg.MaxMessage) + 4096)
	ctx, cancel := context.WithCancel(r.ctx)
	var once sync.Once
	c := newConn(user, device, r.cfg.SendBuffer, nil)
	c.kill = func(slow bool) {
		once.Do(func() {
			c.closed.Store(true)
			code, reason := CloseShutdown, "the node is shutting down: reconnect"
			if slow {
				code, reason = CloseSlowConsumer, "slow consumer: reconnect with since=<last hlc>; nothing is lost"
			}
			go func() {
				_ = ws.Close(code, reason)
				cancel()
			}()
		})
	}
	c.wake = func() { go r.wsWrite(ctx, cancel, ws, c) }
	if err := r.open(ctx, c); err != nil {
		_ = ws.Close(websocket.StatusTryAgainLater, "presence: "+err.Error())
		cancel()
		return
	}
	hello, _ := json.Marshal(map[string]any{"type": "hello", "user": user, "device": device, "node": r.cfg.Self, "max_message": r.cfg.MaxMessage})
	var uncounted Stats
	c.push(hello, &uncounted)
	var ping atomic.Pointer[time.Timer]
	ping.Store(time.AfterFunc(pingEvery, func() {
		pctx, pcancel := context.WithTimeout(ctx, writeTimeout)
		err := ws.Ping(pctx)
		pcancel()
		if err != nil {
			cancel()
			return
		}
		if t := ping.Load(); t != nil && ctx.Err() == nil {
			t.Reset(pingEvery)
		}
	}))
	go func() {
		if err := r.replay(ctx, c, since); err != nil && ctx.Err() == nil {
			r.log.Warn("relay: replay", "user", user, "err", err)
			cancel()
		}
	}()
	go r.wsRead(ctx, cancel, ws, c, &ping)
}

// wsRead reads the client's frames until the connection ends, then
// unregisters it.
func (r *Relay) wsRead(ctx context.Context, cancel context.CancelFunc, ws *websocket.Conn, c *conn, ping *atomic.Pointer[time.Timer]) {
	defer func() {
		cancel()
		if t := ping.Load(); t != nil {
			t.Stop()
		}
		_ = ws.Close(websocket.StatusGoingAway, "")
		r.closeConn(c)
	}()
	in := &inbox{}
	for {
		typ, data, err := ws.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) == websocket.StatusMessageTooBig || errors.Is(err, websocket.ErrMessageTooBig) {
				r.Stats.BadFrames.Add(1)
			}
			return
		}
		if typ != websocket.MessageText {
			r.Stats.BadFrames.Add(1)
			_ = ws.Close(websocket.StatusUnsupportedData, "frames are JSON text")
			return
		}
		start, err := in.put(ctx, data)
		if err != nil {
			return
		}
		if start {
			go r.wsHandle(ctx, c, in)
		}
	}
}

// maxInbox and maxInboxBytes bound the frames read ahead of their
// handling; beyond them the reader waits (and TCP holds the client back).
const (
	maxInbox      = 256
	maxInboxBytes = 256 << 10
)

// inbox holds the frames read from a connection until its handler takes
// them: the reader does not wait for a send's commit before it reads the
// next frame, and the sends that queued up meanwhile are committed
// together (SendBatch), in order.
type inbox struct {
	mu    sync.Mutex
	q     [][]byte
	n     int           // bytes in q
	busy  bool          // a handler (wsHandle) runs
	space chan struct{} // closed when the handler takes the frames
}

// put queues a frame, waiting while the inbox is full, and reports whether
// a handler must start.
func (b *inbox) put(ctx context.Context, data []byte) (bool, error) {
	for {
		b.mu.Lock()
		if len(b.q) == 0 || len(b.q) < maxInbox && b.n+len(data) <= maxInboxBytes {
			b.q = append(b.q, data)
			b.n += len(data)
			start := !b.busy
			b.busy = true
			b.mu.Unlock()
			return start, nil
		}
		if b.space == nil {
			b.space = make(chan struct{})
		}
		space := b.space
		b.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}

// take returns the queued frames, or nil (and ends the handler's turn).
func (b *inbox) take() [][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.q
	b.q, b.n = nil, 0
	if len(q) == 0 {
		b.busy = false
	}
	if b.space != nil {
		close(b.space)
		b.space = nil
	}
	return q
}

// wsHandle handles the frames queued on a connection, in order, while
// there are any.
func (r *Relay) wsHandle(ctx context.Context, c *conn, in *inbox) {
	for {
		frames := in.take()
		if frames == nil {
			return
		}
		r.handleFrames(ctx, c, frames)
	}
}

// handleFrames acts on client frames in order; consecutive sends are made
// durable in one transaction.
func (r *Relay) handleFrames(ctx context.Context, c *conn, frames [][]byte) {
	var sends []SendRequest
	flush := func() {
		if len(sends) == 0 {
			return
		}
		sent, errs := r.SendBatch(ctx, c.user, sends)
		for i := range sends {
			if errs[i] != nil {
				r.failFrame(c, sends[i].ID, errs[i])
				continue
			}
			r.replyFrame(c, struct {
				Type string `json:"type"`
				*Sent
			}{"sent", sent[i]})
		}
		sends = sends[:0]
	}
	for _, data := range frames {
		var f clientFrame
		if err := json.Unmarshal(data, &f); err == nil && f.Type == "send" {
			sends = append(sends, SendRequest{To: f.To, Room: f.Room, ID: f.ID, Body: f.Body})
			continue
		}
		flush()
		r.handleFrame(ctx, c, data)
	}
	flush()
}

func (r *Relay) replyFrame(c *conn, v any) {
	b, _ := json.Marshal(v)
	c.push(b, &r.Stats)
}

func (r *Relay) failFrame(c *conn, id string, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: err.Error()}
	}
	r.replyFrame(c, map[string]any{"type": "error", "id": id, "code": e.Code, "message": e.Message, "status": e.Status})
}

// wsWrite drains the connection's queue to the socket and ends when it is
// empty (the next frame starts it again).
func (r *Relay) wsWrite(ctx context.Context, cancel context.CancelFunc, ws *websocket.Conn, c *conn) {
	for {
		f, ok := c.next()
		if !ok {
			return
		}
		wctx, wcancel := context.WithTimeout(ctx, writeTimeout)
		err := ws.Write(wctx, websocket.MessageText, f.b)
		wcancel()
		if err != nil {
			// The connection is closing: no writer starts again.
			c.closed.Store(true)
			cancel()
			return
		}
		if f.id != "" {
			r.trace(StageWritten, f.id)
		}
	}
}

// handleFrame acts on one client frame.
func (r *Relay) handleFrame(ctx context.Context, c *conn, data []byte) {
	reply := func(v any) { r.replyFrame(c, v) }
	fail := func(id string, err error) { r.failFrame(c, id, err) }
	var f clientFrame
	if err := json.Unmarshal(data, &f); err != nil {
		r.Stats.BadFrames.Add(1)
		fail("", errorf(http.StatusBadRequest, "bad_frame", "a frame is a JSON object with a \"type\": %v", err))
		return
	}
	switch f.Type {
	case "send":
		sent, err := r.Send(ctx, c.user, SendRequest{To: f.To, Room: f.Room, ID: f.ID, Body: f.Body})
		if err != nil {
			fail(f.ID, err)
			return
		}
		reply(struct {
			Type string `json:"type"`
			*Sent
		}{"sent", sent})
	case "ack", "read":
		kind := "delivered"
		if f.Type == "read" {
			kind = "read"
		}
		if err := checkName("id", f.ID); err != nil {
			fail(f.ID, err)
			return
		}
		if err := r.receipt(ctx, c, f.ID, kind); err != nil {
			fail(f.ID, err)
		}
	case "join", "leave":
		if err := r.join(ctx, c.user, f.Room, f.Type == "leave"); err != nil {
			fail("", err)
			return
		}
		reply(map[string]any{"type": f.Type + "ed", "room": f.Room})
	default:
		r.Stats.BadFrames.Add(1)
		fail(f.ID, errorf(http.StatusBadRequest, "bad_frame", "unknown frame type %q: want send, ack, read, join or leave", f.Type))
	}
}
