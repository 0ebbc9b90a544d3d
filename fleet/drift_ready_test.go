package fleet_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/fleet"
	"github.com/outpost-edge/outpost/hlc"
	"github.com/outpost-edge/outpost/node"
)

// TestFleet_DriftHoldReadiness: a group from a peer whose clock is ahead
// is held (and only it: a later group on the same link applies at once),
// /readyz says so while it waits, and it applies once this node's clock
// catches up.
func TestFleet_DriftHoldReadiness(t *testing.T) {
	ctx := context.Background()
	f, err := fleet.Start(ctx, t.TempDir(), fleet.Demo(0), fleet.Options{Configure: func(m fleet.Member, c *node.Config) {
		c.ReadyDriftGrace = 50 * time.Millisecond
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close(ctx) })
	e1 := f.Node("EDGE01")
	deadline := time.Now().Add(15 * time.Second)
	for e1.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("EDGE01 never ready: %v", e1.Ready())
		}
		time.Sleep(20 * time.Millisecond)
	}
	origin := f.Node("EDGE03").Store.Origin()
	now := time.Now()
	ahead := hlc.FromParts(now.Add(3*time.Second).UnixMilli(), 0)
	onTime := hlc.FromParts(now.UnixMilli(), 0)
	// As if relayed by NODE01, on a cursor of its own.
	res, err := e1.Store.Apply(ctx, "NODE01", "test", "x", []outpost.Group{
		{DBV: 1, Changes: []outpost.Change{{Table: "pages", PK: []any{"ahead"}, CL: 1, HLC: uint64(ahead), Origin: origin}}},
		{DBV: 2, Changes: []outpost.Change{{Table: "pages", PK: []any{"ontime"}, CL: 1, HLC: uint64(onTime), Origin: origin}}},
	}, 2)
	if err != nil || res.Held != 1 || res.Applied != 1 {
		t.Fatalf("apply: %+v %v", res, err)
	}
	for {
		err := e1.Ready()
		if err != nil && strings.Contains(err.Error(), "clock is ahead") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("EDGE01 /readyz never reflected the held group: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for len(rows(t, e1.Store, `SELECT id FROM pages WHERE id = 'ahead'`)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the held group never applied after the clock caught up")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for e1.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("EDGE01 not ready again after the held group applied: %v", e1.Ready())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
