//go:build docker

package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The container fault tests need a reachable Docker engine and docker-compose
// (or the compose plugin); they are behind the "docker" build tag:
//
//	go test -tags docker -count=1 -timeout 10m -run TestContainers ./e2e/
//
// .ci/run runs them when `docker info` succeeds.

const (
	ctrWriteEvery   = 20 * time.Millisecond // per edge: at most 50 writes a second
	ctrWriteTimeout = 5 * time.Second       // per /v1/exec request
	ctrConverge     = 60 * time.Second      // how long the fleet may take to agree after a phase
	ctrReady        = 60 * time.Second      // how long a (re)started container may take to answer
	ctrHealthy      = 45 * time.Second      // how long the image's HEALTHCHECK may take to pass at the end
	ctrPollEvery    = 200 * time.Millisecond
	ctrSelect       = `SELECT id, n, body FROM bench_rows ORDER BY id`
	ctrUser         = "65532:65532" // the image's USER
	ctrVersionB     = "rolled"      // outpost.Version of the image rolled onto the fleet
)

// ctrServices are the services of deploy/compose.yaml, in roll order.
var ctrServices = []string{"master01", "node01", "edge01", "edge02", "edge03", "edge04"}

var ctrEdges = []string{"edge01", "edge02", "edge03", "edge04"}

