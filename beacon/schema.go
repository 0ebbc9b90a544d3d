package beacon

import (
	"context"
	"database/sql"

	"github.com/outpost-edge/outpost/store"
)

// Store is what the package needs of a node's store: local (never
// replicated) tables written inside the writer's group commit, and
// read-only snapshots (store.Store).
type Store interface {
	WriteLocal(ctx context.Context, fn func(*store.LocalTx) error) error
	EnsureLocalTables(ctx context.Context, ddl []string) error
	WriteLocalSingle(ctx context.Context, fn func(*store.LocalTx) error) error
	ReadLocal(ctx context.Context, fn func(*sql.Tx) error) error
}

// logDDL: the edge's beacon log. outpost_beacon_log holds the beacons not
// yet deleted (seq > floor); its AUTOINCREMENT key is the gapless sequence:
// SQLite issues max-ever + 1 and never reuses a number, and a rolled-back
// insert takes its numbers back with it. outpost_beacon_state holds the
// floor (every seq <= floor is deleted) and the receive time of the last
// deleted beacon; outpost_beacon_acks the highest seq each aggregator durably
// acknowledged.
var logDDL = []string{
	`CREATE TABLE IF NOT EXISTS outpost_beacon_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, recv_ms INTEGER NOT NULL, body TEXT NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS outpost_beacon_state (key TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL) WITHOUT ROWID`,
	`CREATE TABLE IF NOT EXISTS outpost_beacon_acks (aggregator TEXT PRIMARY KEY NOT NULL, through INTEGER NOT NULL, at_ms INTEGER NOT NULL) WITHOUT ROWID`,
}

// aggDDL: an aggregator's tables, keyed by log: NAME/LOGID (the edge's name
// and its log's identity, see Log.ID). outpost_beacon_recv holds the beacons it
// received (exactly once per edge and seq: the primary key), kept for
// --beacon-retention so other aggregators can repair from it;
// outpost_beacon_cursors the highest seq pulled in order from each log (the
// most recently moved one of an edge is its current log);
// outpost_beacon_coverage per edge and minute of receive time the count and
// the lowest and highest seq held (what the cross-check compares);
// outpost_beacon_rollups the declared rollups; outpost_beacon_export how far
// (in arrival order, a local counter of received beacons) the Parquet
// export is done and which range it is writing.
var aggDDL = []string{
	`CREATE TABLE IF NOT EXISTS outpost_beacon_recv (edge TEXT NOT NULL, seq INTEGER NOT NULL, recv_ms INTEGER NOT NULL, body TEXT NOT NULL, arrival INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (edge, seq)) WITHOUT ROWID`,
	`CREATE INDEX IF NOT EXISTS outpost_beacon_recv_time ON outpost_beacon_recv (recv_ms)`,
	`CREATE INDEX IF NOT EXISTS outpost_beacon_recv_arrival ON outpost_beacon_recv (arrival)`,
	`CREATE TABLE IF NOT EXISTS outpost_beacon_export (key TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL) WITHOUT ROWID`,
	`CREATE TABLE IF NOT EXISTS outpost_beacon_cursors (edge TEXT PRIMARY KEY NOT NULL, through INTEGER NOT NULL, updated_ms INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID`,
	`CREATE TABLE IF NOT EXISTS outpost_beacon_coverage (edge TEXT NOT NULL, minute INTEGER NOT NULL, count INTEGER NOT NULL, lo INTEGER NOT NULL, hi INTEGER NOT NULL, PRIMARY KEY (edge, minute)) WITHOUT ROWID`,
	`CREATE TABLE IF NOT EXISTS outpost_beacon_rollups (rollup TEXT NOT NULL, window_ms INTEGER NOT NULL, dims TEXT NOT NULL, count INTEGER NOT NULL, sums TEXT NOT NULL, sketches BLOB, PRIMARY KEY (rollup, window_ms, dims)) WITHOUT ROWID`,
}
