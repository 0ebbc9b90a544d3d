package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/outpost-edge/outpost/bench"
	"github.com/outpost-edge/outpost/sim"
)

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench", stderr)
	apiURL := fs.String("target", "", "API URL of a running node whose schema has the bench table (see bench.Schema); empty = start a node of our own on loopback")
	token := fs.String("api-token", "", "bearer token of the target node")
	dataDir := fs.String("data", "", "directory on the disk to measure fsync on (and the data dir of the node we start); empty = a temp dir")
	duration := fs.Duration("duration", 5*time.Second, "time limit per scenario")
	maxOps := fs.Int64("max-ops", 200_000, "operation limit per scenario")
	asJSON := fs.Bool("json", false, "print results as JSON")
	suite := fs.String("suite", "api", "api (one node's API and disk), replication (the 'up' fleet in this process: propagation, throughput, catch-up), processes (one 'outpost serve' process per node: deliveries per change, settle time, write rate, idle cost), limiter (the global rate limiter simulated with 52 nodes), limit-http (POST /v1/limit decisions on the local path against --target or a node it starts), beacons (beacon intake at one edge against the fsync rate, bytes per stored beacon, and end to end to both aggregators of the 'up' fleet in this process), fleet (1 master, 2 nodes, --farms x --edges simulated in this process with partitions and a hub loss), relay (the chat relay on the 'up' fleet in this process: cross-farm and same-farm message latency, --conns idle connections and a room fan-out) or site (the public listener on the demo fleet in this process: cache hits vs /v1/query, rendering, the caching proxy, purge and data-change invalidation across the fleet)")
	farms := fs.Int("farms", 2, "processes suite: farms in the fleet (1 master + 1 node + farms x edges)")
	edges := fs.Int("edges", 2, "processes suite: edges per farm")
	writes := fs.Int("writes", 200, "processes suite: rows written at the first edge, one per transaction")
	conc := fs.Int("concurrency", 16, "processes suite: clients writing at once")
	idle := fs.Duration("idle", 10*time.Second, "processes suite: how long the idle fleet is measured (0 = skip)")
	conns := fs.Int("conns", 10000, "relay suite: idle WebSocket connections opened on one edge (0 = skip)")
	only := fs.String("only", "", "api suite: run only these scenarios, comma-separated, of write1, write16, tx100, read1, read16 (the fsync reference always runs; reads need a write scenario); empty = all")
	rates := fs.String("rates", "100,1000,5000", "relay suite: message rates per second (100 runs same farm and other farm, the others other farm)")
	cpuProfile := fs.String("cpuprofile", "", "relay suite: write a CPU profile of the whole run (the in-process fleet) to this file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	lim := bench.Limits{Duration: *duration, MaxOps: *maxOps}
	if *suite == "processes" {
		// Ctrl-C or SIGTERM cancels the run; Processes stops every node it
		// started before returning.
		ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("processes bench: this binary: %w", err)
		}
		idleFor := *idle
		if idleFor == 0 {
			idleFor = -1
		}
		var logw io.Writer
		if !*asJSON {
			logw = stderr
		}
		rep, err := bench.Processes(ctx, bench.ProcessOptions{Binary: self, Dir: *dataDir, Farms: *farms, Edges: *edges,
			Writes: *writes, Concurrency: *conc, Idle: idleFor, Log: logw})
		if err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(rep)
		}
		return rep.WriteMarkdown(stdout)
	}
	if *suite == "fleet" { // in-process fleet simulation (sim/): real replication, in-memory transport
		return sim.Suite(ctx, *farms, *edges, *writes, *asJSON, stdout, stderr)
	}
	if *suite == "site" { // the public listener on the demo fleet in this process (bench/site.go)
		dir := *dataDir
		if dir == "" {
			d, err := os.MkdirTemp("", "outpost-bench-site-*")
			if err != nil {
				return err
			}
			defer os.RemoveAll(d)
			dir = d
		}
		results, err := bench.Site(ctx, dir, lim, func(r bench.Result) {
			if !*asJSON {
				fmt.Fprintf(stderr, "  %-70s %10.0f/s  p50 %-9s p99 %-9s errors %d %s\n", r.Name, r.PerSecond, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Errors, r.Note)
			}
		})
		if err != nil {
			return err
		}
		return printResults(stdout, results, *asJSON, 0)
	}
	if *suite == "limiter" { // in-process simulation of the global rate limiter (bench/limiter.go)
		return bench.LimiterSuite(ctx, bench.DefaultLimiterOptions, stdout, stderr, *asJSON)
	}
	if *suite == "relay-clients" { // the relay suite's child process (bench/relay_clients.go)
		return bench.RelayClients(ctx, *apiURL, *conns, os.Stdin, stdout)
	}
	if *suite == "relay" { // the chat relay on the demo fleet (bench/relay.go)
		dir := *dataDir
		if dir == "" {
			d, err := os.MkdirTemp("", "outpost-bench-relay-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(d)
			dir = d
		}
		o := bench.DefaultRelayOptions
		o.Duration, o.Conns = *duration, *conns
		o.Rates = nil
		for _, f := range strings.Split(*rates, ",") {
			r, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || r <= 0 {
				return fmt.Errorf("--rates: %q is not a positive number", f)
			}
			o.Rates = append(o.Rates, r)
		}
		if *cpuProfile != "" {
			f, err := os.Create(*cpuProfile)
			if err != nil {
				return err
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				return err
			}
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
		if self, err := os.Executable(); err == nil {
			o.Binary = self // the idle connections' clients in a child process
		}
		return bench.RelaySuite(ctx, dir, o, stdout, stderr, *asJSON)
	}
	if *suite == "replication" {
		results, err := bench.Replication(ctx, lim, func(r bench.Result) {
			if !*asJSON {
				fmt.Fprintf(stderr, "  %-62s %10.0f/s  p50 %-9s p99 %-9s errors %d %s\n", r.Name, r.PerSecond, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Errors, r.Note)
			}
		})
		if err != nil {
			return err
		}
		return printResults(stdout, results, *asJSON, 0)
	} else if *suite != "api" && *suite != "limit-http" && *suite != "beacons" {
		return fmt.Errorf("--suite %q: want api, limit-http, beacons, replication, processes, limiter, fleet, relay or site", *suite)
	}
	dir := *dataDir
	if dir == "" {
		d, err := os.MkdirTemp("", "outpost-bench-*")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	url := *apiURL
	if url == "" {
		u, stop, err := startBenchNode(ctx, filepath.Join(dir, "node"), stderr)
		if err != nil {
			return err
		}
		defer stop()
		url = u
	}

	var results []bench.Result
	add := func(r bench.Result) {
		results = append(results, r)
		if !*asJSON {
			fmt.Fprintf(stderr, "  %-36s %10.0f/s  p50 %-9s p99 %-9s errors %d %s\n", r.Name, r.PerSecond, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Errors, r.Note)
		}
	}
	fsync, err := bench.Fsync(dir, bench.Limits{Duration: min(*duration, 3*time.Second), MaxOps: *maxOps})
	if err != nil {
		return err
	}
	add(fsync)
	run0 := strconv.FormatInt(time.Now().UnixNano(), 36)
	c1 := bench.NewClient(url, *token, 1)
	c16 := bench.NewClient(url, *token, 16)
	if *suite == "beacons" {
		return benchBeacons(ctx, c16, filepath.Join(dir, "node"), *apiURL == "", lim, add, func() error {
			return printResults(stdout, results, *asJSON, fsync.P50)
		})
	}
	if *suite == "limit-http" {
		add(bench.LimitDecisions(ctx, c1, 1, 1000, lim))
		add(bench.LimitDecisions(ctx, c16, 16, 1000, lim))
		return printResults(stdout, results, *asJSON, fsync.P50)
	}
	want := map[string]bool{}
	for _, n := range strings.Split(*only, ",") {
		if n = strings.TrimSpace(n); n != "" {
			switch n {
			case "write1", "write16", "tx100", "read1", "read16":
				want[n] = true
			default:
				return fmt.Errorf("--only %q: want write1, write16, tx100, read1 or read16", n)
			}
		}
	}
	runs := func(name string) bool { return len(want) == 0 || want[name] }
	var ids []string
	if runs("write1") {
		w1, ids1 := bench.Writes(ctx, c1, 1, lim, run0+"a")
		add(w1)
		ids = append(ids, ids1...)
	}
	if runs("write16") {
		w16, ids16 := bench.Writes(ctx, c16, 16, lim, run0+"b")
		add(w16)
		ids = append(ids, ids16...)
	}
	if runs("tx100") {
		add(bench.Transactions(ctx, c16, 4, 100, lim, run0+"c"))
	}
	if runs("read1") || runs("read16") {
		if len(ids) == 0 {
			return errors.New("no write succeeded, so there is nothing to read back; see the errors above (reads need write1 or write16)")
		}
		if runs("read1") {
			add(bench.Reads(ctx, c1, 1, lim, ids))
		}
		if runs("read16") {
			add(bench.Reads(ctx, c16, 16, lim, ids))
		}
	}

	return printResults(stdout, results, *asJSON, fsync.P50)
}

// printResults prints JSON or a Markdown table; with ref > 0 a column of
// p50 ratios against it.
func printResults(stdout io.Writer, results []bench.Result, asJSON bool, ref time.Duration) error {
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(results)
	}
	fmt.Fprintln(stdout, "| scenario | ops/s | p50 | p99 | p50 / fsync p50 | errors | note |")
	fmt.Fprintln(stdout, "| --- | ---: | ---: | ---: | ---: | ---: | --- |")
	for _, r := range results {
		ratio := "-"
		if ref > 0 {
			ratio = fmt.Sprintf("%.2f", float64(r.P50)/float64(ref))
		}
		fmt.Fprintf(stdout, "| %s | %.0f | %s | %s | %s | %d | %s |\n", r.Name, r.PerSecond, fmtDur(r.P50), fmtDur(r.P99), ratio, r.Errors, r.Note)
	}
	return nil
}

func fmtDur(d time.Duration) string {
	return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond))
}

// startBenchNode runs `outpost serve` (this binary) on a free loopback port
// with the bench schema and returns its URL and a function that stops it.
func startBenchNode(ctx context.Context, dir string, stderr io.Writer) (string, func(), error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, err
	}
	schema := filepath.Join(dir, "bench.sql")
	if err := os.WriteFile(schema, []byte(bench.Schema), 0o644); err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	self, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.CommandContext(ctx, self, "serve", "--data", dir, "--schema", schema, "--api", addr, "--log-level", "warn", "--beacon-per-ip", "0",
		"--name", "BENCH01", "--location", "LHR", "--farm", "lhr", "--role", "edge", "--code", "00bb")
	cmd.Stderr = stderr
	cmd.Env = append(os.Environ(), "OUTPOST_API_TOKEN=")
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	url := "http://" + addr
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				fmt.Fprintf(stderr, "bench: node %s on %s (data %s)\n", "BENCH01", url, dir)
				return url, stop, nil
			}
		}
	}
	stop()
	return "", nil, fmt.Errorf("bench node did not answer /healthz on %s within 15s", url)
}
