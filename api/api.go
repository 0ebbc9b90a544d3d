// Package api serves a node's app-facing JSON HTTP API: /v1/exec, /v1/query,
// /v1/ids and /healthz. See docs/API.md for the wire format.
package api

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/store"
)

// DefaultMaxBody is the default limit on a request body (413 above it).
const DefaultMaxBody = 8 << 20

// MaxIDs is the most IDs one /v1/ids request may ask for.
const MaxIDs = 1000

// Config configures a Server.
type Config struct {
	Token   string // bearer token required on /v1/*; empty = no auth
	MaxBody int64  // request body limit in bytes; 0 = DefaultMaxBody
	Logger  *slog.Logger
	// OnRequest, if set, is called after every /v1/exec and /v1/query with
	// the route, the HTTP status and the time taken (metrics).
	OnRequest func(route string, status int, d time.Duration)
	// Draining, if set and true, refuses new writes with 503 (the node is
	// shutting down).
	Draining func() bool
	// Holders, if set, lists the peers known to hold origin's log through
	// seq (wait_for on /v1/exec).
	Holders func(origin string, seq int64) []Holder
	// Idempotency bounds what is kept for Idempotency-Key (idempotency.go).
	Idempotency IdempotencyConfig
}

// Server is the HTTP handler of the app API.
type Server struct {
	store *store.Store
	cfg   Config
	log   *slog.Logger
	mux   *http.ServeMux
	idem  *idempotency
}

// New returns the API handler for st.
func New(st *store.Store, cfg Config) *Server {
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{store: st, cfg: cfg, log: cfg.Logger, mux: http.NewServeMux(), idem: newIdempotency(cfg.Idempotency)}
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("POST /v1/exec", s.auth(s.observe("exec", s.exec)))
	s.mux.HandleFunc("POST /v1/query", s.auth(s.observe("query", s.query)))
	s.mux.HandleFunc("GET /v1/ids", s.auth(s.ids))
	s.mux.HandleFunc("GET /v1/backup", s.auth(s.backup))
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no route %s %s; see docs/API.md", r.Method, r.URL.Path), -1)
	})
	return s
}

// Handle adds a route (used by the node for /metrics, /v1/status and others).
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// HandleAuth adds a route behind the API's bearer token.
func (s *Server) HandleAuth(pattern string, h http.HandlerFunc) { s.mux.HandleFunc(pattern, s.auth(h)) }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("api: panic", "path", r.URL.Path, "panic", fmt.Sprint(p))
			writeError(w, http.StatusInternalServerError, store.CodeInternal, "internal error", -1)
		}
	}()
	// Method mismatches on the API's paths get a JSON 405. The mux cannot
	// report them: its catch-all "/" route matches every method and path, so
	// without this check they would get the catch-all's 404.
	if allowed := allowedMethod(r.URL.Path); allowed != "" && r.Method != allowed &&
		(allowed != http.MethodGet || r.Method != http.MethodHead) {
		if allowed == http.MethodGet {
			w.Header().Set("Allow", "GET, HEAD")
		} else {
			w.Header().Set("Allow", allowed)
		}
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", fmt.Sprintf("%s takes %s, not %s", r.URL.Path, allowed, r.Method), -1)
		return
	}
	s.mux.ServeHTTP(w, r)
}

func allowedMethod(path string) string {
	switch path {
	case "/v1/exec", "/v1/query", "/v1/limit", "/v1/limit/block", "/v1/purge":
		return http.MethodPost
	case "/v1/ids", "/v1/backup", "/healthz", "/readyz", "/v1/status", "/metrics", "/v1/fleet", "/ui", "/v1/changes":
		return http.MethodGet
	}
	return ""
}

