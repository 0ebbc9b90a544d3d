// Package sim runs a fleet of nodes in one process: real stores (SQLite in
// a temp directory, on /dev/shm when there is one) and the real replication
// code, joined by an in-memory transport with per-link latency that checks
// the trust list and the policy as package peer does, and that can cut
// whole farms off and stop nodes. Run writes at random edges, partitions
// farms, loses a hub, and checks that every node converges on every
// acknowledged write; it reports deliveries per change, bytes and memory
// per node, and settle time (docs/BENCHMARKS.md, "Fleet simulation").
package sim

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/admission"
	"github.com/outpost-edge/outpost/identity"
	"github.com/outpost-edge/outpost/peer"
	"github.com/outpost-edge/outpost/policy"
	"github.com/outpost-edge/outpost/replication"
	"github.com/outpost-edge/outpost/store"
	"github.com/outpost-edge/outpost/trust"
)

// Schema is the table the simulation writes.
const Schema = `CREATE TABLE sim (
	id     TEXT PRIMARY KEY NOT NULL,
	origin TEXT NOT NULL DEFAULT '',
	n      INTEGER NOT NULL DEFAULT 0
);`

// node is one member of the fleet.
type node struct {
	id      identity.Peer
	key     *identity.Key
	st      *store.Store
	trust   *trust.Store
	r       *replication.Replicator
	handler http.Handler
	link    *link
	down    atomic.Bool // stopped: unreachable, its loops ended

	sent, recv atomic.Int64 // bytes at the transport
}

func (n *node) isHub() bool { return n.id.Role != outpost.RoleEdge }

func (n *node) hello() peer.Hello {
	return peer.Hello{Name: n.id.Name, Role: string(n.id.Role), Farm: n.id.Farm, Location: n.id.Location,
		Code: n.id.Code, Key: identity.EncodePublicKey(n.id.Key), Protocol: outpost.ProtocolVersion,
		MinProtocol: outpost.MinProtocolVersion, Incarnation: n.st.Incarnation(), DBVersion: n.st.DBVersion(),
		Features: replication.Features()}
}

// Fleet is the simulated fleet: MASTER01, NODE01, NODE02 and Farms farms
// of Edges edges.
type Fleet struct {
	opts   Options
	dir    string
	policy *policy.Matrix
	nodes  []*node
	byName map[string]*node

	mu    sync.Mutex
	cut   map[string]bool // farms cut off from everything outside them
	calls map[*call]struct{}
	wg    sync.WaitGroup // handlers and their watchers
}

// latency is the one-way delay of the link between a and b.
func (f *Fleet) latency(a, b *node) time.Duration {
	switch {
	case !a.isHub() && !b.isHub():
		return f.opts.FarmLatency
	case a.isHub() && b.isHub():
		return f.opts.CoreLatency
	}
	return f.opts.EdgeLatency
}

// reachable reports whether a call from a can reach b now.
func (f *Fleet) reachable(a, b *node) bool {
	if a.down.Load() || b.down.Load() {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reachableLocked(a, b)
}

func (f *Fleet) reachableLocked(a, b *node) bool {
	return f.sideLocked(a) == f.sideLocked(b)
}

// sideLocked is the farm a node is cut off in, or "" (the rest).
func (f *Fleet) sideLocked(n *node) string {
	if n.id.Farm != "" && f.cut[n.id.Farm] {
		return n.id.Farm
	}
	return ""
}

// open registers a call, unless its ends are separated by now.
func (f *Fleet) open(c *call) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c.from.down.Load() || c.to.down.Load() || !f.reachableLocked(c.from, c.to) {
		return false
	}
	f.calls[c] = struct{}{}
	return true
}

func (f *Fleet) close(c *call) {
	c.cancel()
	f.mu.Lock()
	delete(f.calls, c)
	f.mu.Unlock()
}

