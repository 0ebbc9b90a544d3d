package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/api"
	"github.com/outpost-edge/outpost/node"
	"github.com/outpost-edge/outpost/relay"
	"github.com/outpost-edge/outpost/replication"
	"github.com/outpost-edge/outpost/store"
)

// serveHooks let tests reach into runServe: config adjusts the node's
// configuration (fault injection), opened sees the node once it serves.
// Both are nil in the binary.
var serveHooks struct {
	config func(*node.Config)
	opened func(*node.Node)
}

func runServe(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	data := fs.String("data", "", "data directory (identity, key, database); required")
	schemaFile := fs.String("schema", "", "schema file (SQLite DDL) applied at start")
	apiAddr := fs.String("api", "127.0.0.1:7700", "app API listen address")
	token := fs.String("api-token", "", "bearer token required on /v1/* (prefer the OUTPOST_API_TOKEN environment variable)")
	maxBody := fs.Int64("max-body", api.DefaultMaxBody, "largest API request body in bytes (larger ones get 413)")
	maxDrift := fs.Duration("max-drift", 500*time.Millisecond, "hold a remote group (whole) whose clock is further ahead than this, until this node's clock catches up")
	maxAhead := fs.Duration("max-ahead", store.DefaultMaxAhead, "refuse a remote change whose clock is further ahead than this (a bound, not a wait)")
	maxHeld := fs.Int("max-held", store.DefaultMaxHeld, "most remote changes held to be judged again (unknown origin or schema, drift, constraints); past it the sender keeps them and retries")
	maxHeldPerSender := fs.Int("max-held-per-sender", store.DefaultMaxHeldPerSender, "most held changes from one sending peer")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	shutdown := fs.Duration("shutdown-timeout", 10*time.Second, "how long in-flight requests may take to finish on SIGINT/SIGTERM")
	trustFile := fs.String("trust", "", "trust list file (one peer per line, see README); enables the peer listener")
	policyFile := fs.String("policy", "", "push/pull matrix overrides (see README); empty = the default matrix")
	peerAddr := fs.String("peer-addr", ":7701", "peer listener address (HTTP/2 over mutual TLS), used with --trust")
	identityFrom := fs.String("identity-from", "", "directory of pre-generated identities, one sub-directory per node name (e.g. a mounted Secret); a data dir without an identity adopts its own")
	nameFromHost := fs.Bool("name-from-hostname", false, "with --identity-from: this node's name is the host name upper-cased with - as _ (edge-lhr-0 is EDGE_LHR_0), as in a StatefulSet")
	ephemeral := fs.Bool("ephemeral", false, "the data directory does not outlive this node (e.g. an emptyDir): on SIGTERM an edge first hands its writes to a relay (a master or node) and its beacons to the aggregators")
	drainTimeout := fs.Duration("drain-timeout", 20*time.Second, "longest wait for that hand-off on SIGTERM")
	readyMaxLag := fs.Int64("ready-max-lag", 10_000, "/readyz fails while a pull link is more than this many db_versions behind")
	protocol := fs.Int("protocol-version", 0, "announce this protocol version instead of the build's (rolling-upgrade tests)")
	logRetention := fs.Duration("log-retention", replication.DefaultLogRetention, "how long a log entry is kept for a peer that may pull it but has not acknowledged it; a peer away longer bootstraps from a hub's snapshot")
	logCollectEvery := fs.Duration("log-collect-every", replication.DefaultCollectEvery, "how often log entries every puller has acknowledged (or older than --log-retention) are collected")
	tombstoneEvery := fs.Duration("tombstone-every", replication.DefaultTombstoneEvery, "how often this node reports what it holds to the masters and collects the tombstones their decisions cover (a deleted row's tombstone goes once every node of the trust list holds the delete and everything written before it)")
	minProtocol := fs.Int("min-protocol-version", 0, "announce this minimum protocol version instead of the build's (rolling-upgrade tests)")
	stmtTimeout := fs.Duration("statement-timeout", store.DefaultStatementTimeout, "time budget of one client transaction (/v1/exec) or query (/v1/query); past it the statement is stopped and the request fails with statement_timeout; 0 = none")
	maxResult := fs.Int64("max-result-bytes", store.DefaultMaxResultBytes, "largest query result in bytes (strings and blobs by length, other values 8); larger gets result_too_large")
	readHeaderTimeout := fs.Duration("api-read-header-timeout", api.DefaultTimeouts.ReadHeader, "API listener: time to read a request's headers")
	readTimeout := fs.Duration("api-read-timeout", api.DefaultTimeouts.Read, "API listener: time to read a whole request, body included")
	writeTimeout := fs.Duration("api-write-timeout", api.DefaultTimeouts.Write, "API listener: time from a request's headers to the end of its response (keep above --statement-timeout)")
	idleTimeout := fs.Duration("api-idle-timeout", api.DefaultTimeouts.Idle, "API listener: how long an idle keep-alive connection stays open")
	peerReadHeaderTimeout := fs.Duration("peer-read-header-timeout", 10*time.Second, "peer listener: time for the TLS handshake and a request's headers")
	peerReadTimeout := fs.Duration("peer-read-timeout", 60*time.Second, "peer listener: time to read a request body (a push extends it after every frame; pull streams have no body)")
	peerIdleTimeout := fs.Duration("peer-idle-timeout", 2*time.Minute, "peer listener: how long a connection with no open stream stays open")
	maxStreams := fs.Int("max-streams", replication.DefaultMaxStreams, "most sync requests (pull streams, pushes) open at once; beyond, 503 server_busy (memory is bounded by the batches in flight, 64, not by open streams)")
	maxStreamsPerPeer := fs.Int("max-streams-per-peer", 4, "most sync requests served at once to one peer; beyond, 429 too_many_streams")
	maxPushBytes := fs.Int64("max-push-bytes", 512<<20, "largest push body in bytes; beyond, 413 push_too_large")
	httpAddr := fs.String("http", "", "public listener address (the site, the caching proxy); empty = none. Never serves /v1/*")
	siteDir := fs.String("site", "", "site directory: routes.yaml and templates/ rendered on --http from local SQLite (docs/SITE.md)")
	origin := fs.String("origin", "", "origin URL that paths no route matches are proxied to, through the cache (e.g. http://127.0.0.1:9000)")
	originTimeout := fs.Duration("origin-timeout", node.DefaultOriginTimeout, "longest origin fetch (headers and body); past it 504, or the stale copy within stale-if-error")
	cacheSize := fs.Int64("cache-size", node.DefaultCacheSize, "bytes of cached responses and rendered pages on --http (LRU)")
	cacheMaxObject := fs.Int64("cache-max-object", 0, "largest response kept in the cache, in bytes; larger ones are streamed, not kept; 0 = cache-size/8")
	relayRetention := fs.Duration("relay-retention", relay.DefaultRetention, "chat relay: how long a message is kept for offline and moving users (docs/RELAY.md)")
	relayLease := fs.Duration("relay-lease", relay.DefaultLease, "chat relay: presence lease; a node that stops renewing (killed) drops out of routing after this")
	relayMaxMessage := fs.Int("relay-max-message", relay.DefaultMaxMessage, "chat relay: largest message body in bytes; beyond, 413 message_too_large")
	relayMaxConns := fs.Int("relay-max-conns", relay.DefaultMaxConns, "chat relay: most client connections on this node; beyond, 503 too_many_connections")
	cpuProfile := fs.String("cpu-profile", "", "write a Go CPU profile of the whole run to this file (for performance work)")
	var idf identityFlags
	idf.register(fs)
	var bf beaconFlags
	bf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	cfg := node.Config{
		DataDir: *data, SchemaFile: *schemaFile, APIAddr: *apiAddr, APIToken: *token,
		MaxBody: *maxBody, MaxDrift: *maxDrift, MaxAhead: *maxAhead, MaxHeld: *maxHeld, MaxHeldPerSender: *maxHeldPerSender, Logger: log,
		TrustFile: *trustFile, PolicyFile: *policyFile, PeerAddr: *peerAddr,
		Ephemeral: *ephemeral, DrainTimeout: *drainTimeout, ReadyMaxLag: *readyMaxLag,
		Protocol: *protocol, MinProtocol: *minProtocol, LogRetention: *logRetention,
		LogCollectEvery: *logCollectEvery, TombstoneEvery: *tombstoneEvery,
		StatementTimeout: *stmtTimeout, MaxResultBytes: *maxResult,
		PeerReadHeaderTimeout: *peerReadHeaderTimeout, PeerReadTimeout: *peerReadTimeout, PeerIdleTimeout: *peerIdleTimeout,
		MaxStreams: *maxStreams, MaxStreamsPerPeer: *maxStreamsPerPeer, MaxPushBytes: *maxPushBytes,
		APITimeouts: api.Timeouts{ReadHeader: *readHeaderTimeout, Read: *readTimeout, Write: *writeTimeout, Idle: *idleTimeout},
		PublicConfig: node.PublicConfig{HTTPAddr: *httpAddr, SiteDir: *siteDir, Origin: *origin, OriginTimeout: *originTimeout,
			CacheSize: *cacheSize, CacheMaxObject: *cacheMaxObject},
		Beacons: bf.config(),
		Relay:   node.RelayConfig{Retention: *relayRetention, Lease: *relayLease, MaxMessage: *relayMaxMessage, MaxConns: *relayMaxConns},
	}
	if cfg.StatementTimeout == 0 {
		cfg.StatementTimeout = -1 // the flag's 0 means none
	}
	if serveHooks.config != nil {
		serveHooks.config(&cfg)
	}
	if *identityFrom != "" {
		cfg.IdentityFrom, cfg.IdentityName = *identityFrom, idf.name
		if *nameFromHost {
			h, err := os.Hostname()
			if err != nil {
				return err
			}
			cfg.IdentityName = strings.ToUpper(strings.ReplaceAll(h, "-", "_"))
		}
		if cfg.IdentityName == "" {
			return errors.New("--identity-from needs --name or --name-from-hostname")
		}
	} else if !idf.empty() {
		if cfg.Identity, err = idf.identity(); err != nil {
			return err
		}
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
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := node.Open(ctx, cfg)
	if err != nil {
		return err
	}
	n.Serve()
	if serveHooks.opened != nil {
		serveHooks.opened(n)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for ctx.Err() == nil {
		select {
		case <-n.Failed():
			// The database can no longer be trusted: stop, and exit non-zero
			// so the supervisor restarts the node from what is durable.
			err := n.Store.Err()
			log.Error("store failed; stopping", "name", n.Identity.Name, "err", err)
			n.Drain(context.Background()) //nolint:errcheck // logged
			sctx, cancel := context.WithTimeout(context.Background(), *shutdown)
			defer cancel()
			_ = n.Close(sctx)
			return fmt.Errorf("store failed, exiting for a restart: %w", err)
		case <-hup:
			if n.Trust != nil {
				_ = n.ReloadTrust() // logged; the old list stays on error
			} else {
				log.Warn("SIGHUP: no trust list to reload (--trust)")
			}
		case <-ctx.Done():
		}
	}
	log.Info("draining", "name", n.Identity.Name)
	_ = n.Drain(context.Background()) // logged; shut down either way
	sctx, cancel := context.WithTimeout(context.Background(), *shutdown)
	defer cancel()
	if err := n.Close(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped", "name", n.Identity.Name, "version", outpost.Version)
	return nil
}
