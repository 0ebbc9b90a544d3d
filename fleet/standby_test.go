package fleet_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/node"
)

// TestFleet_EdgePullsThroughOneHub: an edge pulls through its preferred hub
// only (each change arrives once, not once per hub); while that hub is
// down it pulls from the other, and stands by again once it is back.
func TestFleet_EdgePullsThroughOneHub(t *testing.T) {
	ctx := context.Background()
	f := startDemo(t)
	e3 := f.Node("EDGE03")
	deadline := time.Now().Add(20 * time.Second)
	links := func() (preferred, standby string) {
		for _, l := range e3.Repl.Status() {
			if l.Direction != "pull" || (l.Role != "master" && l.Role != "node") {
				continue
			}
			if l.Standby {
				standby = l.Peer
			} else if l.Connected {
				preferred = l.Peer
			}
		}
		return preferred, standby
	}
	var pref, stby string
	for {
		if pref, stby = links(); pref != "" && stby != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("EDGE03 never had one connected and one standby hub: %+v", e3.Repl.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	write := func(id string) {
		exec(t, f.Node("EDGE01").Store, `INSERT INTO pages (id, title) VALUES (?, 'x')`, id)
	}
	arrived := func(id string, within time.Duration) {
		t.Helper()
		end := time.Now().Add(within)
		for len(rows(t, e3.Store, `SELECT id FROM pages WHERE id = ?`, id)) == 0 {
			if time.Now().After(end) {
				t.Fatalf("%s never reached EDGE03; links %+v", id, e3.Repl.Status())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Settle, then count deliveries of one write at EDGE03.
	write("warm")
	arrived("warm", 10*time.Second)
	time.Sleep(500 * time.Millisecond)
	before := e3.Store.ReplStats()
	write("once")
	arrived("once", 10*time.Second)
	time.Sleep(time.Second) // a second copy, if any, would arrive now
	after := e3.Store.ReplStats()
	if applied, dup := after.Applied-before.Applied, after.Ignored-before.Ignored; applied == 0 || dup != 0 {
		t.Fatalf("EDGE03 applied %d and ignored %d copies of one write: want every change once", applied, dup)
	}

	// The preferred hub goes down (Restart waits in its configure step).
	resume := make(chan struct{})
	restarted := make(chan error, 1)
	go func() {
		_, err := f.Restart(ctx, pref, func(*node.Config) { <-resume })
		restarted <- err
	}()
	write("during")
	arrived("during", 20*time.Second)
	if p, s := links(); s != "" && s != pref {
		t.Fatalf("with %s down, %s is still on standby (preferred %q)", pref, s, p)
	}
	close(resume)
	if err := <-restarted; err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		p, s := links()
		if p == pref && s == stby {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s came back: preferred %q standby %q, want %s and %s; %s", pref, p, s, pref, stby, fmt.Sprint(e3.Repl.Status()))
		}
		time.Sleep(50 * time.Millisecond)
	}
	write("after")
	arrived("after", 10*time.Second)
}
