package store_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/store"
)

// TestBackup_ConsistentWhileWriting: a backup taken while a writer keeps
// committing is one commit's state: it passes integrity_check, holds the
// db_version it names, and every row written up to that db_version (and
// none after it).
func TestBackup_ConsistentWhileWriting(t *testing.T) {
	s := testutil.OpenStore(t, "", store.Options{})
	ctx := context.Background()
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			// Two rows per transaction: a snapshot holds both or neither.
			if _, _, err := s.Exec(ctx, []store.Statement{
				{SQL: `INSERT INTO kv (k, n, v) VALUES ('a', ?, ?)`, Args: []any{int64(i), "x"}},
				{SQL: `INSERT INTO kv (k, n, v) VALUES ('b', ?, ?)`, Args: []any{int64(i), "y"}},
			}); err != nil {
				t.Errorf("write %d: %v", i, err)
				return
			}
		}
	}()
	defer func() { stop.Store(true); wg.Wait() }()
	for s.DBVersion() < 20 {
		<-s.Changed()
	}
	for round := 0; round < 3; round++ {
		b, err := s.Backup(ctx)
		if err != nil {
			t.Fatalf("backup: %v", err)
		}
		path := filepath.Join(t.TempDir(), "copy.db")
		out, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, b.File); err != nil {
			t.Fatal(err)
		}
		out.Close()
		if err := b.Close(); err != nil {
			t.Fatalf("close backup: %v", err)
		}
		info, err := store.VerifyBackup(ctx, path)
		if err != nil {
			t.Fatalf("verify: %v", err)
		}
		if info.Incarnation != s.Incarnation() || info.DBVersion < 20 || info.Size != b.Info.Size || info != b.Info {
			t.Fatalf("backup info %+v (verified %+v), store incarnation %s", b.Info, info, s.Incarnation())
		}
		// Open the copy as a store (in a directory of its own) and count.
		dir := t.TempDir()
		if err := os.Rename(path, filepath.Join(dir, store.DBFile)); err != nil {
			t.Fatal(err)
		}
		c := testutil.OpenStore(t, dir, store.Options{})
		if c.DBVersion() != info.DBVersion || c.Incarnation() != info.Incarnation {
			t.Fatalf("copy opens at db_version %d incarnation %s, want %d %s", c.DBVersion(), c.Incarnation(), info.DBVersion, info.Incarnation)
		}
		rows := query(t, c, `SELECT count(*), coalesce(max(n), -1), count(DISTINCT n) FROM kv`)
		n, maxN, distinct := rows[0][0].(int64), rows[0][1].(int64), rows[0][2].(int64)
		// Transaction i committed as db_version i+1: the copy holds
		// exactly transactions 0..DBVersion-1, whole.
		if n != 2*info.DBVersion || maxN != info.DBVersion-1 || distinct != info.DBVersion {
			t.Fatalf("copy at db_version %d holds %d rows, max n %d, %d transactions: not that commit's state", info.DBVersion, n, maxN, distinct)
		}
		c.Close()
		if left, _ := filepath.Glob(filepath.Join(store.DataDir(s), ".backup-*")); len(left) > 0 {
			t.Fatalf("backup left temp files behind: %v", left)
		}
	}
}

// TestBackup_OneAtATime: a second backup while one is open fails at once
// with ErrBackupInProgress; once the first is closed, the next succeeds.
func TestBackup_OneAtATime(t *testing.T) {
	s := testutil.OpenStore(t, "", store.Options{})
	ctx := context.Background()
	exec(t, s, `INSERT INTO kv (k, n, v) VALUES ('a', 1, 'x')`)
	b, err := s.Backup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Backup(ctx); !errors.Is(err, store.ErrBackupInProgress) {
		t.Fatalf("second backup: %v, want ErrBackupInProgress", err)
	}
	b.Close()
	b2, err := s.Backup(ctx)
	if err != nil {
		t.Fatalf("backup after the first closed: %v", err)
	}
	b2.Close()
}

