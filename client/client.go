// Package client is a Go client for an Outpost node's app API (docs/API.md):
// Exec and Query over JSON, SQLite values kept exact both ways, the bearer
// token, and safe retries.
//
//	c, err := client.Open("http://127.0.0.1:7700", client.Options{Token: os.Getenv("OUTPOST_API_TOKEN")})
//	res, err := c.Exec(ctx, client.Stmt(`INSERT INTO pages (id, title) VALUES (outpost_id(), ?)`, "Hi"))
//	q, err := c.Query(ctx, `SELECT id, title FROM pages WHERE title = ?`, "Hi")
//
// # Values
//
// Arguments may be nil, any integer type (exact over the full 64 bits),
// float32/float64 (sent as REAL even when whole; ±Inf allowed, NaN refused),
// string, []byte (BLOB), bool (1/0), time.Time (RFC 3339 text), or a named
// type or pointer of those. Results hold nil, int64, float64, string and
// []byte, as SQLite typed them.
//
// # Retries
//
// A request that fails with 503 (draining, unavailable, transaction_aborted,
// not_ready, store_failed) or a connection error is retried with jittered
// exponential backoff, up to Options.MaxRetries times, honouring
// Retry-After (capped at MaxBackoff) and the context. Queries are always
// safe to retry. Every Exec carries an Idempotency-Key (a random one per
// call, or the caller's with ExecKey), which the node remembers for 24 h:
// a retry of a write that was applied gets the original answer
// (ExecResult.Replayed) instead of applying it twice. With
// Options.NoIdempotencyKey, a write is retried only when the node said
// nothing was applied (503 draining, unavailable, transaction_aborted,
// not_ready) or the connection could not be made; never after a reset or
// timeout, which may come after the commit.
//
// # Errors
//
// An error the node answered is a *Error with its HTTP status and stable
// code; use errors.As.
package client

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Options configure a Client. The zero value works against a node without
// a token.
type Options struct {
	// Token is the node's OUTPOST_API_TOKEN, sent as a bearer token.
	Token string
	// HTTPClient sends the requests; nil = a client with a 2-minute timeout.
	HTTPClient *http.Client
	// MaxRetries is how often a failed request is retried (see the
	// package doc); 0 = 4, negative = never.
	MaxRetries int
	// MinBackoff and MaxBackoff bound the wait before a retry, which
	// doubles from MinBackoff each time, with jitter; 0 = 100 ms and 5 s.
	MinBackoff, MaxBackoff time.Duration
	// NoIdempotencyKey stops Exec from adding an Idempotency-Key (for
	// nodes older than the header); writes are then retried only when
	// surely not applied.
	NoIdempotencyKey bool
}

// Client talks to one node. It is safe for concurrent use.
type Client struct {
	base *url.URL
	opts Options
	hc   *http.Client
}

// Statement is one SQL statement with its positional arguments.
type Statement struct {
	SQL  string
	Args []any
}

// Stmt returns a Statement.
func Stmt(sql string, args ...any) Statement { return Statement{SQL: sql, Args: args} }

// ExecResult is the answer to Exec.
type ExecResult struct {
	// Results has one entry per statement, in order.
	Results []Result
	// DBVersion is the node's db_version the transaction committed as.
	DBVersion int64
	// Replayed is true when the node had already applied this request
	// (same Idempotency-Key) and answered with the original response.
	Replayed bool
}

// Result is what one statement of an Exec did. Columns and Rows are set for
// a statement that returns rows (RETURNING, SELECT, VALUES).
type Result struct {
	RowsAffected int64
	Columns      []string
	Rows         [][]any
}

// QueryResult is the answer to Query: column names and rows of nil, int64,
// float64, string and []byte values.
type QueryResult struct {
	Columns []string
	Rows    [][]any
}

// Error is an error answered by the node.
type Error struct {
	Status    int    // HTTP status
	Code      string // stable code, docs/API.md "Errors"
	Message   string
	Statement int // index of the statement at fault, or -1
}

