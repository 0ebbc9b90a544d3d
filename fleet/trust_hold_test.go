package fleet_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/admission"
	"github.com/outpost-edge/outpost/node"
)

// TestFleet_TrustOrderDoesNotMatter: a change relayed to a node whose trust
// list does not name its origin yet is held, not dropped, and applies as
// soon as the trust list reaches that node. (It used to be refused and the
// cursor passed it, so convergence depended on the order in which a trust
// list reached the nodes.)
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
	deadline := time.Now().Add(15 * time.Second)
	for {
		held, _ := heldCount(ctx, e1.Store)
		if held > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("EDGE01 never held EDGE03's change; rows %v", rows(t, e1.Store, `SELECT id FROM pages`))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if h, _ := e1.Store.Held(ctx); h[admission.RuleOriginUnknown] == 0 {
		t.Fatalf("held under %v, want %s", h, admission.RuleOriginUnknown)
	}
	if got := rows(t, e1.Store, `SELECT id FROM pages WHERE id = 'from-edge03'`); len(got) != 0 {
		t.Fatal("EDGE01 applied a change of an origin it does not know")
	}
	if err := os.WriteFile(own, full, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e1.ReloadTrust(); err != nil {
		t.Fatal(err)
	}
	for len(rows(t, e1.Store, `SELECT id FROM pages WHERE id = 'from-edge03'`)) == 0 {
		if time.Now().After(deadline.Add(10 * time.Second)) {
			h, _ := e1.Store.Held(ctx)
			t.Fatalf("EDGE01 never applied the held change after the trust reload; held %v", h)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n, _ := heldCount(ctx, e1.Store); n != 0 {
		t.Fatalf("EDGE01 still holds %d changes", n)
	}
}
