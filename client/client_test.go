package client_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/client"
	"github.com/outpost-edge/outpost/node"
)

const testSchema = `
CREATE TABLE pages (id TEXT PRIMARY KEY NOT NULL, title TEXT NOT NULL DEFAULT '', n INTEGER, r REAL, b BLOB, v);
`

const testToken = "s3cret"

// openNode starts a real node on a temp dir and returns its API URL.
func openNode(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	schema := filepath.Join(dir, "schema.sql")
	if err := os.WriteFile(schema, []byte(testSchema), 0o644); err != nil {
		tb.Fatal(err)
	}
	n, err := node.Open(context.Background(), node.Config{
		DataDir: filepath.Join(dir, "data"), SchemaFile: schema, APIAddr: "127.0.0.1:0", APIToken: testToken,
		Identity: outpost.Identity{Name: "X1", Location: "LHR", Farm: "lhr", Role: outpost.RoleEdge, Code: "12ab"},
	})
	if err != nil {
		tb.Fatal(err)
	}
	n.Serve()
	tb.Cleanup(func() { n.Close(context.Background()) })
	return n.APIURL()
}

// TestClient_RealNode: values round-trip exactly (integers beyond 2^53,
// reals that are whole, infinities, blobs, NULL), errors carry the node's
// code, and a token is required.
func TestClient_RealNode(t *testing.T) {
	url := openNode(t)
	ctx := context.Background()
	c, err := client.Open(url, client.Options{Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	big := int64(math.MaxInt64 - 1) // not representable in a float64
	blob := []byte{0, 1, 2, 0xff}
	res, err := c.Exec(ctx,
		client.Stmt(`INSERT INTO pages (id, title, n, r, b, v) VALUES (?, ?, ?, ?, ?, ?)`, "a", "Hi \"there\" <&>", big, 2.0, blob, nil),
		client.Stmt(`INSERT INTO pages (id, r, v) VALUES (?, ?, ?) RETURNING id, r`, "b", math.Inf(-1), uint8(7)),
	)
	if err != nil {
		t.Fatal(err)
	}
	if res.DBVersion <= 0 || len(res.Results) != 2 || res.Results[0].RowsAffected != 1 || res.Replayed {
		t.Fatalf("exec result %+v", res)
	}
	if got := res.Results[1].Rows; len(got) != 1 || got[0][0] != "b" || got[0][1] != math.Inf(-1) {
		t.Fatalf("returning rows %v", got)
	}
	q, err := c.Query(ctx, `SELECT id, title, n, r, b, v, typeof(r) FROM pages WHERE id = ?`, "a")
	if err != nil {
		t.Fatal(err)
	}
	if len(q.Rows) != 1 || len(q.Columns) != 7 || q.Columns[2] != "n" {
		t.Fatalf("query %+v", q)
	}
	row := q.Rows[0]
	if row[1] != "Hi \"there\" <&>" || row[2] != big || row[3] != 2.0 || !bytes.Equal(row[4].([]byte), blob) || row[5] != nil || row[6] != "real" {
		t.Fatalf("row %#v", row)
	}

	// A node error is a *client.Error with the statement's index.
	_, err = c.Exec(ctx, client.Stmt(`INSERT INTO pages (id) VALUES ('c')`), client.Stmt(`INSERT INTO pages (id) VALUES ('a')`))
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 409 || ce.Code != "constraint_violation" || ce.Statement != 1 {
		t.Fatalf("err = %#v", err)
	}
	if _, err := c.Query(ctx, `SELECT nope FROM pages`); !errors.As(err, &ce) || ce.Code != "no_such_column" || ce.Statement != -1 {
		t.Fatalf("err = %v", err)
	}
	// No token.
	anon, _ := client.Open(url, client.Options{})
	if _, err := anon.Query(ctx, `SELECT 1`); !errors.As(err, &ce) || ce.Status != 401 || ce.Code != "unauthorized" {
		t.Fatalf("no token: %v", err)
	}
	// NaN is refused before sending.
	if _, err := c.Exec(ctx, client.Stmt(`INSERT INTO pages (id, r) VALUES ('n', ?)`, math.NaN())); err == nil || errors.As(err, &ce) {
		t.Fatalf("NaN: %v", err)
	}
	// ExecKey: the same key replays; another statement under it is refused.
	r1, err := c.ExecKey(ctx, "job-42", client.Stmt(`INSERT INTO pages (id) VALUES (?)`, "k"))
	if err != nil {
		t.Fatal(err)
	}
	r2, err := c.ExecKey(ctx, "job-42", client.Stmt(`INSERT INTO pages (id) VALUES (?)`, "k"))
	if err != nil || !r2.Replayed || r2.DBVersion != r1.DBVersion {
		t.Fatalf("replay: %+v, %v (first %+v)", r2, err, r1)
	}
	if _, err := c.ExecKey(ctx, "job-42", client.Stmt(`INSERT INTO pages (id) VALUES (?)`, "other")); !errors.As(err, &ce) || ce.Status != 422 || ce.Code != "idempotency_key_reused" {
		t.Fatalf("reused key: %v", err)
	}
}

// fake is an httptest server whose handler is given per test; it counts
// requests and remembers their Idempotency-Keys.
type fake struct {
	srv   *httptest.Server
	calls atomic.Int32
	mu    sync.Mutex
	keys  []string
}

// key returns the Idempotency-Key of request i (from 0).
func (f *fake) key(i int) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.keys[i]
}

func newFake(t *testing.T, h func(n int, w http.ResponseWriter, r *http.Request)) *fake {
	f := &fake{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(f.calls.Add(1))
		f.mu.Lock()
		f.keys = append(f.keys, r.Header.Get("Idempotency-Key"))
		f.mu.Unlock()
		_, _ = io.ReadAll(r.Body)
		h(n, w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func fastOpts() client.Options {
	return client.Options{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, MaxRetries: 3}
}

func unavailable(w http.ResponseWriter, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(503)
	_, _ = io.WriteString(w, `{"error":{"code":"`+code+`","message":"later"}}`)
}

const okExec = `{"results":[{"rows_affected":1}],"db_version":7}`

// TestRetry_503Then200: a 503 is retried, with the same Idempotency-Key.
func TestRetry_503Then200(t *testing.T) {
	f := newFake(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			unavailable(w, "store_failed")
			return
		}
		_, _ = io.WriteString(w, okExec)
	})
	c, _ := client.Open(f.srv.URL, fastOpts())
	res, err := c.Exec(context.Background(), client.Stmt(`INSERT INTO t VALUES (1)`))
	if err != nil || res.DBVersion != 7 {
		t.Fatalf("%+v, %v", res, err)
	}
	if f.calls.Load() != 2 || f.key(0) == "" || f.key(0) != f.key(1) {
		t.Fatalf("calls %d", f.calls.Load())
	}
	// Each Exec call has its own key.
	if _, err := c.Exec(context.Background(), client.Stmt(`INSERT INTO t VALUES (1)`)); err != nil || f.key(2) == f.key(0) {
		t.Fatalf("second exec: %v", err)
	}
}

// TestRetry_GivesUp: MaxRetries bounds the attempts; the last error is a
// *client.Error.
func TestRetry_GivesUp(t *testing.T) {
	f := newFake(t, func(n int, w http.ResponseWriter, r *http.Request) { unavailable(w, "draining") })
	c, _ := client.Open(f.srv.URL, fastOpts())
	_, err := c.Query(context.Background(), `SELECT 1`)
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Code != "draining" || f.calls.Load() != 4 {
		t.Fatalf("err %v after %d calls", err, f.calls.Load())
	}
}

// resetOnce closes the first connection without an answer (as a node
// killed mid-request would), then answers.
func resetOnce(n int, w http.ResponseWriter, r *http.Request) {
	if n == 1 {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			if tc, ok := conn.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // RST
			}
			conn.Close()
		}
		return
	}
	_, _ = io.WriteString(w, okExec)
}