func (s *Server) auth(next http.HandlerFunc) http.HandlerFunc {
	if s.cfg.Token == "" {
		return next
	}
	want := []byte(s.cfg.Token)
	return func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		scheme, tok, _ := strings.Cut(h, " ")
		got := []byte(h)
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="outpost"`)
			msg := "missing bearer token: send Authorization: Bearer <OUTPOST_API_TOKEN>"
			if len(got) > 0 {
				msg = "wrong bearer token"
			}
			writeError(w, http.StatusUnauthorized, "unauthorized", msg, -1)
			return
		}
		next(w, r)
	}
}

// statusWriter remembers the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// observe reports each request to Config.OnRequest.
func (s *Server) observe(route string, h http.HandlerFunc) http.HandlerFunc {
	if s.cfg.OnRequest == nil {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		t := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h(sw, r)
		s.cfg.OnRequest(route, sw.status, time.Since(t))
	}
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, []byte(`{"status":"ok"}`))
}

type execRequest struct {
	Statements []stmtJSON   `json:"statements"`
	WaitFor    *waitForJSON `json:"wait_for"`
}

type stmtJSON struct {
	SQL  *string `json:"sql"`
	Args []any   `json:"args"`
}

func (s *Server) exec(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Draining != nil && s.cfg.Draining() {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "draining", "this node is shutting down and takes no new writes; retry on another node or in a few seconds", -1)
		return
	}
	key, hasKey := "", false
	if vs := r.Header.Values(IdempotencyHeader); len(vs) > 0 {
		if key, hasKey = vs[0], true; len(vs) > 1 || !validIdempotencyKey(key) {
			writeError(w, http.StatusBadRequest, "bad_idempotency_key", fmt.Sprintf("%s must be one header of 1 to %d printable ASCII characters", IdempotencyHeader, MaxIdempotencyKey), -1)
			return
		}
	}
	var req execRequest
	if !s.decode(w, r, &req, execShape) {
		return
	}
	if req.Statements == nil {
		writeError(w, http.StatusBadRequest, store.CodeBadRequest, `missing "statements": send {"statements":[{"sql":"...","args":[...]}]}`, -1)
		return
	}
	stmts := make([]store.Statement, len(req.Statements))
	for i, st := range req.Statements {
		conv, ok := convertStmt(w, st, i)
		if !ok {
			return
		}
		stmts[i] = conv
	}
	if hasKey {
		s.execIdempotent(w, r, key, stmts)
		return
	}
	if req.WaitFor != nil {
		if _, err := waitTimeout(req.WaitFor.TimeoutMS); err != nil {
			writeError(w, http.StatusBadRequest, store.CodeBadRequest, "wait_for: "+err.Error(), -1)
			return
		}
	}
	results, dbv, err := s.store.Exec(r.Context(), stmts)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	body := s.withPosition(execBody(results, dbv), dbv)
	if req.WaitFor != nil {
		wf, err := s.awaitHolders(r.Context(), dbv, req.WaitFor)
		if err != nil {
			writeError(w, http.StatusBadRequest, store.CodeBadRequest, "wait_for: "+err.Error()+" (the write itself was applied at db_version "+strconv.FormatInt(dbv, 10)+")", -1)
			return
		}
		body = append(append(append(body[:len(body)-1], `,"wait_for":`...), wf...), '}')
	}
	writeJSON(w, http.StatusOK, body)
}

type queryRequest struct {
	SQL        *string          `json:"sql"`
	Args       []any            `json:"args"`
	MinVersion map[string]int64 `json:"min_version"`
	TimeoutMS  *int64           `json:"timeout_ms"`
}

func (s *Server) query(w http.ResponseWriter, r *http.Request) {
	var req queryRequest
	if !s.decode(w, r, &req, queryShape) {
		return
	}
	st, ok := convertStmt(w, stmtJSON{SQL: req.SQL, Args: req.Args}, -1)
	if !ok {
		return
	}
	if !s.awaitMinVersion(w, r, req.MinVersion, req.TimeoutMS) {
		return
	}
	rows, err := s.store.Query(r.Context(), st)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	b := make([]byte, 0, 256)
	b = append(b, '{')
	b = appendRows(b, rows.Columns, rows.Rows)
	b = append(b, '}')
	writeJSON(w, http.StatusOK, b)
}

func (s *Server) ids(w http.ResponseWriter, r *http.Request) {
	n := 1
	if v := r.URL.Query().Get("n"); v != "" {
		k, err := strconv.Atoi(v)
		if err != nil || k < 1 || k > MaxIDs {
			writeError(w, http.StatusBadRequest, store.CodeBadRequest, fmt.Sprintf("n must be an integer from 1 to %d", MaxIDs), -1)
			return
		}
		n = k
	}
	b := []byte(`{"ids":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendString(b, s.store.ID())
	}
	b = append(b, "]}"...)
	writeJSON(w, http.StatusOK, b)
}

