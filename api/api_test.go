package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/api"
	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/store"
)

const (
	testToken   = "secret"
	testMaxBody = 4096
)

// testSchema is the demo schema plus a table with a CHECK constraint, which
// the demo schema lacks.
const testSchema = testutil.PagesSchema + `
CREATE TABLE checked (
	id TEXT PRIMARY KEY NOT NULL,
	n  INTEGER NOT NULL DEFAULT 1 CHECK (n > 0)
);
`

// testServer is an API server over a fresh store.
type testServer struct {
	st  *store.Store
	srv *httptest.Server
}

func newTestServer(tb testing.TB) *testServer {
	tb.Helper()
	st := testutil.OpenStore(tb, "", store.Options{Schema: testSchema})
	srv := httptest.NewServer(api.New(st, api.Config{Token: testToken, MaxBody: testMaxBody}))
	tb.Cleanup(srv.Close)
	return &testServer{st: st, srv: srv}
}

// response is what the server answered.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request with the bearer token and a JSON content type; header
// overrides them (an empty value removes a header).
func (ts *testServer) do(tb testing.TB, method, path string, header map[string]string, body string) response {
	tb.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, ts.srv.URL+path, strings.NewReader(body))
	if err != nil {
		tb.Fatalf("new request: %v", err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		if k == "Transfer-Encoding" {
			// Hide the length so that the body is sent chunked.
			req.Body = io.NopCloser(io.MultiReader(strings.NewReader(body)))
			req.ContentLength = -1
			req.TransferEncoding = []string{v}
			continue
		}
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	res, err := ts.srv.Client().Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// ok sends a request that must succeed and returns its JSON body.
func (ts *testServer) ok(tb testing.TB, method, path, body string) []byte {
	tb.Helper()
	res := ts.do(tb, method, path, nil, body)
	if res.status != http.StatusOK {
		tb.Fatalf("%s %s %s: status %d, want 200; body %s", method, path, body, res.status, res.body)
	}
	if got := res.header.Get("Content-Type"); got != "application/json" {
		tb.Errorf("%s %s: Content-Type %q, want application/json", method, path, got)
	}
	if !json.Valid(res.body) {
		tb.Fatalf("%s %s: body is not valid JSON: %s", method, path, res.body)
	}
	return res.body
}

// stmt is one statement of an exec request.
type stmt struct {
	SQL  string `json:"sql"`
	Args []any  `json:"args,omitempty"`
}

func mustJSON(tb testing.TB, v any) string {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatalf("marshal %#v: %v", v, err)
	}
	return string(b)
}

func execBody(tb testing.TB, stmts ...stmt) string {
	tb.Helper()
	return mustJSON(tb, map[string]any{"statements": stmts})
}

func queryBody(tb testing.TB, sql string, args ...any) string {
	tb.Helper()
	return mustJSON(tb, stmt{SQL: sql, Args: args})
}

// apiError is a decoded error body.
type apiError struct {
	Code      string
	Message   string
	Statement *int
}

// decodeError checks that body is exactly
// {"error":{"code":"...","message":"..."[,"statement":N]}} and decodes it.
func decodeError(tb testing.TB, body []byte) apiError {
	tb.Helper()
	var outer map[string]json.RawMessage
	if err := strictUnmarshal(body, &outer); err != nil {
		tb.Fatalf("error body %s: %v", body, err)
	}
	if keys := slices.Sorted(maps.Keys(outer)); !slices.Equal(keys, []string{"error"}) {
		tb.Fatalf("error body %s: top-level keys %q, want [error]", body, keys)
	}
	var inner map[string]json.RawMessage
	if err := strictUnmarshal(outer["error"], &inner); err != nil {
		tb.Fatalf("error body %s: %v", body, err)
	}
	var e apiError
	for k, raw := range inner {
		var err error
		switch k {
		case "code":
			err = json.Unmarshal(raw, &e.Code)
		case "message":
			err = json.Unmarshal(raw, &e.Message)
		case "statement":
			var n int
			if s := string(raw); strings.ContainsAny(s, ".eE-+") {
				err = fmt.Errorf("not a non-negative integer")
			} else {
				err = json.Unmarshal(raw, &n)
			}
			e.Statement = &n
		default:
			err = fmt.Errorf("unexpected member")
		}
		if err != nil {
			tb.Fatalf("error body %s: member %q: %v", body, k, err)
		}
	}
	if e.Code == "" || e.Message == "" {
		tb.Fatalf("error body %s: code and message must be non-empty strings", body)
	}
	return e
}

// strictUnmarshal decodes exactly one JSON value and refuses duplicate keys
// at the top level of an object.
func strictUnmarshal(b []byte, v *map[string]json.RawMessage) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != json.Delim('{') {
		return fmt.Errorf("not an object")
	}
	m := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		k := tok.(string)
		if _, dup := m[k]; dup {
			return fmt.Errorf("duplicate key %q", k)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return err
		}
		m[k] = raw
	}
	if _, err := dec.Token(); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("more than one JSON value")
	}
	*v = m
	return nil
}

// digest describes everything a request could change: user tables, Outpost's
// tables, the clock table of pages and the db_version.
func digest(tb testing.TB, st *store.Store) string {
	tb.Helper()
	return digestOf(tb, st,
		"SELECT * FROM pages ORDER BY id",
		"SELECT count(*) FROM outpost_clock__pages",
		"SELECT * FROM outpost_clock__pages ORDER BY 1, 2",
		"SELECT * FROM kv ORDER BY k, n",
		"SELECT * FROM checked ORDER BY id",
		"SELECT * FROM outpost_slugs ORDER BY slug",
		"SELECT * FROM outpost_meta ORDER BY key",
		"SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY name",
	)
}

// digestOf is the answers to queries plus the db_version.
func digestOf(tb testing.TB, st *store.Store, queries ...string) string {
	tb.Helper()
	var b strings.Builder
	for _, q := range queries {
		rows, err := st.Query(context.Background(), store.Statement{SQL: q})
		if err != nil {
			tb.Fatalf("digest: %s: %v", q, err)
		}
		fmt.Fprintf(&b, "%s\n", q)
		for _, r := range rows.Rows {
			fmt.Fprintf(&b, "\t%#v\n", r)
		}
	}
	fmt.Fprintf(&b, "db_version %d\n", st.DBVersion())
	return b.String()
}

func intp(n int) *int { return &n }

// raw is a JSON value passed through as is (json.Marshal keeps it verbatim).
type raw = json.RawMessage