// TestRestore_NewIncarnation: a backup marked restored and installed in a
// new directory opens with a new incarnation (counted as new: slugs wait
// for a pull), its data, and no pull cursors.
func TestRestore_NewIncarnation(t *testing.T) {
	ctx := context.Background()
	s := testutil.OpenStore(t, "", store.Options{})
	exec(t, s, `INSERT INTO kv (k, n, v) VALUES ('a', 1, 'x')`)
	exec(t, s, `INSERT INTO kv (k, n, v) VALUES ('a', 2, 'y')`)
	b, err := s.Backup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, store.DBFile)
	out, _ := os.Create(path)
	if _, err := io.Copy(out, b.File); err != nil {
		t.Fatal(err)
	}
	out.Close()
	b.Close()
	// A pull cursor, as a node with peers has: it must go.
	if err := s.SetCursor(ctx, "NODE01", store.CursorPull, "abc", 42); err != nil {
		t.Fatal(err)
	}
	info, err := store.MarkRestored(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Incarnation != s.Incarnation() || info.DBVersion != 2 {
		t.Fatalf("restored info %+v", info)
	}
	if _, err := store.VerifyBackup(ctx, path); err == nil {
		t.Fatal("a file already marked restored passes as a backup (it has no incarnation)")
	}
	r := testutil.OpenStore(t, dir, store.Options{})
	if r.Incarnation() == s.Incarnation() || r.Incarnation() == "" || !r.NewIncarnation() {
		t.Fatalf("restored incarnation %q (new %v), original %q: want a new one", r.Incarnation(), r.NewIncarnation(), s.Incarnation())
	}
	if r.DBVersion() != 2 {
		t.Fatalf("restored db_version %d, want 2", r.DBVersion())
	}
	if got := fmt.Sprint(query(t, r, `SELECT n, v FROM kv ORDER BY n`)); got != "[[1 x] [2 y]]" {
		t.Fatalf("restored rows %s", got)
	}
	if dbv, inc, err := r.Cursor(ctx, "NODE01", store.CursorPull); err != nil || dbv != 0 || inc != "" {
		t.Fatalf("restored pull cursor %d %q %v, want none", dbv, inc, err)
	}
	exec(t, r, `INSERT INTO kv (k, n, v) VALUES ('a', 3, 'z')`)
	if r.DBVersion() != 3 {
		t.Fatalf("db_version after a write %d, want 3", r.DBVersion())
	}
}

// TestVerifyBackup_Refuses: garbage, a non-Outpost database and a missing
// file are refused with a reason.
func TestVerifyBackup_Refuses(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.db")
	if err := os.WriteFile(junk, []byte("this is not a database, not at all, no"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := store.VerifyBackup(ctx, junk); err == nil {
		t.Fatal("junk verified")
	}
	if _, err := store.VerifyBackup(ctx, filepath.Join(dir, "missing.db")); err == nil {
		t.Fatal("missing file verified")
	}
	if _, err := os.Stat(filepath.Join(dir, "missing.db")); err == nil {
		t.Fatal("verify created the missing file")
	}
}

// writeBackup makes a backup of s into a file and returns its path.
func writeBackup(t *testing.T, s *store.Store) string {
	t.Helper()
	b, err := s.Backup(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	path := filepath.Join(t.TempDir(), "backup.db")
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, b.File); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestRestore_Dir: Restore refuses a directory a store holds (locked) and
// one that has a database (unless force), and installs the backup so the
// store opens it with a new incarnation, its data and no stale WAL.
func TestRestore_Dir(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := store.Open(ctx, store.Options{Dir: dir, Identity: testutil.Identity("EDGE01", "43ax"), Schema: testutil.PagesSchema})
	if err != nil {
		t.Fatal(err)
	}
	exec(t, s, `INSERT INTO kv (k, n, v) VALUES ('a', 1, 'kept')`)
	backup := writeBackup(t, s)
	exec(t, s, `INSERT INTO kv (k, n, v) VALUES ('a', 2, 'lost')`)
	oldInc := s.Incarnation()
	if _, err := store.Restore(ctx, dir, backup, true); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("restore into a running store's dir: %v, want ErrLocked", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Restore(ctx, dir, backup, false); !errors.Is(err, store.ErrHasDatabase) {
		t.Fatalf("restore over a database without force: %v, want ErrHasDatabase", err)
	}
	info, err := store.Restore(ctx, dir, backup, true)
	if err != nil {
		t.Fatalf("restore with force: %v", err)
	}
	if info.Incarnation != oldInc || info.DBVersion != 1 {
		t.Fatalf("restored %+v", info)
	}
	for _, f := range []string{"-wal", "-shm", ".restore"} {
		if _, err := os.Stat(filepath.Join(dir, store.DBFile+f)); err == nil {
			t.Fatalf("%s%s left after restore", store.DBFile, f)
		}
	}
	r := testutil.OpenStore(t, dir, store.Options{})
	if r.Incarnation() == oldInc || r.DBVersion() != 1 {
		t.Fatalf("restored store: incarnation %s (old %s), db_version %d", r.Incarnation(), oldInc, r.DBVersion())
	}
	if got := fmt.Sprint(query(t, r, `SELECT n, v FROM kv ORDER BY n`)); got != "[[1 kept]]" {
		t.Fatalf("restored rows %s", got)
	}

	// Into a new directory: no force needed.
	fresh := filepath.Join(t.TempDir(), "new")
	if _, err := store.Restore(ctx, fresh, backup, false); err != nil {
		t.Fatalf("restore into a new dir: %v", err)
	}
	if _, err := store.Restore(ctx, filepath.Join(t.TempDir(), "x"), filepath.Join(t.TempDir(), "none.db"), false); err == nil {
		t.Fatal("restore from a missing file succeeded")
	}
}
