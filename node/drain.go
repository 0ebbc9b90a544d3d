package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/replication"
	"github.com/outpost-edge/outpost/store"
)

// Ready reports why the node should not receive traffic yet, or nil: the
// store must be open, the node not draining, and, for a node with upstream
// peers, caught up with one of them once and no connected pull link further
// behind than ReadyMaxLag. A node none of whose upstreams has answered for
// ReadyGrace is ready anyway: there is nothing to catch up from.
func (n *Node) Ready() error {
	if err := n.Store.Err(); err != nil {
		return err
	}
	if n.draining.Load() {
		return errors.New("draining")
	}
	if n.Store.HeldForDrift() {
		// A peer's clock is ahead: its changes wait (and the rest applies);
		// this node is missing them meanwhile.
		if at, ok, err := n.Store.OldestHeld(context.Background(), store.RuleDrift); err == nil && ok {
			if grace := cmp.Or(n.cfg.ReadyDriftGrace, 5*time.Second); time.Since(at) > grace {
				return fmt.Errorf("changes held since %s because a peer's clock is ahead of this node's by more than --max-drift (they apply when this clock catches up)", at.UTC().Format(time.RFC3339))
			}
		}
	}
	if n.Repl == nil {
		return nil
	}
	pull, _ := n.Repl.Targets()
	if len(pull) == 0 {
		return nil
	}
	maxLag := cmp.Or(n.cfg.ReadyMaxLag, 10_000)
	connected := 0
	for _, l := range n.Repl.Status() {
		if l.Direction != "pull" || !l.Connected {
			continue
		}
		connected++
		if l.LagChanges > maxLag {
			return fmt.Errorf("pull from %s is %d db_versions behind (limit %d)", l.Peer, l.LagChanges, maxLag)
		}
	}
	if !n.caughtUp.Load() {
		if connected == 0 && time.Since(n.started) > cmp.Or(n.cfg.ReadyGrace, 30*time.Second) {
			return nil
		}
		return errors.New("not caught up with any upstream peer yet")
	}
	return nil
}

func (n *Node) serveReady(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if err := n.Ready(); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "{\"status\":\"not_ready\",\"reason\":%q}\n", err.Error())
		return
	}
	fmt.Fprintf(w, "{\"status\":\"ready\",\"db_version\":%d}\n", n.Store.DBVersion())
}

// Drain prepares a shutdown: new writes get 503 with Retry-After and
// /readyz fails; in-flight requests carry on. An edge whose data directory
// is ephemeral then waits, up to DrainTimeout, until a relay (a master or
// node) has durably pulled every change it holds, as that relay's pull
// cursor for this incarnation says (reported in its hellos): a farm sibling
// relays only its own writes, so a sibling alone is no hand-off. Meanwhile
// (same bound) such an edge refuses new beacons (503 draining) and waits
// until --beacon-acks aggregators have acknowledged every beacon it took
// in; an edge on a persistent disk goes on taking beacons during the drain
// (durable in its log, collected after the restart). Close afterwards.
func (n *Node) Drain(ctx context.Context) error {
	n.draining.Store(true)
	if !n.cfg.Ephemeral || n.Identity.Role != outpost.RoleEdge {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, cmp.Or(n.cfg.DrainTimeout, 20*time.Second))
	defer cancel()
	beacons := make(chan error, 1)
	if n.BeaconLog != nil {
		go func() {
			n.log.Info("drain: refusing new beacons; waiting until aggregators acknowledged every beacon", "last_seq", n.BeaconLog.Last())
			err := n.BeaconLog.HandOff(ctx)
			if err != nil {
				n.log.Error("drain: beacon hand-off incomplete; beacons not yet acknowledged may be lost with this data directory", "err", err)
			} else {
				n.log.Info("drain: aggregators acknowledged every beacon", "last_seq", n.BeaconLog.Last())
			}
			beacons <- err
		}()
	} else {
		beacons <- nil
	}
	var err error
	if n.Repl != nil {
		err = n.handOffWrites(ctx)
	}
	return errors.Join(err, <-beacons)
}

// handOffWrites waits until a relay has pulled every write (Drain).
func (n *Node) handOffWrites(ctx context.Context) error {
	target := n.Store.DBVersion()
	var logTarget int64
	if k, err := n.Store.Knowledge(ctx); err == nil {
		logTarget = k[n.Store.Origin()]
	}
	n.log.Info("drain: waiting until a relay has pulled every write", "db_version", target)
	for {
		if a, ok := relayHas(n.Repl.PullAcks(), n.Store.Incarnation(), target, logTarget); ok {
			n.log.Info("drain: a relay has pulled every change", "relay", a.Peer, "db_version", a.Through)
			return nil
		}
		select {
		case <-ctx.Done():
			err := fmt.Errorf("drain: no relay acknowledged db_version %d in time: %w", target, ctx.Err())
			n.log.Error("drain: hand-off incomplete; writes not yet pulled by a relay may be lost with this data directory", "err", err)
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// relayHas returns the acknowledgement of a master or node that has pulled
// this incarnation's changes through target (a protocol 2 ack: its log
// through logTarget).
func relayHas(acks []replication.PullAck, inc string, target, logTarget int64) (replication.PullAck, bool) {
	for _, a := range acks {
		relay := a.Role == string(outpost.RoleMaster) || a.Role == string(outpost.RoleNode)
		want := target
		if a.Log {
			want = logTarget // a protocol 2 ack counts this node's log
		}
		if relay && a.Incarnation == inc && a.Through >= want {
			return a, true
		}
	}
	return replication.PullAck{}, false
}
