package api_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/api"
	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/store"
)

const runawaySQL = `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c`

func newServerWith(tb testing.TB, opts store.Options) *testServer {
	tb.Helper()
	opts.Schema = testSchema
	st := testutil.OpenStore(tb, "", opts)
	srv := httptest.NewServer(api.New(st, api.Config{Token: testToken, MaxBody: testMaxBody}))
	tb.Cleanup(srv.Close)
	return &testServer{st: st, srv: srv}
}

// TestServer_StatementTimeout: the runaway recursive query sent to
// /v1/exec and /v1/query fails with 408 statement_timeout; a normal write
// sent meanwhile succeeds, and the node takes later writes.
func TestServer_StatementTimeout(t *testing.T) {
	ts := newServerWith(t, store.Options{StatementTimeout: 300 * time.Millisecond})
	type answer struct {
		name string
		res  response
	}
	answers := make(chan answer, 3)
	go func() {
		answers <- answer{"exec runaway", ts.do(t, "POST", "/v1/exec", nil, execBody(t, stmt{SQL: runawaySQL}))}
	}()
	go func() {
		answers <- answer{"query runaway", ts.do(t, "POST", "/v1/query", nil, queryBody(t, runawaySQL))}
	}()
	go func() {
		time.Sleep(50 * time.Millisecond) // while the runaway runs (or not yet: it must succeed either way)
		answers <- answer{"normal write", ts.do(t, "POST", "/v1/exec", nil, execBody(t, stmt{SQL: `INSERT INTO pages (id, title) VALUES ('w1', 'ok')`}))}
	}()
	for range 3 {
		select {
		case a := <-answers:
			if a.name == "normal write" {
				if a.res.status != http.StatusOK {
					t.Fatalf("normal write beside the runaway: %d %s", a.res.status, a.res.body)
				}
				continue
			}
			e := decodeError(t, a.res.body)
			if a.res.status != http.StatusRequestTimeout || e.Code != store.CodeStatementTimeout || !strings.Contains(e.Message, "--statement-timeout") {
				t.Fatalf("%s: %d %s, want 408 statement_timeout naming --statement-timeout", a.name, a.res.status, a.res.body)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no answer within 30s: the node is wedged")
		}
	}
	ts.ok(t, "POST", "/v1/exec", execBody(t, stmt{SQL: `INSERT INTO pages (id, title) VALUES ('w2', 'ok')`}))
	if got := ts.query(t, `SELECT count(*) FROM pages`); !strings.Contains(got, "[[2]]") {
		t.Fatalf("pages after: %s", got)
	}
}

// TestServer_ResultLimits: a result over --max-result-bytes gets 400
// result_too_large; a value over the length limit gets 400
// value_too_large, at once.
func TestServer_ResultLimits(t *testing.T) {
	ts := newServerWith(t, store.Options{MaxResultBytes: 1000})
	res := ts.do(t, "POST", "/v1/query", nil, queryBody(t, `SELECT zeroblob(2000)`))
	if e := decodeError(t, res.body); res.status != http.StatusBadRequest || e.Code != store.CodeResultTooLarge {
		t.Fatalf("big result: %d %s", res.status, res.body)
	}
	res = ts.do(t, "POST", "/v1/query", nil, queryBody(t, `SELECT zeroblob(300000000)`))
	if e := decodeError(t, res.body); res.status != http.StatusBadRequest || e.Code != store.CodeValueTooLarge {
		t.Fatalf("huge value: %d %s", res.status, res.body)
	}
	ts.ok(t, "POST", "/v1/query", queryBody(t, `SELECT length(zeroblob(300))`))
}

// TestServer_StoreFailed: after a failed COMMIT every write gets 503
// store_failed; reads still answer.
func TestServer_StoreFailed(t *testing.T) {
	var broken atomic.Bool
	ts := newServerWith(t, store.Options{CommitHook: func() error {
		if broken.Load() {
			return errors.New("injected fsync failure")
		}
		return nil
	}})
	broken.Store(true)
	for range 2 {
		res := ts.do(t, "POST", "/v1/exec", nil, execBody(t, stmt{SQL: `INSERT INTO pages (id) VALUES ('x')`}))
		if e := decodeError(t, res.body); res.status != http.StatusServiceUnavailable || e.Code != store.CodeStoreFailed {
			t.Fatalf("write to a failed store: %d %s", res.status, res.body)
		}
	}
	ts.ok(t, "POST", "/v1/query", queryBody(t, `SELECT count(*) FROM pages`))
}
