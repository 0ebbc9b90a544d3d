// Package beacon terminates beacons at the edge and aggregates them in the
// core (docs/BEACONS.md).
//
// At an edge, a Log accepts beacons (small JSON objects: RUM, analytics,
// telemetry) durably: each is written to the node's SQLite file, in a local
// table that is never replicated, inside the store's group commit, and gets
// a gapless per-edge sequence number before the client gets its 2xx.
// Intake never waits on the core; past a disk budget it answers 503 with
// Retry-After.
//
// Aggregators (masters and nodes by default) pull each edge's log from
// their durable cursor over the peer transport (GET /beacon/v1/pull, a pull
// exchange checked by the policy), and store what they pulled, its rollups
// and the cursor in one local transaction, so each (edge, seq) is counted
// once however often it is delivered, across restarts. The pull from a
// cursor acknowledges everything before it; an edge deletes a beacon once
// enough aggregators (--beacon-acks) acknowledged it.
//
// Aggregators cross-check: each asks the others for their per (edge,
// minute) coverage (count, lowest and highest seq), reports gaps and
// disagreements (GET /v1/beacons/check, a metric, a log line) and repairs a
// gap by pulling the range again, from the edge while it has it, otherwise
// from another aggregator.
package beacon
