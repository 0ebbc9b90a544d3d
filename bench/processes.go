package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/fleet"
)

// The processes suite runs a fleet with one `outpost serve` process per
// node on loopback (its own keys, identities and trust list, laid out by
// fleet.Init) and measures what protocol 2 is to improve:
//
//   - deliveries: how many times each change written at one edge reaches
//     each other node (first arrivals applied, duplicates ignored, plus
//     held and refused), from the deltas of every node's
//     outpost_replication_changes_total;
//   - settle: from the last acknowledged write to every node having every
//     row;
//   - the origin's write rate against a single node's, both measured in the
//     same run;
//   - idle cost: bytes per second on the peer transport (every node's
//     outpost_peer_bytes_total) and fleet CPU-seconds per second (utime +
//     stime of every process from /proc/PID/stat).

// ProcessOptions configure the processes suite. Zero values take the
// defaults noted.
type ProcessOptions struct {
	// Binary is the outpost binary run as `serve` for every node (the
	// bench's own, os.Executable). Required.
	Binary string
	// Dir holds the fleet's keys, trust list, schema, data and logs; ""
	// = a temporary directory removed at the end.
	Dir string
	// Farms and Edges: 1 master + 1 node + Farms farms of Edges edges
	// (defaults 2 and 2: six nodes).
	Farms, Edges int
	// Writes is how many rows are written at the origin, one INSERT per
	// transaction (default 200), by Concurrency clients (default 16).
	Writes, Concurrency int
	// Idle is how long the idle fleet is measured (default 10s; < 0 skips).
	Idle time.Duration
	// Timeout bounds each wait: start, arrival of every row, quiet
	// counters (default 120s).
	Timeout time.Duration
	// Log receives progress lines; nil = none.
	Log io.Writer
}

// NodeReport is one node's part of a ProcessReport.
type NodeReport struct {
	Name string `json:"name"`
	Role string `json:"role"`
	Farm string `json:"farm,omitempty"`
	// Deliveries of the measured writes' changes to this node, by result.
	Applied int64 `json:"applied"`
	Ignored int64 `json:"ignored"`
	Held    int64 `json:"held"`
	Refused int64 `json:"refused"`
	// Settled is when this node had every row, from the last acknowledged
	// write (an upper bound within one poll interval).
	Settled time.Duration `json:"settled_ns"`
	// Idle measurement: peer transport bytes per second read and written,
	// replication loops connected, CPU-seconds per second.
	IdleBytesInPerSec  float64 `json:"idle_bytes_in_per_sec"`
	IdleBytesOutPerSec float64 `json:"idle_bytes_out_per_sec"`
	IdleLinks          int     `json:"idle_links"`
	IdleCPU            float64 `json:"idle_cpu_per_sec"`
}

