package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// syncSchema is the one replicated table of TestSync_KillDuringSync.
const syncSchema = `CREATE TABLE items (id TEXT PRIMARY KEY NOT NULL, node TEXT, n INTEGER, body TEXT);
`

const (
	syncWritersPerNode = 2                // write goroutines per node
	syncLoad           = 3 * time.Second  // how long every node takes writes
	syncConverge       = 30 * time.Second // how long the fleet may take to agree afterwards
	syncSelect         = `SELECT id, node, n, body FROM items ORDER BY id`
	syncHealthy        = 15 * time.Second       // how long a (re)started node may take to answer /healthz
	syncWriteTimeout   = 5 * time.Second        // per /v1/exec request
	syncDownPause      = 10 * time.Millisecond  // a writer's pause after a transport error
	syncPollEvery      = 100 * time.Millisecond // convergence polling interval
)

// syncNode is one member of the test fleet, across all of its lives.
type syncNode struct {
	name, role, farm, location, code string

	dir     string      // data directory
	apiAddr string      // app API listen address (kept across restarts)
	peer    string      // peer listener address (in the trust list)
	url     string      // http://apiAddr
	log     *syncBuffer // output of every life, with a marker line per start
	p       *proc       // current process; only the test goroutine touches it
	lives   int
}

// syncRow is what a writer sent for one id.
type syncRow struct {
	node string
	n    int64
	body string
}

// syncWrites records every write the clients attempted and which of them
// were acknowledged with a 200.
type syncWrites struct {
	mu    sync.Mutex
	sent  map[string]syncRow
	acked map[string]bool
	// per node: acknowledged, failed at the transport (node down or the
	// request raced the kill), and complete non-200 answers.
	ack, down, bad map[string]int
	badSamples     []string
}

func (w *syncWrites) record(id string, r syncRow) {
	w.mu.Lock()
	w.sent[id] = r
	w.mu.Unlock()
}

func (w *syncWrites) result(node, id string, acked bool, transportErr error, status int, body []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case acked:
		w.acked[id] = true
		w.ack[node]++
	case transportErr != nil:
		w.down[node]++
	default:
		w.bad[node]++
		if len(w.badSamples) < 5 {
			w.badSamples = append(w.badSamples, fmt.Sprintf("%s %s: status %d: %s", node, id, status, bytes.TrimSpace(body)))
		}
	}
}

func (w *syncWrites) acks(node string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ack[node]
}

