package replication

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/peer"
	"github.com/outpost-edge/outpost/policy"
	"github.com/outpost-edge/outpost/store"
)

// Store is what replication needs of the node's database. *store.Store
// satisfies it; tests use fakes.
type Store interface {
	Origin() string
	Incarnation() string
	DBVersion() int64
	// Changed returns a channel closed at the next commit that takes a
	// db_version (one that only moves cursors or merges nothing wakes
	// nobody).
	Changed() <-chan struct{}
	Cursor(ctx context.Context, peer, kind string) (dbv int64, incarnation string, err error)
	SetCursor(ctx context.Context, peer, kind, incarnation string, dbv int64) error
	Apply(ctx context.Context, peer, kind, inc string, groups []outpost.Group, through int64) (store.ApplyResult, error)
	ChangesSinceFilter(ctx context.Context, since int64, f store.ChangeFilter) ([]outpost.Group, int64, error)
	RotateIncarnation(ctx context.Context, reason string) (string, error)
	// Protocol 2: the origin logs (see store.ApplyEntries, EntriesFor).
	Knowledge(ctx context.Context) (store.Knowledge, error)
	EntriesFor(ctx context.Context, have store.Knowledge, f store.EntryFilter) ([]outpost.Entry, error)
	ApplyEntries(ctx context.Context, sender string, entries []outpost.Entry) (store.EntryResult, error)
	AdoptKnowledge(ctx context.Context, k store.Knowledge) error
	CollectLog(ctx context.Context, floor store.Knowledge) (int64, error)
	EntriesBefore(ctx context.Context, cutoff time.Time) (store.Knowledge, error)
	WithoutHeld(ctx context.Context, k store.Knowledge) (store.Knowledge, error)
	// Tombstone collection (tombstones.go, store.CollectTombstones).
	KnowledgePoints(ctx context.Context) (map[string]store.Point, error)
	CollectTombstones(ctx context.Context, cut map[string]store.Point) (store.TombstoneResult, error)
	PublishFloors(ctx context.Context) error
	// CursorFingerprint is the fingerprint kept with a cursor (zero if
	// unknown); MatchFingerprint compares one a puller reports with this
	// database (see store.Fingerprint).
	CursorFingerprint(ctx context.Context, peer, kind string) (store.Fingerprint, error)
	MatchFingerprint(ctx context.Context, inc string, fp store.Fingerprint) (store.FingerprintMatch, error)
}

// Transport is how replication reaches peers. *peer.Client satisfies it.
type Transport interface {
	HelloWith(ctx context.Context, name string, q url.Values) (peer.Hello, error)
	Do(ctx context.Context, name string, action policy.Action, method, path string, body []byte) (*http.Response, error)
}

var (
	_ Store     = (*store.Store)(nil)
	_ Transport = (*peer.Client)(nil)
)

// Protocol features this build announces in its hello (peer.Hello.Features).
const (
	// FeatureGroupParts: the node joins a group sent in parts (wire.Frame
	// More) in pull streams and push bodies.
	FeatureGroupParts = "group-parts"
	// FeaturePullAcks: the node reports its pull cursor in its hellos.
	FeaturePullAcks = "pull-acks"
)

// Features lists the protocol features of this build, for the hello.
func Features() []string { return []string{FeatureGroupParts, FeaturePullAcks} }
