// Package node is the composition root: it opens a whole Outpost node (store,
// app API listener) from a Config and closes it again.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/admission"
	"github.com/outpost-edge/outpost/api"
	"github.com/outpost-edge/outpost/identity"
	"github.com/outpost-edge/outpost/peer"
	"github.com/outpost-edge/outpost/policy"
	"github.com/outpost-edge/outpost/relay"
	"github.com/outpost-edge/outpost/replication"
	"github.com/outpost-edge/outpost/schema"
	"github.com/outpost-edge/outpost/store"
	"github.com/outpost-edge/outpost/trust"
	"github.com/outpost-edge/outpost/ui"
)

// Config is everything a node needs to start.
type Config struct {
	DataDir    string           // data directory: identity, key, database
	Identity   outpost.Identity // used only to create the identity when DataDir has none
	SchemaFile string           // path of the schema DDL; empty = no user tables
	APIAddr    string           // app API listen address; ":0" picks a free port
	APIToken   string           // bearer token for /v1/*; empty = none
	MaxBody    int64            // API request body limit in bytes
	MaxDrift   time.Duration    // a remote group further ahead is held until the clock catches up
	MaxAhead   time.Duration    // a remote change further ahead is refused; 0 = store.DefaultMaxAhead
	// MaxHeld and MaxHeldPerSender bound the held changes; 0 = the store's defaults.
	MaxHeld, MaxHeldPerSender int
	// PeerReadHeaderTimeout, PeerReadTimeout and PeerIdleTimeout are the
	// peer listener's timeouts; 0 = peer's defaults (10s, 60s, 2m).
	PeerReadHeaderTimeout, PeerReadTimeout, PeerIdleTimeout time.Duration
	// MaxStreams and MaxStreamsPerPeer bound the sync requests served at
	// once; 0 = replication's defaults (256, 4).
	MaxStreams, MaxStreamsPerPeer int
	// MaxPushBytes bounds one push body; 0 = replication's default (512 MiB).
	MaxPushBytes int64
	TrustFile    string // trust list; empty = no peers and no peer listener
	PolicyFile   string // push/pull matrix overrides; empty = the default matrix
	PeerAddr     string // peer listener address (used with TrustFile); ":0" picks a free port
	PushAll      bool   // push to every peer the policy allows, not only farm siblings
	// IdentityFrom holds pre-generated identities, one directory per node
	// name; with IdentityName set, a data directory without an identity
	// adopts IdentityFrom/IdentityName.
	IdentityFrom string
	IdentityName string
	// Ephemeral marks a data directory that does not survive the node (an
	// edge on an emptyDir): on drain the node first hands its writes to a
	// farm sibling.
	Ephemeral    bool
	DrainTimeout time.Duration // longest wait for that hand-off; 0 = 20s
	ReadyMaxLag  int64         // /readyz fails while a pull link is further behind (db_versions); 0 = 10,000
	ReadyGrace   time.Duration // with no upstream reachable at all, ready anyway after this; 0 = 30s
	// ReadyDriftGrace: /readyz fails while a change has been held for
	// clock drift longer than this; 0 = 5s.
	ReadyDriftGrace time.Duration
	// LogRetention bounds how long a log entry is kept for a puller that
	// has not acknowledged it; 0 = replication.DefaultLogRetention.
	LogRetention time.Duration
	// LogCollectEvery is how often the log is collected (0 =
	// replication.DefaultCollectEvery); TombstoneEvery how often this node
	// reports to the masters and collects the tombstones their decisions
	// cover (0 = replication.DefaultTombstoneEvery).
	LogCollectEvery, TombstoneEvery time.Duration
	// Protocol and MinProtocol override the protocol range this node
	// announces (rolling-upgrade tests); 0 = this build's.
	Protocol, MinProtocol int
	// StatementTimeout is the time budget of a client transaction or query;
	// 0 = store.DefaultStatementTimeout, negative = none.
	StatementTimeout time.Duration
	// MaxResultBytes bounds a query result; 0 = store.DefaultMaxResultBytes.
	MaxResultBytes int64
	// APITimeouts bound slow API clients; zero fields = api.DefaultTimeouts.
	APITimeouts api.Timeouts
	// CommitHook is passed to store.Options.CommitHook (fault-injection
	// tests only).
	CommitHook func() error
	// Relay tunes the chat relay (docs/RELAY.md).
	Relay  RelayConfig
	Logger *slog.Logger

	// PublicConfig is the public listener: site, caching proxy, purges (public.go).
	PublicConfig
	Beacons BeaconConfig // beacon intake and aggregation (beacons.go)
}

