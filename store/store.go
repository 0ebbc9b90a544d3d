// Package store is a node's durable local database: one writer connection
// that group-commits concurrent client transactions (each under its own
// savepoint, one fsync per group), a pool of read-only connections, the
// capture triggers and clock tables that record what replication needs, the
// hybrid logical clock and the node's monotonic db_version.
package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/hlc"
	"github.com/outpost-edge/outpost/ids"
	"github.com/outpost-edge/outpost/schema"
)

// DBFile is the name of the SQLite database inside the data directory.
const DBFile = "outpost.db"

// ReplReaders is the number of read-only connections kept for replication.
const ReplReaders = 2

// Options configure a Store.
type Options struct {
	Dir      string           // data directory; the database is Dir/outpost.db
	Identity outpost.Identity // this node
	Schema   string           // the schema file's DDL; may be empty
	MaxDrift time.Duration    // how far ahead a remote HLC may be; 0 = hlc.DefaultMaxDrift
	Readers  int              // read-only connections; 0 = 2 x GOMAXPROCS, at least 4
	MaxBatch int              // most transactions in one commit group; 0 = 512
	MaxRows  int              // most rows a query may return; 0 = 100,000
	// MaxResultBytes bounds the size of a query's (or RETURNING's) result:
	// the bytes of its strings and blobs plus 8 per other value;
	// 0 = DefaultMaxResultBytes.
	MaxResultBytes int64
	// StatementTimeout is the time budget of a client transaction in the
	// writer (from its first statement) and of a client query; past it the
	// statement is interrupted and the transaction fails alone with
	// CodeStatementTimeout. 0 = DefaultStatementTimeout; negative = none.
	StatementTimeout time.Duration
	// CommitHook, if set, runs just before every COMMIT of a commit group;
	// an error it returns is handled as a failed COMMIT (the store fails).
	// For fault-injection tests; leave nil.
	CommitHook func() error
	Now        func() time.Time // clock; nil = time.Now
	// WriteCheck, if set, is asked before a client statement writes a
	// table; an error refuses the statement (the table permissions of the
	// node's role, declared next to the schema).
	WriteCheck func(table string) error
	// Gate, if set, judges every change received from a peer (who may
	// speak for whom, trust list, table permissions); nil admits all.
	Gate Gate
	// MaxHeld and MaxHeldPerSender bound the changes held to be judged
	// later; 0 = DefaultMaxHeld, DefaultMaxHeldPerSender.
	MaxHeld, MaxHeldPerSender int
	// MaxAhead is how far ahead of this node's clock a remote timestamp
	// may be and still be held (beyond MaxDrift) rather than refused;
	// 0 = DefaultMaxAhead.
	MaxAhead time.Duration
	// Keys, if set, signs this node's log entries and verifies those of
	// other origins (protocol 2); nil = unsigned entries, none verified
	// (tests of the store alone).
	Keys LogKeys
	// OnGroup, if set, is called after every commit group with its number
	// of transactions and the time its COMMIT (the fsync) took (metrics).
	OnGroup func(size int, commit time.Duration)
	Logger  *slog.Logger
}

// Store is an open node database. It is safe for concurrent use.
type Store struct {
	opts   Options
	log    *slog.Logger
	schema *schema.Schema

	wdb    *sql.DB
	conn   *sql.Conn // the writer connection, used only by the writer goroutine
	rdb    *sql.DB
	qstmts *connStmts // client queries' statements, per rdb connection
	replSt *readStmts // prepared statements on replDB (ChangesSince)
	replDB *sql.DB    // read-only connections for replication (ChangesSince, cursors), apart from clients'

	clock *hlc.Clock
	ids   *ids.Generator
	slugs *ids.SlugRegistry

	incMu          sync.RWMutex // guards incarnation and origin (RotateIncarnation)
	incarnation    string
	origin         string // name/incarnation, recorded with every local change
	newIncarnation bool   // the database was created by this Open
	slugsReady     atomic.Bool

	// Writer-goroutine state (also read by SQL functions, which run on it).
	cur        *txContext
	appMode    bool                  // preparing a client statement: the authorizer restricts it
	denied     string                // why the authorizer last refused
	tables     map[string]*replTable // replicated tables by lower-case name
	tableOrder []*replTable
	emitAll    string       // every table's emit in one statement (see emitAllSQL); "" = per table
	emitPK     int          // primary key columns in emitAll's rows (the most of any table)
	keysStmts  sync.Map     // KeysOnly statements (see keysSQL) by their Values
	nKeysStmts atomic.Int64 // entries in keysStmts
	repl       replStats
	collected  atomic.Int64 // tombstones collected since Open
	refusals   refusals
	driftHeld  atomic.Bool   // changes are held for clock drift: recheck them
	seen       seenCache     // writer goroutine only
	stmts      *stmtCache    // Outpost's own statements
	appStmts   *stmtCache    // client statements, prepared under the app authorizer
	dbv        int64         // last committed db_version
	lastCommit time.Duration // the last COMMIT, for OnGroup
	// groupLogged marks a commit group that appended log entries: it has
	// something to serve even if it took no db_version.
	groupLogged bool
	pos         positions // where recent local writes are in the log
	groupPos    []dbvPos  // the commit group's, recorded once it commits

	committed atomic.Int64 // last committed db_version, for readers of the store
	stats     writerStats
	jobs      chan *job
	closing   chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closed    atomic.Bool

	notifyMu sync.Mutex
	notify   chan struct{} // closed and replaced after every commit

	dirLock  *DirLock // held from Open to Close: one process per data directory
	closeErr error    // what Close returned

	wh       handle             // the writer connection's sqlite3*, to interrupt client statements
	halt     context.Context    // done when Close stops waiting for client statements
	haltNow  context.CancelFunc //
	enqMu    sync.RWMutex       // held to queue a job; Close takes it to stop queueing
	failOnce sync.Once
	failed   chan struct{} // closed when a COMMIT failed: see fail
	failErr  error
	busy     atomic.Bool // a client transaction is running (tests)

	backupBusy atomic.Bool // a Backup is being made or read (backup.go)
}