func TestServer_BadInput(t *testing.T) {
	ts := newTestServer(t)
	seed := execBody(t,
		stmt{SQL: "INSERT INTO pages (id, slug, title, body, views) VALUES ('p1', outpost_slug('One'), 'One', 'first', 1)"},
		stmt{SQL: "INSERT INTO pages (id, title) VALUES ('p2', 'Two')"},
		stmt{SQL: "INSERT INTO kv (k, n, v) VALUES ('a', 1, x'00ff')"},
		stmt{SQL: "INSERT INTO checked (id, n) VALUES ('c1', 1)"},
	)
	ts.ok(t, "POST", "/v1/exec", seed)

	ins := func(id string) stmt {
		return stmt{SQL: "INSERT INTO pages (id, title) VALUES (?, 'new')", Args: []any{id}}
	}
	big := "SELECT 1 /*" + strings.Repeat("x", testMaxBody) + "*/"
	// atLimit is a query body of exactly testMaxBody bytes.
	atLimit := func() string {
		base := queryBody(t, "SELECT 1 AS one /**/")
		pad := strings.Repeat("x", testMaxBody-len(base))
		return queryBody(t, "SELECT 1 AS one /*"+pad+"*/")
	}()
	noAuth := map[string]string{"Authorization": ""}
	if len(atLimit) != testMaxBody {
		t.Fatalf("atLimit is %d bytes, want %d", len(atLimit), testMaxBody)
	}
	overLimit := atLimit[:len(atLimit)-4] + "x*/\"}"

	tests := []struct {
		name       string
		method     string // "" means POST
		path       string
		header     map[string]string
		body       string
		wantStatus int
		wantCode   string // "" for a success
		wantStmt   *int   // nil: the error has no "statement"
		wantBody   string // for a success, the exact body when not ""
	}{
		// The body is not one JSON object of the right shape.
		{name: "exec malformed JSON", path: "/v1/exec", body: `{"statements":[`, wantStatus: 400, wantCode: "invalid_json"},
		{name: "exec malformed JSON bare word", path: "/v1/exec", body: `{statements:[]}`, wantStatus: 400, wantCode: "invalid_json"},
		{name: "query malformed JSON", path: "/v1/query", body: `{"sql":"SELECT 1",}`, wantStatus: 400, wantCode: "invalid_json"},
		{name: "exec empty body", path: "/v1/exec", body: ``, wantStatus: 400, wantCode: "invalid_json"},
		{name: "query empty body", path: "/v1/query", body: ``, wantStatus: 400, wantCode: "invalid_json"},
		{name: "exec whitespace body", path: "/v1/exec", body: " \r\n\t", wantStatus: 400, wantCode: "invalid_json"},
		{name: "exec trailing garbage", path: "/v1/exec", body: execBody(t, ins("g1")) + "x", wantStatus: 400, wantCode: "invalid_json"},
		{name: "exec trailing bracket", path: "/v1/exec", body: execBody(t, ins("g1")) + "}", wantStatus: 400, wantCode: "invalid_json"},
		{name: "query trailing garbage", path: "/v1/query", body: queryBody(t, "SELECT 1") + " ,", wantStatus: 400, wantCode: "invalid_json"},
		{name: "exec two objects", path: "/v1/exec", body: execBody(t, ins("g1")) + "\n" + execBody(t, ins("g2")), wantStatus: 400, wantCode: "invalid_json"},
		{name: "exec two objects no space", path: "/v1/exec", body: execBody(t, ins("g1")) + execBody(t, ins("g2")), wantStatus: 400, wantCode: "invalid_json"},
		{name: "query two objects", path: "/v1/query", body: queryBody(t, "SELECT 1") + queryBody(t, "SELECT 2"), wantStatus: 400, wantCode: "invalid_json"},
		{name: "exec top-level array", path: "/v1/exec", body: `[` + execBody(t, ins("g1")) + `]`, wantStatus: 400, wantCode: "invalid_json"},
		{name: "exec top-level string", path: "/v1/exec", body: `"INSERT INTO pages (id) VALUES ('g1')"`, wantStatus: 400, wantCode: "invalid_json"},
		{name: "exec null body", path: "/v1/exec", body: `null`, wantStatus: 400, wantCode: "bad_request"},
		{name: "exec unknown top-level field", path: "/v1/exec", body: `{"statements":[{"sql":"INSERT INTO pages (id) VALUES ('g1')"}],"transaction":true}`, wantStatus: 400, wantCode: "unknown_field"},
		{name: "exec misspelled statements", path: "/v1/exec", body: `{"statement":[{"sql":"INSERT INTO pages (id) VALUES ('g1')"}]}`, wantStatus: 400, wantCode: "unknown_field"},
		{name: "query unknown top-level field", path: "/v1/query", body: `{"sql":"SELECT 1","params":[]}`, wantStatus: 400, wantCode: "unknown_field"},
		{name: "query exec-shaped body", path: "/v1/query", body: `{"statements":[{"sql":"SELECT 1"}]}`, wantStatus: 400, wantCode: "unknown_field"},
		{name: "exec unknown field in statement", path: "/v1/exec", body: `{"statements":[{"sql":"INSERT INTO pages (id) VALUES (?)","arg":["g1"]}]}`, wantStatus: 400, wantCode: "unknown_field"},
		{name: "exec statements twice", path: "/v1/exec", body: `{"statements":[{"sql":"SELECT 1"}],"statements":[{"sql":"DELETE FROM pages"}]}`, wantStatus: 400, wantCode: "invalid_json"},
		{name: "exec sql twice", path: "/v1/exec", body: `{"statements":[{"sql":"SELECT 1","sql":"DELETE FROM pages"}]}`, wantStatus: 400, wantCode: "invalid_json"},
		{name: "exec args twice in second statement", path: "/v1/exec", body: `{"statements":[{"sql":"SELECT ?","args":[{"$blob":"AA=="}]},{"sql":"DELETE FROM pages WHERE id = ?","args":["x"],"args":["p1"]}]}`, wantStatus: 400, wantCode: "invalid_json"},
		{name: "query sql twice", path: "/v1/query", body: `{"sql":"SELECT 1","sql":"SELECT 2"}`, wantStatus: 400, wantCode: "invalid_json"},
		{name: "exec Statements in the wrong case", path: "/v1/exec", body: `{"Statements":[{"sql":"DELETE FROM pages"}]}`, wantStatus: 400, wantCode: "unknown_field"},
		{name: "exec SQL in the wrong case", path: "/v1/exec", body: `{"statements":[{"sql":"SELECT 1"},{"SQL":"DELETE FROM pages"}]}`, wantStatus: 400, wantCode: "unknown_field"},
		{name: "query Args in the wrong case", path: "/v1/query", body: `{"sql":"SELECT ?","ARGS":[1]}`, wantStatus: 400, wantCode: "unknown_field"},
		{name: "query top-level number", path: "/v1/query", body: `1`, wantStatus: 400, wantCode: "invalid_json"},
		{name: "exec statements missing", path: "/v1/exec", body: `{}`, wantStatus: 400, wantCode: "bad_request"},
		{name: "exec statements null", path: "/v1/exec", body: `{"statements":null}`, wantStatus: 400, wantCode: "bad_request"},
		{name: "exec statements empty", path: "/v1/exec", body: `{"statements":[]}`, wantStatus: 400, wantCode: "bad_request"},
		{name: "exec statements not an array", path: "/v1/exec", body: `{"statements":{"sql":"INSERT INTO pages (id) VALUES ('g1')"}}`, wantStatus: 400, wantCode: "bad_request"},
		{name: "exec statement null", path: "/v1/exec", body: `{"statements":[null]}`, wantStatus: 400, wantCode: "bad_request", wantStmt: intp(0)},
		{name: "exec statement not an object", path: "/v1/exec", body: `{"statements":["INSERT INTO pages (id) VALUES ('g1')"]}`, wantStatus: 400, wantCode: "bad_request"},
		{name: "exec sql missing", path: "/v1/exec", body: `{"statements":[{"args":[1]}]}`, wantStatus: 400, wantCode: "bad_request", wantStmt: intp(0)},
		{name: "exec sql missing in second statement", path: "/v1/exec", body: `{"statements":[{"sql":"INSERT INTO pages (id) VALUES ('g1')"},{}]}`, wantStatus: 400, wantCode: "bad_request", wantStmt: intp(1)},
		{name: "exec sql null", path: "/v1/exec", body: `{"statements":[{"sql":null}]}`, wantStatus: 400, wantCode: "bad_request", wantStmt: intp(0)},
		{name: "query sql missing", path: "/v1/query", body: `{"args":[]}`, wantStatus: 400, wantCode: "bad_request"},
		{name: "query null body", path: "/v1/query", body: `null`, wantStatus: 400, wantCode: "bad_request"},
		{name: "exec sql not a string", path: "/v1/exec", body: `{"statements":[{"sql":1}]}`, wantStatus: 400, wantCode: "bad_request"},
		{name: "exec sql array", path: "/v1/exec", body: `{"statements":[{"sql":["DELETE FROM pages"]}]}`, wantStatus: 400, wantCode: "bad_request"},
		{name: "query sql not a string", path: "/v1/query", body: `{"sql":true}`, wantStatus: 400, wantCode: "bad_request"},
		{name: "exec args not an array", path: "/v1/exec", body: `{"statements":[{"sql":"DELETE FROM pages WHERE id = ?","args":"p1"}]}`, wantStatus: 400, wantCode: "bad_request"},
		{name: "query args not an array", path: "/v1/query", body: `{"sql":"SELECT ?","args":{"a":1}}`, wantStatus: 400, wantCode: "bad_request"},
		{name: "exec sql empty", path: "/v1/exec", body: execBody(t, stmt{SQL: ""}), wantStatus: 400, wantCode: "empty_statement", wantStmt: intp(0)},
		{name: "exec sql only comments", path: "/v1/exec", body: execBody(t, stmt{SQL: "-- DELETE FROM pages;\n/* ; */"}), wantStatus: 400, wantCode: "empty_statement", wantStmt: intp(0)},
		{name: "exec sql only semicolons", path: "/v1/exec", body: execBody(t, stmt{SQL: " ; ;"}), wantStatus: 400, wantCode: "empty_statement", wantStmt: intp(0)},
		{name: "query sql empty", path: "/v1/query", body: queryBody(t, "  "), wantStatus: 400, wantCode: "empty_statement"},

		// Arguments that do not match the parameters.
		{name: "exec too few args", path: "/v1/exec", body: execBody(t, stmt{SQL: "INSERT INTO pages (id, title) VALUES (?, ?)", Args: []any{"g1"}}), wantStatus: 400, wantCode: "wrong_arg_count", wantStmt: intp(0)},
		{name: "exec no args for a parameter", path: "/v1/exec", body: execBody(t, stmt{SQL: "INSERT INTO pages (id) VALUES (?)"}), wantStatus: 400, wantCode: "wrong_arg_count", wantStmt: intp(0)},
		{name: "exec too many args", path: "/v1/exec", body: execBody(t, stmt{SQL: "DELETE FROM pages WHERE id = ?", Args: []any{"p1", "p2"}}), wantStatus: 400, wantCode: "wrong_arg_count", wantStmt: intp(0)},
		{name: "exec args without parameters", path: "/v1/exec", body: execBody(t, stmt{SQL: "DELETE FROM pages", Args: []any{"p1"}}), wantStatus: 400, wantCode: "wrong_arg_count", wantStmt: intp(0)},
		{name: "exec question mark in a string is no parameter", path: "/v1/exec", body: execBody(t, stmt{SQL: "DELETE FROM pages WHERE id = '?' -- ?", Args: []any{"p1"}}), wantStatus: 400, wantCode: "wrong_arg_count", wantStmt: intp(0)},
		{name: "exec wrong arg count in second statement", path: "/v1/exec", body: execBody(t, ins("g1"), stmt{SQL: "DELETE FROM pages WHERE id = ? OR id = ?", Args: []any{"p1"}}), wantStatus: 400, wantCode: "wrong_arg_count", wantStmt: intp(1)},
		{name: "exec named params too few", path: "/v1/exec", body: execBody(t, stmt{SQL: "UPDATE pages SET title = :title WHERE id = :id", Args: []any{"x"}}), wantStatus: 400, wantCode: "wrong_arg_count", wantStmt: intp(0)},
		{name: "exec named param repeated counts once", path: "/v1/exec", body: execBody(t, stmt{SQL: "UPDATE pages SET title = @v, body = @v", Args: []any{"x", "y"}}), wantStatus: 400, wantCode: "wrong_arg_count", wantStmt: intp(0)},
		{name: "exec numbered param beyond args", path: "/v1/exec", body: execBody(t, stmt{SQL: "DELETE FROM pages WHERE id = ?2", Args: []any{"p1"}}), wantStatus: 400, wantCode: "wrong_arg_count", wantStmt: intp(0)},
		{name: "query too few args", path: "/v1/query", body: queryBody(t, "SELECT ?, ?", 1), wantStatus: 400, wantCode: "wrong_arg_count"},
		{name: "query too many args", path: "/v1/query", body: queryBody(t, "SELECT ?", 1, 2), wantStatus: 400, wantCode: "wrong_arg_count"},
		{name: "query named params too many", path: "/v1/query", body: queryBody(t, "SELECT $a, :b", 1, 2, 3), wantStatus: 400, wantCode: "wrong_arg_count"},

		// SQL that SQLite refuses.
		{name: "exec syntax error", path: "/v1/exec", body: execBody(t, stmt{SQL: "INSERT INTO pages VALUES"}), wantStatus: 400, wantCode: "sql_syntax_error", wantStmt: intp(0)},
		{name: "exec misspelled verb", path: "/v1/exec", body: execBody(t, stmt{SQL: "DELET FROM pages"}), wantStatus: 400, wantCode: "sql_syntax_error", wantStmt: intp(0)},
		{name: "exec unterminated string", path: "/v1/exec", body: execBody(t, stmt{SQL: "DELETE FROM pages WHERE id = 'p1"}), wantStatus: 400, wantCode: "sql_syntax_error", wantStmt: intp(0)},
		{name: "exec illegal token", path: "/v1/exec", body: execBody(t, stmt{SQL: "DELETE FROM pages WHERE views = 1abc"}), wantStatus: 400, wantCode: "sql_syntax_error", wantStmt: intp(0)},
		{name: "query syntax error", path: "/v1/query", body: queryBody(t, "SELECT * FROM pages WHERE"), wantStatus: 400, wantCode: "sql_syntax_error"},
		{name: "query unterminated comment", path: "/v1/query", body: queryBody(t, "SELECT 1 /* ; DELETE FROM pages"), wantStatus: 400, wantCode: "sql_syntax_error"},
		{name: "exec unknown table", path: "/v1/exec", body: execBody(t, stmt{SQL: "INSERT INTO nope (a) VALUES (1)"}), wantStatus: 400, wantCode: "no_such_table", wantStmt: intp(0)},
		{name: "exec unknown table in delete", path: "/v1/exec", body: execBody(t, stmt{SQL: "DELETE FROM nope"}), wantStatus: 400, wantCode: "no_such_table", wantStmt: intp(0)},
		{name: "query unknown table", path: "/v1/query", body: queryBody(t, "SELECT * FROM nope"), wantStatus: 400, wantCode: "no_such_table"},
		{name: "exec unknown column in insert", path: "/v1/exec", body: execBody(t, stmt{SQL: "INSERT INTO pages (id, nope) VALUES ('g1', 1)"}), wantStatus: 400, wantCode: "no_such_column", wantStmt: intp(0)},
		{name: "exec unknown column in update", path: "/v1/exec", body: execBody(t, stmt{SQL: "UPDATE pages SET nope = 1"}), wantStatus: 400, wantCode: "no_such_column", wantStmt: intp(0)},
		{name: "query unknown column", path: "/v1/query", body: queryBody(t, "SELECT nope FROM pages"), wantStatus: 400, wantCode: "no_such_column"},
		{name: "exec unknown function", path: "/v1/exec", body: execBody(t, stmt{SQL: "UPDATE pages SET title = nope(title)"}), wantStatus: 400, wantCode: "no_such_function", wantStmt: intp(0)},
		{name: "query unknown function", path: "/v1/query", body: queryBody(t, "SELECT nope()"), wantStatus: 400, wantCode: "no_such_function"},

		// Constraint violations.
		{name: "exec NOT NULL insert", path: "/v1/exec", body: execBody(t, stmt{SQL: "INSERT INTO pages (id, title) VALUES ('g1', NULL)"}), wantStatus: 409, wantCode: "constraint_violation", wantStmt: intp(0)},
		{name: "exec NOT NULL update", path: "/v1/exec", body: execBody(t, stmt{SQL: "UPDATE pages SET title = NULL"}), wantStatus: 409, wantCode: "constraint_violation", wantStmt: intp(0)},
		{name: "exec NOT NULL primary key", path: "/v1/exec", body: execBody(t, stmt{SQL: "INSERT INTO pages (id) VALUES (?)", Args: []any{nil}}), wantStatus: 409, wantCode: "constraint_violation", wantStmt: intp(0)},
		{name: "exec CHECK", path: "/v1/exec", body: execBody(t, stmt{SQL: "INSERT INTO checked (id, n) VALUES ('c2', 0)"}), wantStatus: 409, wantCode: "constraint_violation", wantStmt: intp(0)},
		{name: "exec CHECK update", path: "/v1/exec", body: execBody(t, stmt{SQL: "UPDATE checked SET n = -1"}), wantStatus: 409, wantCode: "constraint_violation", wantStmt: intp(0)},
		{name: "exec primary key insert", path: "/v1/exec", body: execBody(t, stmt{SQL: "INSERT INTO pages (id, title) VALUES ('p1', 'dup')"}), wantStatus: 409, wantCode: "constraint_violation", wantStmt: intp(0)},
		{name: "exec primary key update", path: "/v1/exec", body: execBody(t, stmt{SQL: "UPDATE pages SET id = 'p1' WHERE id = 'p2'"}), wantStatus: 409, wantCode: "constraint_violation", wantStmt: intp(0)},
		{name: "exec composite primary key", path: "/v1/exec", body: execBody(t, stmt{SQL: "INSERT INTO kv (k, n, v) VALUES ('a', 1, 2)"}), wantStatus: 409, wantCode: "constraint_violation", wantStmt: intp(0)},
		{name: "exec primary key within the request", path: "/v1/exec", body: execBody(t, ins("g1"), ins("g1")), wantStatus: 409, wantCode: "constraint_violation", wantStmt: intp(1)},

		// A good first statement and a failing later one: nothing applies.
		{name: "exec rollback on constraint in second statement", path: "/v1/exec", body: execBody(t, ins("g1"), stmt{SQL: "INSERT INTO pages (id) VALUES ('p1')"}), wantStatus: 409, wantCode: "constraint_violation", wantStmt: intp(1)},
		{name: "exec rollback on unknown table in second statement", path: "/v1/exec", body: execBody(t, ins("g1"), stmt{SQL: "INSERT INTO nope (a) VALUES (1)"}), wantStatus: 400, wantCode: "no_such_table", wantStmt: intp(1)},
		{name: "exec rollback on DDL in second statement", path: "/v1/exec", body: execBody(t, ins("g1"), stmt{SQL: "DROP TABLE pages"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(1)},
		{name: "exec rollback on internal table in third statement", path: "/v1/exec", body: execBody(t, ins("g1"), stmt{SQL: "UPDATE pages SET views = views + 1"}, stmt{SQL: "DELETE FROM outpost_meta"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(2)},
		{name: "exec rollback of a slug", path: "/v1/exec", body: execBody(t, stmt{SQL: "INSERT INTO pages (id, slug) VALUES ('g1', outpost_slug('Rolled back'))"}, stmt{SQL: "INSERT INTO checked (id, n) VALUES ('c9', 0)"}), wantStatus: 409, wantCode: "constraint_violation", wantStmt: intp(1)},

		// Writes through /v1/query.
		{name: "query INSERT", path: "/v1/query", body: queryBody(t, "INSERT INTO pages (id) VALUES ('g1')"), wantStatus: 400, wantCode: "read_only"},
		{name: "query INSERT RETURNING", path: "/v1/query", body: queryBody(t, "INSERT INTO pages (id) VALUES ('g1') RETURNING id"), wantStatus: 400, wantCode: "read_only"},
		{name: "query REPLACE", path: "/v1/query", body: queryBody(t, "REPLACE INTO pages (id) VALUES ('p1')"), wantStatus: 400, wantCode: "read_only"},
		{name: "query UPDATE", path: "/v1/query", body: queryBody(t, "UPDATE pages SET title = 'x'"), wantStatus: 400, wantCode: "read_only"},
		{name: "query DELETE", path: "/v1/query", body: queryBody(t, "DELETE FROM pages"), wantStatus: 400, wantCode: "read_only"},
		{name: "query DELETE behind WITH", path: "/v1/query", body: queryBody(t, "WITH x AS (SELECT 'p1' AS id) DELETE FROM pages WHERE id IN (SELECT id FROM x)"), wantStatus: 400, wantCode: "read_only"},
		{name: "query CREATE", path: "/v1/query", body: queryBody(t, "CREATE TABLE t (a)"), wantStatus: 400, wantCode: "read_only"},
		{name: "query DROP", path: "/v1/query", body: queryBody(t, "DROP TABLE pages"), wantStatus: 400, wantCode: "read_only"},
		{name: "query ALTER", path: "/v1/query", body: queryBody(t, "ALTER TABLE pages ADD COLUMN x"), wantStatus: 400, wantCode: "read_only"},
		{name: "query BEGIN", path: "/v1/query", body: queryBody(t, "BEGIN"), wantStatus: 400, wantCode: "read_only"},
		{name: "query VACUUM", path: "/v1/query", body: queryBody(t, "VACUUM"), wantStatus: 400, wantCode: "read_only"},
		{name: "query EXPLAIN DELETE", path: "/v1/query", body: queryBody(t, "EXPLAIN DELETE FROM pages"), wantStatus: 400, wantCode: "read_only"},
		{name: "query outpost_slug", path: "/v1/query", body: queryBody(t, "SELECT outpost_slug('x')"), wantStatus: 400, wantCode: "read_only"},
		{name: "query PRAGMA query_only=0", path: "/v1/query", body: queryBody(t, "PRAGMA query_only=0"), wantStatus: 400, wantCode: "read_only"},
		{name: "query PRAGMA query_only = false", path: "/v1/query", body: queryBody(t, "PRAGMA main.query_only = false"), wantStatus: 400, wantCode: "read_only"},
		{name: "query PRAGMA user_version set", path: "/v1/query", body: queryBody(t, "PRAGMA user_version = 7"), wantStatus: 400, wantCode: "read_only"},
		{name: "query PRAGMA journal_mode set", path: "/v1/query", body: queryBody(t, "PRAGMA journal_mode = DELETE"), wantStatus: 400, wantCode: "read_only"},
		{name: "query PRAGMA writable_schema", path: "/v1/query", body: queryBody(t, "PRAGMA writable_schema = 1"), wantStatus: 400, wantCode: "read_only"},
		{name: "query ATTACH", path: "/v1/query", body: queryBody(t, "ATTACH DATABASE ':memory:' AS x"), wantStatus: 400, wantCode: "read_only"},

		// Statements /v1/exec refuses.
		{name: "exec ATTACH", path: "/v1/exec", body: execBody(t, stmt{SQL: "ATTACH DATABASE ':memory:' AS x"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec ATTACH with a parameter", path: "/v1/exec", body: execBody(t, stmt{SQL: "ATTACH ? AS x", Args: []any{"other.db"}}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec DETACH", path: "/v1/exec", body: execBody(t, stmt{SQL: "DETACH DATABASE main"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec BEGIN", path: "/v1/exec", body: execBody(t, stmt{SQL: "BEGIN"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec BEGIN IMMEDIATE", path: "/v1/exec", body: execBody(t, stmt{SQL: "BEGIN IMMEDIATE TRANSACTION"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec COMMIT", path: "/v1/exec", body: execBody(t, ins("g1"), stmt{SQL: "COMMIT"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(1)},
		{name: "exec END", path: "/v1/exec", body: execBody(t, stmt{SQL: "END"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec SAVEPOINT", path: "/v1/exec", body: execBody(t, stmt{SQL: "SAVEPOINT sp"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec RELEASE", path: "/v1/exec", body: execBody(t, ins("g1"), stmt{SQL: "RELEASE outpost_tx"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(1)},
		{name: "exec ROLLBACK", path: "/v1/exec", body: execBody(t, stmt{SQL: "ROLLBACK"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec ROLLBACK TO", path: "/v1/exec", body: execBody(t, ins("g1"), stmt{SQL: "ROLLBACK TO outpost_tx"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(1)},
		{name: "exec INSERT OR ROLLBACK", path: "/v1/exec", body: execBody(t, stmt{SQL: "INSERT OR ROLLBACK INTO pages (id) VALUES ('p1')"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec UPDATE OR ROLLBACK", path: "/v1/exec", body: execBody(t, stmt{SQL: "update or rollback pages SET id = 'p1'"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec CREATE TABLE", path: "/v1/exec", body: execBody(t, stmt{SQL: "CREATE TABLE t (a)"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec CREATE TEMP TABLE", path: "/v1/exec", body: execBody(t, stmt{SQL: "CREATE TEMP TABLE t (a)"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec CREATE TABLE AS", path: "/v1/exec", body: execBody(t, stmt{SQL: "CREATE TABLE t AS SELECT * FROM pages"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec CREATE INDEX", path: "/v1/exec", body: execBody(t, stmt{SQL: "CREATE INDEX i ON pages (title)"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec CREATE VIEW", path: "/v1/exec", body: execBody(t, stmt{SQL: "CREATE VIEW v AS SELECT 1"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec CREATE TRIGGER", path: "/v1/exec", body: execBody(t, stmt{SQL: "CREATE TRIGGER t AFTER INSERT ON pages BEGIN DELETE FROM pages; END"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec DROP TABLE", path: "/v1/exec", body: execBody(t, stmt{SQL: "DROP TABLE pages"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec DROP TABLE IF EXISTS", path: "/v1/exec", body: execBody(t, stmt{SQL: "DROP TABLE IF EXISTS kv"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec DROP INDEX", path: "/v1/exec", body: execBody(t, stmt{SQL: "DROP INDEX pages_slug"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec DROP TRIGGER", path: "/v1/exec", body: execBody(t, stmt{SQL: "DROP TRIGGER outpost_ins__pages"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec ALTER ADD COLUMN", path: "/v1/exec", body: execBody(t, stmt{SQL: "ALTER TABLE pages ADD COLUMN x TEXT"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec ALTER RENAME", path: "/v1/exec", body: execBody(t, stmt{SQL: "ALTER TABLE pages RENAME TO pages2"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec ALTER DROP COLUMN", path: "/v1/exec", body: execBody(t, stmt{SQL: "ALTER TABLE pages DROP COLUMN body"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec PRAGMA set", path: "/v1/exec", body: execBody(t, stmt{SQL: "PRAGMA user_version = 7"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec PRAGMA synchronous", path: "/v1/exec", body: execBody(t, stmt{SQL: "PRAGMA synchronous = OFF"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec ANALYZE", path: "/v1/exec", body: execBody(t, stmt{SQL: "ANALYZE"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec REINDEX", path: "/v1/exec", body: execBody(t, stmt{SQL: "REINDEX pages"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec VACUUM", path: "/v1/exec", body: execBody(t, stmt{SQL: "VACUUM"}), wantStatus: 400, wantCode: "sql_error", wantStmt: intp(0)},
		{name: "exec VACUUM INTO", path: "/v1/exec", body: execBody(t, stmt{SQL: "VACUUM INTO 'copy.db'"}), wantStatus: 400, wantCode: "sql_error", wantStmt: intp(0)},

		// Outpost's own tables.
		{name: "exec INSERT outpost_slugs", path: "/v1/exec", body: execBody(t, stmt{SQL: "INSERT INTO outpost_slugs (slug, node, title) VALUES ('x-43ax', 'EDGE01', 'x')"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec DELETE outpost_slugs", path: "/v1/exec", body: execBody(t, stmt{SQL: "DELETE FROM outpost_slugs"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec UPDATE outpost_meta", path: "/v1/exec", body: execBody(t, stmt{SQL: "UPDATE outpost_meta SET value = 0 WHERE key = 'db_version'"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec REPLACE outpost_meta", path: "/v1/exec", body: execBody(t, stmt{SQL: "REPLACE INTO outpost_meta (key, value) VALUES ('incarnation', 'x')"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec UPDATE OUTPOST_META upper case", path: "/v1/exec", body: execBody(t, stmt{SQL: `UPDATE main."OUTPOST_META" SET value = 0`}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec DELETE outpost_clock__pages", path: "/v1/exec", body: execBody(t, stmt{SQL: "DELETE FROM outpost_clock__pages"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec INSERT outpost_clock__pages", path: "/v1/exec", body: execBody(t, stmt{SQL: "INSERT OR REPLACE INTO outpost_clock__pages SELECT * FROM outpost_clock__pages"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec UPDATE outpost_clock__pages behind WITH", path: "/v1/exec", body: execBody(t, stmt{SQL: "WITH x AS (SELECT 1) UPDATE outpost_clock__pages SET cl = cl + 1"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec DROP INDEX of a clock table", path: "/v1/exec", body: execBody(t, stmt{SQL: "DROP INDEX outpost_clock__pages__dbv"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		// SQLite refuses these itself, before the authorizer is asked: still 403.
		{name: "exec DELETE sqlite_schema", path: "/v1/exec", body: execBody(t, stmt{SQL: "DELETE FROM sqlite_schema"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec DELETE sqlite_master", path: "/v1/exec", body: execBody(t, stmt{SQL: "DELETE FROM sqlite_master"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},
		{name: "exec UPDATE sqlite_master", path: "/v1/exec", body: execBody(t, stmt{SQL: "UPDATE sqlite_master SET sql = ''"}), wantStatus: 403, wantCode: "not_allowed", wantStmt: intp(0)},

		// Several statements in one sql string.
		{name: "exec smuggled DROP", path: "/v1/exec", body: execBody(t, stmt{SQL: "SELECT 1; DROP TABLE pages"}), wantStatus: 400, wantCode: "multiple_statements", wantStmt: intp(0)},
		{name: "exec smuggled DELETE after insert", path: "/v1/exec", body: execBody(t, stmt{SQL: "INSERT INTO pages (id) VALUES ('g1');DELETE FROM pages"}), wantStatus: 400, wantCode: "multiple_statements", wantStmt: intp(0)},
		{name: "exec smuggled after semicolons in strings and comments", path: "/v1/exec", body: execBody(t, stmt{SQL: "INSERT INTO pages (id, title) VALUES ('g;1', \"x\" || ';') /* ; */ -- ;\n; DELETE FROM pages"}), wantStatus: 400, wantCode: "multiple_statements", wantStmt: intp(0)},
		{name: "exec smuggled after quoted identifiers", path: "/v1/exec", body: execBody(t, stmt{SQL: "UPDATE pages SET [body] = 'a;b' WHERE `id` = ';'; DELETE FROM pages"}), wantStatus: 400, wantCode: "multiple_statements", wantStmt: intp(0)},
		{name: "exec smuggled after a trigger body", path: "/v1/exec", body: execBody(t, stmt{SQL: "CREATE TRIGGER t AFTER INSERT ON pages BEGIN DELETE FROM pages; END; DELETE FROM pages"}), wantStatus: 400, wantCode: "multiple_statements", wantStmt: intp(0)},
		{name: "exec smuggled in second statement", path: "/v1/exec", body: execBody(t, ins("g1"), stmt{SQL: "SELECT 1; SELECT 2"}), wantStatus: 400, wantCode: "multiple_statements", wantStmt: intp(1)},
		{name: "exec smuggled with parameters", path: "/v1/exec", body: execBody(t, stmt{SQL: "DELETE FROM pages WHERE id = ?; DELETE FROM pages WHERE id = ?", Args: []any{"p1", "p2"}}), wantStatus: 400, wantCode: "multiple_statements", wantStmt: intp(0)},
		{name: "query smuggled DROP", path: "/v1/query", body: queryBody(t, "SELECT 1; DROP TABLE pages"), wantStatus: 400, wantCode: "multiple_statements"},
		{name: "query smuggled PRAGMA", path: "/v1/query", body: queryBody(t, "SELECT 1;\nPRAGMA query_only = 0"), wantStatus: 400, wantCode: "multiple_statements"},
		{name: "query smuggled after semicolons in strings and comments", path: "/v1/query", body: queryBody(t, "SELECT ';' AS \"a;b\" /* ; */ -- ;\n; DELETE FROM pages"), wantStatus: 400, wantCode: "multiple_statements"},
		{name: "query two selects", path: "/v1/query", body: queryBody(t, "SELECT * FROM pages; SELECT * FROM kv;"), wantStatus: 400, wantCode: "multiple_statements"},
		// Semicolons inside strings, identifiers and comments do not count.
		{name: "query semicolons in strings and comments", path: "/v1/query", body: queryBody(t, "SELECT 'a;b' AS \"c;d\" /* ; DROP TABLE pages; */ -- ; DELETE FROM pages\n;"), wantStatus: 200, wantBody: `{"columns":["c;d"],"rows":[["a;b"]]}`},

		// Body size.
		{name: "exec body over the limit", path: "/v1/exec", body: execBody(t, stmt{SQL: big}), wantStatus: 413, wantCode: "body_too_large"},
		{name: "query body over the limit", path: "/v1/query", body: queryBody(t, big), wantStatus: 413, wantCode: "body_too_large"},
		{name: "query body at the limit", path: "/v1/query", body: atLimit, wantStatus: 200, wantBody: `{"columns":["one"],"rows":[[1]]}`},
		{name: "query chunked body", path: "/v1/query", header: map[string]string{"Transfer-Encoding": "chunked"}, body: queryBody(t, "SELECT 2 AS two"), wantStatus: 200, wantBody: `{"columns":["two"],"rows":[[2]]}`},
		{name: "query body one byte over the limit", path: "/v1/query", body: overLimit, wantStatus: 413, wantCode: "body_too_large"},
		{name: "exec body over the limit without Content-Length", path: "/v1/exec", header: map[string]string{"Transfer-Encoding": "chunked"}, body: execBody(t, stmt{SQL: big}), wantStatus: 413, wantCode: "body_too_large"},

		// Authentication.
		{name: "exec missing token", path: "/v1/exec", header: noAuth, body: execBody(t, ins("g1")), wantStatus: 401, wantCode: "unauthorized"},
		{name: "exec missing token and bad body", path: "/v1/exec", header: noAuth, body: `{`, wantStatus: 401, wantCode: "unauthorized"},
		{name: "exec wrong token", path: "/v1/exec", header: map[string]string{"Authorization": "Bearer nope"}, body: execBody(t, ins("g1")), wantStatus: 401, wantCode: "unauthorized"},
		{name: "exec token without scheme", path: "/v1/exec", header: map[string]string{"Authorization": testToken}, body: execBody(t, ins("g1")), wantStatus: 401, wantCode: "unauthorized"},
		{name: "exec token prefix", path: "/v1/exec", header: map[string]string{"Authorization": "Bearer secre"}, body: execBody(t, ins("g1")), wantStatus: 401, wantCode: "unauthorized"},
		{name: "exec token with suffix", path: "/v1/exec", header: map[string]string{"Authorization": "Bearer secretx"}, body: execBody(t, ins("g1")), wantStatus: 401, wantCode: "unauthorized"},
		{name: "exec basic auth", path: "/v1/exec", header: map[string]string{"Authorization": "Basic c2VjcmV0Og=="}, body: execBody(t, ins("g1")), wantStatus: 401, wantCode: "unauthorized"},
		{name: "query missing token", path: "/v1/query", header: noAuth, body: queryBody(t, "SELECT * FROM pages"), wantStatus: 401, wantCode: "unauthorized"},
		{name: "query wrong token", path: "/v1/query", header: map[string]string{"Authorization": "Bearer nope"}, body: queryBody(t, "SELECT * FROM pages"), wantStatus: 401, wantCode: "unauthorized"},
		{name: "ids missing token", method: "GET", path: "/v1/ids", header: noAuth, wantStatus: 401, wantCode: "unauthorized"},
		{name: "ids wrong token", method: "GET", path: "/v1/ids?n=3", header: map[string]string{"Authorization": "Bearer nope"}, wantStatus: 401, wantCode: "unauthorized"},
		{name: "healthz needs no token", method: "GET", path: "/healthz", header: noAuth, wantStatus: 200, wantBody: `{"status":"ok"}`},
		{name: "healthz ignores a wrong token", method: "GET", path: "/healthz", header: map[string]string{"Authorization": "Bearer nope"}, wantStatus: 200, wantBody: `{"status":"ok"}`},

		// Routes and methods.
		{name: "unknown route", method: "GET", path: "/v1/nope", wantStatus: 404, wantCode: "not_found"},
		{name: "unknown route POST", path: "/v1/execute", body: execBody(t, ins("g1")), wantStatus: 404, wantCode: "not_found"},
		{name: "unknown route below exec", path: "/v1/exec/x", body: execBody(t, ins("g1")), wantStatus: 404, wantCode: "not_found"},
		{name: "unknown route case", path: "/v1/EXEC", body: execBody(t, ins("g1")), wantStatus: 404, wantCode: "not_found"},
		{name: "root", method: "GET", path: "/", header: noAuth, wantStatus: 404, wantCode: "not_found"},
		{name: "exec GET", method: "GET", path: "/v1/exec", wantStatus: 405, wantCode: "method_not_allowed"},
		{name: "exec PUT", method: "PUT", path: "/v1/exec", body: execBody(t, ins("g1")), wantStatus: 405, wantCode: "method_not_allowed"},
		{name: "exec DELETE", method: "DELETE", path: "/v1/exec", wantStatus: 405, wantCode: "method_not_allowed"},
		{name: "query GET", method: "GET", path: "/v1/query", wantStatus: 405, wantCode: "method_not_allowed"},
		{name: "ids POST", path: "/v1/ids", body: `{}`, wantStatus: 405, wantCode: "method_not_allowed"},
		{name: "healthz POST", path: "/healthz", header: noAuth, wantStatus: 405, wantCode: "method_not_allowed"},
		{name: "healthz HEAD", method: "HEAD", path: "/healthz", header: noAuth, wantStatus: 200},
		{name: "ids HEAD", method: "HEAD", path: "/v1/ids", wantStatus: 200},
		{name: "exec HEAD", method: "HEAD", path: "/v1/exec", wantStatus: 405},
		{name: "query OPTIONS", method: "OPTIONS", path: "/v1/query", wantStatus: 405, wantCode: "method_not_allowed"},
		{name: "exec GET without token", method: "GET", path: "/v1/exec", header: noAuth, wantStatus: 405, wantCode: "method_not_allowed"},

		// Arguments that are no SQL value.
		{name: "exec arg array", path: "/v1/exec", body: execBody(t, stmt{SQL: "DELETE FROM pages WHERE id IN (?)", Args: []any{[]any{"p1", "p2"}}}), wantStatus: 400, wantCode: "invalid_arg", wantStmt: intp(0)},
		{name: "exec arg object", path: "/v1/exec", body: execBody(t, stmt{SQL: "UPDATE pages SET body = ?", Args: []any{map[string]any{"a": 1}}}), wantStatus: 400, wantCode: "invalid_arg", wantStmt: intp(0)},
		{name: "exec arg empty object", path: "/v1/exec", body: execBody(t, stmt{SQL: "UPDATE pages SET body = ?", Args: []any{map[string]any{}}}), wantStatus: 400, wantCode: "invalid_arg", wantStmt: intp(0)},
		{name: "exec arg blob with extra member", path: "/v1/exec", body: execBody(t, stmt{SQL: "UPDATE pages SET body = ?", Args: []any{map[string]any{"$blob": "AA==", "x": 1}}}), wantStatus: 400, wantCode: "invalid_arg", wantStmt: intp(0)},
		{name: "exec arg blob not a string", path: "/v1/exec", body: execBody(t, stmt{SQL: "UPDATE pages SET body = ?", Args: []any{map[string]any{"$blob": 1}}}), wantStatus: 400, wantCode: "invalid_arg", wantStmt: intp(0)},
		{name: "exec arg bad base64", path: "/v1/exec", body: execBody(t, stmt{SQL: "UPDATE pages SET body = ?", Args: []any{map[string]any{"$blob": "not base64!"}}}), wantStatus: 400, wantCode: "invalid_arg", wantStmt: intp(0)},
		{name: "exec arg unpadded base64", path: "/v1/exec", body: execBody(t, stmt{SQL: "UPDATE pages SET body = ?", Args: []any{map[string]any{"$blob": "AA"}}}), wantStatus: 400, wantCode: "invalid_arg", wantStmt: intp(0)},
		{name: "exec arg URL base64", path: "/v1/exec", body: execBody(t, stmt{SQL: "UPDATE pages SET body = ?", Args: []any{map[string]any{"$blob": "-_8="}}}), wantStatus: 400, wantCode: "invalid_arg", wantStmt: intp(0)},
		{name: "exec arg bad $real", path: "/v1/exec", body: execBody(t, stmt{SQL: "UPDATE pages SET body = ?", Args: []any{map[string]any{"$real": "nan"}}}), wantStatus: 400, wantCode: "invalid_arg", wantStmt: intp(0)},
		{name: "exec arg finite $real", path: "/v1/exec", body: execBody(t, stmt{SQL: "UPDATE pages SET body = ?", Args: []any{map[string]any{"$real": 1.5}}}), wantStatus: 400, wantCode: "invalid_arg", wantStmt: intp(0)},
		{name: "exec arg integer over 64 bits", path: "/v1/exec", body: execBody(t, stmt{SQL: "UPDATE pages SET views = ?", Args: []any{raw("9223372036854775808")}}), wantStatus: 400, wantCode: "invalid_arg", wantStmt: intp(0)},
		{name: "exec arg integer under 64 bits", path: "/v1/exec", body: execBody(t, stmt{SQL: "UPDATE pages SET views = ?", Args: []any{raw("-9223372036854775809")}}), wantStatus: 400, wantCode: "invalid_arg", wantStmt: intp(0)},
		{name: "exec arg uint64 max plus one", path: "/v1/exec", body: execBody(t, stmt{SQL: "UPDATE pages SET views = ?", Args: []any{raw("18446744073709551616")}}), wantStatus: 400, wantCode: "invalid_arg", wantStmt: intp(0)},
		{name: "exec arg real out of range", path: "/v1/exec", body: execBody(t, stmt{SQL: "UPDATE pages SET views = ?", Args: []any{raw("1e400")}}), wantStatus: 400, wantCode: "invalid_arg", wantStmt: intp(0)},
		{name: "exec bad arg in second statement", path: "/v1/exec", body: execBody(t, ins("g1"), stmt{SQL: "UPDATE pages SET views = ?", Args: []any{raw("[1]")}}), wantStatus: 400, wantCode: "invalid_arg", wantStmt: intp(1)},
		{name: "query arg array", path: "/v1/query", body: queryBody(t, "SELECT ?", []any{}), wantStatus: 400, wantCode: "invalid_arg"},
		{name: "query arg object", path: "/v1/query", body: queryBody(t, "SELECT ?", map[string]any{"blob": "AA=="}), wantStatus: 400, wantCode: "invalid_arg"},
		{name: "query arg bad base64", path: "/v1/query", body: queryBody(t, "SELECT ?", map[string]any{"$blob": "A"}), wantStatus: 400, wantCode: "invalid_arg"},
		{name: "query arg integer over 64 bits", path: "/v1/query", body: queryBody(t, "SELECT ?", raw("99999999999999999999")), wantStatus: 400, wantCode: "invalid_arg"},

		// /v1/ids.
		{name: "ids n=0", method: "GET", path: "/v1/ids?n=0", wantStatus: 400, wantCode: "bad_request"},
		{name: "ids n=-1", method: "GET", path: "/v1/ids?n=-1", wantStatus: 400, wantCode: "bad_request"},
		{name: "ids n=abc", method: "GET", path: "/v1/ids?n=abc", wantStatus: 400, wantCode: "bad_request"},
		{name: "ids n=1001", method: "GET", path: "/v1/ids?n=1001", wantStatus: 400, wantCode: "bad_request"},
		{name: "ids n=1.5", method: "GET", path: "/v1/ids?n=1.5", wantStatus: 400, wantCode: "bad_request"},
		{name: "ids n over int", method: "GET", path: "/v1/ids?n=99999999999999999999", wantStatus: 400, wantCode: "bad_request"},
	}

	before := digest(t, ts.st)
	if !strings.Contains(before, `"p1"`) || !strings.Contains(before, `"p2"`) {
		t.Fatalf("seed rows missing:\n%s", before)
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		if seen[tt.name] {
			t.Fatalf("duplicate case name %q", tt.name)
		}
		seen[tt.name] = true
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = "POST"
			}
			res := ts.do(t, method, tt.path, tt.header, tt.body)
			if res.status != tt.wantStatus {
				t.Errorf("status %d, want %d; body %s", res.status, tt.wantStatus, res.body)
			}
			if got := res.header.Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type %q, want application/json", got)
			}
			switch {
			case method == "HEAD":
				if len(res.body) != 0 {
					t.Errorf("HEAD answered with a body: %s", res.body)
				}
			case tt.wantCode == "":
				if !json.Valid(res.body) {
					t.Errorf("body is not valid JSON: %s", res.body)
				}
				if tt.wantBody != "" {
					if got := strings.TrimSuffix(string(res.body), "\n"); got != tt.wantBody {
						t.Errorf("body %s, want %s", got, tt.wantBody)
					}
				}
			default:
				e := decodeError(t, res.body)
				if e.Code != tt.wantCode {
					t.Errorf("code %q, want %q (message %q)", e.Code, tt.wantCode, e.Message)
				}
				if strings.Contains(e.Message, "api.") || strings.Contains(e.Message, "interface {}") {
					t.Errorf("message %q names Go types", e.Message)
				}
				switch {
				case tt.wantStmt == nil && e.Statement != nil:
					t.Errorf("statement %d, want none (message %q)", *e.Statement, e.Message)
				case tt.wantStmt != nil && e.Statement == nil:
					t.Errorf("no statement, want %d (message %q)", *tt.wantStmt, e.Message)
				case tt.wantStmt != nil && *e.Statement != *tt.wantStmt:
					t.Errorf("statement %d, want %d (message %q)", *e.Statement, *tt.wantStmt, e.Message)
				}
			}
			switch res.status {
			case http.StatusUnauthorized:
				if res.header.Get("WWW-Authenticate") == "" {
					t.Errorf("401 without WWW-Authenticate")
				}
			case http.StatusMethodNotAllowed:
				if res.header.Get("Allow") == "" {
					t.Errorf("405 without Allow")
				}
			}
			if after := digest(t, ts.st); after != before {
				t.Fatalf("the request changed the database:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

// execResult is a decoded /v1/exec answer.
type execResult struct {
	Results []struct {
		RowsAffected *int64 `json:"rows_affected"`
		Columns      []string
		Rows         [][]any
	} `json:"results"`
	DBVersion *int64  `json:"db_version"`
	Origin    *string `json:"origin"` // where the write is in the node's log
	Seq       *int64  `json:"seq"`
}

// position is the `,"origin":...,"seq":N` an exec answer for db_version
// dbv carries.
func position(tb testing.TB, st *store.Store, dbv int64) string {
	tb.Helper()
	o, seq, ok := st.LogPosition(dbv)
	if !ok {
		tb.Fatalf("no log position for db_version %d", dbv)
	}
	return fmt.Sprintf(`,"origin":%q,"seq":%d`, o, seq)
}

func decodeStrict(tb testing.TB, b []byte, v any) {
	tb.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		tb.Fatalf("decode %s: %v", b, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		tb.Fatalf("decode %s: more than one JSON value", b)
	}
}

func (ts *testServer) exec(tb testing.TB, stmts ...stmt) execResult {
	tb.Helper()
	var r execResult
	decodeStrict(tb, ts.ok(tb, "POST", "/v1/exec", execBody(tb, stmts...)), &r)
	if r.DBVersion == nil {
		tb.Fatalf("exec answer without db_version")
	}
	if len(r.Results) != len(stmts) {
		tb.Fatalf("exec answer with %d results for %d statements", len(r.Results), len(stmts))
	}
	for i, res := range r.Results {
		if res.RowsAffected == nil {
			tb.Fatalf("result %d without rows_affected", i)
		}
	}
	return r
}

// query runs sql and returns the exact answer body (without the newline).
func (ts *testServer) query(tb testing.TB, sql string, args ...any) string {
	tb.Helper()
	return strings.TrimSuffix(string(ts.ok(tb, "POST", "/v1/query", queryBody(tb, sql, args...))), "\n")
}

func TestServer_ExecQuery(t *testing.T) {
	ts := newTestServer(t)
	dbv := ts.st.DBVersion()
	// exec runs statements and checks that the request committed as the next
	// db_version.
	exec := func(t *testing.T, stmts ...stmt) execResult {
		t.Helper()
		r := ts.exec(t, stmts...)
		if got, want := *r.DBVersion, dbv+1; got != want {
			t.Errorf("db_version %d, want %d", got, want)
		}
		if got, want := ts.st.DBVersion(), *r.DBVersion; got != want {
			t.Errorf("store DBVersion() %d, answer said %d", got, want)
		}
		dbv = *r.DBVersion
		return r
	}

	t.Run("insert returns rows affected", func(t *testing.T) {
		res := ts.ok(t, "POST", "/v1/exec", execBody(t, stmt{SQL: "INSERT INTO pages (id, title, views) VALUES (?, ?, ?)", Args: []any{"p1", "One", 1}}))
		want := fmt.Sprintf(`{"results":[{"rows_affected":1}],"db_version":%d%s}`+"\n", dbv+1, position(t, ts.st, dbv+1))
		if got := string(res); got != want {
			t.Errorf("got %s, want %s", got, want)
		}
		dbv++
	})

	t.Run("several statements", func(t *testing.T) {
		r := exec(t,
			stmt{SQL: "INSERT INTO pages (id, title, views) VALUES ('p2', 'Two', 2), ('p3', 'Three', 3)"},
			stmt{SQL: "UPDATE pages SET views = views + 10 WHERE views >= ?", Args: []any{2}},
			stmt{SQL: "DELETE FROM pages WHERE id = 'p3'"},
			stmt{SQL: "DELETE FROM pages WHERE id = 'nope'"},
		)
		var got []int64
		for _, res := range r.Results {
			got = append(got, *res.RowsAffected)
			if res.Columns != nil || res.Rows != nil {
				t.Errorf("result without RETURNING has columns %q rows %v", res.Columns, res.Rows)
			}
		}
		if want := []int64{2, 2, 1, 0}; !slices.Equal(got, want) {
			t.Errorf("rows_affected %v, want %v", got, want)
		}
	})

	t.Run("outpost_id and outpost_slug with RETURNING", func(t *testing.T) {
		r := exec(t, stmt{SQL: "INSERT INTO pages (id, slug, title) VALUES (outpost_id(), outpost_slug(?), ?) RETURNING id, slug, title, views", Args: []any{"Hello World", "Hello World"}})
		res := r.Results[0]
		if *res.RowsAffected != 1 {
			t.Errorf("rows_affected %d, want 1", *res.RowsAffected)
		}
		if want := []string{"id", "slug", "title", "views"}; !slices.Equal(res.Columns, want) {
			t.Fatalf("columns %q, want %q", res.Columns, want)
		}
		if len(res.Rows) != 1 || len(res.Rows[0]) != 4 {
			t.Fatalf("rows %v, want one row of 4", res.Rows)
		}
		row := res.Rows[0]
		id, _ := row[0].(string)
		if id == "" {
			t.Errorf("id %#v, want a non-empty string", row[0])
		}
		if got, want := row[1], any("hello-world-43ax"); got != want {
			t.Errorf("slug %#v, want %#v", got, want)
		}
		if got, want := row[2], any("Hello World"); got != want {
			t.Errorf("title %#v, want %#v", got, want)
		}
		if got, want := row[3], any(json.Number("0")); got != want {
			t.Errorf("views %#v, want %#v", got, want)
		}
		if got, want := ts.query(t, "SELECT slug, title FROM pages WHERE id = ?", id), `{"columns":["slug","title"],"rows":[["hello-world-43ax","Hello World"]]}`; got != want {
			t.Errorf("read back %s, want %s", got, want)
		}
		if got, want := ts.query(t, "SELECT node, title FROM outpost_slugs WHERE slug = 'hello-world-43ax'"), `{"columns":["node","title"],"rows":[["EDGE01","Hello World"]]}`; got != want {
			t.Errorf("slug registry %s, want %s", got, want)
		}
		// The same title again gets the next slug.
		r = exec(t, stmt{SQL: "UPDATE pages SET slug = outpost_slug(title) WHERE id = ? RETURNING slug", Args: []any{id}})
		if got, want := r.Results[0].Rows, [][]any{{"hello-world-43ax-2"}}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("second slug %v, want %v", got, want)
		}
	})

	t.Run("RETURNING of several rows", func(t *testing.T) {
		r := exec(t, stmt{SQL: "UPDATE pages SET views = views + 1 WHERE id IN ('p1', 'p2') RETURNING id, views"})
		res := r.Results[0]
		if *res.RowsAffected != 2 || len(res.Rows) != 2 {
			t.Errorf("rows_affected %d rows %v, want 2 rows", *res.RowsAffected, res.Rows)
		}
	})

	t.Run("RETURNING of no rows", func(t *testing.T) {
		res := ts.ok(t, "POST", "/v1/exec", execBody(t, stmt{SQL: "DELETE FROM pages WHERE id = 'nope' RETURNING id"}))
		want := fmt.Sprintf(`{"results":[{"rows_affected":0,"columns":["id"],"rows":[]}],"db_version":%d%s}`+"\n", dbv+1, position(t, ts.st, dbv+1))
		if got := string(res); got != want {
			t.Errorf("got %s, want %s", got, want)
		}
		dbv++
	})

	t.Run("numbered parameters", func(t *testing.T) {
		exec(t, stmt{SQL: "INSERT INTO pages (id, title, body) VALUES (?2, ?1, ?1)", Args: []any{"Four", "p4"}})
		if got, want := ts.query(t, "SELECT id, title, body FROM pages WHERE id = ?1 OR id = ?1", "p4"), `{"columns":["id","title","body"],"rows":[["p4","Four","Four"]]}`; got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	})

	t.Run("semicolons in strings and comments", func(t *testing.T) {
		exec(t, stmt{SQL: "INSERT INTO pages (id, title) VALUES ('p;5', 'a;b') /* ; DELETE FROM pages; */ -- ; DELETE FROM pages\n;"})
		if got, want := ts.query(t, "SELECT id, title FROM pages WHERE id = 'p;5'"), `{"columns":["id","title"],"rows":[["p;5","a;b"]]}`; got != want {
			t.Errorf("got %s, want %s", got, want)
		}
		if got, want := ts.query(t, "SELECT count(*) AS n FROM pages WHERE id IN ('p1', 'p2', 'p4')"), `{"columns":["n"],"rows":[[3]]}`; got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	})

	t.Run("db_version counts requests", func(t *testing.T) {
		for range 5 {
			exec(t, stmt{SQL: "UPDATE pages SET views = views + 1 WHERE id = 'p1'"}, stmt{SQL: "UPDATE pages SET views = views + 1 WHERE id = 'p1'"})
		}
		if got, want := ts.query(t, "SELECT views FROM pages WHERE id = 'p1'"), `{"columns":["views"],"rows":[[12]]}`; got != want {
			t.Errorf("got %s, want %s", got, want)
		}
		// A request that changes no row still commits as a version.
		exec(t, stmt{SQL: "DELETE FROM pages WHERE id = 'nope'"})
	})

	t.Run("query shape", func(t *testing.T) {
		got := ts.query(t, "SELECT id, title, views, body FROM pages WHERE id IN (?, ?) ORDER BY id", "p1", "p2")
		want := `{"columns":["id","title","views","body"],"rows":[["p1","One",12,null],["p2","Two",13,null]]}`
		if got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	})

	t.Run("query without rows", func(t *testing.T) {
		if got, want := ts.query(t, "SELECT id, title FROM pages WHERE id = 'nope'"), `{"columns":["id","title"],"rows":[]}`; got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	})

	t.Run("query forms", func(t *testing.T) {
		for _, tt := range []struct{ sql, want string }{
			{"VALUES (1, 'a'), (2, 'b')", `{"columns":["column1","column2"],"rows":[[1,"a"],[2,"b"]]}`},
			{"WITH x(n) AS (SELECT 1) SELECT n FROM x", `{"columns":["n"],"rows":[[1]]}`},
			{"PRAGMA user_version", `{"columns":["user_version"],"rows":[[0]]}`},
			{"SELECT name FROM pragma_table_info('checked') ORDER BY cid", `{"columns":["name"],"rows":[["id"],["n"]]}`},
			{"SELECT length(outpost_id()) > 0 AS ok", `{"columns":["ok"],"rows":[[1]]}`},
		} {
			if got := ts.query(t, tt.sql); got != tt.want {
				t.Errorf("%s: got %s, want %s", tt.sql, got, tt.want)
			}
		}
	})

	t.Run("query does not change db_version", func(t *testing.T) {
		ts.query(t, "SELECT * FROM pages")
		if got := ts.st.DBVersion(); got != dbv {
			t.Errorf("DBVersion() %d after a query, want %d", got, dbv)
		}
	})

	t.Run("ids", func(t *testing.T) {
		for _, tt := range []struct {
			path string
			n    int
		}{{"/v1/ids", 1}, {"/v1/ids?n=", 1}, {"/v1/ids?n=1", 1}, {"/v1/ids?n=5", 5}, {"/v1/ids?n=1000", 1000}} {
			var r struct{ IDs []string }
			decodeStrict(t, ts.ok(t, "GET", tt.path, ""), &r)
			if len(r.IDs) != tt.n {
				t.Errorf("%s: %d ids, want %d", tt.path, len(r.IDs), tt.n)
			}
			seen := map[string]bool{}
			for _, id := range r.IDs {
				if id == "" || seen[id] {
					t.Errorf("%s: empty or repeated id %q", tt.path, id)
				}
				seen[id] = true
			}
		}
	})

	t.Run("healthz", func(t *testing.T) {
		res := ts.do(t, "GET", "/healthz", map[string]string{"Authorization": ""}, "")
		if res.status != http.StatusOK || string(res.body) != "{\"status\":\"ok\"}\n" {
			t.Errorf("got %d %q, want 200 {\"status\":\"ok\"}", res.status, res.body)
		}
		if got := res.header.Get("Content-Length"); got != strconv.Itoa(len(res.body)) {
			t.Errorf("Content-Length %s, body is %d bytes", got, len(res.body))
		}
	})

	t.Run("no token configured", func(t *testing.T) {
		srv := httptest.NewServer(api.New(ts.st, api.Config{}))
		defer srv.Close()
		res, err := srv.Client().Post(srv.URL+"/v1/query", "application/json", strings.NewReader(`{"sql":"SELECT 1 AS one"}`))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if got, want := string(b), `{"columns":["one"],"rows":[[1]]}`+"\n"; res.StatusCode != 200 || got != want {
			t.Errorf("got %d %s, want 200 %s", res.StatusCode, got, want)
		}
	})
}

func TestServer_ExecRollsBackWholeRequest(t *testing.T) {
	ts := newTestServer(t)
	ts.exec(t, stmt{SQL: "INSERT INTO pages (id, title) VALUES ('p1', 'One')"})
	before := digest(t, ts.st)

	body := execBody(t,
		stmt{SQL: "INSERT INTO pages (id, slug, title) VALUES ('g1', outpost_slug(?), 'Good')", Args: []any{"Rolled Back"}},
		stmt{SQL: "UPDATE pages SET views = 7 WHERE id = 'p1'"},
		stmt{SQL: "INSERT INTO pages (id, title) VALUES ('p1', 'dup')"},
		stmt{SQL: "INSERT INTO pages (id, title) VALUES ('g2', 'never run')"},
	)
	res := ts.do(t, "POST", "/v1/exec", nil, body)
	if res.status != http.StatusConflict {
		t.Fatalf("status %d, want 409; body %s", res.status, res.body)
	}
	e := decodeError(t, res.body)
	if e.Code != "constraint_violation" || e.Statement == nil || *e.Statement != 2 {
		t.Errorf("error %+v, want constraint_violation at statement 2", e)
	}
	if got, want := ts.query(t, "SELECT id, views FROM pages ORDER BY id"), `{"columns":["id","views"],"rows":[["p1",0]]}`; got != want {
		t.Errorf("pages %s, want %s", got, want)
	}
	if after := digest(t, ts.st); after != before {
		t.Errorf("the request changed the database:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// The rolled-back slug was released: the next one is the same.
	r := ts.exec(t, stmt{SQL: "INSERT INTO pages (id, slug) VALUES ('g1', outpost_slug('Rolled Back')) RETURNING slug"})
	if got, want := fmt.Sprint(r.Results[0].Rows), "[[rolled-back-43ax]]"; got != want {
		t.Errorf("slug after the rollback %s, want %s", got, want)
	}
}

func TestServer_Limits(t *testing.T) {
	st := testutil.OpenStore(t, "", store.Options{Schema: testSchema, MaxRows: 3})
	srv := httptest.NewServer(api.New(st, api.Config{Token: testToken}))
	t.Cleanup(srv.Close)
	ts := &testServer{st: st, srv: srv}
	ts.exec(t, stmt{SQL: "INSERT INTO pages (id) VALUES ('p1'), ('p2'), ('p3')"})
	// The row limit applies to these queries too, so they aggregate.
	digest := func(tb testing.TB, st *store.Store) string {
		return digestOf(tb, st,
			"SELECT group_concat(id) FROM (SELECT id FROM pages ORDER BY id)",
			"SELECT count(*) FROM outpost_clock__pages",
			"SELECT count(*) FROM outpost_slugs",
		)
	}
	before := digest(t, st)

	many := make([]stmt, store.MaxStatements+1)
	for i := range many {
		many[i] = stmt{SQL: "INSERT INTO pages (id) VALUES (?)", Args: []any{fmt.Sprint("m", i)}}
	}
	tests := []struct {
		name, path, body string
		wantStatus       int
		wantCode         string
		wantStmt         *int
	}{
		{"too many statements", "/v1/exec", execBody(t, many...), 400, "too_many_statements", nil},
		{"query result too large", "/v1/query", queryBody(t, "VALUES (1), (2), (3), (4)"), 400, "result_too_large", nil},
		{"RETURNING result too large", "/v1/exec", execBody(t, stmt{SQL: "INSERT INTO pages (id) VALUES ('g1')"}, stmt{SQL: "INSERT INTO pages (id) VALUES ('a'), ('b'), ('c'), ('d') RETURNING id"}), 400, "result_too_large", intp(1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := ts.do(t, "POST", tt.path, nil, tt.body)
			if res.status != tt.wantStatus {
				t.Errorf("status %d, want %d; body %.300s", res.status, tt.wantStatus, res.body)
			}
			e := decodeError(t, res.body)
			if e.Code != tt.wantCode {
				t.Errorf("code %q, want %q", e.Code, tt.wantCode)
			}
			if (e.Statement == nil) != (tt.wantStmt == nil) || (e.Statement != nil && *e.Statement != *tt.wantStmt) {
				t.Errorf("statement %v, want %v", e.Statement, tt.wantStmt)
			}
			if after := digest(t, st); after != before {
				t.Fatalf("the request changed the database:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
	t.Run("at the row limit", func(t *testing.T) {
		if got, want := ts.query(t, "SELECT id FROM pages ORDER BY id"), `{"columns":["id"],"rows":[["p1"],["p2"],["p3"]]}`; got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	})
}

// TestServer_StoreEdgeCases covers store behaviour seen through the API that
// was once wrong: named parameters, rows_affected of reads, use after Close.
func TestServer_StoreEdgeCases(t *testing.T) {
	t.Run("named parameters take positional args", func(t *testing.T) {
		ts := newTestServer(t)
		if got, want := ts.query(t, "SELECT :a, @b, $c, :a", 1, 2, 3), `{"columns":[":a","@b","$c",":a"],"rows":[[1,2,3,1]]}`; got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	})

	t.Run("rows_affected of a statement that changes nothing", func(t *testing.T) {
		ts := newTestServer(t)
		ts.exec(t, stmt{SQL: "INSERT INTO pages (id) VALUES ('a'), ('b'), ('c')"})
		r := ts.exec(t, stmt{SQL: "SELECT * FROM pages"}, stmt{SQL: "VALUES (1)"})
		for i, res := range r.Results {
			if *res.RowsAffected != 0 {
				t.Errorf("statement %d: rows_affected %d, want 0", i, *res.RowsAffected)
			}
		}
	})

	t.Run("query after Close", func(t *testing.T) {
		ts := newTestServer(t)
		ts.st.Close()
		res := ts.do(t, "POST", "/v1/query", nil, queryBody(t, "SELECT 1"))
		if res.status != http.StatusServiceUnavailable {
			t.Errorf("status %d, want 503; body %s", res.status, res.body)
		}
	})
}

// TestServer_DDLMessage: a schema change through /v1/exec is refused (403
// not_allowed) with a message that says what to do, not one about
// sqlite_master, however SQLite reaches the refusal.
func TestServer_DDLMessage(t *testing.T) {
	ts := newTestServer(t)
	for _, sql := range []string{
		"CREATE TABLE t (a)", "CREATE INDEX i ON pages (title)", "DROP TABLE pages",
		"ALTER TABLE pages ADD COLUMN x TEXT", "DELETE FROM sqlite_master", "UPDATE sqlite_schema SET sql = ''",
	} {
		res := ts.do(t, "POST", "/v1/exec", nil, execBody(t, stmt{SQL: sql}))
		e := decodeError(t, res.body)
		if res.status != 403 || e.Code != "not_allowed" || !strings.Contains(e.Message, "DDL is not allowed in /v1/exec; change the schema file and restart") {
			t.Errorf("%s: %d %+v", sql, res.status, e)
		}
	}
}