// TestSync_KillDuringSync runs a four-node fleet (MASTER01, NODE01 and the
// farm lhr edges EDGE01 and EDGE02) as real processes syncing over mutual
// TLS on loopback, writes to every node at once, SIGKILLs and restarts the
// master and then an edge in the middle of the load, and checks that the
// fleet converges: every acknowledged write from every node is on every node,
// no node holds a row no client sent, and all nodes answer the same rows.
func TestSync_KillDuringSync(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process sync test; skipped with -short")
	}
	began := time.Now()
	bin := outpostBinary(t)
	built := time.Since(began)
	dir := t.TempDir()

	nodes := []*syncNode{
		{name: "MASTER01", role: "master", location: "FRA", code: "01ma"},
		{name: "NODE01", role: "node", location: "AMS", code: "02no"},
		{name: "EDGE01", role: "edge", farm: "lhr", location: "LHR", code: "43ax"},
		{name: "EDGE02", role: "edge", farm: "lhr", location: "LHR", code: "44bx"},
	}
	byName, schemaFile, trustFile := layoutSyncFleet(t, bin, dir, syncSchema, nodes)

	// On failure: every node's status and the tail of its log. A deferred
	// call (not t.Cleanup) so it runs before the processes are killed, on
	// t.Fatal too.
	defer func() {
		if !t.Failed() {
			return
		}
		for _, n := range nodes {
			t.Logf("=== %s (%s, %d lives) /v1/status:\n%s", n.name, n.url, n.lives, fetchStatus(n.url))
			t.Logf("=== %s log (last 60 lines):\n%s", n.name, tailLines(n.log.String(), 60))
		}
	}()

	for _, n := range nodes {
		startSyncNode(t, bin, n, schemaFile, trustFile)
	}
	t.Logf("built in %v; fleet of %d up after %v", built.Round(time.Millisecond), len(nodes), time.Since(began).Round(time.Millisecond))

	// Write load: every node, syncWritersPerNode goroutines each.
	w := &syncWrites{
		sent: map[string]syncRow{}, acked: map[string]bool{},
		ack: map[string]int{}, down: map[string]int{}, bad: map[string]int{},
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: syncWritersPerNode + 1}}
	defer hc.CloseIdleConnections()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var inFlight atomic.Int64
	for _, n := range nodes {
		for g := range syncWritersPerNode {
			wg.Add(1)
			go func() {
				defer wg.Done()
				syncWriter(hc, n.name, n.url, g, stop, w, &inFlight)
			}()
		}
	}
	loadStart := time.Now()
	// Stop the writers on every way out, t.Fatal included.
	stopLoad := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	defer stopLoad()

	// Kill the master, then (separately) an edge, in the middle of the load,
	// and restart each on its data directory and ports.
	killAndRestart := func(at time.Duration, n *syncNode) {
		time.Sleep(time.Until(loadStart.Add(at)))
		acksBefore := w.acks(n.name)
		flying := inFlight.Load()
		p := n.p
		p.kill()
		killedAt := time.Since(loadStart)
		var exitErr *exec.ExitError
		if !errors.As(p.err, &exitErr) || exitErr.ExitCode() != -1 {
			t.Errorf("%s: process ended with %v, want killed by a signal", n.name, p.err)
		}
		down := time.Duration(300+rand.IntN(201)) * time.Millisecond
		time.Sleep(down)
		startSyncNode(t, bin, n, schemaFile, trustFile)
		t.Logf("%s: SIGKILLed at %v (%d of its writes acknowledged, %d requests in flight fleet-wide), down %v, healthy again at %v",
			n.name, killedAt.Round(time.Millisecond), acksBefore, flying, down, time.Since(loadStart).Round(time.Millisecond))
	}
	killAndRestart(700*time.Millisecond, byName["MASTER01"])
	killAndRestart(1700*time.Millisecond, byName["EDGE02"])
	time.Sleep(time.Until(loadStart.Add(syncLoad)))
	stopLoad()
	loadTime := time.Since(loadStart)

	w.mu.Lock()
	summary := make([]string, 0, len(nodes))
	for _, n := range nodes {
		summary = append(summary, fmt.Sprintf("%s %d acked/%d down/%d bad", n.name, w.ack[n.name], w.down[n.name], w.bad[n.name]))
	}
	t.Logf("load ran %v: %d writes sent, %d acknowledged (%s)", loadTime.Round(time.Millisecond), len(w.sent), len(w.acked), strings.Join(summary, "; "))
	for _, s := range w.badSamples {
		t.Errorf("write answered with a non-200: %s", s)
	}
	for _, n := range nodes {
		if w.ack[n.name] == 0 {
			t.Errorf("%s: no write was acknowledged; the test proved nothing for it", n.name)
		}
	}
	w.mu.Unlock()

	// Wait until every node answers the same rows.
	convStart := time.Now()
	results := make([][][]any, len(nodes))
	errs := make([]error, len(nodes))
	converged := false
	polls := 0
	for {
		polls++
		for i, n := range nodes {
			results[i], errs[i] = syncQuery(n.url, syncSelect)
		}
		if errors.Join(errs...) == nil && allSame(results) {
			converged = true
			break
		}
		if time.Since(convStart) > syncConverge {
			break
		}
		time.Sleep(syncPollEvery)
	}
	convTime := time.Since(convStart)
	counts := make([]string, len(nodes))
	for i, n := range nodes {
		counts[i] = fmt.Sprintf("%s %d", n.name, len(results[i]))
		if errs[i] != nil {
			t.Errorf("%s: %s: %v", n.name, syncSelect, errs[i])
		}
	}
	if converged {
		t.Logf("converged %v after the load stopped (%d polls): %d rows on every node", convTime.Round(time.Millisecond), polls, len(results[0]))
	} else {
		t.Errorf("the fleet did not converge within %v: rows per node: %s", syncConverge, strings.Join(counts, ", "))
	}

	// Check every node against what the clients sent and had acknowledged.
	w.mu.Lock()
	sent, acked := w.sent, w.acked
	w.mu.Unlock()
	ackedIDs := make([]string, 0, len(acked))
	for id := range acked {
		ackedIDs = append(ackedIDs, id)
	}
	sort.Strings(ackedIDs)
	for i, n := range nodes {
		if errs[i] != nil {
			continue
		}
		checkSyncRows(t, n.name, results[i], sent, ackedIDs, byName)
	}

	syncLogReport(t, nodes)
	t.Logf("total %v (build %v, load %v, convergence %v)", time.Since(began).Round(time.Millisecond),
		built.Round(time.Millisecond), loadTime.Round(time.Millisecond), convTime.Round(time.Millisecond))
}

