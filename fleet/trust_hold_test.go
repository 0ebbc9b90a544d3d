package fleet_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/node"
)

// TestFleet_TrustOrderDoesNotMatter: a change relayed to a node whose trust
// list does not name its origin yet is not dropped: the node cannot verify
// it, so it is neither applied nor counted as known, and it applies as soon
// as the trust list reaches that node. (Under protocol 1 it is held; it
// used to be refused and the cursor passed it, so convergence depended on
// the order in which a trust list reached the nodes.)
func TestFleet_TrustOrderDoesNotMatter(t *testing.T) {
	ctx := context.Background()
	f := startDemo(t)
	full, err := os.ReadFile(filepath.Join(f.Dir, "fleet.trust"))
	if err != nil {
		t.Fatal(err)
	}
	var partial []string
	for _, l := range strings.Split(string(full), "\n") {
		if !strings.HasPrefix(l, "name=EDGE03 ") {
			partial = append(partial, l)
		}
	}
	if len(partial) == len(strings.Split(string(full), "\n")) {
		t.Fatal("EDGE03 not found in the trust list")
	}
	own := filepath.Join(f.Dir, "edge01.trust")
	if err := os.WriteFile(own, []byte(strings.Join(partial, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	e1, err := f.Restart(ctx, "EDGE01", func(c *node.Config) { c.TrustFile = own })
	if err != nil {
		t.Fatal(err)
	}
	exec(t, f.Node("EDGE03").Store, `INSERT INTO pages (id, title) VALUES ('from-edge03', 'hello')`)
	// Protocol 2: EDGE01 cannot verify EDGE03's signature yet, so it
	// neither applies the entry nor counts it as known: it asks again.
	deadline := time.Now().Add(15 * time.Second)
	e3 := f.Node("EDGE03").Store.Origin()
	for {
		k, err := f.Node("MASTER01").Store.Knowledge(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if k[e3] > 0 {
			break // a relay EDGE01 pulls from has it
		}
		if time.Now().After(deadline) {
			t.Fatal("MASTER01 never got EDGE03's entry")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond)
	if got := rows(t, e1.Store, `SELECT id FROM pages WHERE id = 'from-edge03'`); len(got) != 0 {
		t.Fatal("EDGE01 applied a change of an origin it does not know")
	}
	if k, _ := e1.Store.Knowledge(ctx); k[e3] != 0 {
		t.Fatalf("EDGE01 counts %d of EDGE03's entries as held without applying them", k[e3])
	}
	if err := os.WriteFile(own, full, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e1.ReloadTrust(); err != nil {
		t.Fatal(err)
	}
	for len(rows(t, e1.Store, `SELECT id FROM pages WHERE id = 'from-edge03'`)) == 0 {
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatalf("EDGE01 never applied EDGE03's change after the trust reload: %+v %v", e1.Repl.Status(), e1.Store.Refusals())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n, _ := heldCount(ctx, e1.Store); n != 0 {
		t.Fatalf("EDGE01 still holds %d changes", n)
	}
}