// txContext is what the capture triggers and SQL functions see of the
// transaction being executed.
type txContext struct {
	capture bool  // local write: triggers record versions
	hlc     int64 // the transaction's timestamp
	dbv     int64 // the db_version it will commit as
	slugs   []issuedSlug
	funcErr error // an error a SQL function raised, for classification
	lost    bool  // a failure left changes that cannot be undone alone
	// interrupted marks a client statement stopped by the watchdog (time
	// budget or Close); SQLite may have rolled back the whole transaction.
	interrupted bool
	seen        []seenEntry
	// wrote marks a remote transaction that merged a change (wrote a
	// clock row at dbv); one that did not takes no db_version.
	wrote bool
}

type issuedSlug struct{ slug, title string }

// Open opens (creating if needed) the database in opts.Dir, applies the
// schema and starts the writer.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if err := opts.Identity.Validate(); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Readers <= 0 {
		opts.Readers = max(4, 2*runtime.GOMAXPROCS(0))
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 512
	}
	if opts.MaxHeld <= 0 {
		opts.MaxHeld = DefaultMaxHeld
	}
	if opts.MaxHeldPerSender <= 0 {
		opts.MaxHeldPerSender = DefaultMaxHeldPerSender
	}
	if opts.MaxAhead <= 0 {
		opts.MaxAhead = DefaultMaxAhead
	}
	if opts.MaxDrift <= 0 {
		opts.MaxDrift = hlc.DefaultMaxDrift
	}
	if opts.MaxRows <= 0 {
		opts.MaxRows = 100_000
	}
	if opts.MaxResultBytes <= 0 {
		opts.MaxResultBytes = DefaultMaxResultBytes
	}
	if opts.StatementTimeout == 0 {
		opts.StatementTimeout = DefaultStatementTimeout
	}
	user, err := schema.Parse(ctx, opts.Schema)
	if err != nil {
		return nil, fmt.Errorf("open store: schema: %w", err)
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	lock, err := LockDir(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	path := filepath.Join(opts.Dir, DBFile)
	_, statErr := os.Stat(path)

	s := &Store{
		opts:    opts,
		log:     opts.Logger,
		schema:  user,
		clock:   hlc.New(opts.Now, opts.MaxDrift),
		jobs:    make(chan *job, 4096),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
		notify:  make(chan struct{}),
		seen:    seenCache{m: map[string]seenVersion{}},
		dirLock: lock,
		failed:  make(chan struct{}),
	}
	s.halt, s.haltNow = context.WithCancel(context.Background())
	s.slugsReady.Store(true)
	if err := s.open(ctx, path, os.IsNotExist(statErr)); err != nil {
		s.closeDBs()
		lock.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	go s.run()
	if err := s.recheckHeld(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	go s.driftLoop()
	return s, nil
}

func (s *Store) open(ctx context.Context, path string, created bool) error {
	var err error
	if s.wdb, err = s.openWriterDB(path); err != nil {
		return err
	}
	if s.conn, err = s.wdb.Conn(ctx); err != nil {
		return fmt.Errorf("connect writer: %w", err)
	}
	if err := s.conn.Raw(func(dc any) error {
		var err error
		s.wh, _, err = rawHandle(dc)
		return err
	}); err != nil {
		return fmt.Errorf("connect writer: %w", err)
	}
	if err := s.registerAuthorizer(); err != nil {
		return err
	}
	s.stmts = newStmtCache(s.conn, 1024)
	s.appStmts = newStmtCache(s.conn, 512)
	m, err := s.bootstrap(ctx)
	if err != nil {
		return err
	}
	s.incarnation = m.incarnation
	s.origin = s.opts.Identity.Name + "/" + m.incarnation
	s.newIncarnation = created || m.created
	s.dbv = m.dbVersion
	s.committed.Store(m.dbVersion)
	s.clock.Restore(hlc.Timestamp(m.hlc))
	s.ids = ids.NewGenerator(s.opts.Identity, uint64(m.boot), s.opts.Now)
	if err := s.applySchema(ctx); err != nil {
		return err
	}
	issued, err := s.loadSlugs(ctx)
	if err != nil {
		return err
	}
	if err := s.baseline(ctx); err != nil {
		return err
	}
	s.slugs = ids.NewSlugRegistry(s.opts.Identity.Code, issued)
	if s.rdb, err = s.openReaderDB(path, s.opts.Readers); err != nil {
		return err
	}
	if err := s.rdb.PingContext(ctx); err != nil {
		return fmt.Errorf("open readers: %w", err)
	}
	s.qstmts = newConnStmts(1024)
	// Replication reads have connections of their own, so slow client
	// queries cannot hold up outbound (or inbound) replication.
	if s.replDB, err = s.openReaderDB(path, ReplReaders); err != nil {
		return err
	}
	if err := s.replDB.PingContext(ctx); err != nil {
		return fmt.Errorf("open replication readers: %w", err)
	}
	s.replSt = newReadStmts(s.replDB, 64)
	return nil
}

func newIncarnation() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Close stops the writer (answering queued transactions first) and closes
// the database.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.enqMu.Lock() // no job is being queued now, and none will be
		s.closed.Store(true)
		close(s.closing)
		s.enqMu.Unlock()
		t := time.NewTimer(closeGrace)
		select {
		case <-s.done:
		case <-t.C:
			// A client statement still runs: interrupt it, and fail
			// what is still queued instead of running it.
			s.haltNow()
			<-s.done
		}
		t.Stop()
		s.haltNow()
		s.closeErr = s.closeDBs()
		// Only now may another process open the directory.
		if err := s.dirLock.Close(); err != nil && s.closeErr == nil {
			s.closeErr = err
		}
	})
	return s.closeErr
}

