package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestStatus_HostPortAndDeadLink: --target takes host:port without a scheme
// (it used to fail with a raw URL error), and a down link's lag shows "-",
// not 0.
func TestStatus_HostPortAndDeadLink(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/status" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(`{"name":"EDGE01","role":"edge","farm":"lhr","incarnation":"i1","db_version":7,"slugs_ready":true,
			"links":[{"peer":"NODE1","role":"node","direction":"pull","connected":false,"cursor":5,"peer_db_version":5,"lag_db_versions":null,"lag_seconds":null,"changes":5,"refused":0,"held":0,"errors":3,"last_error":"connection refused"}],
			"replication":{},"held_changes":{},"refused_changes":[],"refusals":[],"writes":{}}`))
	}))
	defer srv.Close()
	code, out, errs := runCmd(t, "status", "--target", strings.TrimPrefix(srv.URL, "http://"))
	if code != 0 {
		t.Fatalf("status: exit %d %q", code, errs)
	}
	var row string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "NODE1") {
			row = line
		}
	}
	if f := strings.Fields(row); len(f) < 9 || f[6] != "-" || f[7] != "-" {
		t.Fatalf("dead link's lag: want -, got row %q in\n%s", row, out)
	}
}

// TestLogger_DurationsAsText: durations are logged as text ("1.5s"), not
// as a bare number of nanoseconds.
func TestLogger_DurationsAsText(t *testing.T) {
	var buf bytes.Buffer
	log, err := newLogger(&buf, "info")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("sync: link down", "retry_in", 1500*time.Millisecond)
	if !strings.Contains(buf.String(), `"retry_in":"1.5s"`) {
		t.Fatalf("log line %s", buf.String())
	}
}

// TestStatus_Fleet: status --fleet prints GET /v1/fleet, one line per node,
// with "-" for what the node cannot know.
func TestStatus_Fleet(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/fleet" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(`{"self":"MASTER01","generated_at":"2026-12-01T10:00:00Z","nodes":[
			{"name":"MASTER01","role":"master","self":true,"state":"self","db_version":9,"lag_db_versions":null,"lag_seconds":null,"last_seen":"2026-12-01T10:00:00Z","last_seen_seconds_ago":0,"version":"dev","same_schema":true,"refused_changes":0,"links":[]},
			{"name":"EDGE04","role":"edge","farm":"cdg","self":false,"state":"down","db_version":5,"lag_db_versions":null,"lag_seconds":null,"last_seen":"2026-12-01T09:59:00Z","last_seen_seconds_ago":60,"version":"dev","same_schema":false,"refused_changes":2,"links":[]}]}`))
	}))
	defer srv.Close()
	code, out, errs := runCmd(t, "status", "--fleet", "--target", srv.URL)
	if code != 0 {
		t.Fatalf("status --fleet: exit %d %q", code, errs)
	}
	var row []string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "EDGE04") {
			row = strings.Fields(line)
		}
	}
	want := []string{"EDGE04", "edge", "cdg", "down", "5", "-", "-", "60s", "ago", "dev", "DIFFERS", "2"}
	if strings.Join(row, " ") != strings.Join(want, " ") || !strings.Contains(out, "MASTER01 *") {
		t.Fatalf("got row %q, want %q in\n%s", row, want, out)
	}
}