// TestContainers_Faults builds the image twice (the second build reports a
// different version), starts the deploy/compose.yaml fleet from the first,
// and runs a bounded write load at every edge through three faults:
//
//  1. farm cdg cut off the core network (docker network disconnect) while
//     both sides keep writing, then healed; then again during beacon intake
//     at every edge (containers_beacons_test.go: no sync load);
//  2. the master container SIGKILLed, left down, and started again;
//  3. every container rolled to the second image, one at a time, waiting for
//     each to be ready before the next.
//
// After each phase the load stops, every node must converge to the same rows,
// and every acknowledged write (of all phases so far) must be on every node.
func TestContainers_Faults(t *testing.T) {
	began := time.Now()
	if runtime.GOOS != "linux" {
		t.Skip("the container tests bind-mount host directories into a local Linux Docker engine")
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on PATH; cannot build the outpost binary")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("docker is not on PATH")
	}
	if _, err := ctrRun(30*time.Second, nil, "docker", "info"); err != nil {
		t.Skipf("no reachable Docker engine: %v", err)
	}
	compose := ctrFindCompose()
	if compose == nil {
		t.Skip("neither docker-compose nor the docker compose plugin is available")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	composeFile := filepath.Join(root, "deploy", "compose.yaml")
	dockerfile := filepath.Join(root, "Dockerfile")
	for _, f := range []string{composeFile, dockerfile} {
		if _, err := os.Stat(f); err != nil {
			t.Fatal(err)
		}
	}

	suffix := fmt.Sprintf("%08x", rand.Uint32())
	h := &ctrHarness{
		compose: compose,
		file:    composeFile,
		project: "outposttest" + suffix,
		tagA:    "outpost:test-" + suffix + "-a",
		tagB:    "outpost:test-" + suffix + "-b",
		urls:    map[string]string{},
	}
	work := t.TempDir()

	// Images: a static binary per version, each alone in its build context.
	var stageImages []string // build-stage images the builds created (legacy builder)
	t.Cleanup(func() {
		for _, img := range append([]string{h.tagA, h.tagB}, stageImages...) {
			if _, err := ctrRun(time.Minute, nil, "docker", "image", "rm", img); err != nil && !strings.Contains(err.Error(), "No such image") {
				t.Logf("cleanup: %v", err)
			}
		}
	})
	for _, v := range []struct{ tag, version string }{{h.tagA, ""}, {h.tagB, ctrVersionB}} {
		ctxDir := filepath.Join(work, "image-"+v.tag[len(v.tag)-1:])
		if err := os.MkdirAll(ctxDir, 0o755); err != nil {
			t.Fatal(err)
		}
		args := []string{"build", "-o", filepath.Join(ctxDir, "outpost")}
		if v.version != "" {
			args = append(args, "-ldflags", "-X github.com/outpost-edge/outpost.Version="+v.version)
		}
		args = append(args, "github.com/outpost-edge/outpost/cmd/outpost")
		if _, err := ctrRun(5*time.Minute, append(ctrEnv(), "CGO_ENABLED=0", "GOOS=linux"), goCmd, args...); err != nil {
			t.Fatalf("static build: %v", err)
		}
		out, err := ctrRun(5*time.Minute, nil, "docker", "build", "-f", dockerfile, "-t", v.tag, ctxDir)
		stageImages = append(stageImages, ctrStageImages(out)...)
		if err != nil {
			t.Fatalf("docker build: %v", err)
		}
	}
	imageB := strings.TrimSpace(h.must(t, time.Minute, nil, "docker", "image", "inspect", "-f", "{{.Id}}", h.tagB))
	built := time.Since(began)

	// The fleet directory: keys, identities, trust list, schema; owned by
	// the containers' user.
	fleetDir := filepath.Join(work, "fleet")
	h.must(t, time.Minute, ctrEnv(), filepath.Join(work, "image-a", "outpost"), "init-fleet", "--dir", fleetDir)
	// The fleet starts on protocol 1; the roll brings every node to the
	// build's (2) under load.
	env := append(ctrEnv(), "FLEET_DIR="+fleetDir, "OUTPOST_IMAGE="+h.tagA,
		"OUTPOST_PROTOCOL_VERSION=1", "OUTPOST_MIN_PROTOCOL_VERSION=1")
	if os.Geteuid() == 0 {
		if err := ctrChown(fleetDir, 65532, 65532); err != nil {
			t.Fatal(err)
		}
	} else {
		// Without root the fleet directory cannot be given to 65532: run the
		// containers as the (non-root) user running the test instead.
		env = append(env, fmt.Sprintf("OUTPOST_USER=%d:%d", os.Geteuid(), os.Getegid()))
	}
	if fi, err := os.Stat(filepath.Join(fleetDir, "EDGE01", "node.key")); err != nil {
		t.Fatal(err)
	} else if fi.Mode().Perm() != 0o600 {
		t.Fatalf("EDGE01/node.key has mode %v; want 0600", fi.Mode().Perm())
	}
	taken := map[int]bool{}
	for _, svc := range ctrServices {
		port := ctrFreePort(t, taken)
		env = append(env, fmt.Sprintf("OUTPOST_PORT_%s=%d", strings.ToUpper(svc), port))
		h.urls[svc] = fmt.Sprintf("http://127.0.0.1:%d", port)
	}
	h.env = env

	// Down (and the logs, on failure) on every way out.
	t.Cleanup(func() {
		if t.Failed() {
			for _, svc := range ctrServices {
				t.Logf("=== %s: %s", svc, ctrLinks(h.urls[svc]))
			}
			for _, l := range h.oldLogs {
				t.Logf("%s", l)
			}
			if out, err := h.composeRun(time.Minute, nil, "logs", "--no-color", "--timestamps", "--tail", "300"); err != nil {
				t.Logf("docker-compose logs: %v", err)
			} else {
				t.Logf("=== container logs (last 300 lines each):\n%s", out)
			}
		}
		if _, err := h.composeRun(3*time.Minute, nil, "down", "-v", "--remove-orphans", "-t", "20"); err != nil {
			t.Logf("cleanup: %v", err)
		}
	})
	h.composeMust(t, 3*time.Minute, nil, "up", "-d")
	for _, svc := range ctrServices {
		if err := ctrWaitReady(h.urls[svc], ctrReady); err != nil {
			t.Fatalf("%s: %v", svc, err)
		}
	}
	started := time.Since(began)
	t.Logf("project %s: images built in %v, fleet of %d containers ready at %v (%s)", h.project,
		built.Round(time.Millisecond), len(ctrServices), started.Round(time.Millisecond), h.portList())

	load := newCtrLoad(h.urls)
	defer load.stop() // on t.Fatal too; a no-op once stopped

	// Each phase is a subtest (run one alone with -run 'TestContainers_Faults/roll').
	t.Run("partition_cdg", func(t *testing.T) {
		// Farm cdg cut off the core network while both sides keep writing.
		defer load.stop()
		p := time.Now()
		load.start(1)
		time.Sleep(1500 * time.Millisecond)
		cut := h.cutCore(t, []string{"edge03", "edge04"})
		defer cut.healQuietly() // on t.Fatal too, so the later phases run on a whole fleet
		cutAcks := load.acksByEdge()
		time.Sleep(time.Second)
		cdgAtMaster := ctrCount(t, h.urls["master01"], `id LIKE 'edge03-%' OR id LIKE 'edge04-%'`)
		lhrAtEdge03 := ctrCount(t, h.urls["edge03"], `id LIKE 'edge01-%' OR id LIKE 'edge02-%'`)
		time.Sleep(2 * time.Second)
		cdgAtMaster2 := ctrCount(t, h.urls["master01"], `id LIKE 'edge03-%' OR id LIKE 'edge04-%'`)
		lhrAtEdge03b := ctrCount(t, h.urls["edge03"], `id LIKE 'edge01-%' OR id LIKE 'edge02-%'`)
		healAcks := load.acksByEdge()
		moves := cut.heal(t)
		var during []string
		for _, e := range ctrEdges {
			n := healAcks[e] - cutAcks[e]
			during = append(during, fmt.Sprintf("%s %d", e, n))
			if n == 0 {
				t.Errorf("%s acknowledged no write while farm cdg was cut off; want both sides writing", e)
			}
		}
		if cdgAtMaster2 != cdgAtMaster || lhrAtEdge03b != lhrAtEdge03 {
			t.Errorf("the partition leaked: cdg rows at master01 went %d -> %d, lhr rows at edge03 %d -> %d",
				cdgAtMaster, cdgAtMaster2, lhrAtEdge03, lhrAtEdge03b)
		}
		t.Logf("farm cdg off %s for 3s; writes acknowledged meanwhile: %s; master01 held %d cdg rows throughout, edge03 %d lhr rows; healed (core addresses: %s)",
			cut.net, strings.Join(during, ", "), cdgAtMaster, lhrAtEdge03, strings.Join(moves, ", "))
		time.Sleep(time.Second)
		load.stop()
		h.checkPhase(t, load, 1, "partition farm cdg", time.Since(p))
	})

	t.Run("beacons_partition_cdg", func(t *testing.T) {
		// Beacon intake at every edge while farm cdg is cut off the core
		// (containers_beacons_test.go).
		p := time.Now()
		h.beaconPartition(t)
		h.beaconTime = time.Since(p)
	})

	t.Run("kill_master", func(t *testing.T) {
		// SIGKILL the master container, keep writing, start it again.
		defer load.stop()
		p := time.Now()
		load.start(2)
		time.Sleep(time.Second)
		master := h.containerID(t, "master01")
		h.must(t, time.Minute, nil, "docker", "kill", "-s", "KILL", master)
		killed := time.Now()
		state := strings.TrimSpace(h.must(t, time.Minute, nil, "docker", "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", master))
		time.Sleep(2 * time.Second)
		after := strings.TrimSpace(h.must(t, time.Minute, nil, "docker", "inspect", "-f", "{{.State.Status}}", master))
		if after != "running" { // docker kill counts as a manual stop: no restart policy
			h.must(t, time.Minute, nil, "docker", "start", master)
		}
		if err := ctrWaitReady(h.urls["master01"], ctrReady); err != nil {
			t.Fatalf("master01 after the kill: %v", err)
		}
		t.Logf("master01 killed (state right after: %s; 2s later: %s), started again, ready %v after the kill",
			state, after, time.Since(killed).Round(time.Millisecond))
		time.Sleep(time.Second)
		load.stop()
		h.checkPhase(t, load, 2, "kill -9 master01", time.Since(p))
	})

	t.Run("roll", func(t *testing.T) {
		// Every container onto image b, one at a time, under load.
		defer load.stop()
		p := time.Now()
		load.start(3)
		time.Sleep(time.Second)
		envB := []string{"OUTPOST_IMAGE=" + h.tagB, "OUTPOST_PROTOCOL_VERSION=0", "OUTPOST_MIN_PROTOCOL_VERSION=0"}
		var rolls []string
		for _, svc := range ctrServices {
			r0 := time.Now()
			old := h.containerID(t, svc)
			// Stop first (SIGTERM: the node drains) to time it and keep
			// the old container's whole log; up then replaces it.
			h.composeMust(t, 3*time.Minute, nil, "stop", svc)
			stopped := time.Since(r0)
			h.keepLogs(svc, old)
			h.composeMust(t, 3*time.Minute, envB, "up", "-d", "--no-deps", svc)
			id := h.containerID(t, svc)
			if id == old {
				t.Errorf("%s: container %.12s was not recreated", svc, id)
			}
			if img := strings.TrimSpace(h.must(t, time.Minute, nil, "docker", "inspect", "-f", "{{.Image}}", id)); img != imageB {
				t.Errorf("%s runs image %s, want %s (%s)", svc, img, imageB, h.tagB)
			}
			if err := ctrWaitReady(h.urls[svc], ctrReady); err != nil {
				t.Fatalf("%s after the roll: %v", svc, err)
			}
			if v := h.must(t, time.Minute, nil, "docker", "exec", id, "/outpost", "version"); !strings.Contains(v, "outpost "+ctrVersionB+" ") {
				t.Errorf("%s: /outpost version says %q, want version %s", svc, strings.TrimSpace(v), ctrVersionB)
			}
			rolls = append(rolls, fmt.Sprintf("%s %v (stop %v)", svc, time.Since(r0).Round(time.Millisecond), stopped.Round(time.Millisecond)))
		}
		t.Logf("rolled to %s (protocol 1 -> 2) one at a time (stop, up, ready): %s", h.tagB, strings.Join(rolls, ", "))
		time.Sleep(time.Second)
		load.stop()
		h.checkPhase(t, load, 3, "roll every container", time.Since(p))
		// Every node now speaks 2: what reached it since the roll came as
		// signed log entries.
		for _, svc := range ctrServices {
			_, b, err := ctrGet(h.urls[svc] + "/v1/status")
			var st struct {
				Traffic struct {
					Entries int64 `json:"entries"`
				} `json:"sync_traffic"`
			}
			if err != nil || json.Unmarshal(b, &st) != nil || st.Traffic.Entries == 0 {
				t.Errorf("%s received no protocol 2 entries after the roll (%v): %s", svc, err, ctrTail(string(b), 5))
			}
		}
	})

	// The image's HEALTHCHECK (outpost probe of /readyz) passes everywhere.
	h0 := time.Now()
	for {
		var unhealthy []string
		for _, svc := range ctrServices {
			st := strings.TrimSpace(h.must(t, time.Minute, nil, "docker", "inspect", "-f", "{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}", h.containerID(t, svc)))
			if st != "healthy" {
				unhealthy = append(unhealthy, svc+" "+st)
			}
		}
		if len(unhealthy) == 0 {
			t.Logf("every container healthy (HEALTHCHECK) %v after the last phase", time.Since(h0).Round(time.Millisecond))
			break
		}
		if time.Since(h0) > ctrHealthy {
			t.Errorf("HEALTHCHECK: not healthy after %v: %s", ctrHealthy, strings.Join(unhealthy, ", "))
			break
		}
		time.Sleep(time.Second)
	}
	t.Logf("total %v (images %v, fleet up %v, phases incl. convergence: partition %v, beacons %v, kill %v, roll %v)", time.Since(began).Round(time.Millisecond),
		built.Round(time.Millisecond), (started - built).Round(time.Millisecond),
		h.phaseTimes[1].Round(time.Millisecond), h.beaconTime.Round(time.Millisecond), h.phaseTimes[2].Round(time.Millisecond), h.phaseTimes[3].Round(time.Millisecond))
}

// ctrHarness drives one compose project.
type ctrHarness struct {
	compose    []string // the compose command: docker-compose, or docker compose
	file       string   // deploy/compose.yaml
	project    string
	tagA, tagB string
	env        []string          // environment of every compose command (image a)
	urls       map[string]string // service -> http://127.0.0.1:port
	phaseTimes [4]time.Duration
	beaconTime time.Duration // the beacon partition phase, convergence included
	stuck      []string      // phases after which the fleet did not converge
	oldLogs    []string      // logs of containers replaced by the roll, shown on failure
}

// must runs a command that must succeed and returns its stdout.
func (h *ctrHarness) must(t *testing.T, timeout time.Duration, env []string, name string, args ...string) string {
	t.Helper()
	out, err := ctrRun(timeout, env, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// composeRun runs a compose command on the project; extra is added to (and
// overrides) the project's environment.
func (h *ctrHarness) composeRun(timeout time.Duration, extra []string, args ...string) (string, error) {
	full := append(slices.Clone(h.compose[1:]), "-p", h.project, "-f", h.file)
	return ctrRun(timeout, append(slices.Clone(h.env), extra...), h.compose[0], append(full, args...)...)
}

func (h *ctrHarness) composeMust(t *testing.T, timeout time.Duration, extra []string, args ...string) string {
	t.Helper()
	out, err := h.composeRun(timeout, extra, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// containerID returns the ID of the service's container.
func (h *ctrHarness) containerID(t *testing.T, svc string) string {
	t.Helper()
	ids := strings.Fields(h.composeMust(t, time.Minute, nil, "ps", "-q", svc))
	if len(ids) != 1 {
		t.Fatalf("docker-compose ps -q %s: %q, want one container", svc, ids)
	}
	return ids[0]
}

// keepLogs saves the tail of a container's log before it is removed.
func (h *ctrHarness) keepLogs(svc, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "logs", "--timestamps", "--tail", "300", id).CombinedOutput()
	if err != nil {
		out = append(out, []byte("\n(docker logs: "+err.Error()+")")...)
	}
	h.oldLogs = append(h.oldLogs, fmt.Sprintf("=== %s: log of container %.12s, stopped for the roll (last 300 lines):\n%s", svc, id, out))
}

func (h *ctrHarness) portList() string {
	var s []string
	for _, svc := range ctrServices {
		s = append(s, svc+" "+strings.TrimPrefix(h.urls[svc], "http://"))
	}
	return strings.Join(s, ", ")
}

// checkPhase waits (bounded) until every node answers the same rows, then
// checks them against the acknowledged writes and logs the phase's count.
func (h *ctrHarness) checkPhase(t *testing.T, load *ctrLoad, phase int, label string, took time.Duration) {
	t.Helper()
	start := time.Now()
	results := make([][][]any, len(ctrServices))
	errs := make([]error, len(ctrServices))
	converged := false
	for {
		for i, svc := range ctrServices {
			results[i], errs[i] = syncQuery(h.urls[svc], ctrSelect)
		}
		if errors.Join(errs...) == nil && ctrAllSame(results) {
			converged = true
			break
		}
		if time.Since(start) > ctrConverge {
			break
		}
		time.Sleep(ctrPollEvery)
	}
	convTime := time.Since(start)
	h.phaseTimes[phase] = took + convTime

	st := load.snapshot()
	for _, s := range st.bad {
		t.Errorf("phase %d: write answered with neither 200 nor 503: %s", phase, s)
	}
	if st.badN > len(st.bad) {
		t.Errorf("phase %d: %d more writes answered with neither 200 nor 503", phase, st.badN-len(st.bad))
	}
	for _, e := range ctrEdges {
		if st.ack[e] == 0 {
			t.Errorf("phase %d: %s acknowledged no write; the phase proved nothing for it", phase, e)
		}
	}

	// Per node: which ids it holds; every row must be one a client sent.
	have := make([]map[string]bool, len(ctrServices))
	for i, svc := range ctrServices {
		if errs[i] != nil {
			t.Errorf("phase %d: %s: %s: %v", phase, svc, ctrSelect, errs[i])
			continue
		}
		have[i] = make(map[string]bool, len(results[i]))
		strange := 0
		for _, r := range results[i] {
			id, problem := ctrCheckRow(r, st.seq)
			if id != "" {
				have[i][id] = true
			}
			if problem != "" {
				if strange++; strange <= 5 {
					t.Errorf("phase %d: %s holds row %v: %s", phase, svc, r, problem)
				}
			}
		}
		if strange > 5 {
			t.Errorf("phase %d: %s holds %d rows no client sent this way (%d not shown)", phase, svc, strange, strange-5)
		}
	}
	var phaseAcked, phaseFound, totalFound int
	missing := make([]int, len(ctrServices))
	var samples []string
	for _, id := range slices.Sorted(maps.Keys(st.acked)) {
		onAll := true
		for i := range ctrServices {
			if have[i] == nil || !have[i][id] {
				onAll = false
				if have[i] != nil {
					missing[i]++
					if len(samples) < 10 {
						samples = append(samples, ctrServices[i]+" lacks "+id)
					}
				}
			}
		}
		if st.acked[id] == phase {
			phaseAcked++
		}
		if onAll {
			totalFound++
			if st.acked[id] == phase {
				phaseFound++
			}
		}
	}
	totalAcked := len(st.acked)
	lost := totalAcked - totalFound
	earlier := ""
	if len(h.stuck) > 0 {
		earlier = " (the fleet had not converged after " + strings.Join(h.stuck, ", ") + " either)"
	}
	if !converged {
		h.stuck = append(h.stuck, fmt.Sprintf("phase %d", phase))
		counts := make([]string, len(ctrServices))
		for i, svc := range ctrServices {
			counts[i] = fmt.Sprintf("%s %d", svc, len(results[i]))
		}
		t.Errorf("phase %d: the fleet did not converge within %v%s; rows per node: %s", phase, ctrConverge, earlier, strings.Join(counts, ", "))
		for _, svc := range ctrServices {
			t.Logf("phase %d: %s: %s", phase, svc, ctrLinks(h.urls[svc]))
		}
	}
	if lost > 0 {
		t.Errorf("phase %d: %d of %d acknowledged writes are not on every node%s (missing per node %v: %v), e.g. %s",
			phase, lost, totalAcked, earlier, ctrServices, missing, strings.Join(samples, "; "))
	}
	t.Logf("phase %d (%s): acknowledged %d, found on every node %d, lost %d"+
		" [since the start: acknowledged %d, found on every node %d, lost %d; %d rows on every node; converged %v after the load stopped; this phase: %d writes refused with 503, %d failed in transit (node down)]",
		phase, label, phaseAcked, phaseFound, phaseAcked-phaseFound,
		totalAcked, totalFound, lost, len(results[0]), convTime.Round(time.Millisecond), ctrSum(st.busy), ctrSum(st.down))
}

// ctrCheckRow checks one (id, n, body) row: the id is <edge>-<seq> of a write
// that was attempted, and n and body are what that write carried.
func ctrCheckRow(r []any, seq map[string]int64) (id, problem string) {
	if len(r) != 3 {
		return "", fmt.Sprintf("has %d columns", len(r))
	}
	id, ok := r[0].(string)
	if !ok {
		return "", "id is not text"
	}
	edge, num, ok := strings.Cut(id, "-")
	s, err := strconv.ParseInt(num, 10, 64)
	if !ok || err != nil || s < 1 || s > seq[edge] {
		return id, "no client sent this id"
	}
	n, _ := r[1].(json.Number)
	body, _ := r[2].(string)
	if n.String() != strconv.FormatInt(s, 10) || body != ctrBody(edge, s) {
		return id, fmt.Sprintf("content differs from what was sent (%d, %q)", s, ctrBody(edge, s))
	}
	return id, ""
}

func ctrBody(edge string, seq int64) string {
	return fmt.Sprintf("written at %s, row %d", edge, seq)
}

// ctrLoad is the write load: one goroutine per edge, inserting bench_rows
// <edge>-<seq> at most once every ctrWriteEvery. Only a complete 200 answer
// counts as acknowledged; transport errors (a node down or cut off) and 503s
// (a node draining) are counted and tolerated.
type ctrLoad struct {
	urls map[string]string

	mu    sync.Mutex
	phase int
	seq   map[string]int64 // last sequence number used, per edge (never reused)
	acked map[string]int   // acknowledged id -> phase
	// this phase, per edge: acknowledged, failed in transit, 503
	ack, down, busy map[string]int
	bad             []string // samples of other answers this phase
	badN            int

	stopCh chan struct{}
	wg     sync.WaitGroup
}

type ctrLoadState struct {
	seq             map[string]int64
	acked           map[string]int
	ack, down, busy map[string]int
	bad             []string
	badN            int
}

func newCtrLoad(urls map[string]string) *ctrLoad {
	return &ctrLoad{urls: urls, seq: map[string]int64{}, acked: map[string]int{}}
}

func (l *ctrLoad) start(phase int) {
	l.mu.Lock()
	l.phase = phase
	l.ack, l.down, l.busy, l.bad, l.badN = map[string]int{}, map[string]int{}, map[string]int{}, nil, 0
	l.mu.Unlock()
	l.stopCh = make(chan struct{})
	for _, e := range ctrEdges {
		l.wg.Add(1)
		go l.writer(e, l.urls[e], l.stopCh)
	}
}

// stop ends the load and waits for every request in flight.
func (l *ctrLoad) stop() {
	if l.stopCh == nil {
		return
	}
	close(l.stopCh)
	l.stopCh = nil
	l.wg.Wait()
}

func (l *ctrLoad) acksByEdge() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.ack)
}

func (l *ctrLoad) snapshot() ctrLoadState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return ctrLoadState{seq: maps.Clone(l.seq), acked: maps.Clone(l.acked),
		ack: maps.Clone(l.ack), down: maps.Clone(l.down), busy: maps.Clone(l.busy), bad: slices.Clone(l.bad), badN: l.badN}
}

func (l *ctrLoad) writer(edge, url string, stop <-chan struct{}) {
	defer l.wg.Done()
	hc := &http.Client{Timeout: ctrWriteTimeout}
	defer hc.CloseIdleConnections()
	tick := time.NewTicker(ctrWriteEvery)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		l.mu.Lock()
		l.seq[edge]++
		seq, phase := l.seq[edge], l.phase
		l.mu.Unlock()
		id := fmt.Sprintf("%s-%d", edge, seq)
		status, body, err := post(context.Background(), hc, url+"/v1/exec", map[string]any{"statements": []map[string]any{{
			"sql":  `INSERT INTO bench_rows (id, n, body) VALUES (?, ?, ?)`,
			"args": []any{id, seq, ctrBody(edge, seq)},
		}}})
		acked := false
		if err == nil && status == http.StatusOK {
			var resp struct {
				Results []struct {
					RowsAffected int64 `json:"rows_affected"`
				} `json:"results"`
				DBVersion *int64 `json:"db_version"`
			}
			acked = json.Unmarshal(body, &resp) == nil && resp.DBVersion != nil && len(resp.Results) == 1 && resp.Results[0].RowsAffected == 1
		}
		l.mu.Lock()
		switch {
		case err != nil:
			l.down[edge]++
		case acked:
			l.acked[id] = phase
			l.ack[edge]++
		case status == http.StatusServiceUnavailable:
			l.busy[edge]++
		default:
			l.badN++
			if len(l.bad) < 5 {
				l.bad = append(l.bad, fmt.Sprintf("%s %s: HTTP %d: %s", edge, id, status, bytes.TrimSpace(body)))
			}
		}
		l.mu.Unlock()
	}
}