func (e *Error) Error() string {
	if e.Statement >= 0 {
		return fmt.Sprintf("outpost: %s (%d) in statement %d: %s", e.Code, e.Status, e.Statement, e.Message)
	}
	return fmt.Sprintf("outpost: %s (%d): %s", e.Code, e.Status, e.Message)
}

// Open returns a client of the node at rawURL ("http://127.0.0.1:7700"; a
// URL without a scheme gets http://). It does no I/O.
func Open(rawURL string, opts Options) (*Client, error) {
	if !strings.Contains(rawURL, "://") {
		rawURL = "http://" + rawURL
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("outpost client: bad URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("outpost client: URL scheme %q: want http or https", u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("outpost client: URL %q has no host", rawURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawQuery, u.Fragment = "", ""
	if opts.MaxRetries == 0 {
		opts.MaxRetries = 4
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Second
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 2 * time.Minute}
	}
	return &Client{base: u, opts: opts, hc: hc}, nil
}

// URL returns the node's base URL.
func (c *Client) URL() string { return c.base.String() }

// Exec runs the statements as one transaction on the node (POST /v1/exec)
// with a fresh random Idempotency-Key, so retries cannot apply it twice.
func (c *Client) Exec(ctx context.Context, stmts ...Statement) (*ExecResult, error) {
	key := ""
	if !c.opts.NoIdempotencyKey {
		key = NewIdempotencyKey()
	}
	return c.exec(ctx, key, stmts)
}

// ExecKey is Exec with the caller's Idempotency-Key (1 to 128 printable
// ASCII characters): use it to make a retry that spans processes (a job
// queue, a restart) safe. The same key with other statements fails with
// code idempotency_key_reused.
func (c *Client) ExecKey(ctx context.Context, key string, stmts ...Statement) (*ExecResult, error) {
	if key == "" {
		return nil, errors.New("outpost client: ExecKey needs a key")
	}
	return c.exec(ctx, key, stmts)
}

// NewIdempotencyKey returns a random key (128 bits, hex).
func NewIdempotencyKey() string {
	var b [16]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (c *Client) exec(ctx context.Context, key string, stmts []Statement) (*ExecResult, error) {
	b := []byte(`{"statements":[`)
	for i, st := range stmts {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = appendStatement(b, st.SQL, st.Args); err != nil {
			return nil, fmt.Errorf("outpost client: statement %d: %w", i, err)
		}
	}
	b = append(b, "]}"...)
	var raw struct {
		Results []struct {
			RowsAffected int64    `json:"rows_affected"`
			Columns      []string `json:"columns"`
			Rows         [][]any  `json:"rows"`
		} `json:"results"`
		DBVersion int64 `json:"db_version"`
	}
	hdr, err := c.do(ctx, "/v1/exec", b, key, key != "", &raw)
	if err != nil {
		return nil, err
	}
	res := &ExecResult{DBVersion: raw.DBVersion, Replayed: hdr.Get("Idempotent-Replay") == "true", Results: make([]Result, len(raw.Results))}
	for i, r := range raw.Results {
		rows, err := decodeRows(r.Rows)
		if err != nil {
			return nil, fmt.Errorf("outpost client: statement %d: %w", i, err)
		}
		if r.Columns == nil {
			rows = nil
		}
		res.Results[i] = Result{RowsAffected: r.RowsAffected, Columns: r.Columns, Rows: rows}
	}
	return res, nil
}

// Query runs one read (POST /v1/query) on the node's read-only connection.
func (c *Client) Query(ctx context.Context, sql string, args ...any) (*QueryResult, error) {
	b, err := appendStatement(nil, sql, args)
	if err != nil {
		return nil, fmt.Errorf("outpost client: %w", err)
	}
	var raw struct {
		Columns []string `json:"columns"`
		Rows    [][]any  `json:"rows"`
	}
	if _, err := c.do(ctx, "/v1/query", b, "", true, &raw); err != nil {
		return nil, err
	}
	rows, err := decodeRows(raw.Rows)
	if err != nil {
		return nil, fmt.Errorf("outpost client: %w", err)
	}
	return &QueryResult{Columns: raw.Columns, Rows: rows}, nil
}

// Ping checks that the node is up (GET /healthz).
func (c *Client) Ping(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base.String()+"/healthz", nil)
	if err != nil {
		return fmt.Errorf("outpost client: %w", err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("outpost client: ping: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return parseError(resp.StatusCode, body)
	}
	return nil
}

func appendStatement(b []byte, sql string, args []any) ([]byte, error) {
	b = append(b, `{"sql":`...)
	b = appendString(b, sql)
	b = append(b, `,"args":[`...)
	for k, a := range args {
		if k > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = appendArg(b, a); err != nil {
			return nil, fmt.Errorf("arg %d: %w", k, err)
		}
	}
	return append(b, "]}"...), nil
}

// do POSTs body to path and decodes a 200 answer into out, retrying as the
// package doc says. safe: the request may be retried after any failure (a
// read, or a write with an Idempotency-Key).
func (c *Client) do(ctx context.Context, path string, body []byte, key string, safe bool, out any) (http.Header, error) {
	for attempt := 0; ; attempt++ {
		hdr, retryAfter, retry, err := c.once(ctx, path, body, key, safe, out)
		if err == nil || !retry || attempt >= c.opts.MaxRetries || c.opts.MaxRetries < 0 {
			return hdr, err
		}
		d := c.backoff(attempt, retryAfter)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (while waiting to retry after: %w)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// backoff is the wait before retry attempt+1: MinBackoff doubled per
// attempt, capped at MaxBackoff, with jitter between half and all of it;
// at least Retry-After (itself capped at MaxBackoff).
func (c *Client) backoff(attempt int, retryAfter time.Duration) time.Duration {
	d := c.opts.MinBackoff << min(attempt, 30)
	if d > c.opts.MaxBackoff || d <= 0 {
		d = c.opts.MaxBackoff
	}
	d = d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
	if ra := min(retryAfter, c.opts.MaxBackoff); ra > d {
		d = ra
	}
	return d
}

// notApplied are the 503 codes after which the node applied nothing.
var notApplied = map[string]bool{"draining": true, "unavailable": true, "transaction_aborted": true, "not_ready": true}

func (c *Client) once(ctx context.Context, path string, body []byte, key string, safe bool, out any) (hdr http.Header, retryAfter time.Duration, retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base.String()+path, bytes.NewReader(body))
	if err != nil {
		return nil, 0, false, fmt.Errorf("outpost client: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.opts.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.opts.Token)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, 0, false, fmt.Errorf("outpost client: %s: %w", path, err)
		}
		// A connection that was never made sent nothing; any other
		// failure may come after the node committed.
		return nil, 0, safe || isDialError(err), fmt.Errorf("outpost client: %s: %w", path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, 0, safe && ctx.Err() == nil, fmt.Errorf("outpost client: %s: reading the answer: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		e := parseError(resp.StatusCode, raw)
		if resp.StatusCode == http.StatusServiceUnavailable {
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
				retryAfter = time.Duration(s) * time.Second
			}
			retry = safe || notApplied[e.Code]
		}
		return resp.Header, retryAfter, retry, e
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(out); err != nil {
		return nil, 0, false, fmt.Errorf("outpost client: %s: decoding the answer: %w", path, err)
	}
	return resp.Header, 0, false, nil
}

func isDialError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

func parseError(status int, body []byte) *Error {
	var env struct {
		Error *struct {
			Code      string `json:"code"`
			Message   string `json:"message"`
			Statement *int   `json:"statement"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &env); err != nil || env.Error == nil {
		msg := strings.TrimSpace(string(body))
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		return &Error{Status: status, Code: "http_" + strconv.Itoa(status), Message: msg, Statement: -1}
	}
	e := &Error{Status: status, Code: env.Error.Code, Message: env.Error.Message, Statement: -1}
	if env.Error.Statement != nil {
		e.Statement = *env.Error.Statement
	}
	return e
}