// Node is a running Outpost node.
type Node struct {
	cfg      Config
	log      *slog.Logger
	Identity outpost.Identity
	Key      *identity.Key
	Store    *store.Store
	API      *api.Server
	Trust    *trust.Store   // nil without a trust list
	Policy   *policy.Matrix // the push/pull matrix in force
	Perms    *policy.Permissions
	Gate     *admission.Gate         // judges every change received from a peer
	Peers    *peer.Server            // peer listener; nil without a trust list
	Client   *peer.Client            // node-to-node calls; nil without a trust list
	Repl     *replication.Replicator // sync loops; nil without a trust list
	limiterState
	publicState
	beaconState
	// Relay is the chat relay behind /v1/relay/* and /chat/.
	Relay *relay.Relay

	metrics  *metrics
	started  time.Time
	draining atomic.Bool
	caughtUp atomic.Bool

	apiLn  net.Listener
	apiSrv *http.Server
	served chan error
}

// Open loads (or, when Identity is set and the data directory has none,
// creates) the node's identity, opens its store and binds its listeners.
// Call Serve to start answering and Close to stop.
func Open(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.DataDir == "" {
		return nil, errors.New("open node: no data directory (--data or OUTPOST_DATA)")
	}
	id, key, err := loadOrCreateIdentity(cfg)
	if err != nil {
		return nil, fmt.Errorf("open node: %w", err)
	}
	var ddl []byte
	if cfg.SchemaFile != "" {
		if ddl, err = os.ReadFile(cfg.SchemaFile); err != nil {
			return nil, fmt.Errorf("open node: read schema: %w", err)
		}
	}
	perms, err := policy.ParsePermissions(string(ddl))
	if err != nil {
		return nil, fmt.Errorf("open node: schema permissions: %w", err)
	}
	self := policy.PartyOf(id)
	m := newMetrics()
	if err := checkPermissionTables(ctx, perms, string(ddl)); err != nil {
		return nil, fmt.Errorf("open node: %w", err)
	}
	// The admission gate exists before the store: every change the store
	// ever applies from a peer, held ones at start included, is judged.
	ts, gate, err := openGate(cfg, id, key, perms)
	if err != nil {
		return nil, fmt.Errorf("open node: %w", err)
	}
	st, err := store.Open(ctx, store.Options{
		Dir: cfg.DataDir, Identity: id, Schema: string(ddl), MaxDrift: cfg.MaxDrift,
		MaxAhead: cfg.MaxAhead, MaxHeld: cfg.MaxHeld, MaxHeldPerSender: cfg.MaxHeldPerSender,
		Logger:           cfg.Logger.With("component", "store"),
		WriteCheck:       func(table string) error { return perms.Check(self, table) },
		OnGroup:          m.onGroup,
		Gate:             gate,
		Keys:             admission.Keys{Self: id.Name, Key: key, Trust: trustDir(ts)},
		StatementTimeout: cfg.StatementTimeout, MaxResultBytes: cfg.MaxResultBytes,
		CommitHook: cfg.CommitHook,
	})
	if err != nil {
		return nil, fmt.Errorf("open node: %w", err)
	}
	n := &Node{cfg: cfg, log: cfg.Logger, Identity: id, Key: key, Store: st, Perms: perms, Trust: ts, Gate: gate,
		served: make(chan error, 1), metrics: m, started: time.Now()}
	m.n = n
	if err := n.openPeers(); err != nil {
		st.Close()
		return nil, fmt.Errorf("open node: %w", err)
	}
	n.API = api.New(st, api.Config{Token: cfg.APIToken, MaxBody: cfg.MaxBody, Logger: cfg.Logger.With("component", "api"),
		OnRequest: m.onRequest, Draining: n.draining.Load, Holders: n.holders})
	n.API.HandleAuth("GET /v1/status", n.serveStatus)
	n.API.HandleAuth("GET /v1/fleet", n.serveFleet) // fleet.go
	n.API.Handle("GET /ui", ui.Handler())
	n.API.Handle("GET /metrics", m.handler())
	n.API.Handle("GET /readyz", http.HandlerFunc(n.serveReady))
	n.openLimiter()
	if err := n.openBeacons(ctx); err != nil {
		n.closeLimiter()
		n.closePeers(ctx)
		st.Close()
		return nil, fmt.Errorf("open node: beacons: %w", err)
	}
	if err := n.openRelay(ctx); err != nil {
		n.stopBeacons()
		n.closeLimiter()
		n.closePeers(ctx)
		st.Close()
		return nil, fmt.Errorf("open node: %w", err)
	}
	if err := n.openPublic(ctx, string(ddl)); err != nil {
		n.closePublic(ctx)
		n.closeRelay()
		n.stopBeacons()
		n.closeLimiter()
		n.closePeers(ctx)
		st.Close()
		return nil, fmt.Errorf("open node: %w", err)
	}
	if n.apiLn, err = net.Listen("tcp", cfg.APIAddr); err != nil {
		n.closePublic(ctx)
		n.closeRelay()
		n.stopBeacons()
		n.closeLimiter()
		n.closePeers(ctx)
		st.Close()
		return nil, fmt.Errorf("open node: listen on %s: %w", cfg.APIAddr, err)
	}
	n.apiSrv = api.NewHTTPServer(n.API, cfg.APITimeouts, cfg.Logger)
	return n, nil
}

