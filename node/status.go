package node

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/outpost-edge/outpost/peer"
	"github.com/outpost-edge/outpost/replication"
	"github.com/outpost-edge/outpost/store"
)

// Status is the answer of GET /v1/status and `outpost status`. Every JSON
// field is snake_case, with its unit in the name where it has one.
type Status struct {
	Name        string            `json:"name"`
	Role        string            `json:"role"`
	Farm        string            `json:"farm,omitempty"`
	Incarnation string            `json:"incarnation"`
	DBVersion   int64             `json:"db_version"`
	SlugsReady  bool              `json:"slugs_ready"`
	Links       []Link            `json:"links"`
	Replication ReplicationCounts `json:"replication"`
	Held        map[string]int64  `json:"held_changes"` // by rule
	Refused     []store.Refusal   `json:"refused_changes"`
	Refusals    []peer.Refusal    `json:"refusals"`
	Writes      WriteStats        `json:"writes"`
	// Log is this node's origin log (protocol 2): origins known, entries
	// held (not yet collected) and their bytes; SyncTraffic what its sync
	// loops moved since start.
	Log         store.LogStats      `json:"log"`
	SyncTraffic replication.Traffic `json:"sync_traffic"`
	// Tombstones is the state of tombstone collection here: collected
	// since start, kept at the last collection, and what the masters'
	// last decision waits for (docs/PROTOCOL2.md, "Tombstones").
	Tombstones replication.TombstoneStatus `json:"tombstones"`
}

// ReplicationCounts are the remote changes this node was sent, by outcome.
type ReplicationCounts struct {
	Applied int64 `json:"applied"` // changes applied
	Ignored int64 `json:"ignored"` // changes that lost to what was already here
	Refused int64 `json:"refused"` // changes refused (see refused_changes)
	Held    int64 `json:"held"`    // changes held to be judged again (see held_changes)
}

// WriteStats are the commit counters of this node's store since it started.
type WriteStats struct {
	CommitGroups       int64   `json:"commit_groups"`       // commit groups, one fsync each
	Transactions       int64   `json:"transactions"`        // transactions committed
	FailedTransactions int64   `json:"failed_transactions"` // transactions rolled back alone
	CommitTimeMs       float64 `json:"commit_time_ms"`      // total time spent in COMMIT (the fsync), in milliseconds
}

// Link is one sync link in the status. Its lag is unknown (null in JSON)
// while the link is down: the peer's db_version it holds is the last one
// heard of, so the lag computed from it would read 0 on a dead link.
type Link struct {
	replication.LinkStatus
	LagChanges *int64   `json:"lag_db_versions"` // null while the link is down
	LagSeconds *float64 `json:"lag_seconds"`     // null while the link is down
}

// newLink returns the status of link l.
func newLink(l replication.LinkStatus) Link {
	out := Link{LinkStatus: l}
	if l.Connected {
		lag, secs := l.LagChanges, l.LagSeconds
		out.LagChanges, out.LagSeconds = &lag, &secs
	}
	return out
}

// Status reports the node's replication state.
func (n *Node) Status() Status {
	st := Status{
		Name: n.Identity.Name, Role: string(n.Identity.Role), Farm: n.Identity.Farm,
		Incarnation: n.Store.Incarnation(), DBVersion: n.Store.DBVersion(), SlugsReady: n.Store.SlugsReady(),
		Links: []Link{}, Refusals: []peer.Refusal{},
	}
	rs, ws := n.Store.ReplStats(), n.Store.Stats()
	st.Replication = ReplicationCounts{Applied: rs.Applied, Ignored: rs.Ignored, Refused: rs.Refused, Held: rs.Held}
	st.Writes = WriteStats{CommitGroups: ws.Groups, Transactions: ws.Transactions, FailedTransactions: ws.Failed,
		CommitTimeMs: float64(ws.CommitTime) / float64(time.Millisecond)}
	st.Held, _ = n.Store.Held(context.Background())
	st.Refused = n.Store.Refusals()
	st.Log, _ = n.Store.LogStats(context.Background())
	if n.Repl != nil {
		st.SyncTraffic = n.Repl.Traffic()
		st.Tombstones = n.Repl.TombstoneStatus()
		for _, l := range n.Repl.Status() {
			st.Links = append(st.Links, newLink(l))
		}
	}
	if n.Peers != nil {
		st.Refusals = append(st.Refusals, n.Peers.Refusals.Snapshot()...)
	}
	if n.Client != nil {
		for _, r := range n.Client.Refusals.Snapshot() {
			r.Kind = "outgoing_" + r.Kind
			st.Refusals = append(st.Refusals, r)
		}
	}
	return st
}

func (n *Node) serveStatus(w http.ResponseWriter, r *http.Request) {
	b, err := json.MarshalIndent(n.Status(), "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(b, '\n'))
}
