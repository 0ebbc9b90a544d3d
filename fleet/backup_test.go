package fleet_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/outpost-edge/outpost/node"
	"github.com/outpost-edge/outpost/store"
)

// TestFleet_BackupRestore: EDGE01 is backed up over its API, writes more
// (which reach every peer), then is restored from the backup while it is
// down. It starts with a new incarnation, gets back from its peers the
// writes the backup lacks, and its new writes (which reuse db_versions it
// had issued before) reach every peer.
func TestFleet_BackupRestore(t *testing.T) {
	ctx := context.Background()
	f := startDemo(t)
	e1 := f.Node("EDGE01")
	const q = `SELECT id, title FROM pages ORDER BY id`
	for i := 0; i < 3; i++ {
		exec(t, e1.Store, `INSERT INTO pages (id, title) VALUES (?, 'before')`, fmt.Sprintf("before-%d", i))
	}
	exec(t, f.Node("EDGE04").Store, `INSERT INTO pages (id, title) VALUES ('from-edge04', 'x')`)
	waitConverged(t, f, q, 4)

	// The backup, over the API, as `outpost backup` fetches it.
	file := filepath.Join(t.TempDir(), "edge01.db")
	resp, err := http.Get(e1.APIURL() + "/v1/backup")
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, resp.Body); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("backup: HTTP %d, %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	out.Close()
	info, err := store.VerifyBackup(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	oldInc := e1.Store.Incarnation()

	// Writes the backup lacks, at EDGE01 (they reach the peers, then
	// EDGE01 loses them) and elsewhere.
	for i := 0; i < 3; i++ {
		exec(t, e1.Store, `INSERT INTO pages (id, title) VALUES (?, 'lost')`, fmt.Sprintf("lost-%d", i))
	}
	exec(t, e1.Store, `UPDATE pages SET title = 'lost update' WHERE id = 'before-0'`)
	exec(t, f.Node("NODE01").Store, `INSERT INTO pages (id, title) VALUES ('from-node01', 'x')`)
	waitConverged(t, f, q, 8)
	if e1.Store.DBVersion() <= info.DBVersion {
		t.Fatalf("EDGE01 at db_version %d, backup at %d", e1.Store.DBVersion(), info.DBVersion)
	}

	e1, err = f.Restart(ctx, "EDGE01", func(c *node.Config) {
		if _, err := store.Restore(ctx, c.DataDir, file, true); err != nil {
			t.Errorf("restore: %v", err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	if inc := e1.Store.Incarnation(); inc == oldInc {
		t.Fatalf("restored EDGE01 kept incarnation %s", inc)
	}
	if got := e1.Store.DBVersion(); got != info.DBVersion {
		t.Fatalf("restored EDGE01 at db_version %d, want the backup's %d", got, info.DBVersion)
	}
	// Its lost writes come back from its peers.
	waitConverged(t, f, q, 8)
	if got := rows(t, e1.Store, `SELECT title FROM pages WHERE id = 'before-0'`); fmt.Sprint(got) != "[[lost update]]" {
		t.Fatalf("EDGE01's lost update did not come back: %v", got)
	}
	// Its new writes take db_versions it issued before the restore, under
	// the new incarnation: every peer gets them.
	for i := 0; i < 5; i++ {
		exec(t, e1.Store, `INSERT INTO pages (id, title) VALUES (?, 'after')`, fmt.Sprintf("after-%d", i))
	}
	exec(t, e1.Store, `UPDATE pages SET title = 'after update' WHERE id = 'lost-1'`)
	waitConverged(t, f, q, 13)
	for _, n := range f.Nodes {
		if got := rows(t, n.Store, `SELECT title FROM pages WHERE id = 'lost-1'`); fmt.Sprint(got) != "[[after update]]" {
			t.Fatalf("%s: lost-1 is %v, want EDGE01's update after the restore", n.Identity.Name, got)
		}
	}
}
