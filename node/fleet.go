package node

import (
	"cmp"
	"encoding/json"
	"net/http"
	"sort"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/identity"
	"github.com/outpost-edge/outpost/peer"
)

// Fleet is the answer of GET /v1/fleet and `outpost status --fleet`: every
// node this node knows from its trust list, as this node sees it.
type Fleet struct {
	Self        string      `json:"self"`         // this node's name
	GeneratedAt time.Time   `json:"generated_at"` // when the answer was made (RFC 3339)
	Nodes       []FleetNode `json:"nodes"`        // the core (masters, nodes) first, then each farm's edges, in trust-list order
}

// FleetNode is one node of the fleet as this node sees it. Fields this node
// cannot know (it never heard from the node) are null.
type FleetNode struct {
	Name     string `json:"name"`
	Role     string `json:"role"`
	Farm     string `json:"farm,omitempty"`
	Location string `json:"location"`
	Code     string `json:"code"`
	Addr     string `json:"addr,omitempty"` // its peer address in the trust list
	Self     bool   `json:"self"`
	// State is "self"; "up" (a sync link with it is connected, or it sent
	// or answered a request within UpWithin); "down" (a link with it is
	// not connected, or it was heard from but not within UpWithin);
	// "standby" (never heard from, and this edge pulls from it only while
	// its preferred hub is unavailable); or "unknown" (no link with it and
	// never heard from, e.g. an edge of another farm, which an edge never
	// talks to).
	State string `json:"state"`
	// DBVersion is its latest db_version this node heard of (a pull
	// link's heartbeats, else its last hello).
	DBVersion *int64 `json:"db_version"`
	// LagDBVersions and LagSeconds are how far this node's copy of its
	// writes trails it (the pull link); null while the link is down or
	// without one.
	LagDBVersions *int64   `json:"lag_db_versions"`
	LagSeconds    *float64 `json:"lag_seconds"`
	// LastSeen is when this node last heard from it: now while a link is
	// connected, else its last request or answer.
	LastSeen           *time.Time `json:"last_seen"`
	LastSeenSecondsAgo *float64   `json:"last_seen_seconds_ago"`
	// From its last hello: software version, protocol range, schema
	// version (SameSchema: equal to this node's), incarnation.
	Version       string `json:"version,omitempty"`
	Protocol      int    `json:"protocol,omitempty"`
	MinProtocol   int    `json:"min_protocol,omitempty"`
	SchemaVersion string `json:"schema_version,omitempty"`
	SameSchema    *bool  `json:"same_schema"`
	Incarnation   string `json:"incarnation,omitempty"`
	// RefusedChanges counts the changes it sent that this node refused.
	RefusedChanges int64  `json:"refused_changes"`
	Links          []Link `json:"links"` // this node's sync links with it, as in /v1/status
}

// UpWithin is how recently a node without a connected link must have been
// heard from to count as up (a loop's hello backstop is 30 s).
const UpWithin = 35 * time.Second

// Fleet reports every node of the trust list as this node sees it.
func (n *Node) Fleet() Fleet {
	now := time.Now()
	f := Fleet{Self: n.Identity.Name, GeneratedAt: now.UTC(), Nodes: []FleetNode{}}
	peers := []identity.Peer{{Identity: n.Identity}}
	if n.Trust != nil {
		peers = n.Trust.List().Peers()
	}
	links := map[string][]Link{}
	if n.Repl != nil {
		for _, l := range n.Repl.Status() {
			links[l.Peer] = append(links[l.Peer], newLink(l))
		}
	}
	refused := map[string]int64{}
	for _, r := range n.Store.Refusals() {
		refused[r.Sender] += r.Count
	}
	for _, p := range peers {
		var fn FleetNode
		if p.Name == n.Identity.Name {
			fn = n.selfNode(now)
		} else {
			fn = n.peerNode(p, links[p.Name], now)
		}
		fn.RefusedChanges = refused[p.Name]
		f.Nodes = append(f.Nodes, fn)
	}
	sort.SliceStable(f.Nodes, func(i, j int) bool { return f.Nodes[i].Farm < f.Nodes[j].Farm })
	return f
}