func ctrSum(m map[string]int) int {
	s := 0
	for _, v := range m {
		s += v
	}
	return s
}

// ctrCount returns SELECT count(*) FROM bench_rows WHERE where at base.
func ctrCount(t *testing.T, base, where string) int64 {
	t.Helper()
	rows, err := syncQuery(base, "SELECT count(*) FROM bench_rows WHERE "+where)
	if err != nil || len(rows) != 1 || len(rows[0]) != 1 {
		t.Fatalf("count at %s: %v (%v)", base, err, rows)
	}
	n, err := rows[0][0].(json.Number).Int64()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func ctrAllSame(results [][][]any) bool {
	first, _ := json.Marshal(results[0])
	for _, r := range results[1:] {
		b, _ := json.Marshal(r)
		if !bytes.Equal(b, first) {
			return false
		}
	}
	return true
}

// ctrWaitReady waits until base answers /readyz with 200 (or, from a build
// without /readyz, /healthz).
func ctrWaitReady(base string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := "no answer"
	for time.Now().Before(deadline) {
		code, body, err := ctrGet(base + "/readyz")
		if code == http.StatusNotFound {
			code, body, err = ctrGet(base + "/healthz")
		}
		if err == nil && code == http.StatusOK {
			return nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("HTTP %d: %s", code, bytes.TrimSpace(body))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready within %v (last: %s)", base, timeout, last)
}

func ctrGet(url string) (int, []byte, error) {
	hc := &http.Client{Timeout: 2 * time.Second}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, err
}

func ctrStatus(base string) string {
	code, body, err := ctrGet(base + "/v1/status")
	if err != nil {
		return "(no answer: " + err.Error() + ")"
	}
	return fmt.Sprintf("(HTTP %d) %s", code, bytes.TrimSpace(body))
}

// ctrLinks sums up a node's GET /v1/status: its db_version and each sync
// link's state, cursor and the peer db_version it last heard of.
func ctrLinks(base string) string {
	code, body, err := ctrGet(base + "/v1/status")
	if err != nil || code != http.StatusOK {
		return ctrStatus(base)
	}
	var st struct {
		DBVersion int64 `json:"db_version"`
		Links     []struct {
			Peer      string `json:"peer"`
			Direction string `json:"direction"`
			Connected bool   `json:"connected"`
			Cursor    int64  `json:"cursor"`
			PeerDBV   int64  `json:"peer_db_version"`
			Changes   int64  `json:"changes"`
			Errors    int64  `json:"errors"`
			LastError string `json:"last_error"`
		} `json:"links"`
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Sprintf("status: %v: %s", err, body)
	}
	parts := []string{fmt.Sprintf("db_version %d", st.DBVersion)}
	for _, l := range st.Links {
		s := fmt.Sprintf("%s %s connected=%v cursor=%d peer_db_version=%d changes=%d errors=%d", l.Direction, l.Peer, l.Connected, l.Cursor, l.PeerDBV, l.Changes, l.Errors)
		if l.LastError != "" {
			s += " last_error=" + strconv.Quote(l.LastError)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// ctrRun runs a command with a time limit and returns its stdout; the error
// carries the command line and its stderr. env nil means this process's.
func ctrRun(timeout time.Duration, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err,
			ctrTail(stdout.String(), 40), ctrTail(stderr.String(), 40))
	}
	return stdout.String(), nil
}

func ctrTail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d earlier lines)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// ctrEnv is this process's environment without settings that would change
// what the test runs: OUTPOST_* (outpost flags and the compose file's
// variables), FLEET_DIR and the compose project and file.
func ctrEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "OUTPOST_") || strings.HasPrefix(kv, "FLEET_DIR=") ||
			strings.HasPrefix(kv, "COMPOSE_FILE=") || strings.HasPrefix(kv, "COMPOSE_PROJECT_NAME=")
	})
}

