package replication

import (
	"context"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/outpost-edge/outpost/identity"
	"github.com/outpost-edge/outpost/peer"
	"github.com/outpost-edge/outpost/policy"
	"github.com/outpost-edge/outpost/store"
)

// AckPath is the protocol 2 acknowledgement route: a puller reports, now
// and then during a long stream, how far it holds the origins this node
// serves it; the log is collected by these reports.
const AckPath = "/sync/v2/ack"

// Defaults of log collection.
const (
	DefaultLogRetention = 24 * time.Hour
	DefaultCollectEvery = 30 * time.Second
	ackEvery            = 200 * time.Millisecond // only when something changed
)

// dependant is what this node knows of a peer that pulls from it: the
// origins it asks for (its last request's filter) and how far it said it
// holds each.
type dependant struct {
	only, except []string
	origin       string // its own current origin (it never asks for it)
	acked        store.Knowledge
}

func (d *dependant) wants(origin string) bool {
	f := store.EntryFilter{Only: d.only, Except: d.except, ExceptOrigin: d.origin}
	return f.Wants(origin)
}

// deps records the pullers of this node (collect.go).
type deps struct {
	mu sync.Mutex
	m  map[string]*dependant // by peer name
}

// observe records a pull request of peer.
func (d *deps) observe(peerName string, pr PullRequest) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil {
		d.m = map[string]*dependant{}
	}
	dep := &dependant{only: pr.Only, except: pr.Except, origin: pr.Origin, acked: store.Knowledge{}}
	for o, t := range pr.Known {
		if dep.wants(o) {
			dep.acked[o] = t
		}
	}
	d.m[peerName] = dep
}

// ack records a puller's report.
func (d *deps) ack(peerName string, k store.Knowledge) {
	d.mu.Lock()
	defer d.mu.Unlock()
	dep := d.m[peerName]
	if dep == nil {
		return // a report without a pull: nothing is known of its filter
	}
	for o, t := range k {
		if dep.wants(o) {
			dep.acked[o] = max(dep.acked[o], t)
		}
	}
}

// serveAck reads a puller's report (a PullRequest body: its origin and
// knowledge).
func (r *Replicator) serveAck(w http.ResponseWriter, req *http.Request) {
	p, _ := peer.From(req.Context())
	pr, err := decodePullRequest(req.Body)
	if err != nil {
		peer.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	r.deps.ack(p.Name, pr.Known)
	w.WriteHeader(http.StatusNoContent)
}

// sendAcks reports how far this node holds the origins the stream from
// l's peer brought (got, updated by the puller under mu), when it moved
// (moved is signalled), at most every ackEvery: an idle stream sends none.
func (l *loop) sendAcks(ctx context.Context, origin string, mu *sync.Mutex, got store.Knowledge, moved chan struct{}) {
	sent := store.Knowledge{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-moved:
		}
		// Let the applies of the next moments join this ack.
		select {
		case <-ctx.Done():
			return
		case <-time.After(ackEvery):
		}
		delta := store.Knowledge{}
		mu.Lock()
		for o, t := range got {
			if sent[o] != t {
				delta[o] = t
			}
		}
		mu.Unlock()
		if len(delta) == 0 {
			continue
		}
		body, err := cbor.Marshal(PullRequest{Origin: origin, Known: delta})
		if err != nil {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := l.r.cfg.Client.Do(actx, l.peer.Name, policy.Pull, http.MethodPost, AckPath, body)
		cancel()
		if err != nil {
			signal(moved) // try again shortly
			continue
		}
		resp.Body.Close()
		for o, t := range delta {
			sent[o] = t
		}
	}
}

// collectLoop collects, every CollectEvery, the log entries every puller
// that may still need them holds, and those older than LogRetention.
func (r *Replicator) collectLoop(ctx context.Context) {
	tick := time.NewTicker(r.cfg.CollectEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := r.CollectOnce(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("sync: log collection failed", "err", err)
		}
	}
}

// CollectOnce collects the log once: per origin, the entries every puller
// that may ask this node for them has acknowledged (a peer the policy lets
// pull from this node that has not asked since this node started counts
// as holding nothing), and, whatever the acknowledgements, those older
// than LogRetention.
func (r *Replicator) CollectOnce(ctx context.Context) error {
	st := r.cfg.Store
	known, err := st.Knowledge(ctx)
	if err != nil {
		return err
	}
	floor := store.Knowledge{}
	for o, t := range known {
		floor[o] = t
	}
	self := policy.PartyOf(r.cfg.Self)
	var pullers []identity.Peer
	if r.cfg.Trust != nil {
		for _, p := range r.cfg.Trust.List().Others() {
			if r.cfg.Policy.Check(peer.Party(p), self, policy.Pull).Allowed {
				pullers = append(pullers, p)
			}
		}
	}
	r.deps.mu.Lock()
	names := map[string]bool{}
	for _, p := range pullers {
		names[p.Name] = true
	}
	for name := range r.deps.m {
		names[name] = true // a puller seen since start counts even if the trust list dropped it
	}
	reports := map[string]map[string]store.Point{}
	for name := range names {
		reports[name] = r.reported(name)
	}
	for name := range names {
		dep, rep := r.deps.m[name], reports[name]
		for o := range floor {
			// What a puller reported holding (tombstones.go) it will not
			// ask for either.
			if dep != nil && !dep.wants(o) {
				continue // it does not ask this node for o
			}
			held := rep[o].Seq
			if dep != nil {
				held = max(held, dep.acked[o])
			}
			floor[o] = min(floor[o], held)
		}
	}
	r.deps.mu.Unlock()
	cutoff := time.Now().Add(-r.cfg.LogRetention)
	old, err := st.EntriesBefore(ctx, cutoff)
	if err != nil {
		return err
	}
	for o, t := range old {
		floor[o] = max(floor[o], t)
	}
	n, err := st.CollectLog(ctx, floor)
	if err != nil {
		return err
	}
	if n > 0 {
		r.log.Debug("sync: collected log entries", "entries", n)
	}
	return nil
}

// Holder is a peer known to hold an origin's log through some sequence.
type Holder struct {
	Name, Role string
}

// HoldersOf returns the peers known to hold origin's log through seq: by
// their acknowledgements (AckPath) and, for this node's own origin, by the
// pull acks in their hellos.
func (r *Replicator) HoldersOf(origin string, seq int64) []Holder {
	roles := map[string]string{}
	if r.cfg.Trust != nil {
		for _, p := range r.cfg.Trust.List().Others() {
			roles[p.Name] = string(p.Role)
		}
	}
	seen := map[string]bool{}
	var out []Holder
	r.deps.mu.Lock()
	for name, d := range r.deps.m {
		if d.acked[origin] >= seq {
			seen[name] = true
			out = append(out, Holder{name, roles[name]})
		}
	}
	r.deps.mu.Unlock()
	_, inc, _ := strings.Cut(origin, "/")
	for _, a := range r.PullAcks() {
		if a.Log && a.Incarnation == inc && a.Through >= seq && originName(origin) == r.cfg.Self.Name && !seen[a.Peer] {
			out = append(out, Holder{a.Peer, a.Role})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