// ProcessReport is what the processes suite measured.
type ProcessReport struct {
	Nodes  int    `json:"nodes"`
	Farms  int    `json:"farms"`
	Edges  int    `json:"edges_per_farm"`
	Origin string `json:"origin"`

	// Writes acknowledged at the origin (one row each), write errors, the
	// writing time and rate at Concurrency clients.
	Writes       int           `json:"writes"`
	WriteErrors  int           `json:"write_errors"`
	Concurrency  int           `json:"concurrency"`
	WriteElapsed time.Duration `json:"write_elapsed_ns"`
	WriteRate    float64       `json:"writes_per_sec"`
	// The same writes against a single node with no peers, in this run.
	ReferenceRate float64 `json:"reference_writes_per_sec"`
	// WriteRatio is WriteRate / ReferenceRate.
	WriteRatio float64 `json:"write_ratio"`

	// ChangesWritten is the number of changes the writes produced: the
	// applied delta at the master, which applies each exactly once (its
	// first arrival); ChangesPerRow = ChangesWritten / Writes.
	ChangesWritten int64   `json:"changes_written"`
	ChangesPerRow  float64 `json:"changes_per_row"`
	// Deliveries, fleet-wide, of those changes: applied + ignored + held +
	// refused at every node.
	Applied    int64 `json:"applied"`
	Ignored    int64 `json:"ignored"`
	Held       int64 `json:"held"`
	Refused    int64 `json:"refused"`
	Deliveries int64 `json:"deliveries"`
	// DeliveriesPerChange = Deliveries / ChangesWritten (fleet-wide);
	// PerNode divides that by the N-1 receiving nodes.
	DeliveriesPerChange        float64 `json:"deliveries_per_change"`
	DeliveriesPerChangePerNode float64 `json:"deliveries_per_change_per_node"`

	// Settle is from the last acknowledged write to every node having
	// every row; Slowest is the node that had them last.
	Settle  time.Duration `json:"settle_ns"`
	Slowest string        `json:"slowest"`
	// ActiveCPU is the fleet's CPU-seconds from the first write until
	// the delivery counters were quiet again (duplicates included).
	ActiveCPU float64 `json:"active_cpu_seconds"`

	// Idle: measured for IdleTime with no writes. Links are the
	// replication loops (pull streams and push loops) connected at its end;
	// bytes are the peer transport's bytes written by every node.
	IdleTime           time.Duration `json:"idle_ns"`
	IdleLinks          int           `json:"idle_links"`
	IdleBytesPerSec    float64       `json:"idle_bytes_per_sec"`
	IdleBytesPerLink   float64       `json:"idle_bytes_per_sec_per_link"`
	IdleCPUPerSec      float64       `json:"idle_cpu_per_sec"`
	CPUMeasured        bool          `json:"cpu_measured"`
	PerNode            []NodeReport  `json:"per_node"`
	ProtocolVersion    int           `json:"protocol_version"`
	DeliveriesComplete bool          `json:"deliveries_complete"`
}

// ProcessMembers returns the fleet of the processes suite: MASTER01,
// NODE01, then farms f01..fNN of edges EDGE01..EDGEnn. Addresses are
// left empty.
func ProcessMembers(farms, edges int) []fleet.Member {
	ms := []fleet.Member{
		{Identity: outpost.Identity{Name: "MASTER01", Location: "FRA", Role: outpost.RoleMaster, Code: "01ma"}},
		{Identity: outpost.Identity{Name: "NODE01", Location: "AMS", Role: outpost.RoleNode, Code: "02no"}},
	}
	i := 0
	for f := 1; f <= farms; f++ {
		for e := 1; e <= edges; e++ {
			i++
			ms = append(ms, fleet.Member{Identity: outpost.Identity{
				Name: fmt.Sprintf("EDGE%02d", i), Location: fmt.Sprintf("F%02d", f), Farm: fmt.Sprintf("f%02d", f),
				Role: outpost.RoleEdge, Code: fmt.Sprintf("%02d%c%c", i%100, 'e', 'a'+byte(i/100)),
			}})
		}
	}
	return ms
}

