package relay

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
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

func (r *Relay) serveWS(w http.ResponseWriter, req *http.Request, user, device string, since int64) {
	ws, err := websocket.Accept(w, req, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return // Accept answered the client
	}
	ws.SetReadLimit(int64(r.cfg.MaxMessage) + 4096)
	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	var once sync.Once
	c := newConn(user, device, r.cfg.SendBuffer, func(slow bool) {
		once.Do(func() {
			code, reason := CloseShutdown, "the node is shutting down: reconnect"
			if slow {
				code, reason = CloseSlowConsumer, "slow consumer: reconnect with since=<last hlc>; nothing is lost"
			}
			go func() {
				_ = ws.Close(code, reason)
				cancel()
			}()
		})
	})
	if err := r.open(ctx, c); err != nil {
		_ = ws.Close(websocket.StatusTryAgainLater, "presence: "+err.Error())
		return
	}
	defer r.closeConn(c)
	hello, _ := json.Marshal(map[string]any{"type": "hello", "user": user, "device": device, "node": r.cfg.Self, "max_message": r.cfg.MaxMessage})
	c.out <- hello
	go r.wsWriter(ctx, cancel, ws, c)
	go func() {
		if err := r.replay(ctx, c, since); err != nil && ctx.Err() == nil {
			r.log.Warn("relay: replay", "user", user, "err", err)
			cancel()
		}
	}()
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
		r.handleFrame(ctx, c, data)
	}
}

// wsWriter drains the connection's queue to the socket and pings it.
func (r *Relay) wsWriter(ctx context.Context, cancel context.CancelFunc, ws *websocket.Conn, c *conn) {
	defer cancel()
	ping := time.NewTicker(pingEvery)
	defer ping.Stop()
	for {
		select {
		case f := <-c.out:
			wctx, wcancel := context.WithTimeout(ctx, writeTimeout)
			err := ws.Write(wctx, websocket.MessageText, f)
			wcancel()
			if err != nil {
				return
			}
		case <-ping.C:
			pctx, pcancel := context.WithTimeout(ctx, writeTimeout)
			err := ws.Ping(pctx)
			pcancel()
			if err != nil {
				return
			}
		case <-ctx.Done():
			_ = ws.Close(websocket.StatusGoingAway, "")
			return
		}
	}
}

// handleFrame acts on one client frame.
func (r *Relay) handleFrame(ctx context.Context, c *conn, data []byte) {
	reply := func(v any) {
		b, _ := json.Marshal(v)
		c.push(b, &r.Stats)
	}
	fail := func(id string, err error) {
		var e *Error
		if !errors.As(err, &e) {
			e = &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: err.Error()}
		}
		reply(map[string]any{"type": "error", "id": id, "code": e.Code, "message": e.Message, "status": e.Status})
	}
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
