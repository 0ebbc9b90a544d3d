package node

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/beacon"
)

// BeaconConfig configures beacons (docs/BEACONS.md).
type BeaconConfig struct {
	Acks       int      // aggregators that must acknowledge before an edge deletes; 0 = 2
	DiskBudget int64    // bytes of beacons an edge keeps; 0 = beacon.DefaultBudget
	Origins    []string // origins allowed to POST /beacon from a browser; empty = any
	PerIP      float64  // POST /beacon per client address, beacons/s; 0 = beacon.DefaultPerIP, negative = no bound
	// Aggregator is "auto" (masters and nodes aggregate; the default),
	// "on" or "off".
	Aggregator    string
	Rollups       []beacon.Rollup // nil = beacon.DefaultRollup
	Retention     time.Duration   // received beacons kept by an aggregator; 0 = 24h
	CheckInterval time.Duration   // between cross-checks; 0 = 10s, negative = never
	PullWait      time.Duration   // how long an edge holds an idle pull; 0 = 5s
	// ExportDir, if set, receives an aggregator's Parquet files, one per
	// closed window, looked for every ExportInterval (0 = 1m); a window
	// closes ExportLateness (0 = 1m) after its end once every edge was
	// pulled that far and the cross-check agrees, ExportMaxWait (0 = 1h)
	// after its end in any case.
	ExportDir      string
	ExportInterval time.Duration
	ExportLateness time.Duration
	ExportMaxWait  time.Duration
}

// beaconState is the node's beacon intake (edges) and aggregator.
type beaconState struct {
	BeaconLog *beacon.Log // nil unless this node takes beacons in (an edge, or a node without peers)
	// BeaconIntake serves POST /beacon (Public) and POST /v1/beacons
	// (Batch); nil with BeaconLog.
	BeaconIntake *beacon.Intake
	Beacons      *beacon.Aggregator // nil unless this node aggregates
}

// intakeRole reports whether the node takes beacons in: edges, and a node
// without a trust list (standalone, for development and benchmarks).
func (n *Node) intakeRole() bool {
	return n.Identity.Role == outpost.RoleEdge || n.Trust == nil
}

// aggregates reports whether the node aggregates beacons.
func (n *Node) aggregates() (bool, error) {
	switch n.cfg.Beacons.Aggregator {
	case "", "auto":
		return n.Identity.Role != outpost.RoleEdge, nil
	case "on":
		if n.Identity.Role == outpost.RoleEdge {
			return false, fmt.Errorf("--aggregator on: an edge does not aggregate beacons (masters and nodes do)")
		}
		return true, nil
	case "off":
		return false, nil
	}
	return false, fmt.Errorf("--aggregator %q: want auto, on or off", n.cfg.Beacons.Aggregator)
}

// openBeacons opens the beacon log and/or aggregator and mounts their routes
// on the API and peer listeners.
func (n *Node) openBeacons(ctx context.Context) error {
	bc := n.cfg.Beacons
	agg, err := n.aggregates()
	if err != nil {
		return err
	}
	notHere := func(msg string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"error":{"code":"not_here","message":%q}}`+"\n", msg)
		}
	}
	if n.intakeRole() {
		lc := beacon.LogConfig{Store: n.Store, Budget: bc.DiskBudget, Acks: bc.Acks, Logger: n.log.With("component", "beacon")}
		if n.Trust != nil {
			// Only the masters and nodes on the trust list (as it is now)
			// count as acknowledging aggregators.
			lc.Aggregators = func() []string { return n.beaconPeers(false) }
		}
		l, err := beacon.OpenLog(ctx, lc)
		if err != nil {
			return err
		}
		n.BeaconLog = l
		in := beacon.NewIntake(beacon.IntakeConfig{Log: l, Origins: bc.Origins, PerIP: bc.PerIP})
		n.BeaconIntake = in
		// POST /beacon is served on the public listener (--http,
		// public.go) and here too, without the API token (browsers send
		// none).
		n.API.Handle("/beacon", in.Public())
		n.API.HandleAuth("POST /v1/beacons", in.Batch())
		n.API.HandleAuth("GET /v1/beacons/log", in.LogStatus())
		if n.Peers != nil {
			beacon.RegisterEdge(n.Peers, n.Identity.Name, l)
		}
	} else {
		msg := "beacons are taken in by edges; this node is a " + string(n.Identity.Role)
		n.API.Handle("/beacon", notHere(msg))
		n.API.HandleAuth("POST /v1/beacons", notHere(msg))
		n.API.HandleAuth("GET /v1/beacons/log", notHere(msg))
	}
	if agg {
		cfg := beacon.AggregatorConfig{
			Self: n.Identity.Name, Store: n.Store, Rollups: bc.Rollups, Retention: bc.Retention,
			CheckInterval: bc.CheckInterval, PullWait: bc.PullWait, Logger: n.log.With("component", "beacon"),
			ExportDir: bc.ExportDir, ExportInterval: bc.ExportInterval, ExportLateness: bc.ExportLateness, ExportMaxWait: bc.ExportMaxWait,
			Edges: func() []string { return n.beaconPeers(true) }, Peers: func() []string { return n.beaconPeers(false) },
		}
		if n.Client != nil {
			cfg.Transport = n.Client
		}
		a, err := beacon.OpenAggregator(ctx, cfg)
		if err != nil {
			return err
		}
		n.Beacons = a
		n.API.HandleAuth("GET /v1/beacons/rollups", a.RollupsHandler())
		n.API.HandleAuth("GET /v1/beacons/check", a.CheckHandler())
		if n.Peers != nil {
			beacon.RegisterAggregator(n.Peers, a)
		}
	} else {
		msg := "this node does not aggregate beacons (masters and nodes do; --aggregator)"
		n.API.HandleAuth("GET /v1/beacons/rollups", notHere(msg))
		n.API.HandleAuth("GET /v1/beacons/check", notHere(msg))
	}
	n.metrics.reg.MustRegister(&beacon.Collector{Log: n.BeaconLog, Agg: n.Beacons})
	return nil
}

// beaconPeers lists, from the trust list, the edges (edges true) or the
// other masters and nodes.
func (n *Node) beaconPeers(edges bool) []string {
	if n.Trust == nil {
		return nil
	}
	var out []string
	for _, p := range n.Trust.List().Peers() {
		if p.Name == n.Identity.Name || (p.Role == outpost.RoleEdge) != edges {
			continue
		}
		out = append(out, p.Name)
	}
	return out
}

func (n *Node) startBeacons() {
	if n.Beacons != nil {
		n.Beacons.Start()
	}
}

func (n *Node) stopBeacons() {
	if n.Beacons != nil {
		n.Beacons.Stop()
	}
	if n.BeaconLog != nil {
		n.BeaconLog.Close()
	}
}
