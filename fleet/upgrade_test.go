package fleet_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/fleet"
	"github.com/outpost-edge/outpost/node"
	"github.com/outpost-edge/outpost/store"
)

// TestFleet_RollingSchemaUpgrade rolls a schema that adds a table and a
// defaulted column out node by node while every node keeps writing; changes
// for what a node does not know yet are held (outpost_held, rule schema), and at the
// end every node holds everything.
func TestFleet_RollingSchemaUpgrade(t *testing.T) {
	ctx := context.Background()
	f := startDemo(t)
	v2 := filepath.Join(f.Dir, "schema-v2.sql")
	ddl := fleet.DemoSchema + "ALTER TABLE pages ADD COLUMN lang TEXT NOT NULL DEFAULT 'en';\nCREATE TABLE comments (id TEXT PRIMARY KEY NOT NULL, page TEXT, body TEXT);\n"
	if err := os.WriteFile(v2, []byte(ddl), 0o644); err != nil {
		t.Fatal(err)
	}
	order := []string{"EDGE01", "MASTER01", "EDGE02", "NODE01", "EDGE03", "EDGE04"}
	for i, name := range order {
		// Everyone writes, upgraded or not.
		for _, n := range f.Nodes {
			exec(t, n.Store, `INSERT INTO pages (id, title) VALUES (outpost_id(), ?)`, "during "+name)
		}
		n, err := f.Restart(ctx, name, func(c *node.Config) { c.SchemaFile = v2 })
		if err != nil {
			t.Fatal(err)
		}
		exec(t, n.Store, `INSERT INTO comments (id, page, body) VALUES (?, 'p', ?)`, "c-"+name, "from "+name)
		exec(t, n.Store, `INSERT INTO pages (id, title, lang) VALUES (?, 'bonjour', 'fr')`, "fr-"+name)
		if i == 0 {
			// The not yet upgraded master holds them (rule schema), not lost.
			deadline := time.Now().Add(10 * time.Second)
			for {
				p, _ := heldCount(ctx, f.Node("MASTER01").Store)
				if p > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("MASTER01 (old schema) never held EDGE01's new-table changes")
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	waitConverged(t, f, `SELECT id, title, lang FROM pages ORDER BY id`, len(order)*len(f.Nodes)+len(order))
	waitConverged(t, f, `SELECT id, page, body FROM comments ORDER BY id`, len(order))
	for _, n := range f.Nodes {
		if p, _ := heldCount(ctx, n.Store); p != 0 {
			t.Errorf("%s still holds %d changes", n.Identity.Name, p)
		}
	}
}

// TestFleet_ProtocolNegotiation: a node announcing protocol N+1 syncs with
// nodes of N (hello negotiates N); one that requires N+1 is refused by them.
func TestFleet_ProtocolNegotiation(t *testing.T) {
	f, err := fleet.Start(context.Background(), t.TempDir(), fleet.Demo(0), fleet.Options{Configure: func(m fleet.Member, c *node.Config) {
		if m.Name == "NODE01" {
			c.Protocol, c.MinProtocol = outpost.ProtocolVersion+1, 1
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close(context.Background()) })
	exec(t, f.Node("NODE01").Store, `INSERT INTO pages (id, title) VALUES ('from-n-plus-1', 'x')`)
	exec(t, f.Node("EDGE03").Store, `INSERT INTO pages (id, title) VALUES ('from-n', 'y')`)
	waitConverged(t, f, `SELECT id FROM pages ORDER BY id`, 2)

	n, err := f.Restart(context.Background(), "NODE01", func(c *node.Config) { c.Protocol, c.MinProtocol = outpost.ProtocolVersion+1, outpost.ProtocolVersion+1 })
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mismatch := false
		for _, l := range n.Repl.Status() {
			mismatch = mismatch || strings.Contains(l.LastError, "protocol mismatch")
		}
		if mismatch {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a node requiring a newer protocol synced with protocol-1 peers: %+v", n.Repl.Status())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNode_DrainAndReady: draining refuses new writes with 503 and
// Retry-After, fails /readyz, and an ephemeral edge returns only once a farm
// sibling has acknowledged its writes.
func TestNode_DrainAndReady(t *testing.T) {
	f, err := fleet.Start(context.Background(), t.TempDir(), fleet.Demo(0), fleet.Options{Configure: func(m fleet.Member, c *node.Config) {
		c.Ephemeral = m.Role == "edge"
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close(context.Background()) })
	e1 := f.Node("EDGE01")
	get := func(path string) (int, string) {
		resp, err := http.Get(e1.APIURL() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(10 * time.Second)
	for code, _ := get("/readyz"); code != http.StatusOK; code, _ = get("/readyz") {
		if time.Now().After(deadline) {
			t.Fatal("EDGE01 never became ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := 0; i < 50; i++ {
		exec(t, e1.Store, `INSERT INTO pages (id, title) VALUES (outpost_id(), 'before drain')`)
	}
	target := e1.Store.DBVersion()
	if err := e1.Drain(context.Background()); err != nil {
		t.Fatalf("drain: %v", err)
	}
	// The sibling has every write EDGE01 acknowledged.
	if got := rows(t, f.Node("EDGE02").Store, `SELECT count(*) FROM pages WHERE title = 'before drain'`)[0][0]; got != int64(50) {
		t.Fatalf("EDGE02 has %v of EDGE01's 50 writes after the drain (db_version %d)", got, target)
	}
	resp, err := http.Post(e1.APIURL()+"/v1/exec", "application/json", strings.NewReader(`{"statements":[{"sql":"INSERT INTO pages (id) VALUES ('late')"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(b), `"draining"`) {
		t.Fatalf("write while draining: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz while draining: %d %s", code, body)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz while draining: %d", code)
	}
	// Reads still work.
	resp, err = http.Post(e1.APIURL()+"/v1/query", "application/json", strings.NewReader(`{"sql":"SELECT count(*) FROM pages"}`))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("read while draining: %v %v", err, resp.StatusCode)
	}
	resp.Body.Close()
}

// TestNode_Metrics: /metrics serves the documented metrics.
func TestNode_Metrics(t *testing.T) {
	f := startDemo(t)
	e1 := f.Node("EDGE01")
	resp, err := http.Post(e1.APIURL()+"/v1/exec", "application/json", strings.NewReader(`{"statements":[{"sql":"INSERT INTO pages (id) VALUES ('m')"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitConverged(t, f, `SELECT id FROM pages`, 1)
	resp, err = http.Get(e1.APIURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{
		`outpost_api_requests_total{route="exec",status="200"} 1`, "outpost_api_request_seconds_bucket", "outpost_commit_group_size_bucket",
		"outpost_commit_seconds_bucket", `outpost_replication_lag_versions{direction="pull",peer="MASTER01"}`, "outpost_replication_lag_seconds",
		"outpost_sync_errors_total", "outpost_replication_changes_total", "outpost_held_changes", "outpost_tombstones", "outpost_db_version 1",
		"outpost_ready", "outpost_transactions_total",
	} {
		if !strings.Contains(string(b), name) {
			t.Errorf("/metrics lacks %s:\n%s", name, b)
		}
	}
}

// heldCount is how many changes s holds, under any rule.
func heldCount(ctx context.Context, s *store.Store) (int64, error) {
	held, err := s.Held(ctx)
	var n int64
	for _, c := range held {
		n += c
	}
	return n, err
}

// TestFleet_RollingProtocolUpgrade: a fleet speaking protocol 1 is rolled,
// one node at a time, to protocol 2 while every node keeps writing; links
// between nodes of different versions speak 1, links between upgraded
// nodes speak 2, and at the end every node holds every write.
func TestFleet_RollingProtocolUpgrade(t *testing.T) {
	ctx := context.Background()
	f, err := fleet.Start(ctx, t.TempDir(), fleet.Demo(0), fleet.Options{Configure: func(m fleet.Member, c *node.Config) {
		c.Protocol, c.MinProtocol = 1, 1
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close(context.Background()) })
	order := []string{"EDGE01", "MASTER01", "EDGE03", "NODE01", "EDGE02", "EDGE04"}
	writes := 0
	for _, name := range order {
		for _, n := range f.Nodes {
			exec(t, n.Store, `INSERT INTO pages (id, title) VALUES (outpost_id(), ?)`, "before "+name)
			writes++
		}
		n, err := f.Restart(ctx, name, func(c *node.Config) { c.Protocol, c.MinProtocol = 0, 0 })
		if err != nil {
			t.Fatal(err)
		}
		exec(t, n.Store, `INSERT INTO pages (id, title) VALUES (outpost_id(), ?)`, "upgraded "+name)
		writes++
	}
	waitConverged(t, f, `SELECT id, title FROM pages ORDER BY id`, writes)
	// Every link now speaks 2: the hub pulls entries, not groups.
	var entries int64
	for _, n := range f.Nodes {
		entries += n.Repl.Traffic().Entries
	}
	exec(t, f.Node("EDGE01").Store, `INSERT INTO pages (id, title) VALUES ('last', 'v2')`)
	waitConverged(t, f, `SELECT id, title FROM pages ORDER BY id`, writes+1)
	var after int64
	for _, n := range f.Nodes {
		after += n.Repl.Traffic().Entries
	}
	if after <= entries {
		t.Fatalf("the last write travelled without protocol 2 entries (%d -> %d)", entries, after)
	}
}
