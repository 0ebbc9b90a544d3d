package relay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost/store"
)

// DB is what the relay needs of the store.
type DB interface {
	Write(ctx context.Context, fn func(*store.Tx) error) (int64, error)
	Query(ctx context.Context, st store.Statement) (*store.Rows, error)
	Changed() <-chan struct{}
}

// Keys signs with this node's key and verifies other nodes' signatures
// against the trust list.
type Keys interface {
	Sign(msg []byte) []byte
	Verify(node string, msg, sig []byte) error
}

// Transport carries forwards to other nodes (the peer transport).
type Transport interface {
	// Route names the node to call to reach target: target itself when
	// the policy allows a direct call, else a core node that may call it.
	Route(target string) (via string, ok bool)
	// Forward sends f to the named node and returns how many connections
	// it reached there.
	Forward(ctx context.Context, via string, f Forward) (ForwardReply, error)
}

// Forward is the body of the peer route /relay/v1/forward: messages for
// one target node, in the order they were sent.
type Forward struct {
	Target string    `json:"target"` // the node whose users receive them
	Msgs   []Message `json:"msgs"`
	// Stream and Seq order the forwards of one sender's edge to one
	// target, of which several may be in flight (forwardWindow): Stream
	// is "<sender's edge>/<its relay's random start id>", Seq counts the
	// stream's forwards from 1, and the target delivers a forward after
	// the ones before it (waiting reorderWait at most for a missing one).
	// Seq 0: no order (a node that does not send them).
	Stream string `json:"stream,omitempty"`
	Seq    uint64 `json:"seq,omitempty"`
}

// MaxForwardBytes bounds the message bodies of one Forward (a single
// message may take it past this by up to its own size).
const MaxForwardBytes = 1 << 20

// MaxForwardMessages bounds the messages of one Forward.
const MaxForwardMessages = 256

// ForwardReply answers a Forward.
type ForwardReply struct {
	Delivered int `json:"delivered"` // connections the message was pushed to
}

// Defaults of Config.
const (
	DefaultRetention  = 7 * 24 * time.Hour
	DefaultLease      = 30 * time.Second
	DefaultMaxMessage = 64 << 10
	DefaultSendBuffer = 1024
	DefaultTokenTTL   = time.Hour
	DefaultMaxConns   = 20000
)

// Config configures a Relay.
type Config struct {
	Self string // this node's name
	Core bool   // a master or node: may relay forwards between edges
	DB   DB
	Keys Keys
	// Transport is nil on a node without peers: every user is local.
	Transport Transport
	// Authenticate, if set, identifies a request that carries no relay
	// token (e.g. a JWT verified against the edge site's JWKS).
	Authenticate func(*http.Request) (string, error)

	Retention  time.Duration // messages older than this expire; 0 = DefaultRetention
	Lease      time.Duration // presence lease; 0 = DefaultLease
	MaxMessage int           // body bytes; 0 = DefaultMaxMessage
	SendBuffer int           // frames queued per connection (and 1 MiB) before it is closed as slow; 0 = DefaultSendBuffer
	MaxConns   int           // connections per node; 0 = DefaultMaxConns
	TokenTTL   time.Duration // default relay token lifetime; 0 = DefaultTokenTTL
	// OnForward observes the time of each forward call (metrics).
	OnForward func(time.Duration)
	Logger    *slog.Logger
}

// Relay is one node's chat relay.
type Relay struct {
	cfg    Config
	log    *slog.Logger
	tracer atomic.Pointer[Tracer]
	pcache presenceCache

	hlcMu   sync.Mutex
	lastHLC int64 // the hlc of the last message stored here (nextHLC)
	hub     *hub
	Stats   Stats

	fwMu       sync.Mutex
	forwarders map[string]*forwarder
	stream     string // this relay's forward stream name (Forward.Stream)

	ordMu sync.Mutex
	order map[string]*orderState // the forward streams received, by Stream

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a relay; call Start to run its watchers and Close to stop.
func New(cfg Config) *Relay {
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.Lease <= 0 {
		cfg.Lease = DefaultLease
	}
	if cfg.MaxMessage <= 0 {
		cfg.MaxMessage = DefaultMaxMessage
	}
	if cfg.SendBuffer <= 0 {
		cfg.SendBuffer = DefaultSendBuffer
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = DefaultTokenTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	return &Relay{cfg: cfg, log: cfg.Logger, hub: newHub(), forwarders: map[string]*forwarder{},
		stream: cfg.Self + "/" + hex.EncodeToString(nonce[:]), order: map[string]*orderState{}, ctx: ctx, cancel: cancel}
}

// Start starts the store watcher, the presence lease renewal and the
// retention sweep.
func (r *Relay) Start(ctx context.Context) error {
	if err := r.resetPresence(ctx); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	msgs, rcpts, err := r.maxRowids(ctx)
	if err != nil {
		return err
	}
	r.wg.Add(3)
	go r.watch(msgs, rcpts)
	go r.renewLoop()
	go r.sweepLoop()
	return nil
}

// Close disconnects every client, withdraws this node's presence and stops
// the relay's goroutines.
func (r *Relay) Close() {
	users := r.hub.closeAll()
	r.cancel()
	r.wg.Wait()
	if len(users) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = r.setPresence(ctx, users, false)
		cancel()
	}
}

// Connections returns the number of open client connections.
func (r *Relay) Connections() int { return r.hub.count() }

type storeTx = store.Tx
