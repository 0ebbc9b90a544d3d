package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// durabilitySchema has a transaction shape whose half-application is
// detectable: one batch row and two item rows that reference it, written in
// one request. doc rows carry slugs.
const durabilitySchema = `
CREATE TABLE batch (
	id     TEXT PRIMARY KEY NOT NULL,
	client INTEGER NOT NULL DEFAULT 0,
	seq    INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE item (
	id       TEXT PRIMARY KEY NOT NULL,
	batch_id TEXT NOT NULL DEFAULT '',
	n        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX item_batch ON item (batch_id);
CREATE TABLE doc (
	id    TEXT PRIMARY KEY NOT NULL,
	slug  TEXT NOT NULL DEFAULT '',
	title TEXT NOT NULL DEFAULT ''
);
`

const (
	writers    = 8 // concurrent batch-writing clients
	killCycles = 3 // SIGKILL/restart cycles
	slugTitle  = "Same title"
)

// The binary is built once per test process, into a directory TestMain removes.
var (
	buildOnce sync.Once
	buildDir  string
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// outpostBinary builds cmd/outpost (without -race: the race detector is for
// the test process) and returns its path. It skips the test when the go
// command is not on PATH.
func outpostBinary(tb testing.TB) string {
	tb.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		tb.Skip("go is not on PATH; cannot build the outpost binary")
	}
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "outpost-e2e-"); buildErr != nil {
			return
		}
		binPath = filepath.Join(buildDir, "outpost")
		out, err := exec.Command(goCmd, "build", "-o", binPath, "github.com/outpost-edge/outpost/cmd/outpost").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return binPath
}

// syncBuffer is a bytes.Buffer safe for the exec package's copying goroutine
// and the test reading it at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// proc is one running `outpost serve`.
type proc struct {
	cmd    *exec.Cmd
	url    string
	stderr *syncBuffer
	exited chan struct{} // closed when the process has been waited for
	err    error         // from Wait, valid after exited is closed
}

// kill SIGKILLs the process (if still running) and waits for it to be gone.
func (p *proc) kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("find a free port: %v", err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// startServe runs `outpost serve` on dataDir and waits until /healthz answers.
// The process is killed when the test ends; its stderr is logged if the test
// failed. A port taken between choosing and binding it is retried.
func startServe(t *testing.T, bin, dataDir, schemaFile string) *proc {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		p := launch(t, bin, dataDir, schemaFile)
		err := waitHealthy(p, 15*time.Second)
		if err == nil {
			return p
		}
		p.kill()
		lastErr = fmt.Errorf("%w\nstderr:\n%s", err, p.stderr.String())
		if !strings.Contains(p.stderr.String(), "address already in use") {
			break
		}
	}
	t.Fatalf("outpost serve did not become healthy: %v", lastErr)
	return nil
}

var launches atomic.Int64

func launch(t *testing.T, bin, dataDir, schemaFile string) *proc {
	t.Helper()
	addr := freeAddr(t)
	p := &proc{url: "http://" + addr, stderr: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, "serve", "--data", dataDir, "--schema", schemaFile, "--api", addr,
		"--name", "EDGE01", "--location", "LHR", "--farm", "lhr", "--role", "edge", "--code", "43ax")
	p.cmd.Stdout = p.stderr
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start outpost serve: %v", err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	n := launches.Add(1)
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("outpost serve #%d (%s) output:\n%s", n, p.url, p.stderr.String())
		}
	})
	return p
}

func waitHealthy(p *proc, timeout time.Duration) error {
	hc := &http.Client{Timeout: time.Second}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return fmt.Errorf("process exited before it was healthy: %v", p.err)
		default:
		}
		resp, err := hc.Get(p.url + "/healthz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("/healthz did not answer 200 within %v", timeout)
}

// API wire types.

type stmt struct {
	SQL  string `json:"sql"`
	Args []any  `json:"args"`
}

type execResponse struct {
	Results []struct {
		RowsAffected int64    `json:"rows_affected"`
		Columns      []string `json:"columns"`
		Rows         [][]any  `json:"rows"`
	} `json:"results"`
	DBVersion *int64 `json:"db_version"`
}

// post sends a JSON body and returns the status and body. A transport error
// (the process died, the connection was reset) is returned as err.
func post(ctx context.Context, hc *http.Client, url string, body any) (int, []byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, out, nil
}