// ctrFindCompose returns the compose command: docker-compose (v1), else the
// docker compose plugin, else nil.
func ctrFindCompose() []string {
	if _, err := exec.LookPath("docker-compose"); err == nil {
		if _, err := ctrRun(30*time.Second, nil, "docker-compose", "version"); err == nil {
			return []string{"docker-compose"}
		}
	}
	if _, err := ctrRun(30*time.Second, nil, "docker", "compose", "version"); err == nil {
		return []string{"docker", "compose"}
	}
	return nil
}

// ctrStageImages returns the images the legacy builder made for the build
// stages before the last one (deploy's Dockerfile has one, for the empty
// /data directory) and did not take from its cache: nothing else refers to
// them once the tagged image is removed. BuildKit output has none.
func ctrStageImages(out string) []string {
	stepRe := regexp.MustCompile(`^Step \d+/\d+ : (.*)$`)
	idRe := regexp.MustCompile(`^ ---> ([0-9a-f]{12,64})$`)
	var ids []string
	last, cached, isFrom, steps := "", false, false, 0
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if m := stepRe.FindStringSubmatch(line); m != nil {
			from := strings.HasPrefix(strings.ToUpper(m[1]), "FROM ")
			if from && steps > 0 && last != "" && !cached {
				ids = append(ids, last)
			}
			if from {
				last = ""
			}
			cached, isFrom = false, from
			steps++
			continue
		}
		if line == " ---> Using cache" {
			cached = true
			continue
		}
		if m := idRe.FindStringSubmatch(line); m != nil && !isFrom {
			last = m[1]
		}
	}
	return ids
}

// ctrCompareIP orders two IP addresses (unparsable ones first).
func ctrCompareIP(a, b string) int {
	x, _ := netip.ParseAddr(a)
	y, _ := netip.ParseAddr(b)
	return x.Compare(y)
}

// ctrChown gives dir and everything in it to uid:gid (modes unchanged, so
// node.key stays 0600).
func ctrChown(dir string, uid, gid int) error {
	return filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

// ctrFreePort returns a loopback port that was free a moment ago and is not
// in taken.
func ctrFreePort(t *testing.T, taken map[int]bool) int {
	t.Helper()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !taken[port] {
			taken[port] = true
			return port
		}
	}
}
