package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/outpost-edge/outpost/api"
	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/store"
)

// TestBackup_StreamWhileWriting: GET /v1/backup while a writer keeps
// writing streams a SQLite file that passes integrity_check, whose headers
// name its db_version and incarnation, and that holds every row of that
// db_version.
func TestBackup_StreamWhileWriting(t *testing.T) {
	ts := newTestServer(t)
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			body := fmt.Sprintf(`{"statements":[{"sql":"INSERT INTO kv (k, n, v) VALUES ('a', ?, 'x')","args":[%d]}]}`, i)
			if res := ts.do(t, http.MethodPost, "/v1/exec", nil, body); res.status != http.StatusOK {
				t.Errorf("write %d: %d %s", i, res.status, res.body)
				return
			}
		}
	}()
	defer func() { stop.Store(true); wg.Wait() }()
	for ts.st.DBVersion() < 10 {
		<-ts.st.Changed()
	}
	res := ts.do(t, http.MethodGet, "/v1/backup", nil, "")
	if res.status != http.StatusOK {
		t.Fatalf("backup: %d %s", res.status, res.body)
	}
	if ct := res.header.Get("Content-Type"); ct != api.BackupContentType {
		t.Fatalf("Content-Type %q", ct)
	}
	if cl := res.header.Get("Content-Length"); cl != strconv.Itoa(len(res.body)) {
		t.Fatalf("Content-Length %q, body %d bytes", cl, len(res.body))
	}
	dbv, err := strconv.ParseInt(res.header.Get(api.BackupDBVersionHeader), 10, 64)
	if err != nil || dbv < 10 {
		t.Fatalf("%s %q: %v", api.BackupDBVersionHeader, res.header.Get(api.BackupDBVersionHeader), err)
	}
	if inc := res.header.Get(api.BackupIncarnationHeader); inc != ts.st.Incarnation() {
		t.Fatalf("%s %q, want %q", api.BackupIncarnationHeader, inc, ts.st.Incarnation())
	}
	dir := t.TempDir()
	path := filepath.Join(dir, store.DBFile)
	if err := os.WriteFile(path, res.body, 0o600); err != nil {
		t.Fatal(err)
	}
	info, err := store.VerifyBackup(context.Background(), path)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if info.DBVersion != dbv || info.Incarnation != ts.st.Incarnation() {
		t.Fatalf("file holds %+v, headers said %d", info, dbv)
	}
	c := testutil.OpenStore(t, dir, store.Options{Schema: testSchema})
	rows, err := c.Query(context.Background(), store.Statement{SQL: `SELECT count(*), max(n) FROM kv`})
	if err != nil {
		t.Fatal(err)
	}
	if n, mx := rows.Rows[0][0].(int64), rows.Rows[0][1].(int64); n != dbv || mx != dbv-1 {
		t.Fatalf("backup at db_version %d holds %d rows (max n %d)", dbv, n, mx)
	}
}

// TestBackup_Refusals: a second backup while one is open gets 409
// backup_in_progress; a missing token 401; a POST 405.
func TestBackup_Refusals(t *testing.T) {
	ts := newTestServer(t)
	b, err := ts.st.Backup(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	res := ts.do(t, http.MethodGet, "/v1/backup", nil, "")
	var e struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(res.body, &e); err != nil || res.status != http.StatusConflict || e.Error.Code != "backup_in_progress" || res.header.Get("Retry-After") == "" {
		t.Fatalf("second backup: %d %s (%v), want 409 backup_in_progress with Retry-After", res.status, res.body, err)
	}
	b.Close()
	if res := ts.do(t, http.MethodGet, "/v1/backup", nil, ""); res.status != http.StatusOK {
		t.Fatalf("backup after the first closed: %d %s", res.status, res.body)
	}
	if res := ts.do(t, http.MethodGet, "/v1/backup", map[string]string{"Authorization": ""}, ""); res.status != http.StatusUnauthorized {
		t.Fatalf("backup without token: %d", res.status)
	}
	if res := ts.do(t, http.MethodPost, "/v1/backup", nil, ""); res.status != http.StatusMethodNotAllowed {
		t.Fatalf("POST /v1/backup: %d", res.status)
	}
}
