package node_test

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/node"
)

// TestDrain_Beacons: during a drain an edge on a persistent disk goes on
// taking beacons (durable in its log, collected after the restart), while
// an --ephemeral edge refuses them with 503 draining and waits (bounded)
// for aggregators to acknowledge what it holds.
func TestDrain_Beacons(t *testing.T) {
	for _, ephemeral := range []bool{false, true} {
		dir := t.TempDir()
		n, err := node.Open(context.Background(), node.Config{
			DataDir: filepath.Join(dir, "data"), APIAddr: "127.0.0.1:0", Ephemeral: ephemeral, DrainTimeout: 300 * time.Millisecond,
			Identity: outpost.Identity{Name: "EDGE01", Location: "LHR", Farm: "lhr", Role: outpost.RoleEdge, Code: "43ax"},
		})
		if err != nil {
			t.Fatal(err)
		}
		n.Serve()
		post := func() int {
			resp, err := http.Post(n.APIURL()+"/v1/beacons", "application/x-ndjson", strings.NewReader(`{"event":"e"}`+"\n"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if c := post(); c != http.StatusOK {
			t.Fatalf("ephemeral %v: before the drain: %d", ephemeral, c)
		}
		start := time.Now()
		err = n.Drain(context.Background())
		took := time.Since(start)
		c := post()
		if ephemeral {
			// No aggregator ever pulls here: the hand-off runs out of time.
			if err == nil || !strings.Contains(err.Error(), "beacon hand-off") || took < 250*time.Millisecond {
				t.Fatalf("ephemeral drain: %v after %v, want the beacon hand-off to time out", err, took)
			}
			if c != http.StatusServiceUnavailable {
				t.Fatalf("ephemeral edge draining answered a beacon with %d, want 503", c)
			}
		} else {
			if err != nil || took > 200*time.Millisecond {
				t.Fatalf("persistent drain: %v after %v", err, took)
			}
			if c != http.StatusOK {
				t.Fatalf("persistent edge draining answered a beacon with %d, want 200", c)
			}
		}
		if s := n.BeaconLog.Stats(); (ephemeral && s.LastSeq != 1) || (!ephemeral && s.LastSeq != 2) {
			t.Fatalf("ephemeral %v: log after the drain: %+v", ephemeral, s)
		}
		n.Close(context.Background())
	}
}