// Failed returns a channel closed when the node's store has failed (see
// store.Store.Err): the node takes no more writes and must be restarted.
func (n *Node) Failed() <-chan struct{} { return n.Store.Failed() }

func loadOrCreateIdentity(cfg Config) (outpost.Identity, *identity.Key, error) {
	id, key, err := identity.Load(cfg.DataDir)
	if errors.Is(err, identity.ErrNoIdentity) && cfg.IdentityFrom != "" && cfg.IdentityName != "" {
		// Pre-generated identities (e.g. a Kubernetes Secret holding one
		// directory per node): adopt this node's into the data directory.
		fid, fkey, ferr := identity.LoadProvisioned(filepath.Join(cfg.IdentityFrom, cfg.IdentityName))
		if ferr != nil {
			return id, nil, fmt.Errorf("identity from %s: %w", cfg.IdentityFrom, ferr)
		}
		if err := identity.Write(cfg.DataDir, fid, fkey, false); err != nil {
			return id, nil, err
		}
		cfg.Logger.Info("adopted node identity", "name", fid.Name, "key", fkey.Fingerprint(), "from", cfg.IdentityFrom)
		return fid, fkey, nil
	}
	switch {
	case err == nil:
		if cfg.Identity != (outpost.Identity{}) && cfg.Identity != id {
			return id, nil, fmt.Errorf("the identity flags (%s) disagree with %s in %s (%s); drop the flags or run keygen --force", describe(cfg.Identity), identity.IdentityFile, cfg.DataDir, describe(id))
		}
		return id, key, nil
	case errors.Is(err, identity.ErrNoIdentity) && cfg.Identity != (outpost.Identity{}):
		if key, err = identity.Generate(); err != nil {
			return id, nil, err
		}
		if err := identity.Write(cfg.DataDir, cfg.Identity, key, false); err != nil {
			return id, nil, err
		}
		cfg.Logger.Info("created node identity", "name", cfg.Identity.Name, "key", key.Fingerprint(), "dir", cfg.DataDir)
		return cfg.Identity, key, nil
	default:
		return id, nil, err
	}
}

func describe(id outpost.Identity) string {
	return fmt.Sprintf("name=%s location=%s farm=%s role=%s code=%s", id.Name, id.Location, id.Farm, id.Role, id.Code)
}

// APIURL returns the base URL of the app API, e.g. http://127.0.0.1:7700.
func (n *Node) APIURL() string { return "http://" + n.apiLn.Addr().String() }

// Serve starts answering on the node's listeners; it returns at once.
func (n *Node) Serve() {
	go func() { n.served <- n.apiSrv.Serve(n.apiLn) }()
	if n.Peers != nil {
		n.Peers.Serve()
	}
	if n.Repl != nil {
		n.Repl.Start()
	}
	n.servePublic()
	n.startBeacons()
	n.log.Info("node serving", "name", n.Identity.Name, "role", n.Identity.Role, "farm", n.Identity.Farm,
		"api", n.APIURL(), "incarnation", n.Store.Incarnation(), "db_version", n.Store.DBVersion(), "version", outpost.Version)
}

// Close stops taking requests, lets in-flight ones finish (within ctx), and
// closes the store.
func (n *Node) Close(ctx context.Context) error {
	if n.Repl != nil {
		n.Repl.Stop()
	}
	n.stopBeacons()
	n.closeLimiter()
	n.closePublic(ctx)
	n.closeRelay()
	err := n.apiSrv.Shutdown(ctx)
	_ = n.apiLn.Close() // in case Serve never ran
	if perr := n.closePeers(ctx); perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		n.apiSrv.Close()
	}
	if cerr := n.Store.Close(); cerr != nil && err == nil {
		err = cerr
	}
	return err
}

// checkPermissionTables refuses a permission directive for a table the
// schema does not create: a typo would leave the real table writable by all.
func checkPermissionTables(ctx context.Context, perms *policy.Permissions, ddl string) error {
	if len(perms.Tables()) == 0 {
		return nil
	}
	sch, err := schema.Parse(ctx, ddl)
	if err != nil {
		return err
	}
	for _, t := range perms.Tables() {
		if _, ok := sch.Table(t); !ok {
			return fmt.Errorf("schema permissions: a directive names table %q, which the schema does not create; fix the name in the `-- outpost: table ... writable by ...` line", t)
		}
	}
	return nil
}