func appendRows(b []byte, cols []string, rows [][]any) []byte {
	b = append(b, `"columns":[`...)
	for i, c := range cols {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendString(b, c)
	}
	b = append(b, `],"rows":[`...)
	for i, row := range rows {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		for k, v := range row {
			if k > 0 {
				b = append(b, ',')
			}
			b = AppendValue(b, v)
		}
		b = append(b, ']')
	}
	return append(b, ']')
}

func convertStmt(w http.ResponseWriter, st stmtJSON, i int) (store.Statement, bool) {
	if st.SQL == nil {
		writeError(w, http.StatusBadRequest, store.CodeBadRequest, `missing "sql"`, i)
		return store.Statement{}, false
	}
	args := make([]any, len(st.Args))
	for k, a := range st.Args {
		v, err := decodeArg(a)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_arg", fmt.Sprintf("arg %d: %v", k, err), i)
			return store.Statement{}, false
		}
		args[k] = v
	}
	return store.Statement{SQL: *st.SQL, Args: args}, true
}

// decode reads a JSON body strictly: size-limited, no unknown fields, exactly
// one value, and (see checkMembers) no member given twice or in the wrong case.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, dst any, sh shape) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("request body is over the %d-byte limit (--max-body); split the work into several requests", s.cfg.MaxBody), -1)
			return false
		}
		writeError(w, http.StatusBadRequest, "bad_body", "reading the request body: "+err.Error(), -1)
		return false
	}
	if fastDecode(body, dst) { // the common forms, in one pass (fastjson.go)
		return true
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(dst); err != nil {
		code, msg := "invalid_json", "the body is not valid JSON: "+err.Error()
		if strings.HasPrefix(err.Error(), "json: unknown field") {
			code, msg = "unknown_field", strings.TrimPrefix(err.Error(), "json: ")+"; see docs/API.md for the request format"
		} else if errors.Is(err, io.EOF) {
			msg = "the body is empty; send a JSON object"
		} else if te := (*json.UnmarshalTypeError)(nil); errors.As(err, &te) {
			if te.Field == "" {
				msg = "the body must be a JSON object, not JSON " + te.Value
			} else {
				// Well-formed JSON of the wrong shape, like a missing "sql".
				code = store.CodeBadRequest
				msg = fmt.Sprintf("field %q: expected %s, not JSON %s; see docs/API.md for the request format", te.Field, jsonKind(te.Type), te.Value)
			}
		}
		writeError(w, http.StatusBadRequest, code, msg, -1)
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		writeError(w, http.StatusBadRequest, "invalid_json", "the body holds more than one JSON value", -1)
		return false
	}
	if code, msg := checkMembers(body, sh); code != "" {
		writeError(w, http.StatusBadRequest, code, msg, -1)
		return false
	}
	return true
}

// jsonKind names the JSON form of a Go type decoded into.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Pointer:
		return jsonKind(t.Elem())
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Bool:
		return "true or false"
	case reflect.Interface:
		return "a value"
	}
	return "a number"
}

