package sim

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestFleet_Small runs 1 master, 2 nodes and 3 farms of 4 edges through a
// partition and a hub loss, and checks that every node converges.
func TestFleet_Small(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	rep, err := Run(ctx, Options{Farms: 3, Edges: 4, Writes: 60, WriteRate: 30, Heartbeat: 200 * time.Millisecond,
		MaxBackoff: 500 * time.Millisecond, Timeout: 40 * time.Second, Log: testLog{t}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Nodes != 15 || rep.Rows != 61 || rep.LostHub != "NODE02" || len(rep.PartitionedFarms) != 1 {
		t.Fatalf("unexpected report: %+v", rep)
	}
	if rep.Changes == 0 || rep.DeliveriesPerChange < float64(rep.Nodes-1) {
		t.Fatalf("deliveries %.1f per change for %d changes: fewer than one per node", rep.DeliveriesPerChange, rep.Changes)
	}
	// Protocol 2's sources: about one delivery per node, even with a farm
	// cut off and a hub lost for a while (fallbacks cost a little).
	if per := rep.DeliveriesPerChange / float64(rep.Nodes-1); per > 1.6 {
		t.Fatalf("%.2f deliveries per change per node; want about 1", per)
	}
	var sb strings.Builder
	_ = rep.WriteMarkdown(&sb)
	t.Log("\n" + sb.String())
}

// TestFleet_Full runs the full size (OUTPOST_SIM_FULL=1; OUTPOST_SIM_FARMS
// and OUTPOST_SIM_EDGES change it).
func TestFleet_Full(t *testing.T) {
	if os.Getenv("OUTPOST_SIM_FULL") != "1" {
		t.Skip("set OUTPOST_SIM_FULL=1 to run the full fleet simulation")
	}
	env := func(k string, d int) int {
		if v, err := strconv.Atoi(os.Getenv(k)); err == nil && v > 0 {
			return v
		}
		return d
	}
	rep, err := Run(context.Background(), Options{Farms: env("OUTPOST_SIM_FARMS", 50), Edges: env("OUTPOST_SIM_EDGES", 20), Log: testLog{t}})
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	_ = rep.WriteMarkdown(&sb)
	t.Log("\n" + sb.String())
}
