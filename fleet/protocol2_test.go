package fleet_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/fleet"
	"github.com/outpost-edge/outpost/store"
)

// TestFleet_Protocol2ThirtyFourNodes: 1 master, 1 node and 8 farms of 4
// edges (real TLS peer transport, one store each); 320 writes at one edge
// from 16 clients reach every node, and the sources keep duplicates rare:
// each entry reaches each node about once.
func TestFleet_Protocol2ThirtyFourNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("34 nodes")
	}
	var ms []fleet.Member
	ms = append(ms, fleet.Member{Identity: outpost.Identity{Name: "MASTER01", Location: "FRA", Role: outpost.RoleMaster, Code: "01ma"}, API: "127.0.0.1:0", Peer: "127.0.0.1:0"})
	ms = append(ms, fleet.Member{Identity: outpost.Identity{Name: "NODE01", Location: "AMS", Role: outpost.RoleNode, Code: "02no"}, API: "127.0.0.1:0", Peer: "127.0.0.1:0"})
	for f := 1; f <= 8; f++ {
		for e := 1; e <= 4; e++ {
			i := (f-1)*4 + e
			ms = append(ms, fleet.Member{Identity: outpost.Identity{Name: fmt.Sprintf("EDGE%02d", i), Location: "LHR", Farm: fmt.Sprintf("f%02d", f), Role: outpost.RoleEdge, Code: fmt.Sprintf("%02dzz", 10+i)}, API: "127.0.0.1:0", Peer: "127.0.0.1:0"})
		}
	}
	f, err := fleet.Start(context.Background(), t.TempDir(), ms, fleet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close(context.Background())
	// Let the sources settle: every edge pulls from one hub (the standby
	// hubs some took while their preferred hub was still starting stand
	// by again).
	settle := time.Now().Add(40 * time.Second)
	for {
		ok := true
		for _, n := range f.Nodes {
			if n.Identity.Role != outpost.RoleEdge {
				continue
			}
			hubs := 0
			for _, l := range n.Repl.Status() {
				if l.Direction == "pull" && l.Role != "edge" && l.Connected {
					hubs++
				}
			}
			ok = ok && hubs == 1
		}
		if ok {
			break
		}
		if time.Now().After(settle) {
			t.Fatal("edges still pull from more than one hub")
		}
		time.Sleep(200 * time.Millisecond)
	}
	traffic := func() (entries, dups int64) {
		for _, n := range f.Nodes {
			tr := n.Repl.Traffic()
			entries += tr.Entries
			dups += tr.Duplicates
		}
		return entries, dups
	}
	e0, d0 := traffic()
	e1 := f.Node("EDGE01").Store
	var wg sync.WaitGroup
	for c := 0; c < 16; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if _, _, err := e1.Exec(context.Background(), []store.Statement{{SQL: `INSERT INTO pages (id, title) VALUES (outpost_id(), 'x')`}}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(60 * time.Second)
	for {
		bad := 0
		for _, n := range f.Nodes {
			if len(rows(t, n.Store, `SELECT id FROM pages`)) != 320 {
				bad++
			}
		}
		if bad == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, n := range f.Nodes {
				k, _ := n.Store.Knowledge(context.Background())
				if c := len(rows(t, n.Store, `SELECT id FROM pages`)); c != 320 {
					for _, l := range n.Repl.Status() {
						if l.Role != "edge" {
							t.Errorf("%s has %d rows, knows %v; link %+v", n.Identity.Name, c, k[e1.Origin()], l)
						}
					}
				}
			}
			t.FailNow()
		}
		time.Sleep(500 * time.Millisecond)
	}
	entries, dups := traffic()
	entries, dups = entries-e0, dups-d0
	t.Logf("entries received %d, of which duplicates %d", entries, dups)
	if entries == 0 || float64(dups) > 0.2*float64(entries) {
		t.Fatalf("entries received %d, of which duplicates %d: sources overlap", entries, dups)
	}
}