// syncWriter inserts rows <node>-<g>-<seq> into node until stop is closed.
func syncWriter(hc *http.Client, node, base string, g int, stop <-chan struct{}, w *syncWrites, inFlight *atomic.Int64) {
	for seq := int64(1); ; seq++ {
		select {
		case <-stop:
			return
		default:
		}
		id := fmt.Sprintf("%s-%d-%d", node, g, seq)
		r := syncRow{node: node, n: seq, body: fmt.Sprintf("from %s writer %d: row %d %s", node, g, seq, strings.Repeat("·", int(seq%17)))}
		w.record(id, r)
		ctx, cancel := context.WithTimeout(context.Background(), syncWriteTimeout)
		inFlight.Add(1)
		status, body, err := post(ctx, hc, base+"/v1/exec", map[string]any{"statements": []stmt{{
			SQL:  `INSERT INTO items (id, node, n, body) VALUES (?, ?, ?, ?)`,
			Args: []any{id, r.node, r.n, r.body},
		}}})
		inFlight.Add(-1)
		cancel()
		acked := false
		if err == nil && status == http.StatusOK {
			var resp execResponse
			acked = json.Unmarshal(body, &resp) == nil && resp.DBVersion != nil && len(resp.Results) == 1 && resp.Results[0].RowsAffected == 1
		}
		w.result(node, id, acked, err, status, body)
		if err != nil {
			// The node is down (or was killed under this request).
			select {
			case <-stop:
				return
			case <-time.After(syncDownPause):
			}
		}
	}
}

// checkSyncRows checks one node's rows: each was sent by a client with
// exactly this content, and every acknowledged write is among them.
func checkSyncRows(t *testing.T, name string, rows [][]any, sent map[string]syncRow, ackedIDs []string, nodes map[string]*syncNode) {
	t.Helper()
	const maxReports = 5
	have := make(map[string]bool, len(rows))
	strange := 0
	for _, r := range rows {
		problem := ""
		var id string
		switch {
		case len(r) != 4:
			problem = fmt.Sprintf("has %d columns", len(r))
		default:
			var ok bool
			if id, ok = r[0].(string); !ok {
				problem = "id is not text"
				break
			}
			have[id] = true
			parts := strings.Split(id, "-")
			if len(parts) != 3 || nodes[parts[0]] == nil {
				problem = "id is not <node>-<g>-<seq> of a fleet node"
				break
			}
			if g, err := strconv.Atoi(parts[1]); err != nil || g < 0 || g >= syncWritersPerNode {
				problem = "id has no valid writer number"
				break
			}
			if seq, err := strconv.ParseInt(parts[2], 10, 64); err != nil || seq < 1 {
				problem = "id has no valid sequence number"
				break
			}
			want, ok := sent[id]
			if !ok {
				problem = "no client ever sent this id"
				break
			}
			node, _ := r[1].(string)
			n, _ := r[2].(json.Number)
			body, _ := r[3].(string)
			if node != want.node || n.String() != strconv.FormatInt(want.n, 10) || body != want.body {
				problem = fmt.Sprintf("content differs from what was sent (%q, %d, %q)", want.node, want.n, want.body)
			}
		}
		if problem != "" {
			strange++
			if strange <= maxReports {
				t.Errorf("%s holds row %v: %s", name, r, problem)
			}
		}
	}
	if strange > maxReports {
		t.Errorf("%s holds %d rows no client sent (or altered), %d not shown", name, strange, strange-maxReports)
	}
	missing := 0
	for _, id := range ackedIDs {
		if !have[id] {
			missing++
			if missing <= maxReports {
				t.Errorf("%s is missing acknowledged write %s", name, id)
			}
		}
	}
	if missing > 0 {
		t.Errorf("%s is missing %d of %d acknowledged writes", name, missing, len(ackedIDs))
	}
}