// TestRetry_ConnectionReset: a reset is retried for a write with a key and
// for a read.
func TestRetry_ConnectionReset(t *testing.T) {
	f := newFake(t, resetOnce)
	c, _ := client.Open(f.srv.URL, fastOpts())
	if _, err := c.Exec(context.Background(), client.Stmt(`INSERT INTO t VALUES (1)`)); err != nil {
		t.Fatal(err)
	}
	if f.calls.Load() != 2 || f.key(0) != f.key(1) {
		t.Fatalf("calls %d", f.calls.Load())
	}
}

// TestRetry_WriteWithoutKeyNeverRetriedWhenMaybeApplied: without an
// Idempotency-Key a write is not retried after a reset or store_failed
// (it may have been applied), only after a 503 that says nothing was.
func TestRetry_WriteWithoutKeyNeverRetriedWhenMaybeApplied(t *testing.T) {
	opts := fastOpts()
	opts.NoIdempotencyKey = true
	ctx := context.Background()

	f := newFake(t, resetOnce)
	c, _ := client.Open(f.srv.URL, opts)
	if _, err := c.Exec(ctx, client.Stmt(`INSERT INTO t VALUES (1)`)); err == nil {
		t.Fatal("a reset write succeeded")
	}
	if f.calls.Load() != 1 || f.key(0) != "" {
		t.Fatalf("reset: %d calls", f.calls.Load())
	}

	f = newFake(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			unavailable(w, "store_failed")
			return
		}
		_, _ = io.WriteString(w, okExec)
	})
	c, _ = client.Open(f.srv.URL, opts)
	var ce *client.Error
	if _, err := c.Exec(ctx, client.Stmt(`INSERT INTO t VALUES (1)`)); !errors.As(err, &ce) || ce.Code != "store_failed" || f.calls.Load() != 1 {
		t.Fatalf("store_failed: %v after %d calls", err, f.calls.Load())
	}

	f = newFake(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			unavailable(w, "draining")
			return
		}
		_, _ = io.WriteString(w, okExec)
	})
	c, _ = client.Open(f.srv.URL, opts)
	if _, err := c.Exec(ctx, client.Stmt(`INSERT INTO t VALUES (1)`)); err != nil || f.calls.Load() != 2 {
		t.Fatalf("draining: %v after %d calls", err, f.calls.Load())
	}
}

// TestRetry_DialErrorAndContext: a refused connection is retried; the
// context bounds the waiting.
func TestRetry_DialErrorAndContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	opts := client.Options{MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second, MaxRetries: 100, NoIdempotencyKey: true}
	c, _ := client.Open(addr, opts) // no scheme: http://
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.Exec(ctx, client.Stmt(`INSERT INTO t VALUES (1)`))
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Fatalf("err %v after %v", err, time.Since(start))
	}
	if !strings.Contains(err.Error(), "refused") {
		t.Fatalf("err %v should say why it retried", err)
	}
}