// execTx runs one /v1/exec request. acked is true only for a complete 200
// answer carrying a db_version; err is set for transport failures (which are
// expected around a kill); any complete non-200 answer is a test error.
func execTx(t *testing.T, ctx context.Context, hc *http.Client, base string, stmts []stmt) (resp execResponse, acked bool, err error) {
	status, body, err := post(ctx, hc, base+"/v1/exec", map[string]any{"statements": stmts})
	if err != nil {
		return resp, false, err
	}
	if status != http.StatusOK {
		t.Errorf("/v1/exec %v: status %d: %s", stmts[0].SQL, status, body)
		return resp, false, nil
	}
	if err := json.Unmarshal(body, &resp); err != nil || resp.DBVersion == nil || len(resp.Results) != len(stmts) {
		t.Errorf("/v1/exec: malformed 200 answer (%v): %s", err, body)
		return resp, false, nil
	}
	return resp, true, nil
}

// mustExec runs one /v1/exec request that must succeed.
func mustExec(t *testing.T, base string, stmts ...stmt) execResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, acked, err := execTx(t, ctx, http.DefaultClient, base, stmts)
	if err != nil || !acked {
		t.Fatalf("/v1/exec %q: %v (acked %v)", stmts[0].SQL, err, acked)
	}
	return resp
}