// allSame reports whether every result equals the first.
func allSame(results [][][]any) bool {
	first := syncCanon(results[0])
	for _, r := range results[1:] {
		if syncCanon(r) != first {
			return false
		}
	}
	return true
}

func syncCanon(rows [][]any) string {
	b, _ := json.Marshal(rows)
	return string(b)
}

// layoutSyncFleet lays out a fleet of `outpost serve` processes in dir: a
// schema file with schema, for every node a data directory with its
// identity (keygen) and two free addresses (API, peer; no two listeners on
// one port), and the trust list of all of them. It returns the nodes by
// name and the two files; start them with startSyncNode.
func layoutSyncFleet(t *testing.T, bin, dir, schema string, nodes []*syncNode) (byName map[string]*syncNode, schemaFile, trustFile string) {
	t.Helper()
	schemaFile = filepath.Join(dir, "schema.sql")
	if err := os.WriteFile(schemaFile, []byte(schema), 0o600); err != nil {
		t.Fatal(err)
	}
	trustFile = filepath.Join(dir, "fleet.trust")
	byName = map[string]*syncNode{}
	taken := map[string]bool{}
	pickAddr := func() string {
		for {
			if a := freeAddr(t); !taken[a] {
				taken[a] = true
				return a
			}
		}
	}
	var trust bytes.Buffer
	trust.WriteString("# fleet.trust for " + t.Name() + "\n")
	for _, n := range nodes {
		byName[n.name] = n
		n.dir = filepath.Join(dir, n.name)
		n.apiAddr, n.peer = pickAddr(), pickAddr()
		n.url = "http://" + n.apiAddr
		n.log = &syncBuffer{}
		args := []string{"keygen", "--data", n.dir, "--name", n.name, "--role", n.role, "--location", n.location, "--code", n.code}
		if n.farm != "" {
			args = append(args, "--farm", n.farm)
		}
		runOutpost(t, bin, args...)
		line := strings.TrimSpace(runOutpost(t, bin, "id", "--data", n.dir, "--peer-addr", n.peer))
		if !strings.HasPrefix(line, "name="+n.name+" ") || !strings.Contains(line, "addr="+n.peer) {
			t.Fatalf("outpost id for %s printed %q", n.name, line)
		}
		trust.WriteString(line + "\n")
	}
	if err := os.WriteFile(trustFile, trust.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return byName, schemaFile, trustFile
}

// startSyncNode starts `outpost serve` for n on its data directory and
// ports and waits until it is healthy. A port taken by someone else is
// retried for a while (the peer port is fixed by the trust list).
func startSyncNode(t *testing.T, bin string, n *syncNode, schemaFile, trustFile string) {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		n.lives++
		p := &proc{url: n.url, stderr: &syncBuffer{}, exited: make(chan struct{})}
		fmt.Fprintf(n.log, "=== %s: start %d (%s)\n", n.name, n.lives, time.Now().Format("15:04:05.000"))
		p.cmd = exec.Command(bin, "serve", "--data", n.dir, "--schema", schemaFile, "--trust", trustFile,
			"--api", n.apiAddr, "--peer-addr", n.peer, "--log-level", "info")
		p.cmd.Env = syncEnv()
		out := io.MultiWriter(p.stderr, n.log)
		p.cmd.Stdout, p.cmd.Stderr = out, out
		if err := p.cmd.Start(); err != nil {
			t.Fatalf("start outpost serve for %s: %v", n.name, err)
		}
		go func() {
			p.err = p.cmd.Wait()
			close(p.exited)
		}()
		t.Cleanup(p.kill)
		err := waitHealthy(p, syncHealthy)
		if err == nil {
			n.p = p
			return
		}
		p.kill()
		lastErr = fmt.Errorf("%w\noutput:\n%s", err, p.stderr.String())
		if !strings.Contains(p.stderr.String(), "address already in use") {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: outpost serve did not become healthy: %v", n.name, lastErr)
}

// syncEnv is the environment without OUTPOST_* settings, so nothing from the
// caller's shell changes the nodes' configuration.
func syncEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "OUTPOST_") })
}

