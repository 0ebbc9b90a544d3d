package main

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/node"
	"github.com/outpost-edge/outpost/store"
)

// TestServe_ExitsOnStoreFailure: after a failed COMMIT `outpost serve`
// stops and exits non-zero (so its supervisor restarts it), and /readyz
// fails meanwhile.
func TestServe_ExitsOnStoreFailure(t *testing.T) {
	var broken atomic.Bool
	opened := make(chan *node.Node, 1)
	serveHooks.config = func(c *node.Config) {
		c.CommitHook = func() error {
			if broken.Load() {
				return errors.New("injected fsync failure")
			}
			return nil
		}
	}
	serveHooks.opened = func(n *node.Node) { opened <- n }
	defer func() { serveHooks.config, serveHooks.opened = nil, nil }()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exit := make(chan int, 1)
	var errb bytes.Buffer
	go func() {
		exit <- run(ctx, []string{"serve", "--data", t.TempDir(), "--api", "127.0.0.1:0", "--log-level", "error",
			"--name", "EDGE01", "--location", "LHR", "--farm", "lhr", "--role", "edge", "--code", "43ax"}, &bytes.Buffer{}, &errb)
	}()
	var n *node.Node
	select {
	case n = <-opened:
	case code := <-exit:
		t.Fatalf("serve exited early: %d %s", code, errb.String())
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not start")
	}
	broken.Store(true)
	_, _, err := n.Store.Exec(context.Background(), []store.Statement{{SQL: `SELECT 1`}})
	var e *store.Error
	if !errors.As(err, &e) || e.Code != store.CodeStoreFailed {
		t.Fatalf("write on a failing disk: %v, want store_failed", err)
	}
	if err := n.Ready(); err == nil {
		t.Error("ready with a failed store")
	}
	select {
	case code := <-exit:
		if code == 0 {
			t.Fatalf("serve exited 0 after its store failed; stderr %s", errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve kept running after its store failed")
	}
}
