package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/api"
	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/store"
)

// idemNode is an API server over a store in dir, with a settable clock.
type idemNode struct {
	st  *store.Store
	srv *httptest.Server
	now atomic.Int64 // unix ms
}

func openIdemNode(tb testing.TB, dir string, cfg api.IdempotencyConfig) *idemNode {
	tb.Helper()
	n := &idemNode{}
	n.now.Store(time.Now().UnixMilli())
	st, err := store.Open(context.Background(), store.Options{Dir: dir, Identity: testutil.Identity("EDGE01", "43ax"), Schema: testSchema})
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Now = func() time.Time { return time.UnixMilli(n.now.Load()) }
	n.st = st
	n.srv = httptest.NewServer(api.New(st, api.Config{Idempotency: cfg}))
	tb.Cleanup(n.close)
	return n
}

func (n *idemNode) close() {
	n.srv.Close()
	n.st.Close()
}

func (n *idemNode) exec(tb testing.TB, key, body string) response {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, n.srv.URL+"/v1/exec", strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	if key != "" {
		req.Header.Set(api.IdempotencyHeader, key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (n *idemNode) count(tb testing.TB) int64 {
	tb.Helper()
	rows, err := n.st.Query(context.Background(), store.Statement{SQL: `SELECT count(*) FROM pages`})
	if err != nil {
		tb.Fatal(err)
	}
	return rows.Rows[0][0].(int64)
}

const idemInsert = `{"statements":[{"sql":"INSERT INTO pages (id, title) VALUES (outpost_id(), ?) RETURNING id","args":["Hi"]}]}`

// TestIdempotency_Replay: the same key and request is applied once; the
// retry gets the same body (same db_version and RETURNING id) with
// Idempotent-Replay: true. The key survives a restart of the store, and
// is forgotten after its TTL.
func TestIdempotency_Replay(t *testing.T) {
	dir := t.TempDir()
	n := openIdemNode(t, dir, api.IdempotencyConfig{TTL: time.Hour})
	first := n.exec(t, "key-1", idemInsert)
	if first.status != 200 || first.header.Get(api.ReplayHeader) != "" {
		t.Fatalf("first: %d %s %v", first.status, first.body, first.header)
	}
	// The same statements written differently in JSON are the same request.
	again := n.exec(t, "key-1", `{ "statements": [ {"args":["Hi"], "sql":"INSERT INTO pages (id, title) VALUES (outpost_id(), ?) RETURNING id"} ] }`)
	if again.status != 200 || !bytes.Equal(again.body, first.body) || again.header.Get(api.ReplayHeader) != "true" {
		t.Fatalf("replay: %d %s (first %s) replay header %q", again.status, again.body, first.body, again.header.Get(api.ReplayHeader))
	}
	if c := n.count(t); c != 1 {
		t.Fatalf("rows = %d after a replay, want 1", c)
	}
	// Another request under the same key: 422, nothing written.
	other := n.exec(t, "key-1", `{"statements":[{"sql":"INSERT INTO pages (id, title) VALUES (outpost_id(), ?)","args":["Other"]}]}`)
	if other.status != 422 || !strings.Contains(string(other.body), `"idempotency_key_reused"`) {
		t.Fatalf("reused key: %d %s", other.status, other.body)
	}
	// A new key runs.
	if r := n.exec(t, "key-2", idemInsert); r.status != 200 || bytes.Equal(r.body, first.body) {
		t.Fatalf("new key: %d %s", r.status, r.body)
	}

	// Restart: still replayed.
	now := n.now.Load()
	n.close()
	n = openIdemNode(t, dir, api.IdempotencyConfig{TTL: time.Hour})
	n.now.Store(now + int64(59*time.Minute/time.Millisecond))
	again = n.exec(t, "key-1", idemInsert)
	// The log position ("origin", "seq") is remembered in memory only:
	// after a restart the replay is the first answer without it.
	withoutPos := first.body
	if i := bytes.Index(withoutPos, []byte(`,"origin":`)); i > 0 {
		withoutPos = append(append([]byte{}, first.body[:i]...), "}\n"...)
	}
	if again.status != 200 || !bytes.Equal(again.body, withoutPos) || again.header.Get(api.ReplayHeader) != "true" {
		t.Fatalf("replay after restart: %d %s (first %s)", again.status, again.body, first.body)
	}
	if c := n.count(t); c != 2 {
		t.Fatalf("rows = %d, want 2", c)
	}
	// Past the TTL the key is forgotten: the request runs again.
	n.now.Store(now + int64(61*time.Minute/time.Millisecond))
	late := n.exec(t, "key-1", idemInsert)
	if late.status != 200 || bytes.Equal(late.body, first.body) || late.header.Get(api.ReplayHeader) != "" {
		t.Fatalf("after TTL: %d %s", late.status, late.body)
	}
	if c := n.count(t); c != 3 {
		t.Fatalf("rows = %d after the TTL, want 3", c)
	}
}

// TestIdempotency_FailedNotKept: a request that failed applied nothing and
// is not kept: the retry runs.
func TestIdempotency_FailedNotKept(t *testing.T) {
	n := openIdemNode(t, t.TempDir(), api.IdempotencyConfig{})
	body := `{"statements":[{"sql":"INSERT INTO checked (id, n) VALUES ('a', ?)","args":[0]}]}`
	if r := n.exec(t, "k", body); r.status != 409 {
		t.Fatalf("check violation: %d %s", r.status, r.body)
	}
	if r := n.exec(t, "k", `{"statements":[{"sql":"INSERT INTO checked (id, n) VALUES ('a', ?)","args":[1]}]}`); r.status != 200 || r.header.Get(api.ReplayHeader) != "" {
		t.Fatalf("retry after a failure: %d %s", r.status, r.body)
	}
}

// TestIdempotency_Concurrent: concurrent requests with one key run it once;
// the others wait and get the replay.
func TestIdempotency_Concurrent(t *testing.T) {
	n := openIdemNode(t, t.TempDir(), api.IdempotencyConfig{})
	var wg sync.WaitGroup
	bodies := make([]response, 8)
	for i := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bodies[i] = n.exec(t, "same", idemInsert)
		}()
	}
	wg.Wait()
	replays := 0
	for _, r := range bodies {
		if r.status != 200 || !bytes.Equal(r.body, bodies[0].body) {
			t.Fatalf("responses differ: %d %s vs %s", r.status, r.body, bodies[0].body)
		}
		if r.header.Get(api.ReplayHeader) == "true" {
			replays++
		}
	}
	if replays != len(bodies)-1 {
		t.Fatalf("%d replays, want %d", replays, len(bodies)-1)
	}
	if c := n.count(t); c != 1 {
		t.Fatalf("rows = %d, want 1", c)
	}
}

// TestIdempotency_BadKey: empty, too long, non-ASCII or repeated keys: 400.
func TestIdempotency_BadKey(t *testing.T) {
	n := openIdemNode(t, t.TempDir(), api.IdempotencyConfig{})
	for _, k := range []string{strings.Repeat("k", 129), "ключ", "a\tb"} {
		if r := n.exec(t, k, idemInsert); r.status != 400 || !strings.Contains(string(r.body), `"bad_idempotency_key"`) {
			t.Fatalf("key %q: %d %s", k, r.status, r.body)
		}
	}
	if r := n.exec(t, strings.Repeat("k", 128), idemInsert); r.status != 200 {
		t.Fatalf("128-char key: %d %s", r.status, r.body)
	}
	req, _ := http.NewRequest(http.MethodPost, n.srv.URL+"/v1/exec", strings.NewReader(idemInsert))
	req.Header[api.IdempotencyHeader] = []string{""}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("empty key: %d", resp.StatusCode)
	}
	if c := n.count(t); c != 1 {
		t.Fatalf("rows = %d, want 1", c)
	}
}

// TestIdempotency_LargeResponseNotKept: a response over MaxResponse is
// applied but not kept; its replay says so instead of running again.
func TestIdempotency_LargeResponseNotKept(t *testing.T) {
	n := openIdemNode(t, t.TempDir(), api.IdempotencyConfig{MaxResponse: 10})
	if r := n.exec(t, "big", idemInsert); r.status != 200 {
		t.Fatalf("first: %d %s", r.status, r.body)
	}
	r := n.exec(t, "big", idemInsert)
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal(r.body, &e)
	if r.status != 409 || e.Error.Code != "idempotency_response_not_kept" {
		t.Fatalf("replay: %d %s", r.status, r.body)
	}
	if c := n.count(t); c != 1 {
		t.Fatalf("rows = %d, want 1", c)
	}
}