// runOutpost runs a short outpost command and returns its stdout.
func runOutpost(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = syncEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("outpost %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// syncQuery runs one /v1/query; numbers come back as json.Number.
func syncQuery(base, sql string, args ...any) ([][]any, error) {
	if args == nil {
		args = []any{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	status, body, err := post(ctx, http.DefaultClient, base+"/v1/query", stmt{SQL: sql, Args: args})
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("status %d: %s", status, bytes.TrimSpace(body))
	}
	var out struct {
		Rows [][]any `json:"rows"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("decode: %v", err)
	}
	return out.Rows, nil
}

// fetchStatus returns a node's GET /v1/status body, or why there is none.
func fetchStatus(base string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/status", nil)
	if err != nil {
		return err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "(no answer: " + err.Error() + ")"
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("(status %d) %s", resp.StatusCode, b)
	}
	return string(b)
}

// tailLines returns the last n lines of s.
func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d earlier lines)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// syncLogReport logs, per node, the warnings and errors in its log
// (grouped by message) and the state of its sync links, so that trouble in
// the sync loops shows in -v output even when the test passes.
func syncLogReport(t *testing.T, nodes []*syncNode) {
	t.Helper()
	for _, n := range nodes {
		type key struct{ level, msg string }
		counts := map[key]int{}
		samples := map[key]string{}
		sc := bufio.NewScanner(strings.NewReader(n.log.String()))
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			var rec struct {
				Level string `json:"level"`
				Msg   string `json:"msg"`
			}
			if json.Unmarshal([]byte(line), &rec) != nil {
				if !strings.HasPrefix(line, "=== ") && strings.TrimSpace(line) != "" {
					k := key{"RAW", line}
					counts[k]++
				}
				continue
			}
			if rec.Level == "WARN" || rec.Level == "ERROR" {
				k := key{rec.Level, rec.Msg}
				counts[k]++
				if _, ok := samples[k]; !ok {
					samples[k] = line
				}
			}
		}
		var parts []string
		for k, c := range counts {
			s := fmt.Sprintf("  %s %q x%d", k.level, k.msg, c)
			if samples[k] != "" {
				s += "\n    e.g. " + samples[k]
			}
			parts = append(parts, s)
		}
		sort.Strings(parts)

		var st struct {
			DBVersion int64            `json:"db_version"`
			Held      map[string]int64 `json:"held_changes"`
			Links     []struct {
				Peer      string `json:"peer"`
				Direction string `json:"direction"`
				Connected bool   `json:"connected"`
				Cursor    int64  `json:"cursor"`
				PeerDBV   int64  `json:"peer_db_version"`
				Applied   int64  `json:"changes"`
				Refused   int64  `json:"refused"`
				Errors    int64  `json:"errors"`
				LastError string `json:"last_error"`
			} `json:"links"`
			Refusals []json.RawMessage `json:"refusals"`
		}
		raw := fetchStatus(n.url)
		var links []string
		if err := json.Unmarshal([]byte(raw), &st); err != nil {
			links = append(links, "  status: "+raw)
		} else {
			for _, l := range st.Links {
				s := fmt.Sprintf("  %s %s: connected=%v cursor=%d/%d changes=%d refused=%d errors=%d", l.Direction, l.Peer, l.Connected, l.Cursor, l.PeerDBV, l.Applied, l.Refused, l.Errors)
				if l.LastError != "" {
					s += " last_error=" + strconv.Quote(l.LastError)
				}
				links = append(links, s)
			}
			if len(st.Refusals) > 0 {
				links = append(links, fmt.Sprintf("  refusals: %d", len(st.Refusals)))
			}
		}
		t.Logf("%s: db_version %d, held %v, %d lives; links:\n%s\nlog warnings/errors:\n%s", n.name, st.DBVersion, st.Held, n.lives,
			strings.Join(links, "\n"), strings.Join(append(parts, "  (end)"), "\n"))
	}
}
