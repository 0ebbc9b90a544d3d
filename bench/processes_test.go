package bench

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildOutpost builds the outpost binary the processes suite runs (a test
// binary cannot serve as `outpost serve`).
func buildOutpost(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool to build the outpost binary with")
	}
	bin := filepath.Join(t.TempDir(), "outpost")
	cmd := exec.Command(goTool, "build", "-o", bin, "../cmd/outpost")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestProcesses_Tiny runs the processes suite on four processes (one farm
// of two edges) and checks the numbers are sane, not fast.
func TestProcesses_Tiny(t *testing.T) {
	if testing.Short() {
		t.Skip("starts five processes")
	}
	bin := buildOutpost(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var log bytes.Buffer
	rep, err := Processes(ctx, ProcessOptions{Binary: bin, Dir: t.TempDir(), Farms: 1, Edges: 2, Writes: 20, Concurrency: 4,
		Idle: time.Second, Timeout: 30 * time.Second, Log: &log})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if rep.Nodes != 4 || rep.Writes != 20 || rep.WriteErrors != 0 {
		t.Fatalf("nodes %d writes %d errors %d, want 4, 20, 0", rep.Nodes, rep.Writes, rep.WriteErrors)
	}
	// A row is a sentinel and one change per other column (n, body).
	if rep.ChangesWritten != 3*20 {
		t.Errorf("changes written %d, want 60", rep.ChangesWritten)
	}
	if rep.Applied != rep.ChangesWritten*int64(rep.Nodes-1) {
		t.Errorf("applied %d fleet-wide, want every change once at each of the %d other nodes", rep.Applied, rep.Nodes-1)
	}
	if rep.DeliveriesPerChangePerNode < 1 {
		t.Errorf("deliveries per change per node %.2f, want >= 1", rep.DeliveriesPerChangePerNode)
	}
	for _, n := range rep.PerNode {
		if n.Name != rep.Origin && n.Applied+n.Ignored < rep.ChangesWritten {
			t.Errorf("%s received %d changes, want at least %d", n.Name, n.Applied+n.Ignored, rep.ChangesWritten)
		}
	}
	if rep.Settle <= 0 || rep.WriteRate <= 0 || rep.ReferenceRate <= 0 {
		t.Errorf("settle %s, write rate %.0f, single node %.0f: want all > 0", rep.Settle, rep.WriteRate, rep.ReferenceRate)
	}
	// An idle link may send nothing in a one-second window (heartbeats
	// back off to 10 s), so only the links are required.
	if rep.IdleLinks < 1 || rep.IdleBytesPerSec < 0 {
		t.Errorf("idle: %d links, %.0f B/s: want links and a byte count", rep.IdleLinks, rep.IdleBytesPerSec)
	}
	if rep.CPUMeasured && (rep.ActiveCPU <= 0 || rep.IdleCPUPerSec < 0) {
		t.Errorf("CPU: active %.3f s, idle %.3f/s", rep.ActiveCPU, rep.IdleCPUPerSec)
	}
	var md bytes.Buffer
	if err := rep.WriteMarkdown(&md); err != nil || !strings.Contains(md.String(), "| EDGE02 |") {
		t.Errorf("markdown: %v\n%s", err, md.String())
	}
}

func TestParseSeries(t *testing.T) {
	s := parseSeries([]byte("# HELP x y\noutpost_replication_changes_total{result=\"applied\"} 12\n" +
		"outpost_replication_changes_total{result=\"ignored\"} 3\noutpost_db_version 7\n" +
		"outpost_replication_connected{direction=\"pull\",peer=\"M\"} 1\noutpost_replication_connected{direction=\"push\",peer=\"E\"} 0\n"))
	if s.get("outpost_replication_changes_total", `result="applied"`) != 12 || s.deliveries() != 15 ||
		s.get("outpost_db_version", "") != 7 || s.sum("outpost_replication_connected", "") != 1 {
		t.Fatalf("parsed %v", s)
	}
}

func TestProcessMembers(t *testing.T) {
	ms := ProcessMembers(8, 4)
	if len(ms) != 34 {
		t.Fatalf("%d members, want 34", len(ms))
	}
	codes := map[string]bool{}
	for _, m := range ms {
		if err := m.Validate(); err != nil {
			t.Fatal(err)
		}
		if codes[m.Code] {
			t.Fatalf("code %s twice", m.Code)
		}
		codes[m.Code] = true
	}
	if ms[2].Name != "EDGE01" || ms[2].Farm != "f01" || ms[33].Farm != "f08" {
		t.Fatalf("members %+v", ms)
	}
}
