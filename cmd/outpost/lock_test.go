package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/store"
)

// TestUp_FleetDirLocked: a second `outpost up --dir X` while X is in use
// fails at once with a message naming the directory, starting nothing.
func TestUp_FleetDirLocked(t *testing.T) {
	dir := t.TempDir()
	lock, err := store.LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	code, _, errs := runCmd(t, "up", "--dir", dir, "--base-port", "0")
	if code != 1 || !strings.Contains(errs, dir) || !strings.Contains(errs, "in use") {
		t.Fatalf("up on a locked directory: exit %d, stderr %q; want exit 1 naming %s as in use", code, errs, dir)
	}
}

// TestServe_DataDirLocked: `outpost serve` refuses a data directory another
// node holds.
func TestServe_DataDirLocked(t *testing.T) {
	dir := t.TempDir()
	lock, err := store.LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	code, _, errs := runCmd(t, "serve", "--data", dir, "--api", "127.0.0.1:0",
		"--name", "EDGE01", "--location", "LHR", "--farm", "lhr", "--role", "edge", "--code", "43ax")
	if code != 1 || !strings.Contains(errs, dir) || !strings.Contains(errs, "in use") {
		t.Fatalf("serve on a locked directory: exit %d, stderr %q; want exit 1 naming %s as in use", code, errs, dir)
	}
}

// TestUp_NewFleetDir: `up --dir X` with X not there yet creates it and locks
// it (it used to fail: the lock file's directory did not exist).
func TestUp_NewFleetDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "fleet")
	lock, err := lockFleetDir(dir)
	if err != nil {
		t.Fatalf("lock a new fleet directory: %v", err)
	}
	defer lock.Close()
	if _, err := lockFleetDir(dir); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second lock: %v, want in use", err)
	}
}
