package fleet_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/fleet"
	"github.com/outpost-edge/outpost/replication"
)

// TestFleet_IdleIsQuiet: an idle demo fleet (6 nodes, every pull and push
// link connected) says hello far less than once per second per link, and
// no stream is dropped while idle. It measures, it does not time: the
// numbers are logged.
func TestFleet_IdleIsQuiet(t *testing.T) {
	if testing.Short() {
		t.Skip("measures an idle fleet for several seconds")
	}
	f, err := fleet.Start(context.Background(), t.TempDir(), fleet.Demo(0), fleet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close(context.Background()) })
	exec(t, f.Node("EDGE01").Store, `INSERT INTO pages (id, title) VALUES ('warm', 'up')`)
	waitConverged(t, f, `SELECT id FROM pages`, 1)
	loops := 0
	deadline := time.Now().Add(15 * time.Second)
	for {
		loops = 0
		all := true
		for _, n := range f.Nodes {
			for _, l := range n.Repl.Status() {
				loops++
				all = all && (l.Connected || l.Standby)
			}
		}
		if all && loops > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the fleet's links never all connected")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Let the hellos and acks of connecting and of the warm-up write pass.
	time.Sleep(1500 * time.Millisecond)

	sum := func() (s replication.Traffic) {
		for _, n := range f.Nodes {
			tr := n.Repl.Traffic()
			s.Hellos += tr.Hellos
			s.Pulls += tr.Pulls
			s.Pushes += tr.Pushes
			s.Frames += tr.Frames
			s.Heartbeats += tr.Heartbeats
			s.PullBytes += tr.PullBytes
			s.PushBytes += tr.PushBytes
			s.ServeBytes += tr.ServeBytes
		}
		return s
	}
	const window = 6 * time.Second
	before, start := sum(), time.Now()
	time.Sleep(window)
	after, secs := sum(), time.Since(start).Seconds()

	hellos := after.Hellos - before.Hellos
	perLoop := float64(hellos) / float64(loops) / secs
	// The size of one hello answer, to weigh the hellos (their request
	// and HTTP/2 framing come on top).
	h, err := f.Node("MASTER01").Client.Hello(context.Background(), "NODE01")
	if err != nil {
		t.Fatal(err)
	}
	helloJSON, _ := json.Marshal(h)
	streamBytes := after.PullBytes - before.PullBytes + after.PushBytes - before.PushBytes
	t.Logf("idle %d-node fleet, %d links, %.1fs: %d hellos (%.3f per link per second; answers ~%d B of JSON each), %d pull streams opened, %d pushes, %d frames (%d heartbeats), %.0f stream bytes/s; with hello answers ~%.0f B/s",
		len(f.Nodes), loops, secs, hellos, perLoop, len(helloJSON), after.Pulls-before.Pulls, after.Pushes-before.Pushes,
		after.Frames-before.Frames, after.Heartbeats-before.Heartbeats,
		float64(streamBytes)/secs, float64(streamBytes+hellos*int64(len(helloJSON)))/secs)
	if perLoop > 0.2 {
		t.Errorf("an idle fleet says %.3f hellos per link per second; want at most 0.2", perLoop)
	}
	if n := after.Pulls - before.Pulls; n != 0 {
		t.Errorf("%d pull streams were opened again while the fleet was idle", n)
	}
}