// sever ends every open call whose ends cannot reach each other now.
func (f *Fleet) severLocked() {
	for c := range f.calls {
		if c.from.down.Load() || c.to.down.Load() || !f.reachableLocked(c.from, c.to) {
			c.cancel()
			delete(f.calls, c)
		}
	}
}

// Partition cuts the farms off from the rest of the fleet (and each
// other); open streams across the cut end at once and new calls fail.
func (f *Fleet) Partition(farms ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, fm := range farms {
		f.cut[fm] = true
	}
	f.severLocked()
}

// Heal ends every partition.
func (f *Fleet) Heal() {
	f.mu.Lock()
	f.cut = map[string]bool{}
	f.mu.Unlock()
}

// Stop stops a node: its loops end and it is unreachable; its store stays.
func (f *Fleet) Stop(name string) {
	n := f.byName[name]
	f.mu.Lock()
	n.down.Store(true)
	f.severLocked()
	f.mu.Unlock()
	n.r.Stop()
}

// Restart starts a stopped node's replication again.
func (f *Fleet) Restart(name string) {
	n := f.byName[name]
	n.down.Store(false)
	n.r.Start()
}

// Options configure a simulation; zero fields take the defaults.
type Options struct {
	Farms, Edges int // 50 x 20
	// Writes is how many rows are written, one per transaction, each at a
	// random edge, at WriteRate per second (200 at 100/s).
	Writes    int
	WriteRate float64
	// PartitionFarms is how many farms are cut off during the writes (from
	// a quarter of them to three quarters); 0 = one, -1 = none.
	PartitionFarms int
	// NoHubLoss keeps NODE02 running (by default it is stopped at half
	// the writes and restarted once the others have converged).
	NoHubLoss bool
	// One-way latencies: between edges of a farm, between hubs, between an
	// edge and a hub (1ms, 5ms, 20ms).
	FarmLatency, CoreLatency, EdgeLatency time.Duration
	// Heartbeat and MaxBackoff of every replicator (1s and 2s).
	Heartbeat, MaxBackoff time.Duration
	// MaxStreams bounds the sync requests a node serves at once (0 = the
	// production default, replication.Config.MaxStreams).
	MaxStreams int
	// Readers is the read connections of each store (1; the production
	// default is max(4, 2 x GOMAXPROCS)).
	Readers int
	// Timeout bounds each wait (for the warm-up, convergence, quiet
	// counters); 0 = 5 minutes.
	Timeout time.Duration
	Dir     string    // parent of the temp dir of the stores; "" = /dev/shm if it exists
	Seed    uint64    // of the choice of edges
	Log     io.Writer // progress lines; nil = none
}

func (o *Options) defaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.Farms, 50)
	def(&o.Edges, 20)
	def(&o.Writes, 200)
	def(&o.Readers, 1)
	if o.WriteRate <= 0 {
		o.WriteRate = 100
	}
	if o.PartitionFarms == 0 {
		o.PartitionFarms = 1
	}
	o.PartitionFarms = min(max(o.PartitionFarms, 0), o.Farms)
	dur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	dur(&o.FarmLatency, time.Millisecond)
	dur(&o.CoreLatency, 5*time.Millisecond)
	dur(&o.EdgeLatency, 20*time.Millisecond)
	dur(&o.Heartbeat, time.Second)
	dur(&o.MaxBackoff, 2*time.Second)
	dur(&o.Timeout, 5*time.Minute)
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Dir == "" {
		if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
			o.Dir = "/dev/shm"
		}
	}
}

// code returns the i-th node code NNLL.
func code(i int) string {
	return fmt.Sprintf("%02d%c%c", i%100, 'a'+(i/100)%26, 'a'+(i/2600)%26)
}

