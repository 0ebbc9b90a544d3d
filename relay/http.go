package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Handler returns the relay's client routes, for the API listener or the
// public one: GET /v1/relay/connect, POST /v1/relay/send,
// POST /v1/relay/rooms and the demo page GET /chat/. POST /v1/relay/tokens
// (ServeTokens) belongs behind the API's bearer token.
func (r *Relay) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/relay/connect", r.serveConnect)
	mux.HandleFunc("POST /v1/relay/send", r.serveSend)
	mux.HandleFunc("POST /v1/relay/rooms", r.serveRooms)
	mux.Handle("GET /chat/", chatHandler())
	return mux
}

// Send makes a message from the user from durable and forwards it to the
// recipient's nodes; it returns once the message is durable here.
func (r *Relay) Send(ctx context.Context, from string, in SendRequest) (*Sent, error) {
	sent, errs := r.SendBatch(ctx, from, []SendRequest{in})
	return sent[0], errs[0]
}

// SendBatch is Send for several messages of one sender, in their order,
// made durable in one transaction; each gets its answer or its error.
func (r *Relay) SendBatch(ctx context.Context, from string, ins []SendRequest) ([]*Sent, []error) {
	sent, errs := make([]*Sent, len(ins)), make([]error, len(ins))
	var ok []*SendRequest
	var at []int
	for i := range ins {
		in := &ins[i]
		if err := r.checkSend(in); err != nil {
			errs[i] = err
			continue
		}
		if r.tracer.Load() != nil {
			r.trace(StageRecv, MessageID(from, in.ID))
		}
		ok, at = append(ok, in), append(at, i)
	}
	if len(ok) == 0 {
		return sent, errs
	}
	ms, dups, merrs, err := r.storeBatch(ctx, from, ok)
	for k, i := range at {
		if err != nil {
			errs[i] = err
			continue
		}
		if merrs[k] != nil {
			errs[i] = merrs[k]
			continue
		}
		m, dup := ms[k], dups[k]
		r.trace(StageDurable, m.ID)
		if dup {
			r.Stats.Duplicates.Add(1)
		} else {
			r.Stats.MessagesIn.Add(1)
		}
		nodes := r.dispatch(ctx, m)
		r.trace(StageDispatched, m.ID)
		if nodes == nil {
			nodes = []string{}
		}
		sent[i] = &Sent{ID: m.CID, MsgID: m.ID, HLC: m.HLC, Duplicate: dup, Online: nodes}
	}
	return sent, errs
}

// readBody reads a JSON body of at most limit bytes into dst, strictly.
func readBody(w http.ResponseWriter, req *http.Request, limit int64, dst any) error {
	b, err := io.ReadAll(http.MaxBytesReader(w, req.Body, limit))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return errorf(http.StatusRequestEntityTooLarge, "message_too_large", "the request body is over %d bytes", limit)
		}
		return errorf(http.StatusBadRequest, "bad_request", "read body: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return errorf(http.StatusBadRequest, "bad_json", "the body is not the expected JSON object: %v", err)
	}
	return nil
}

func (r *Relay) serveSend(w http.ResponseWriter, req *http.Request) {
	user, err := r.authenticate(req)
	if err != nil {
		writeErr(w, err)
		return
	}
	var in SendRequest
	if err := readBody(w, req, int64(r.cfg.MaxMessage)+4096, &in); err != nil {
		writeErr(w, err)
		return
	}
	sent, err := r.Send(req.Context(), user, in)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, sent)
}

// serveRooms joins (or leaves) a room for the token's user:
// {"room":"r","leave":false}.
func (r *Relay) serveRooms(w http.ResponseWriter, req *http.Request) {
	user, err := r.authenticate(req)
	if err != nil {
		writeErr(w, err)
		return
	}
	var in struct {
		Room  string `json:"room"`
		Leave bool   `json:"leave"`
	}
	if err := readBody(w, req, 4096, &in); err != nil {
		writeErr(w, err)
		return
	}
	if err := r.join(req.Context(), user, in.Room, in.Leave); err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"room": in.Room, "user": user, "member": !in.Leave})
}

// ServeTokens is POST /v1/relay/tokens: {"user":"alice","ttl_s":3600} ->
// {"token":...,"expires":...}. Mount it behind the API's bearer token: an
// app's backend asks for its users' tokens.
func (r *Relay) ServeTokens(w http.ResponseWriter, req *http.Request) {
	var in struct {
		User string `json:"user"`
		TTL  int64  `json:"ttl_s"`
	}
	if err := readBody(w, req, 4096, &in); err != nil {
		writeErr(w, err)
		return
	}
	if in.TTL < 0 {
		writeError(w, http.StatusBadRequest, "bad_ttl", "ttl_s is negative")
		return
	}
	tok, exp, err := r.IssueToken(in.User, time.Duration(in.TTL)*time.Second)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"token": tok, "user": in.User, "expires": exp.UTC().Format(time.RFC3339), "issuer": r.cfg.Self})
}

// connectParams are the query parameters of /v1/relay/connect.
func connectParams(req *http.Request) (device string, since int64, err error) {
	q := req.URL.Query()
	device = q.Get("device")
	if device == "" {
		device = "default"
	}
	if err := checkName("device", device); err != nil {
		return "", 0, err
	}
	if s := q.Get("since"); s != "" {
		since, err = strconv.ParseInt(s, 10, 64)
		if err != nil || since < 0 {
			return "", 0, errorf(http.StatusBadRequest, "bad_since", "since is the hlc of the last message received (a non-negative integer), got %q", s)
		}
	}
	return device, since, nil
}

// serveConnect opens a client connection: WebSocket, or Server-Sent Events
// when the request is not a WebSocket upgrade (Accept: text/event-stream).
func (r *Relay) serveConnect(w http.ResponseWriter, req *http.Request) {
	user, err := r.authenticate(req)
	if err != nil {
		writeErr(w, err)
		return
	}
	device, since, err := connectParams(req)
	if err != nil {
		writeErr(w, err)
		return
	}
	if r.hub.count() >= r.cfg.MaxConns {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "too_many_connections", "this node holds its maximum of client connections (--relay-max-conns); try another edge or later")
		return
	}
	// The API listener's timeouts are for request/response: a stream has
	// none (the WebSocket pings and the SSE heartbeats keep it honest).
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	if isWebSocket(req) {
		r.serveWS(w, req, user, device, since)
		return
	}
	r.serveSSE(w, req, user, device, since)
}

// open registers a connection: presence first (so senders find it), then
// the hub, then the replay of what it missed.
func (r *Relay) open(ctx context.Context, c *conn) error {
	if r.hub.add(c) {
		if err := r.setPresence(ctx, []string{c.user}, true); err != nil {
			r.hub.remove(c)
			return err
		}
	}
	return nil
}

// closeConn unregisters a connection; the user's last one here withdraws
// this node's presence.
func (r *Relay) closeConn(c *conn) {
	c.closed.Store(true)
	if r.hub.remove(c) && r.ctx.Err() == nil && !r.hub.has(c.user) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.setPresence(ctx, []string{c.user}, false); err != nil {
			r.log.Warn("relay: withdraw presence", "user", c.user, "err", err)
		}
		// A connection of the user that opened meanwhile may have been
		// marked before this withdrawal committed: mark it again.
		if r.hub.has(c.user) {
			if err := r.setPresence(ctx, []string{c.user}, true); err != nil {
				r.log.Warn("relay: presence", "user", c.user, "err", err)
			}
		}
	}
}
