package main

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/api"
	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/store"
)

// TestBackupRestore_CLI: `outpost backup` downloads a verified backup
// atomically; `outpost restore` refuses a locked directory and one with a
// database (without --force), and installs it so the node starts with a new
// incarnation and the data.
func TestBackupRestore_CLI(t *testing.T) {
	st := testutil.OpenStore(t, "", store.Options{})
	if _, _, err := st.Exec(context.Background(), []store.Statement{{SQL: `INSERT INTO kv (k, n, v) VALUES ('a', 1, 'x')`}}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(st, api.Config{Token: "tok"}))
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "edge01.db")

	if code, _, errs := runCmd(t, "backup", "--target", srv.URL, "--to", file); code != 1 || !strings.Contains(errs, "unauthorized") {
		t.Fatalf("backup without token: exit %d %q", code, errs)
	}
	if _, err := os.Stat(file); err == nil {
		t.Fatal("a failed backup left the file")
	}
	code, out, errs := runCmd(t, "backup", "--target", strings.TrimPrefix(srv.URL, "http://"), "--api-token", "tok", "--to", file)
	if code != 0 || !strings.Contains(out, "db_version 1") || !strings.Contains(out, st.Incarnation()) {
		t.Fatalf("backup: exit %d %q %q", code, out, errs)
	}
	if _, err := os.Stat(file + ".tmp"); err == nil {
		t.Fatal("backup left its .tmp file")
	}

	data := filepath.Join(t.TempDir(), "data")
	lock, err := store.LockDir(mkdirBackupTest(t, data))
	if err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runCmd(t, "restore", "--data", data, "--from", file); code != 1 || !strings.Contains(errs, "in use") {
		t.Fatalf("restore into a locked dir: exit %d %q", code, errs)
	}
	lock.Close()
	code, out, errs = runCmd(t, "restore", "--data", data, "--from", file)
	if code != 0 || !strings.Contains(out, "new incarnation") || !strings.Contains(errs, "identity.json") {
		t.Fatalf("restore: exit %d %q %q", code, out, errs)
	}
	if code, _, errs := runCmd(t, "restore", "--data", data, "--from", file); code != 1 || !strings.Contains(errs, "--force") {
		t.Fatalf("restore over a database: exit %d %q, want a refusal naming --force", code, errs)
	}
	if code, _, errs := runCmd(t, "restore", "--data", data, "--from", file, "--force"); code != 0 {
		t.Fatalf("restore --force: exit %d %q", code, errs)
	}
	if code, _, _ := runCmd(t, "restore", "--data", data); code != 2 {
		t.Fatalf("restore without --from: exit %d, want 2", code)
	}
	r := testutil.OpenStore(t, data, store.Options{})
	if r.Incarnation() == st.Incarnation() || r.DBVersion() != 1 {
		t.Fatalf("restored: incarnation %s (backup's %s), db_version %d", r.Incarnation(), st.Incarnation(), r.DBVersion())
	}
}

func mkdirBackupTest(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}