// build lays the fleet out: keys, one trust list for all, a store and a
// replicator per node (not started).
func build(ctx context.Context, o Options) (*Fleet, error) {
	dir, err := os.MkdirTemp(o.Dir, "outpost-sim-*")
	if err != nil {
		return nil, err
	}
	f := &Fleet{opts: o, dir: dir, policy: policy.Default(), byName: map[string]*node{},
		cut: map[string]bool{}, calls: map[*call]struct{}{}}
	add := func(name string, role outpost.Role, farm string) error {
		key, err := identity.Generate()
		if err != nil {
			return err
		}
		id := outpost.Identity{Name: name, Role: role, Farm: farm, Location: "SIM", Code: code(len(f.nodes))}
		n := &node{id: identity.Peer{Identity: id, Key: key.Public(), Addr: name + ".sim:7701"}, key: key}
		f.nodes = append(f.nodes, n)
		f.byName[name] = n
		return nil
	}
	if err := add("MASTER01", outpost.RoleMaster, ""); err != nil {
		return f, err
	}
	for i := 1; i <= 2; i++ {
		if err := add(fmt.Sprintf("NODE%02d", i), outpost.RoleNode, ""); err != nil {
			return f, err
		}
	}
	for fi := 1; fi <= o.Farms; fi++ {
		for e := 1; e <= o.Edges; e++ {
			if err := add(fmt.Sprintf("EDGE_F%03d_%02d", fi, e), outpost.RoleEdge, fmt.Sprintf("f%03d", fi)); err != nil {
				return f, err
			}
		}
	}
	trustPath := filepath.Join(dir, "trust.list")
	tf, err := os.Create(trustPath)
	if err != nil {
		return f, err
	}
	for _, n := range f.nodes {
		fmt.Fprintln(tf, identity.Line(n.id.Identity, n.id.Key, n.id.Addr))
	}
	if err := tf.Close(); err != nil {
		return f, err
	}
	// Open the stores a few at a time.
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		ferr error
		next atomic.Int64
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(f.nodes) || ctx.Err() != nil {
					return
				}
				if err := f.openNode(ctx, f.nodes[i], trustPath); err != nil {
					mu.Lock()
					ferr = err
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if ferr == nil {
		ferr = ctx.Err()
	}
	return f, ferr
}

func (f *Fleet) openNode(ctx context.Context, n *node, trustPath string) error {
	ts, err := trust.NewStore(trustPath, n.id.Identity, n.id.Key)
	if err != nil {
		return err
	}
	// Entries are signed and verified, as in a node.
	keys := admission.Keys{Self: n.id.Name, Key: n.key, Trust: func() admission.Directory { return ts.List() }}
	st, err := store.Open(ctx, store.Options{Dir: filepath.Join(f.dir, n.id.Name), Identity: n.id.Identity,
		Schema: Schema, Readers: f.opts.Readers, Keys: keys,
		// A thousand stores share two cores: a write may wait long for
		// its turn, which is not what the simulation measures.
		StatementTimeout: time.Minute})
	if err != nil {
		return err
	}
	n.trust, n.st = ts, st
	n.link = &link{f: f, self: n}
	n.r = replication.New(replication.Config{Self: n.id.Identity, Store: st, Trust: ts, Policy: f.policy,
		Client: n.link, Hello: n.hello, Heartbeat: f.opts.Heartbeat, MaxBackoff: f.opts.MaxBackoff,
		MaxStreams: f.opts.MaxStreams, Logger: slog.New(slog.DiscardHandler)})
	n.handler = n.r.Handler()
	return nil
}

// Close stops every node, waits for every call to end and closes the
// stores; the temp directory is removed.
func (f *Fleet) Close() {
	f.mu.Lock()
	for _, n := range f.nodes {
		n.down.Store(true)
	}
	f.severLocked()
	f.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range f.nodes {
		if n.r != nil {
			wg.Add(1)
			go func() { defer wg.Done(); n.r.Stop() }()
		}
	}
	wg.Wait()
	f.wg.Wait()
	for _, n := range f.nodes {
		if n.st != nil {
			n.st.Close()
		}
	}
	os.RemoveAll(f.dir)
}
