package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/outpost-edge/outpost/limiter"
)

// Limiter is the global rate limiter served on /v1/limit (limiter.Limiter).
type Limiter interface {
	Decide(ctx context.Context, r limiter.Request) (limiter.Decision, error)
	Block(ctx context.Context, key string, until int64) error
}

var (
	limitShape = shape{names: []string{"key", "limit", "window", "cost"}}
	blockShape = shape{names: []string{"key", "until"}}
)

// HandleLimiter serves POST /v1/limit and POST /v1/limit/block with l,
// behind the API's bearer token. See docs/API.md.
func (s *Server) HandleLimiter(l Limiter) {
	s.mux.HandleFunc("POST /v1/limit", s.auth(s.observe("limit", func(w http.ResponseWriter, r *http.Request) { s.limit(w, r, l) })))
	s.mux.HandleFunc("POST /v1/limit/block", s.auth(func(w http.ResponseWriter, r *http.Request) { s.limitBlock(w, r, l) }))
}

type limitRequest struct {
	Key    string `json:"key"`
	Limit  int64  `json:"limit"`
	Window string `json:"window"`
	Cost   int64  `json:"cost"`
}

func (s *Server) limit(w http.ResponseWriter, r *http.Request, l Limiter) {
	var req limitRequest
	if !s.decode(w, r, &req, limitShape) {
		return
	}
	win, err := time.ParseDuration(req.Window)
	if err != nil {
		writeError(w, http.StatusBadRequest, limiter.CodeBadWindow, `window must be a duration such as "60s", "1m" or "500ms"`, -1)
		return
	}
	d, err := l.Decide(r.Context(), limiter.Request{Key: req.Key, Limit: req.Limit, Window: win, Cost: req.Cost})
	if err != nil {
		s.limitFail(w, r, err)
		return
	}
	b := make([]byte, 0, 128)
	b = append(b, `{"allowed":`...)
	b = strconv.AppendBool(b, d.Allowed)
	b = append(b, `,"remaining":`...)
	b = strconv.AppendInt(b, d.Remaining, 10)
	b = append(b, `,"reset_ms":`...)
	b = strconv.AppendInt(b, d.ResetMS, 10)
	b = append(b, `,"owner":`...)
	b = AppendString(b, d.Owner)
	b = append(b, `,"path":`...)
	b = AppendString(b, d.Path)
	b = append(b, '}')
	writeJSON(w, http.StatusOK, b)
}

type blockRequest struct {
	Key   string `json:"key"`
	Until *int64 `json:"until"`
}

func (s *Server) limitBlock(w http.ResponseWriter, r *http.Request, l Limiter) {
	var req blockRequest
	if !s.decode(w, r, &req, blockShape) {
		return
	}
	if req.Until == nil {
		writeError(w, http.StatusBadRequest, limiter.CodeBadUntil, `missing "until": the Unix time in milliseconds the block ends (0 unblocks)`, -1)
		return
	}
	if err := l.Block(r.Context(), req.Key, *req.Until); err != nil {
		s.limitFail(w, r, err)
		return
	}
	b := append([]byte(`{"key":`), AppendString(nil, req.Key)...)
	b = append(b, `,"until":`...)
	b = strconv.AppendInt(b, *req.Until, 10)
	b = append(b, '}')
	writeJSON(w, http.StatusOK, b)
}

func (s *Server) limitFail(w http.ResponseWriter, r *http.Request, err error) {
	var ie *limiter.InputError
	switch {
	case errors.As(err, &ie):
		writeError(w, http.StatusBadRequest, ie.Code, ie.Message, -1)
	case errors.Is(err, limiter.ErrFull):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "limiter_full", "this node's key table is full of live counters; retry when windows end", -1)
	default:
		s.fail(w, r, err)
	}
}