// query runs one /v1/query request that must succeed; numbers come back as
// json.Number.
func query(t *testing.T, base, sql string, args ...any) [][]any {
	t.Helper()
	if args == nil {
		args = []any{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	status, body, err := post(ctx, http.DefaultClient, base+"/v1/query", stmt{SQL: sql, Args: args})
	if err != nil {
		t.Fatalf("/v1/query %q: %v", sql, err)
	}
	if status != http.StatusOK {
		t.Fatalf("/v1/query %q: status %d: %s", sql, status, body)
	}
	var out struct {
		Columns []string `json:"columns"`
		Rows    [][]any  `json:"rows"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("/v1/query %q: decode: %v: %s", sql, err, body)
	}
	return out.Rows
}

func asInt(t *testing.T, v any) int64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("value %#v is not a JSON number", v)
	}
	i, err := n.Int64()
	if err != nil {
		t.Fatalf("value %s is not an integer: %v", n, err)
	}
	return i
}

// ackedTx is a batch transaction the node acknowledged with a 200.
type ackedTx struct {
	batch string
	items [2]string // the item IDs outpost_id() gave, from RETURNING
	dbv   int64
}

// history is everything acknowledged across all cycles.
type history struct {
	mu    sync.Mutex
	txs   []ackedTx
	dbvs  map[int64]string  // db_version -> what was acknowledged with it
	ids   map[string]string // outpost_id() value -> where it was seen
	slugs map[string]string // slug -> id of its doc row
}

func (h *history) addDBV(t *testing.T, dbv int64, what string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if prev, dup := h.dbvs[dbv]; dup {
		t.Errorf("db_version %d acknowledged twice: for %s and for %s", dbv, prev, what)
	}
	h.dbvs[dbv] = what
}

func (h *history) addID(t *testing.T, id, where string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if id == "" {
		t.Errorf("empty outpost_id() value from %s", where)
		return
	}
	if prev, dup := h.ids[id]; dup {
		t.Errorf("outpost_id() issued %s twice: %s and %s", id, prev, where)
	}
	h.ids[id] = where
}

func (h *history) addSlug(t *testing.T, slug, docID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if prev, dup := h.slugs[slug]; dup {
		t.Errorf("slug %s issued twice: docs %s and %s", slug, prev, docID)
	}
	h.slugs[slug] = docID
}

func (h *history) maxDBV() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	var m int64
	for v := range h.dbvs {
		m = max(m, v)
	}
	return m
}

func (h *history) snapshot() ([]ackedTx, map[string]string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	slugs := make(map[string]string, len(h.slugs))
	for k, v := range h.slugs {
		slugs[k] = v
	}
	return append([]ackedTx(nil), h.txs...), slugs
}

// insertSlugDoc writes a doc row with a fresh ID and a slug for slugTitle
// and records what was acknowledged.
func insertSlugDoc(t *testing.T, ctx context.Context, hc *http.Client, base string, h *history, where string) (execResponse, bool, error) {
	resp, acked, err := execTx(t, ctx, hc, base, []stmt{{
		SQL:  `INSERT INTO doc (id, slug, title) VALUES (outpost_id(), outpost_slug(?), ?) RETURNING id, slug`,
		Args: []any{slugTitle, slugTitle},
	}})
	if !acked {
		return resp, false, err
	}
	rows := resp.Results[0].Rows
	if len(rows) != 1 || len(rows[0]) != 2 {
		t.Errorf("doc insert RETURNING gave %v", rows)
		return resp, false, nil
	}
	id, _ := rows[0][0].(string)
	slug, _ := rows[0][1].(string)
	h.addID(t, id, where+" (doc)")
	h.addSlug(t, slug, id)
	h.addDBV(t, *resp.DBVersion, "doc "+id)
	return resp, true, nil
}

// batchWriter loops writing batch transactions until stop is closed. seq
// persists across cycles so batch IDs are never reused.
func batchWriter(t *testing.T, hc *http.Client, base string, client int, seq *int, stop <-chan struct{}, h *history, acks, inFlight *atomic.Int64) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		*seq++
		id := fmt.Sprintf("%d-%d", client, *seq)
		stmts := []stmt{
			{SQL: `INSERT INTO batch (id, client, seq) VALUES (?, ?, ?)`, Args: []any{id, client, *seq}},
			{SQL: `INSERT INTO item (id, batch_id, n) VALUES (outpost_id(), ?, 1) RETURNING id`, Args: []any{id}},
			{SQL: `INSERT INTO item (id, batch_id, n) VALUES (outpost_id(), ?, 2) RETURNING id`, Args: []any{id}},
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		inFlight.Add(1)
		resp, acked, err := execTx(t, ctx, hc, base, stmts)
		inFlight.Add(-1)
		cancel()
		if err != nil {
			// The node is gone (killed): wait for the stop signal.
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			continue
		}
		if !acked {
			continue
		}
		tx := ackedTx{batch: id, dbv: *resp.DBVersion}
		for k := range 2 {
			r := resp.Results[1+k].Rows
			if len(r) != 1 || len(r[0]) != 1 {
				t.Errorf("batch %s: item RETURNING gave %v", id, r)
				continue
			}
			tx.items[k], _ = r[0][0].(string)
			h.addID(t, tx.items[k], "item of batch "+id)
		}
		h.addDBV(t, tx.dbv, "batch "+id)
		h.mu.Lock()
		h.txs = append(h.txs, tx)
		h.mu.Unlock()
		acks.Add(1)
	}
}

// slugWriter loops issuing slugs for the same title until stop is closed, so
// slugs are also acknowledged right up to the kill.
func slugWriter(t *testing.T, hc *http.Client, base string, stop <-chan struct{}, h *history) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, _, err := insertSlugDoc(t, ctx, hc, base, h, "slug writer")
		cancel()
		if err != nil {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
}

// checkState verifies, through the API of a freshly restarted node, that
// every acknowledged write survived and that nothing is half-applied.
func checkState(t *testing.T, base string, h *history, cycle int) {
	t.Helper()
	txs, slugs := h.snapshot()

	batches := map[string]bool{}
	for _, r := range query(t, base, `SELECT id FROM batch`) {
		batches[r[0].(string)] = true
	}
	items := map[string][]string{} // batch_id -> item ids
	itemN := map[string]map[int64]bool{}
	for _, r := range query(t, base, `SELECT id, batch_id, n FROM item`) {
		id, b, n := r[0].(string), r[1].(string), asInt(t, r[2])
		items[b] = append(items[b], id)
		if itemN[b] == nil {
			itemN[b] = map[int64]bool{}
		}
		itemN[b][n] = true
	}

	// Nothing half-applied, acknowledged or not.
	for b := range batches {
		if got := len(items[b]); got != 2 || !itemN[b][1] || !itemN[b][2] {
			t.Errorf("after kill %d: batch %s has items %v (n %v), want exactly items 1 and 2", cycle, b, items[b], itemN[b])
		}
	}
	for b, ids := range items {
		if !batches[b] {
			t.Errorf("after kill %d: items %v reference batch %s, which does not exist (half-applied transaction)", cycle, ids, b)
		}
	}

	// Every acknowledged transaction is fully present, with the very item
	// IDs it was acknowledged with.
	lost := 0
	for _, tx := range txs {
		if !batches[tx.batch] {
			lost++
			if lost <= 10 {
				t.Errorf("after kill %d: acknowledged batch %s (db_version %d) is missing", cycle, tx.batch, tx.dbv)
			}
			continue
		}
		got := append([]string(nil), items[tx.batch]...)
		want := []string{tx.items[0], tx.items[1]}
		if !sameSet(got, want) {
			t.Errorf("after kill %d: acknowledged batch %s has items %v, want %v", cycle, tx.batch, got, want)
		}
	}
	if lost > 0 {
		t.Errorf("after kill %d: %d of %d acknowledged transactions lost", cycle, lost, len(txs))
	}

	// Every acknowledged slug is still there, on its doc.
	docs := map[string]string{}
	perSlug := map[string]int{}
	for _, r := range query(t, base, `SELECT id, slug FROM doc`) {
		docs[r[0].(string)] = r[1].(string)
		perSlug[r[1].(string)]++
	}
	for slug, id := range slugs {
		if got, ok := docs[id]; !ok || got != slug {
			t.Errorf("after kill %d: acknowledged doc %s with slug %s: stored slug %q (present %v)", cycle, id, slug, got, ok)
		}
	}
	for slug, n := range perSlug {
		if n > 1 {
			t.Errorf("after kill %d: slug %s is on %d docs", cycle, slug, n)
		}
	}
	t.Logf("after kill %d: %d batches stored (%d acknowledged so far), %d docs", cycle, len(batches), len(txs), len(docs))
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, s := range a {
		m[s]++
	}
	for _, s := range b {
		m[s]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return true
}

// collectIDs issues outpost_id() values through a read query and /v1/ids,
// and records them.
func collectIDs(t *testing.T, base string, h *history, label string) {
	t.Helper()
	rows := query(t, base, `WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 50) SELECT outpost_id() FROM k`)
	if len(rows) != 50 {
		t.Fatalf("%s: id query returned %d rows, want 50", label, len(rows))
	}
	for _, r := range rows {
		h.addID(t, r[0].(string), label+" (query)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/ids?n=50", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: GET /v1/ids: %v", label, err)
	}
	defer resp.Body.Close()
	var out struct {
		IDs []string `json:"ids"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || len(out.IDs) != 50 {
		t.Fatalf("%s: GET /v1/ids: status %d, %d ids, err %v", label, resp.StatusCode, len(out.IDs), err)
	}
	for _, id := range out.IDs {
		h.addID(t, id, label+" (/v1/ids)")
	}
}

// TestServe_KillDuringWrites runs the real binary, SIGKILLs it while eight
// clients write three-statement transactions, restarts it on the same data
// directory and checks that every acknowledged transaction survived whole,
// that no transaction is half-applied, and that db_versions, IDs and slugs
// never repeat across the restarts.
func TestServe_KillDuringWrites(t *testing.T) {
	bin := outpostBinary(t)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	schemaFile := filepath.Join(dir, "schema.sql")
	if err := os.WriteFile(schemaFile, []byte(durabilitySchema), 0o600); err != nil {
		t.Fatal(err)
	}

	h := &history{dbvs: map[int64]string{}, ids: map[string]string{}, slugs: map[string]string{}}
	seqs := make([]int, writers)
	var firstSlug string

	p := startServe(t, bin, dataDir, schemaFile)
	for cycle := 0; cycle <= killCycles; cycle++ {
		label := fmt.Sprintf("start %d", cycle)
		if cycle > 0 {
			checkState(t, p.url, h, cycle)
		}
		// The first write after a restart takes a db_version above every
		// acknowledged one, and a slug for a title already used gets a new
		// suffix.
		before := h.maxDBV()
		resp := func() execResponse {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, acked, err := insertSlugDoc(t, ctx, http.DefaultClient, p.url, h, label)
			if err != nil || !acked {
				t.Fatalf("%s: slug write: %v (acked %v)", label, err, acked)
			}
			return resp
		}()
		if got := *resp.DBVersion; got <= before {
			t.Errorf("%s: db_version of the first write = %d, want > %d (the highest acknowledged)", label, got, before)
		}
		slug := resp.Results[0].Rows[0][1].(string)
		if cycle == 0 {
			firstSlug = slug
		} else if slug == firstSlug || !strings.HasPrefix(slug, firstSlug+"-") {
			t.Errorf("%s: outpost_slug(%q) = %q, want a new suffix on %q", label, slugTitle, slug, firstSlug)
		}
		collectIDs(t, p.url, h, label)
		if cycle == killCycles {
			break
		}

		// Write from several clients, and SIGKILL the node in the middle.
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: writers + 1}}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var acks, inFlight atomic.Int64
		for c := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				batchWriter(t, hc, p.url, c, &seqs[c], stop, h, &acks, &inFlight)
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			slugWriter(t, hc, p.url, stop, h)
		}()
		time.Sleep(time.Duration(300+rand.IntN(501)) * time.Millisecond)
		flying := inFlight.Load()
		p.kill()
		close(stop)
		wg.Wait()
		hc.CloseIdleConnections()
		t.Logf("kill %d: %d transactions acknowledged this run, %d in flight at the kill", cycle+1, acks.Load(), flying)
		if acks.Load() == 0 {
			t.Errorf("kill %d: no transaction was acknowledged before the kill; the test proved nothing", cycle+1)
		}
		if t.Failed() {
			t.FailNow()
		}
		var exitErr *exec.ExitError
		if !errors.As(p.err, &exitErr) || exitErr.ExitCode() != -1 {
			t.Errorf("kill %d: process ended with %v, want killed by a signal", cycle+1, p.err)
		}

		p = startServe(t, bin, dataDir, schemaFile)
	}

	txs, slugs := h.snapshot()
	t.Logf("%d acknowledged transactions, %d slugs, %d distinct IDs over %d kills", len(txs), len(slugs), len(h.ids), killCycles)
}
