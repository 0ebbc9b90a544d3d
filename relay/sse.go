package relay

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"
)

const sseHeartbeat = 15 * time.Second

// serveSSE is the Server-Sent Events fallback of /v1/relay/connect: the
// same frames as "data:" events (event id = the message's hlc); sends go
// through POST /v1/relay/send. A message written to the stream counts as
// delivered (there is no ack frame on SSE).
func (r *Relay) serveSSE(w http.ResponseWriter, req *http.Request, user, device string, since int64) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "no_streaming", "this listener cannot stream")
		return
	}
	if since == 0 {
		if id := req.Header.Get("Last-Event-ID"); id != "" {
			since, _ = strconv.ParseInt(id, 10, 64)
		}
	}
	ctx, cancel := context.WithCancel(req.Context())
	defer cancel()
	stop := context.AfterFunc(r.ctx, cancel)
	defer stop()
	var once sync.Once
	c := newConn(user, device, r.cfg.SendBuffer, func(bool) { once.Do(cancel) })
	ready := make(chan struct{}, 1)
	c.wake = func() {
		select {
		case ready <- struct{}{}:
		default:
		}
	}
	if err := r.open(ctx, c); err != nil {
		writeErr(w, err)
		return
	}
	defer r.closeConn(c)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	hello, _ := json.Marshal(map[string]any{"type": "hello", "user": user, "device": device, "node": r.cfg.Self, "max_message": r.cfg.MaxMessage})
	var uncounted Stats
	c.push(hello, &uncounted)
	go func() {
		if err := r.replay(ctx, c, since); err != nil && ctx.Err() == nil {
			cancel()
		}
	}()
	beat := time.NewTicker(sseHeartbeat)
	defer beat.Stop()
	_, _ = w.Write([]byte("retry: 1000\n\n"))
	fl.Flush()
	for {
		select {
		case <-ready:
		case <-beat.C:
			if _, err := w.Write([]byte(": beat\n\n")); err != nil {
				return
			}
			fl.Flush()
			continue
		case <-ctx.Done():
			return
		}
		for {
			of, ok := c.next()
			if !ok {
				break
			}
			f := of.b
			var head struct {
				Type string `json:"type"`
				ID   string `json:"id"`
				HLC  int64  `json:"hlc"`
			}
			_ = json.Unmarshal(f, &head)
			var b []byte
			if head.Type == "msg" {
				b = append(b, "id: "...)
				b = strconv.AppendInt(b, head.HLC, 10)
				b = append(b, '\n')
			}
			b = append(append(append(b, "data: "...), f...), "\n\n"...)
			if _, err := w.Write(b); err != nil {
				return
			}
			fl.Flush()
			if head.Type == "msg" {
				r.trace(StageWritten, head.ID)
				if err := r.receipt(ctx, c, head.ID, "delivered"); err != nil && ctx.Err() == nil {
					r.log.Warn("relay: receipt", "err", err)
				}
			}
		}
	}
}