// shape lists the member names of a request object and, for a member that
// is an array of objects, those objects' member names.
type shape struct {
	names []string
	elems map[string][]string
}

var (
	execShape  = shape{names: []string{"statements", "wait_for"}, elems: map[string][]string{"statements": {"sql", "args"}}}
	queryShape = shape{names: []string{"sql", "args", "min_version", "timeout_ms"}}
)

// checkMembers refuses what encoding/json silently accepts in the request's
// own objects (it does not look inside args): a member given twice, where
// the last one would win, and a member name in the wrong case, which
// encoding/json matches case-insensitively ({"SQL":...}). body has already
// been decoded, so it is one well-formed value of the right shape. It
// returns an error code and message, or "" if body is fine.
func checkMembers(body []byte, sh shape) (code, msg string) {
	dec := json.NewDecoder(bytes.NewReader(body))
	return checkObject(dec, sh.names, sh.elems)
}

func checkObject(dec *json.Decoder, names []string, elems map[string][]string) (code, msg string) {
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return "", "" // null
	}
	seen := make(map[string]bool, len(names))
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return "", ""
		}
		k, _ := t.(string)
		if !slices.Contains(names, k) {
			want := ""
			for _, n := range names {
				if strings.EqualFold(n, k) {
					want = n
				}
			}
			return "unknown_field", fmt.Sprintf("unknown field %q (member names are case-sensitive: %q); see docs/API.md for the request format", k, want)
		}
		if seen[k] {
			return "invalid_json", fmt.Sprintf("member %q appears twice in one object", k)
		}
		seen[k] = true
		if sub, ok := elems[k]; ok {
			if t, err := dec.Token(); err != nil || t != json.Delim('[') {
				continue // null
			}
			for dec.More() {
				if code, msg := checkObject(dec, sub, nil); code != "" {
					return code, msg
				}
			}
			if _, err := dec.Token(); err != nil {
				return "", ""
			}
			continue
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return "", ""
		}
	}
	_, _ = dec.Token() // '}'
	return "", ""
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var e *store.Error
	if !errors.As(err, &e) {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			writeError(w, http.StatusServiceUnavailable, store.CodeUnavailable, "request canceled", -1)
			return
		}
		s.log.Error("api: unexpected error", "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, store.CodeInternal, err.Error(), -1)
		return
	}
	if e.Code == store.CodeSQL && strings.Contains(e.Message, "may not be modified") {
		// SQLite refuses a write to its schema table (DELETE FROM
		// sqlite_master) before the authorizer is asked: a refusal, not an
		// SQL error.
		e = &store.Error{Code: store.CodeNotAllowed, Statement: e.Statement, Message: store.DDLNotAllowed + " (" + e.Message + ")", Err: e}
	}
	status := http.StatusBadRequest
	switch e.Code {
	case store.CodeConstraint:
		status = http.StatusConflict
	case store.CodeNotAllowed:
		status = http.StatusForbidden
	case store.CodeNotReady, store.CodeUnavailable, store.CodeTransactionAborted:
		status = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "1")
	case store.CodeStoreFailed:
		status = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "5")
	case store.CodeStatementTimeout:
		status = http.StatusRequestTimeout
	case store.CodeInternal:
		status = http.StatusInternalServerError
	}
	if !e.Client() {
		s.log.Warn("api: request failed", "path", r.URL.Path, "code", e.Code, "err", e.Message)
	}
	writeError(w, status, e.Code, e.Message, e.Statement)
}

func writeError(w http.ResponseWriter, status int, code, msg string, stmt int) {
	b := []byte(`{"error":{"code":`)
	b = AppendString(b, code)
	b = append(b, `,"message":`...)
	b = AppendString(b, msg)
	if stmt >= 0 {
		b = append(b, `,"statement":`...)
		b = strconv.AppendInt(b, int64(stmt), 10)
	}
	b = append(b, "}}"...)
	writeJSON(w, status, b)
}

func writeJSON(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