func (s *Store) closeDBs() error {
	var first error
	if s.qstmts != nil {
		s.qstmts.close()
	}
	if s.replSt != nil {
		s.replSt.close()
	}
	for _, c := range []*stmtCache{s.stmts, s.appStmts} {
		if c != nil {
			c.close()
		}
	}
	if s.conn != nil {
		if err := s.conn.Close(); err != nil && first == nil {
			first = err
		}
		s.conn = nil
	}
	for _, db := range []*sql.DB{s.replDB, s.rdb, s.wdb} {
		if db != nil {
			if err := db.Close(); err != nil && first == nil {
				first = err
			}
		}
	}
	return first
}

// Identity returns this node's identity.
func (s *Store) Identity() outpost.Identity { return s.opts.Identity }

// Incarnation returns the random identifier of this database's lifetime.
func (s *Store) Incarnation() string { s.incMu.RLock(); defer s.incMu.RUnlock(); return s.incarnation }

// Origin returns the origin recorded with this node's changes: name/incarnation.
func (s *Store) Origin() string { s.incMu.RLock(); defer s.incMu.RUnlock(); return s.origin }

// NewIncarnation reports whether this database was created by this Open.
func (s *Store) NewIncarnation() bool { return s.newIncarnation }

// DBVersion returns the last committed db_version.
func (s *Store) DBVersion() int64 { return s.committed.Load() }

// Schema returns the user schema the store was opened with.
func (s *Store) Schema() *schema.Schema { return s.schema }

// Clock returns the node's hybrid logical clock.
func (s *Store) Clock() *hlc.Clock { return s.clock }

// ID issues a fresh ID (the same as SQL outpost_id()).
func (s *Store) ID() string { return s.ids.ID() }

// SetSlugsReady allows or refuses issuing slugs. A new incarnation with
// upstream peers refuses until it has caught up, so it cannot repeat a slug
// it issued in an earlier life.
func (s *Store) SetSlugsReady(ready bool) { s.slugsReady.Store(ready) }

// SlugsReady reports whether the store issues slugs.
func (s *Store) SlugsReady() bool { return s.slugsReady.Load() }

// Changed returns a channel that is closed at the next commit that takes a
// new db_version (cursor-only and duplicate-only commits wake nobody).
func (s *Store) Changed() <-chan struct{} {
	s.notifyMu.Lock()
	defer s.notifyMu.Unlock()
	return s.notify
}

func (s *Store) broadcast() {
	s.notifyMu.Lock()
	close(s.notify)
	s.notify = make(chan struct{})
	s.notifyMu.Unlock()
}