// Processes runs the processes suite. Every process it starts is stopped
// before it returns, on errors and cancellation too.
func Processes(ctx context.Context, o ProcessOptions) (rep *ProcessReport, err error) {
	o = o.withDefaults()
	if o.Binary == "" {
		return nil, errors.New("processes bench: no outpost binary to run")
	}
	if o.Farms < 1 || o.Edges < 1 || o.Farms*o.Edges > 1000 {
		return nil, fmt.Errorf("processes bench: --farms %d --edges %d: want at least one of each and at most 1000 edges", o.Farms, o.Edges)
	}
	if o.Dir == "" {
		d, err := os.MkdirTemp("", "outpost-bench-procs-*")
		if err != nil {
			return nil, fmt.Errorf("processes bench: %w", err)
		}
		defer os.RemoveAll(d)
		o.Dir = d
	}
	run0 := strconv.FormatInt(time.Now().UnixNano(), 36)

	// The single-node reference first, alone on the machine.
	ref, err := referenceRate(ctx, o, run0)
	if err != nil {
		return nil, err
	}

	members := ProcessMembers(o.Farms, o.Edges)
	addrs, err := freeAddrs(2 * len(members))
	if err != nil {
		return nil, err
	}
	for i := range members {
		members[i].API, members[i].Peer = addrs[2*i], addrs[2*i+1]
	}
	fdir := filepath.Join(o.Dir, "fleet")
	if err := fleet.Init(fdir, members, Schema, func(m fleet.Member) string { return m.Peer }); err != nil {
		return nil, fmt.Errorf("processes bench: lay out the fleet: %w", err)
	}
	f := &procFleet{}
	defer func() {
		if serr := f.stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	o.logf("bench: starting %d `outpost serve` processes in %s", len(members), fdir)
	for _, m := range members {
		args := []string{"serve", "--data", filepath.Join(fdir, m.Name), "--schema", filepath.Join(fdir, "schema.sql"),
			"--trust", filepath.Join(fdir, "fleet.trust"), "--api", m.API, "--peer-addr", m.Peer, "--log-level", "warn"}
		p, err := startProc(o.Binary, m, args, filepath.Join(fdir, m.Name+".log"))
		if err != nil {
			return nil, err
		}
		f.procs = append(f.procs, p)
	}
	origin := f.procs[2] // EDGE01
	rep = &ProcessReport{Nodes: len(members), Farms: o.Farms, Edges: o.Edges, Origin: origin.m.Name, Concurrency: o.Concurrency,
		ReferenceRate: ref, ProtocolVersion: outpost.ProtocolVersion}

	// Ready: every node answers /readyz, a warm-up write (one per client,
	// so every keep-alive connection is open) reaches every node, and the
	// delivery counters are quiet, so the measured deltas hold only the
	// measured writes.
	if err := f.waitAll(ctx, o.Timeout, "/readyz 200", func(ctx context.Context, p *proc) (bool, error) {
		return p.get(ctx, "/readyz") == nil, nil
	}); err != nil {
		return rep, err
	}
	c := NewClient(origin.url, "", o.Concurrency)
	if _, _, _, err := writeRows(ctx, c, "warm"+run0+"-", o.Concurrency, o.Concurrency); err != nil {
		return rep, fmt.Errorf("processes bench: warm-up writes at %s: %w", origin.m.Name, err)
	}
	if _, err := f.waitRows(ctx, o.Timeout, "warm"+run0+"-", o.Concurrency, time.Now()); err != nil {
		return rep, err
	}
	// Sources settled: every edge pulls from one hub (a standby hub an
	// edge took while its preferred hub was starting stands by again).
	if err := f.waitAll(ctx, o.Timeout, "one hub per edge", func(ctx context.Context, p *proc) (bool, error) {
		if p.m.Role != outpost.RoleEdge {
			return true, nil
		}
		b, err := p.read(ctx, "/v1/status")
		if err != nil {
			return false, nil
		}
		var st struct {
			Links []struct {
				Role      string `json:"role"`
				Direction string `json:"direction"`
				Connected bool   `json:"connected"`
			} `json:"links"`
		}
		if err := json.Unmarshal(b, &st); err != nil {
			return false, err
		}
		hubs := 0
		for _, l := range st.Links {
			if l.Direction == "pull" && l.Role != "edge" && l.Connected {
				hubs++
			}
		}
		return hubs <= 1, nil
	}); err != nil {
		return rep, err
	}
	before, err := f.quiet(ctx, o.Timeout)
	if err != nil {
		return rep, err
	}
	o.logf("bench: fleet ready and quiet; writing %d rows at %s with %d clients", o.Writes, origin.m.Name, o.Concurrency)

	// Writes, then arrival everywhere.
	cpu0 := f.cpu()
	prefix := "w" + run0 + "-"
	acked, errs, elapsed, werr := writeRows(ctx, c, prefix, o.Writes, o.Concurrency)
	lastAck := time.Now()
	if werr != nil && acked == 0 {
		return rep, fmt.Errorf("processes bench: writes at %s: %w", origin.m.Name, werr)
	}
	rep.Writes, rep.WriteErrors, rep.WriteElapsed = acked, errs, elapsed
	rep.WriteRate = float64(acked) / elapsed.Seconds()
	if ref > 0 {
		rep.WriteRatio = rep.WriteRate / ref
	}
	// A failed write may have committed all the same: the origin's count
	// is the truth every node must reach.
	want, err := origin.count(ctx, prefix)
	if err != nil {
		return rep, err
	}
	settled, err := f.waitRows(ctx, o.Timeout, prefix, want, lastAck)
	if err != nil {
		return rep, err
	}
	for i, d := range settled {
		if f.procs[i] != origin && d >= rep.Settle {
			rep.Settle, rep.Slowest = d, f.procs[i].m.Name
		}
	}
	o.logf("bench: %d rows everywhere %s after the last ack; waiting for the duplicates", want, rep.Settle.Round(time.Millisecond))
	after, err := f.quiet(ctx, o.Timeout)
	if err != nil {
		return rep, err
	}
	rep.DeliveriesComplete = true
	cpu1 := f.cpu()
	rep.ActiveCPU, rep.CPUMeasured = cpuDelta(cpu0, cpu1)

	for i, p := range f.procs {
		nr := NodeReport{Name: p.m.Name, Role: string(p.m.Role), Farm: p.m.Farm, Settled: settled[i],
			Applied: int64(after[i].get("outpost_replication_changes_total", `result="applied"`) - before[i].get("outpost_replication_changes_total", `result="applied"`)),
			Ignored: int64(after[i].get("outpost_replication_changes_total", `result="ignored"`) - before[i].get("outpost_replication_changes_total", `result="ignored"`)),
			Held:    int64(after[i].get("outpost_replication_changes_total", `result="held"`) - before[i].get("outpost_replication_changes_total", `result="held"`)),
			Refused: int64(after[i].get("outpost_replication_changes_total", `result="refused"`) - before[i].get("outpost_replication_changes_total", `result="refused"`)),
		}
		rep.Applied += nr.Applied
		rep.Ignored += nr.Ignored
		rep.Held += nr.Held
		rep.Refused += nr.Refused
		if p.m.Role == outpost.RoleMaster {
			rep.ChangesWritten = nr.Applied
		}
		rep.PerNode = append(rep.PerNode, nr)
	}
	rep.Deliveries = rep.Applied + rep.Ignored + rep.Held + rep.Refused
	if rep.Writes > 0 {
		rep.ChangesPerRow = float64(rep.ChangesWritten) / float64(want)
	}
	if rep.ChangesWritten > 0 {
		rep.DeliveriesPerChange = float64(rep.Deliveries) / float64(rep.ChangesWritten)
		rep.DeliveriesPerChangePerNode = rep.DeliveriesPerChange / float64(rep.Nodes-1)
	}
	if want := rep.ChangesWritten * int64(rep.Nodes-1); rep.Applied != want {
		o.logf("bench: note: %d changes applied fleet-wide, not changes written x (N-1) = %d", rep.Applied, want)
	}

	if o.Idle > 0 {
		o.logf("bench: measuring the idle fleet for %s", o.Idle)
		if err := f.idle(ctx, o.Idle, rep); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

func (o ProcessOptions) withDefaults() ProcessOptions {
	if o.Farms == 0 {
		o.Farms = 2
	}
	if o.Edges == 0 {
		o.Edges = 2
	}
	if o.Writes <= 0 {
		o.Writes = 200
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.Idle == 0 {
		o.Idle = 10 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 120 * time.Second
	}
	return o
}

func (o ProcessOptions) logf(format string, args ...any) {
	if o.Log != nil {
		fmt.Fprintf(o.Log, format+"\n", args...)
	}
}

// referenceRate runs the same writes against one node with no peers and
// returns its rate.
func referenceRate(ctx context.Context, o ProcessOptions, run0 string) (float64, error) {
	addrs, err := freeAddrs(1)
	if err != nil {
		return 0, err
	}
	dir := filepath.Join(o.Dir, "single")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, fmt.Errorf("processes bench: %w", err)
	}
	schema := filepath.Join(dir, "schema.sql")
	if err := os.WriteFile(schema, []byte(Schema), 0o644); err != nil {
		return 0, fmt.Errorf("processes bench: %w", err)
	}
	m := fleet.Member{Identity: outpost.Identity{Name: "SINGLE01", Location: "LHR", Farm: "single", Role: outpost.RoleEdge, Code: "99zz"}, API: addrs[0]}
	p, err := startProc(o.Binary, m, []string{"serve", "--data", filepath.Join(dir, "data"), "--schema", schema, "--api", m.API, "--log-level", "warn",
		"--name", m.Name, "--location", m.Location, "--farm", m.Farm, "--role", string(m.Role), "--code", m.Code}, filepath.Join(dir, "serve.log"))
	if err != nil {
		return 0, err
	}
	f := &procFleet{procs: []*proc{p}}
	defer f.stop()
	if err := f.waitAll(ctx, o.Timeout, "/readyz 200", func(ctx context.Context, p *proc) (bool, error) {
		return p.get(ctx, "/readyz") == nil, nil
	}); err != nil {
		return 0, err
	}
	c := NewClient(p.url, "", o.Concurrency)
	if _, _, _, err := writeRows(ctx, c, "warm"+run0+"-", o.Concurrency, o.Concurrency); err != nil {
		return 0, fmt.Errorf("processes bench: single node warm-up: %w", err)
	}
	acked, _, elapsed, err := writeRows(ctx, c, "w"+run0+"-", o.Writes, o.Concurrency)
	if acked == 0 {
		return 0, fmt.Errorf("processes bench: single node writes: %w", err)
	}
	rate := float64(acked) / elapsed.Seconds()
	o.logf("bench: single node: %d writes at c=%d in %s: %.0f writes/s", acked, o.Concurrency, elapsed.Round(time.Millisecond), rate)
	return rate, f.stop()
}

// writeRows inserts n rows with ids prefix+i, one per /v1/exec, from conc
// clients; it returns the acknowledged writes, the failed ones, the time
// from the first request to the last answer, and the first error.
func writeRows(ctx context.Context, c *Client, prefix string, n, conc int) (int, int, time.Duration, error) {
	var next, acked, failed atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				body := make([]byte, 0, 160)
				body = append(body, `{"statements":[{"sql":"INSERT INTO bench_rows (id, n, body) VALUES (?, ?, ?)","args":["`...)
				body = append(body, prefix...)
				body = strconv.AppendInt(body, i, 10)
				body = append(body, `",`...)
				body = strconv.AppendInt(body, i, 10)
				body = append(body, `,"hello, edge"]}]}`...)
				if err := c.Post(ctx, "/v1/exec", body, nil); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				acked.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	var err error
	if e := firstErr.Load(); e != nil {
		err = e.(error)
	}
	if ctx.Err() != nil && err == nil {
		err = ctx.Err()
	}
	return int(acked.Load()), int(failed.Load()), elapsed, err
}

// freeAddrs returns n distinct free loopback addresses: all are bound at
// once (so they differ), then released for the processes to bind.
func freeAddrs(n int) ([]string, error) {
	lns := make([]net.Listener, 0, n)
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	out := make([]string, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("processes bench: free port: %w", err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	return out, nil
}

// proc is one running `outpost serve`.
type proc struct {
	m       fleet.Member
	cmd     *exec.Cmd
	url     string
	logPath string
	logFile *os.File
	exited  chan struct{}
	waitErr error
	stopped atomic.Bool
	http    *http.Client
}

func startProc(bin string, m fleet.Member, args []string, logPath string) (*proc, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("processes bench: %w", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	// No token, whatever the bench's environment says.
	cmd.Env = append(os.Environ(), "OUTPOST_API_TOKEN=")
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("processes bench: start %s: %w", m.Name, err)
	}
	p := &proc{m: m, cmd: cmd, url: "http://" + m.API, logPath: logPath, logFile: lf, exited: make(chan struct{}),
		http: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 2}}}
	go func() {
		p.waitErr = cmd.Wait()
		lf.Close()
		close(p.exited)
	}()
	return p, nil
}

// errExited reports a process that stopped by itself, with its log's tail.
func (p *proc) errExited() error {
	tail, _ := os.ReadFile(p.logPath)
	if len(tail) > 2000 {
		tail = tail[len(tail)-2000:]
	}
	return fmt.Errorf("processes bench: %s exited (%v); end of %s:\n%s", p.m.Name, p.waitErr, p.logPath, bytes.TrimSpace(tail))
}

func (p *proc) alive() error {
	select {
	case <-p.exited:
		return p.errExited()
	default:
		return nil
	}
}

// stop sends SIGTERM (the node drains and closes), and SIGKILL after 15s.
func (p *proc) stop() error {
	if !p.stopped.CompareAndSwap(false, true) {
		<-p.exited
		return nil
	}
	select {
	case <-p.exited:
		return nil // exited by itself; reported where it was noticed
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return nil
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("processes bench: %s did not stop within 15s of SIGTERM; killed", p.m.Name)
	}
}

func (p *proc) get(ctx context.Context, path string) error {
	_, err := p.read(ctx, path)
	return err
}

func (p *proc) read(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", p.m.Name, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", p.m.Name, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s: HTTP %d: %s", p.m.Name, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	return b, nil
}

// count returns how many rows of bench_rows have ids starting with prefix.
func (p *proc) count(ctx context.Context, prefix string) (int, error) {
	q, _ := json.Marshal(map[string]any{"sql": "SELECT count(*) FROM bench_rows WHERE id >= ? AND id < ?", "args": []string{prefix, prefix + "\x7f"}})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url+"/v1/query", bytes.NewReader(q))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s count: %w", p.m.Name, err)
	}
	defer resp.Body.Close()
	var out struct {
		Rows [][]int64 `json:"rows"`
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("%s count: %w", p.m.Name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s count: HTTP %d: %s", p.m.Name, resp.StatusCode, bytes.TrimSpace(b))
	}
	if err := json.Unmarshal(b, &out); err != nil || len(out.Rows) != 1 || len(out.Rows[0]) != 1 {
		return 0, fmt.Errorf("%s count: unexpected answer %s (%v)", p.m.Name, b, err)
	}
	return int(out.Rows[0][0]), nil
}

// metrics scrapes /metrics.
func (p *proc) metrics(ctx context.Context) (series, error) {
	b, err := p.read(ctx, "/metrics")
	if err != nil {
		return nil, err
	}
	return parseSeries(b), nil
}

// series are Prometheus text-format samples by their full name with labels.
type series map[string]float64

func parseSeries(b []byte) series {
	s := series{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		s[line[:i]] = v
	}
	return s
}

// get returns the sample of metric name whose labels contain label (e.g.
// `result="applied"`); "" = the sample without labels.
func (s series) get(name, label string) float64 {
	if label == "" {
		return s[name]
	}
	for k, v := range s {
		if strings.HasPrefix(k, name+"{") && strings.Contains(k, label) {
			return v
		}
	}
	return 0
}

// sum adds every sample of metric name whose labels contain label.
func (s series) sum(name, label string) float64 {
	var t float64
	for k, v := range s {
		if (k == name || strings.HasPrefix(k, name+"{")) && strings.Contains(k, label) {
			t += v
		}
	}
	return t
}

func (s series) deliveries() float64 { return s.sum("outpost_replication_changes_total", "") }

// procFleet is the set of running processes.
type procFleet struct {
	procs []*proc
}

// stop stops every process, all at once.
func (f *procFleet) stop() error {
	errs := make([]error, len(f.procs))
	var wg sync.WaitGroup
	for i, p := range f.procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = p.stop()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// waitAll polls ok on every process until it holds for all, within limit.
func (f *procFleet) waitAll(ctx context.Context, limit time.Duration, what string, ok func(context.Context, *proc) (bool, error)) error {
	deadline := time.Now().Add(limit)
	for _, p := range f.procs {
		for {
			if err := p.alive(); err != nil {
				return err
			}
			done, err := ok(ctx, p)
			if err != nil {
				return err
			}
			if done {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("processes bench: %s: no %s within %s (log %s)", p.m.Name, what, limit, p.logPath)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

// settlePoll is how often each node is asked for its row count while the
// bench waits for the rows: the settle time is an upper bound within it.
const settlePoll = 20 * time.Millisecond

// waitRows waits until every node has want rows with prefix and returns,
// per node, the time from since to the first poll that saw them all.
func (f *procFleet) waitRows(ctx context.Context, limit time.Duration, prefix string, want int, since time.Time) ([]time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	out := make([]time.Duration, len(f.procs))
	errs := make([]error, len(f.procs))
	var wg sync.WaitGroup
	for i, p := range f.procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := -1
			for {
				if err := p.alive(); err != nil {
					errs[i] = err
					return
				}
				n, err := p.count(ctx, prefix)
				now := time.Now()
				if err == nil && n >= want {
					out[i] = now.Sub(since)
					return
				}
				if err == nil {
					last = n
				}
				select {
				case <-ctx.Done():
					errs[i] = fmt.Errorf("processes bench: %s has %d of %d rows after %s (last error: %v; log %s)", p.m.Name, last, want, limit, err, p.logPath)
					return
				case <-time.After(settlePoll):
				}
			}
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// quiet waits until no node's delivery counter has moved for quietFor and
// returns every node's metrics then.
func (f *procFleet) quiet(ctx context.Context, limit time.Duration) ([]series, error) {
	const quietFor = 2 * time.Second
	deadline := time.Now().Add(limit)
	var prev []series
	var since time.Time
	for {
		cur, err := f.scrape(ctx)
		if err != nil {
			return nil, err
		}
		same := prev != nil
		for i := range cur {
			if same && cur[i].deliveries() != prev[i].deliveries() {
				same = false
			}
		}
		if !same {
			prev, since = cur, time.Now()
		} else if time.Since(since) >= quietFor {
			return cur, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("processes bench: delivery counters still moving after %s", limit)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (f *procFleet) scrape(ctx context.Context) ([]series, error) {
	out := make([]series, len(f.procs))
	errs := make([]error, len(f.procs))
	var wg sync.WaitGroup
	for i, p := range f.procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.alive(); err != nil {
				errs[i] = err
				return
			}
			out[i], errs[i] = p.metrics(ctx)
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// cpu returns every process's CPU time so far (nil entries where it cannot
// be read).
func (f *procFleet) cpu() []*time.Duration {
	out := make([]*time.Duration, len(f.procs))
	for i, p := range f.procs {
		if d, ok := procCPU(p.cmd.Process.Pid); ok {
			out[i] = &d
		}
	}
	return out
}

// cpuDelta returns the fleet's CPU-seconds between two readings, and
// whether every process could be read both times.
func cpuDelta(a, b []*time.Duration) (float64, bool) {
	var t time.Duration
	for i := range a {
		if a[i] == nil || b[i] == nil {
			return math.NaN(), false
		}
		t += *b[i] - *a[i]
	}
	return t.Seconds(), true
}

// idle measures the quiet fleet for d: peer bytes from every node's
// outpost_peer_bytes_total, CPU from /proc. The scrapes are outside the
// CPU readings, so their own cost is not counted.
func (f *procFleet) idle(ctx context.Context, d time.Duration, rep *ProcessReport) error {
	m0, err := f.scrape(ctx)
	if err != nil {
		return err
	}
	c0 := f.cpu()
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
	}
	c1 := f.cpu()
	el := time.Since(t0)
	m1, err := f.scrape(ctx)
	if err != nil {
		return err
	}
	sec := el.Seconds()
	rep.IdleTime = el
	var out float64
	for i := range f.procs {
		nr := &rep.PerNode[i]
		nr.IdleBytesInPerSec = (m1[i].get("outpost_peer_bytes_total", `direction="in"`) - m0[i].get("outpost_peer_bytes_total", `direction="in"`)) / sec
		nr.IdleBytesOutPerSec = (m1[i].get("outpost_peer_bytes_total", `direction="out"`) - m0[i].get("outpost_peer_bytes_total", `direction="out"`)) / sec
		nr.IdleLinks = int(m1[i].sum("outpost_replication_connected", ""))
		if c0[i] != nil && c1[i] != nil {
			nr.IdleCPU = (*c1[i] - *c0[i]).Seconds() / sec
		}
		out += nr.IdleBytesOutPerSec
		rep.IdleLinks += nr.IdleLinks
	}
	rep.IdleBytesPerSec = out
	if rep.IdleLinks > 0 {
		rep.IdleBytesPerLink = out / float64(rep.IdleLinks)
	}
	cpu, ok := cpuDelta(c0, c1)
	rep.IdleCPUPerSec = cpu / sec
	rep.CPUMeasured = rep.CPUMeasured && ok
	return nil
}
