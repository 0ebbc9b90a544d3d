package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestServe_KillDuringBeaconIntake SIGKILLs an edge while clients post
// beacon batches: after each restart every batch that got a 200 is in the
// log at the sequence numbers it was given, and the sequence has no gap.
func TestServe_KillDuringBeaconIntake(t *testing.T) {
	bin := outpostBinary(t)
	dir := t.TempDir()
	schema := filepath.Join(dir, "schema.sql")
	if err := os.WriteFile(schema, []byte("CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL);\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	type acked struct {
		first, last int64
		ids         []string
	}
	var (
		mu    sync.Mutex
		acks  []acked
		batch int
	)
	hc := &http.Client{Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	for cycle := 0; cycle < 3; cycle++ {
		p := startServe(t, bin, data, schema)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					mu.Lock()
					batch++
					b := batch
					mu.Unlock()
					var body strings.Builder
					ids := make([]string, 10)
					for i := range ids {
						ids[i] = fmt.Sprintf("c%d-b%d-%d", cycle, b, i)
						fmt.Fprintf(&body, `{"event":"e","id":%q}`+"\n", ids[i])
					}
					req, _ := http.NewRequestWithContext(context.Background(), "POST", p.url+"/v1/beacons", strings.NewReader(body.String()))
					resp, err := hc.Do(req)
					if err != nil {
						continue // the process died: not acknowledged
					}
					out, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					if err != nil || resp.StatusCode != 200 {
						continue
					}
					var a struct {
						First int64 `json:"first_seq"`
						Last  int64 `json:"last_seq"`
					}
					if err := json.Unmarshal(out, &a); err != nil {
						t.Errorf("answer %s: %v", out, err)
						return
					}
					mu.Lock()
					acks = append(acks, acked{a.First, a.Last, ids})
					mu.Unlock()
				}
			}()
		}
		time.Sleep(400 * time.Millisecond)
		p.kill()
		close(stop)
		wg.Wait()
	}
	p := startServe(t, bin, data, schema)
	rows := query(t, p.url, `SELECT seq, json_extract(body, '$.id') FROM outpost_beacon_log ORDER BY seq`)
	got := map[int64]string{}
	for i, r := range rows {
		seq := asInt(t, r[0])
		if seq != int64(i+1) {
			t.Fatalf("row %d has seq %d: the sequence has a gap", i, seq)
		}
		got[seq], _ = r[1].(string)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(acks) == 0 {
		t.Fatal("no batch was acknowledged")
	}
	for _, a := range acks {
		for i, id := range a.ids {
			if g := got[a.first+int64(i)]; g != id {
				t.Fatalf("acknowledged beacon %s at seq %d: found %q", id, a.first+int64(i), g)
			}
		}
	}
	t.Logf("%d acknowledged batches, %d beacons in the log", len(acks), len(rows))
}