func (n *Node) selfNode(now time.Time) FleetNode {
	dbv := n.Store.DBVersion()
	same := true
	return FleetNode{
		Name: n.Identity.Name, Role: string(n.Identity.Role), Farm: n.Identity.Farm, Location: n.Identity.Location,
		Code: n.Identity.Code, Addr: n.PeerAddr(), Self: true, State: "self", DBVersion: &dbv,
		LastSeen: &now, LastSeenSecondsAgo: new(float64), Version: outpost.Version, Protocol: cmp.Or(n.cfg.Protocol, outpost.ProtocolVersion),
		MinProtocol: cmp.Or(n.cfg.MinProtocol, outpost.MinProtocolVersion), SchemaVersion: n.Store.Schema().Version, SameSchema: &same,
		Incarnation: n.Store.Incarnation(), Links: []Link{},
	}
}

func (n *Node) peerNode(p identity.Peer, links []Link, now time.Time) FleetNode {
	fn := FleetNode{Name: p.Name, Role: string(p.Role), Farm: p.Farm, Location: p.Location, Code: p.Code, Addr: p.Addr, Links: links}
	if fn.Links == nil {
		fn.Links = []Link{}
	}
	var seen peer.SeenPeer
	if n.Client != nil {
		seen = n.Client.Seen.Get(p.Name)
	}
	if n.Peers != nil {
		if in := n.Peers.Seen.Get(p.Name); in.At.After(seen.At) {
			seen.At = in.At
		}
	}
	connected, standbyOnly, down := false, len(links) > 0, false
	for _, l := range links {
		if l.Connected {
			connected = true
		}
		if !l.Standby {
			standbyOnly = false
			if !l.Connected {
				down = true
			}
		}
		if l.Direction == "pull" && (!l.Standby || l.Connected) {
			if fn.DBVersion == nil || l.PeerDBVersion > *fn.DBVersion {
				v := l.PeerDBVersion
				fn.DBVersion = &v
			}
			if l.LagChanges != nil && (fn.LagDBVersions == nil || *l.LagChanges < *fn.LagDBVersions) {
				fn.LagDBVersions, fn.LagSeconds = l.LagChanges, l.LagSeconds
			}
		}
	}
	if connected {
		seen.At = now
	}
	fn.State = fleetState(connected, down, standbyOnly, seen.At, now)
	if !seen.At.IsZero() {
		at := seen.At.UTC()
		ago := now.Sub(seen.At).Seconds()
		fn.LastSeen, fn.LastSeenSecondsAgo = &at, &ago
	}
	if h := seen.Hello; h != nil {
		fn.Version, fn.Protocol, fn.MinProtocol, fn.SchemaVersion, fn.Incarnation = h.Version, h.Protocol, h.MinProtocol, h.SchemaVersion, h.Incarnation
		same := h.SchemaVersion == n.Store.Schema().Version
		fn.SameSchema = &same
		if fn.DBVersion == nil {
			v := h.DBVersion
			fn.DBVersion = &v
		}
	}
	return fn
}

// fleetState is a peer's state from this node's links with it (any
// connected; a non-standby one down; all of them standby) and when it was
// last heard from (zero: never).
func fleetState(connected, down, standbyOnly bool, seen, now time.Time) string {
	recent := !seen.IsZero() && now.Sub(seen) < UpWithin
	switch {
	case connected || (recent && !down):
		return "up"
	case down || !seen.IsZero():
		// A link is down, or it was heard from but no longer (a hub
		// this edge only stands by for still pulls from it, so a live
		// one is heard from at least every 30 s).
		return "down"
	case standbyOnly:
		return "standby"
	}
	return "unknown"
}

func (n *Node) serveFleet(w http.ResponseWriter, r *http.Request) {
	b, err := json.MarshalIndent(n.Fleet(), "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(append(b, '\n'))
}
