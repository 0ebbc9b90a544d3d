package main

import (
	"bytes"
	"context"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	outpost "github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/client"
	"github.com/outpost-edge/outpost/node"
	"github.com/outpost-edge/outpost/sqltext"
)

const shellSchema = `
CREATE TABLE pages (id TEXT PRIMARY KEY NOT NULL, title TEXT, body BLOB, n INTEGER);
CREATE INDEX pages_title ON pages (title);
CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, text TEXT);
`

// shellNode starts a real node with shellSchema and returns a client of it.
func shellNode(t *testing.T) *client.Client {
	t.Helper()
	dir := t.TempDir()
	schema := filepath.Join(dir, "schema.sql")
	if err := os.WriteFile(schema, []byte(shellSchema), 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := node.Open(context.Background(), node.Config{
		DataDir: filepath.Join(dir, "data"), SchemaFile: schema, APIAddr: "127.0.0.1:0",
		Identity: outpost.Identity{Name: "X1", Location: "LHR", Role: outpost.RoleMaster, Code: "12ab"},
	})
	if err != nil {
		t.Fatal(err)
	}
	n.Serve()
	t.Cleanup(func() { n.Close(context.Background()) })
	c, err := client.Open(n.APIURL(), client.Options{MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// shellRun runs the non-interactive shell on input.
func shellRun(t *testing.T, c *client.Client, keepGoing bool, input string) (string, string, error) {
	t.Helper()
	var out, errw bytes.Buffer
	err := runShell(context.Background(), c, "", keepGoing, strings.NewReader(input), &out, &errw)
	return out.String(), errw.String(), err
}

func TestShell_Node(t *testing.T) {
	c := shellNode(t)

	// A multi-line statement, a write then a read, a semicolon in a string
	// and in a comment, two statements on one line.
	out, errs, err := shellRun(t, c, false, `
INSERT INTO pages (id, title, n)
  VALUES ('p1', 'a; b', 1), -- not the end;
         ('p2', 'it''s', NULL);
INSERT INTO notes VALUES ('n1', 'x'); SELECT id, title, n
FROM pages ORDER BY id;
`)
	if err != nil {
		t.Fatalf("err %v, stderr %q", err, errs)
	}
	want := "2 rows affected (db_version 1)\n1 row affected (db_version 2)\n" +
		"id  title  n\n--  -----  -\np1  a; b   1\np2  it's   NULL\n(2 rows)\n"
	if out != want {
		t.Fatalf("out:\n%s\nwant:\n%s", out, want)
	}

	// .tables hides outpost_* and sqlite_*; .schema shows the app's DDL.
	out, _, err = shellRun(t, c, false, ".tables\n")
	if err != nil || out != "notes\npages\n" {
		t.Fatalf(".tables: %v %q", err, out)
	}
	out, _, err = shellRun(t, c, false, ".schema\n")
	if err != nil || strings.Contains(out, "outpost_") || !strings.Contains(out, "CREATE TABLE pages") ||
		!strings.Contains(out, "CREATE INDEX pages_title") || !strings.Contains(out, "CREATE TABLE notes") {
		t.Fatalf(".schema: %v %q", err, out)
	}
	out, _, err = shellRun(t, c, false, ".schema PAGES\n")
	if err != nil || strings.Contains(out, "notes") || !strings.Contains(out, "CREATE INDEX pages_title") {
		t.Fatalf(".schema pages: %v %q", err, out)
	}
	out, _, err = shellRun(t, c, false, ".schema outpost_slugs\n")
	if err != nil || !strings.Contains(out, "outpost_slugs") {
		t.Fatalf(".schema outpost_slugs: %v %q", err, out)
	}

	// .mode csv and json, with a blob, a real and NULL.
	out, _, err = shellRun(t, c, false, `UPDATE pages SET body = x'00ff', n = 2.5 WHERE id = 'p1';
.mode csv
SELECT id, body, n, NULL AS z FROM pages ORDER BY id;
.mode json
SELECT id, body, n, NULL AS z FROM pages ORDER BY id;
.mode
`)
	want = "1 row affected (db_version 3)\nid,body,n,z\np1,x'00ff',2.5,\np2,,,\n" +
		`{"id":"p1","body":{"$blob":"AP8="},"n":2.5,"z":null}` + "\n" +
		`{"id":"p2","body":null,"n":null,"z":null}` + "\njson\n"
	if err != nil || out != want {
		t.Fatalf("modes: %v\n%s\nwant:\n%s", err, out, want)
	}

	// RETURNING shows the write's rows.
	out, _, err = shellRun(t, c, false, ".mode csv\nINSERT INTO notes VALUES ('n2', 'y') RETURNING id, text;\n")
	if err != nil || out != "id,text\nn2,y\n" {
		t.Fatalf("RETURNING: %v %q", err, out)
	}

	// .status
	out, _, err = shellRun(t, c, false, ".status\n")
	if err != nil || !strings.HasPrefix(out, "X1 (master)  db_version ") || !strings.Contains(out, "links: 0") {
		t.Fatalf(".status: %v %q", err, out)
	}
}

func TestShell_ErrorStops(t *testing.T) {
	c := shellNode(t)
	out, errs, err := shellRun(t, c, false, "INSERT INTO notes VALUES ('a', '1');\n\nSELECT * FROM nope;\nINSERT INTO notes VALUES ('b', '2');\n")
	if err == nil || err.Error() != "line 3: no_such_table: no such table: nope" {
		t.Fatalf("err %v (stderr %q, out %q)", err, errs, out)
	}
	// Through the command, with the file as stdin: exit status 1 and the
	// message on stderr.
	in := filepath.Join(t.TempDir(), "in.sql")
	if err := os.WriteFile(in, []byte(".mode csv\nSELECT 1 AS x;\nSELECT * FROM nope;\nSELECT 2;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stdin := os.Stdin
	os.Stdin = f
	var o, e bytes.Buffer
	code := run(context.Background(), []string{"shell", "--target", c.URL()}, &o, &e)
	os.Stdin = stdin
	if code != 1 || o.String() != "x\n1\n" || e.String() != "outpost shell: line 3: no_such_table: no such table: nope\n" {
		t.Fatalf("outpost shell < in.sql: exit %d, out %q, stderr %q", code, o.String(), e.String())
	}
	q, qerr := c.Query(context.Background(), "SELECT count(*) FROM notes")
	if qerr != nil || q.Rows[0][0] != int64(1) {
		t.Fatalf("the statement after the error ran: %v %v", qerr, q)
	}

	// --continue reports each error and goes on; the session still fails.
	out, errs, err = shellRun(t, c, true, "SELECT * FROM nope;\nINSERT INTO notes VALUES ('a', '1');\n.mode xml\nINSERT INTO notes VALUES ('b', '2');\n")
	if err == nil || err.Error() != "3 statements failed" {
		t.Fatalf("--continue: %v", err)
	}
	if !strings.Contains(errs, "line 1: no_such_table: no such table: nope\n") ||
		!strings.Contains(errs, "line 2: constraint_violation: ") ||
		!strings.Contains(errs, "line 3: .mode xml: want table, json or csv\n") ||
		!strings.Contains(out, "1 row affected") {
		t.Fatalf("--continue: out %q stderr %q", out, errs)
	}

	// A statement without its final ";" at the end of the input still runs;
	// .quit stops reading.
	out, _, err = shellRun(t, c, false, ".mode csv\nSELECT 1 AS x")
	if err != nil || out != "x\n1\n" {
		t.Fatalf("no final semicolon: %v %q", err, out)
	}
	out, _, err = shellRun(t, c, false, ".quit\nSELECT * FROM nope;\n")
	if err != nil || out != "" {
		t.Fatalf(".quit: %v %q", err, out)
	}
}

func TestShell_Interactive(t *testing.T) {
	c := shellNode(t)
	var out, errw bytes.Buffer
	s := &shell{c: c, target: c.URL(), out: &out, errw: &errw, mode: modeTable, interactive: true}
	src := &scriptSource{lines: []string{"SELECT", "  * FROM nope;", "SELECT 'half", "^C", ".mode csv", "SELECT 1 AS a,", "2 AS b;"}}
	if err := s.loop(context.Background(), src); err != nil {
		t.Fatal(err)
	}
	if errw.String() != "error: no_such_table: no such table: nope\n" || out.String() != "a,b\n1,2\n" {
		t.Fatalf("out %q, stderr %q", out.String(), errw.String())
	}
	want := []string{"SELECT * FROM nope;", ".mode csv", "SELECT 1 AS a, 2 AS b;"}
	if strings.Join(src.history, "|") != strings.Join(want, "|") {
		t.Fatalf("history %q", src.history)
	}
	wantPrompts := []string{promptMain, promptMore, promptMain, promptMore, promptMain, promptMain, promptMore, promptMain}
	if strings.Join(src.prompts, "|") != strings.Join(wantPrompts, "|") {
		t.Fatalf("prompts %q", src.prompts)
	}
}

// scriptSource plays lines as if typed; "^C" is a Ctrl-C.
type scriptSource struct {
	lines, history, prompts []string
}

func (s *scriptSource) ReadLine(prompt string) (string, error) {
	s.prompts = append(s.prompts, prompt)
	if len(s.lines) == 0 {
		return "", io.EOF
	}
	l := s.lines[0]
	s.lines = s.lines[1:]
	if l == "^C" {
		return "", errInterrupted
	}
	return l, nil
}

func (s *scriptSource) SaveHistory(e string) { s.history = append(s.history, e) }

func TestComplete(t *testing.T) {
	for _, tc := range []struct {
		text string
		want bool
	}{
		{"SELECT 1;", true},
		{"SELECT 1", false},
		{"SELECT 1;\n", true},
		{"SELECT 1; -- done\n", true},
		{"SELECT 1 -- done;\n", false},
		{"SELECT 1 /* ; */", false},
		{"SELECT ';'", false},
		{"SELECT 'a;\n", false},
		{"SELECT \"a;\" FROM t;", true},
		{"SELECT 1; SELECT", false},
		{"SELECT 1; SELECT 2;", true},
		{"-- only a comment\n", true},
		{"", true},
		{"CREATE TRIGGER t AFTER INSERT ON x BEGIN\n  UPDATE y SET a = 1;", false},
		{"CREATE TRIGGER t AFTER INSERT ON x BEGIN\n  UPDATE y SET a = 1;\nEND", false},
		{"CREATE TRIGGER t AFTER INSERT ON x BEGIN\n  UPDATE y SET a = 1;\nEND;", true},
		{"CREATE TRIGGER t AFTER INSERT ON x BEGIN SELECT CASE WHEN 1 THEN 2 END; END;", true},
		{"SELECT 1 ! ;", true}, // illegal token: complete at ";", the node reports it
	} {
		if got := complete(tc.text); got != tc.want {
			t.Errorf("complete(%q) = %v, want %v", tc.text, got, tc.want)
		}
	}
}

func TestIsRead(t *testing.T) {
	for sql, want := range map[string]bool{
		"SELECT 1": true, "values (1)": true, "WITH x AS (SELECT 1) SELECT * FROM x": true,
		"EXPLAIN QUERY PLAN SELECT 1": true, "PRAGMA table_info(pages)": true,
		"INSERT INTO t VALUES (1)": false, "WITH x AS (SELECT 1) DELETE FROM t": false,
		"UPDATE t SET a = 1 RETURNING a": false, "CREATE TABLE t (a)": false,
	} {
		if got := isRead(sqltext.Verb(sql)); got != want {
			t.Errorf("isRead(%q) = %v", sql, got)
		}
	}
}

func TestWriteRows(t *testing.T) {
	cols := []string{"i", "r", "s", "b", "n"}
	rows := [][]any{
		{int64(-9223372036854775808), 1.0, "tab\there\nnl", []byte{0, 1, 0xfe}, nil},
		{int64(7), math.Inf(-1), "<&>", make([]byte, 20), nil},
	}
	var b bytes.Buffer
	if err := writeRows(&b, modeTable, cols, rows); err != nil {
		t.Fatal(err)
	}
	want := "i                     r     s              b                                                  n\n" +
		"-                     -     -              -                                                  -\n" +
		"-9223372036854775808  1.0   tab\\there\\nnl  x'0001fe'                                          NULL\n" +
		"7                     -Inf  <&>            x'00000000000000000000000000000000...' (20 bytes)  NULL\n" +
		"(2 rows)\n"
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}

	b.Reset()
	if err := writeRows(&b, modeJSON, cols, rows); err != nil {
		t.Fatal(err)
	}
	want = `{"i":-9223372036854775808,"r":1.0,"s":"tab\there\nnl","b":{"$blob":"AAH+"},"n":null}` + "\n" +
		`{"i":7,"r":{"$real":"-Infinity"},"s":"<&>","b":{"$blob":"AAAAAAAAAAAAAAAAAAAAAAAAAAA="},"n":null}` + "\n"
	if b.String() != want {
		t.Errorf("json:\n%s\nwant:\n%s", b.String(), want)
	}

	b.Reset()
	if err := writeRows(&b, modeCSV, cols, rows[:1]); err != nil {
		t.Fatal(err)
	}
	want = "i,r,s,b,n\n-9223372036854775808,1.0,\"tab\there\nnl\",x'0001fe',\n"
	if b.String() != want {
		t.Errorf("csv:\n%q\nwant:\n%q", b.String(), want)
	}

	b.Reset()
	if err := writeRows(&b, modeTable, []string{"x"}, nil); err != nil || b.String() != "x\n-\n(0 rows)\n" {
		t.Errorf("empty table: %v %q", err, b.String())
	}
}

func TestHistoryEntry(t *testing.T) {
	for _, tc := range []struct {
		lines []string
		want  string
	}{
		{[]string{"SELECT 1;"}, "SELECT 1;"},
		{[]string{"SELECT a,", "b FROM t;"}, "SELECT a, b FROM t;"},
		{[]string{"SELECT a, -- first", "b FROM t WHERE c = '--';"}, "SELECT a , b FROM t WHERE c = '--';"},
	} {
		if got := historyEntry(tc.lines); got != tc.want {
			t.Errorf("historyEntry(%q) = %q, want %q", tc.lines, got, tc.want)
		}
	}
}
