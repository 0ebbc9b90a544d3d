package store_test

import (
	"context"
	"errors"
	"os"
	execpkg "os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/store"
)

func openOpts(dir string) store.Options {
	return store.Options{Dir: dir, Identity: testutil.Identity("EDGE01", "43ax"), Schema: testutil.PagesSchema}
}

// TestOpen_SecondOpenLocked: a second Open of the same data directory fails
// with ErrLocked while the first is open, naming the directory and the
// holder's pid; after Close the directory opens again.
func TestOpen_SecondOpenLocked(t *testing.T) {
	dir := t.TempDir()
	s1, err := store.Open(context.Background(), openOpts(dir))
	if err != nil {
		t.Fatal(err)
	}
	s2, err := store.Open(context.Background(), openOpts(dir))
	if err == nil {
		s2.Close()
		s1.Close()
		t.Fatal("second Open of a data directory in use succeeded")
	}
	if !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second Open: err = %v, want ErrLocked", err)
	}
	if msg := err.Error(); !strings.Contains(msg, dir) || !strings.Contains(msg, "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second Open: message %q should name %s and pid %d", msg, dir, os.Getpid())
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	s3, err := store.Open(context.Background(), openOpts(dir))
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s3.Close()
}

const lockChildEnv = "OUTPOST_TEST_LOCK_CHILD_DIR"

// TestOpen_LockedAcrossProcesses: another process cannot open a data
// directory this one holds. The test binary re-executes itself as that
// process (TestLockChild).
func TestOpen_LockedAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	s, err := store.Open(context.Background(), openOpts(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cmd := execpkg.Command(os.Args[0], "-test.run=^TestLockChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), lockChildEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child process: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "LOCKED:") || !strings.Contains(string(out), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("child process did not report the directory locked by pid %d:\n%s", os.Getpid(), out)
	}
}

// TestLockChild is the child of TestOpen_LockedAcrossProcesses; it does
// nothing unless started by it.
func TestLockChild(t *testing.T) {
	dir := os.Getenv(lockChildEnv)
	if dir == "" {
		t.Skip("helper process for TestOpen_LockedAcrossProcesses")
	}
	s, err := store.Open(context.Background(), openOpts(dir))
	if err == nil {
		s.Close()
		t.Fatal("opened a data directory another process holds")
	}
	if !errors.Is(err, store.ErrLocked) {
		t.Fatalf("err = %v, want ErrLocked", err)
	}
	t.Logf("LOCKED: %v", err)
	os.Stdout.WriteString("LOCKED: " + err.Error() + "\n")
}
