package replication

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/identity"
	"github.com/outpost-edge/outpost/peer"
	"github.com/outpost-edge/outpost/policy"
	"github.com/outpost-edge/outpost/store"
)

// Tombstone collection (docs/PROTOCOL2.md, "Tombstones"). A deleted row's
// tombstone may go once no change of an older life of the row can still
// arrive: every change made before its writer learned of the delete.
//
//   - Every node reports, when its knowledge moved, what it holds of every
//     origin's log to each master (ReportPath). A report of P says: every
//     write of P not in its log through the report's own point was made
//     after P held everything the report names.
//   - A master that has a report of every node of its trust list, and holds
//     each node's own log through its report, computes the stable cut: per
//     origin, the least of what every node holds (with the entry's
//     timestamp). Every write concurrent with a delete in the cut is in some
//     node's log before its report, so in the master's knowledge. Its answer
//     to a report is that decision: the cut and what a node must hold
//     before using it (the most any report or the master holds of each
//     origin).
//   - A node that holds what a decision needs removes the tombstones the cut
//     covers (store.CollectTombstones); its new rows then take the table's
//     causal-length floor, so they outrank tombstones kept elsewhere.
//
// A node that does not report (down, partitioned) holds collection back for
// everyone; tombstones are never collected early. Removing a node from the
// trust list releases them.

// ReportPath is the route a node reports its knowledge to a master on; the
// answer is the master's tombstone decision.
const ReportPath = "/sync/v2/report"

// DefaultTombstoneEvery is how often a node reports (when its knowledge
// moved, or while it keeps tombstones) and a master decides.
const DefaultTombstoneEvery = 30 * time.Second

// maxWaiting bounds the reasons a decision gives for holding back.
const maxWaiting = 20

// reportBackstop is the longest a node goes without reporting to a master.
const reportBackstop = 10 * time.Minute

// Bounds of a report: origins named and body bytes.
const (
	maxReportOrigins = 100_000
	maxReportBytes   = 16 << 20
)

// Report is what a node holds of every origin's log, sent to the masters.
type Report struct {
	// Origin is the reporter's current origin (NAME/incarnation); its own
	// point in Known is the report's own point.
	Origin string                 `cbor:"1,keyasint"`
	Known  map[string]store.Point `cbor:"2,keyasint"`
}

// Decision is a master's answer to a report.
type Decision struct {
	// Ready is false while the master lacks a report of some node, or a
	// node's own log through its report; Waiting names them (or, when
	// ready, the nodes whose reports hold the cut back).
	Ready   bool     `cbor:"1,keyasint"`
	Waiting []string `cbor:"2,keyasint,omitempty"`
	// Stable is the cut: tombstones of origin o with hlc <= Stable[o].HLC
	// may be collected by a node that holds Need.
	Stable map[string]store.Point `cbor:"3,keyasint,omitempty"`
	// Need is how far a node must hold each origin before it uses Stable.
	Need map[string]int64 `cbor:"4,keyasint,omitempty"`
}

var reportDec = func() cbor.DecMode {
	dm, err := cbor.DecOptions{MaxMapPairs: maxReportOrigins, MaxArrayElements: maxReportOrigins, MaxNestedLevels: 8}.DecMode()
	if err != nil {
		panic(err)
	}
	return dm
}()

// TombstoneStatus is what this node knows of tombstone collection.
type TombstoneStatus struct {
	Collected int64     `json:"collected"`           // tombstones collected here since start
	Remaining int64     `json:"remaining"`           // kept at the last collection (-1: not yet run)
	Waiting   []string  `json:"waiting,omitempty"`   // what the last decision heard waits for
	LastCut   time.Time `json:"last_cut,omitzero"`   // when this node last used a decision
	Pending   int       `json:"pending,omitempty"`   // decisions held until this node holds what they need
	Reporters int       `json:"reporters,omitempty"` // masters: nodes whose report is kept
}

// tombs is the tombstone state of a Replicator.
type tombs struct {
	mu        sync.Mutex
	reports   map[string]*Report          // masters: the latest report of each node, by name
	pending   map[string]*Decision        // decisions not yet usable, by master
	applied   map[string]store.Point      // the cut used so far (per origin, the highest)
	sent      map[string]map[string]int64 // per master, the knowledge last reported
	sentAt    map[string]time.Time
	remaining int64
	collected int64
	waiting   []string
	lastCut   time.Time
	wait      map[string]time.Duration // per hub: backoff of reports made only because tombstones remain
	retry     bool                     // the last collection skipped tables with held changes
	counted   map[string]int64         // the knowledge remaining was counted at (or will be)
}

func (t *tombs) init() {
	if t.reports == nil {
		t.reports = map[string]*Report{}
		t.pending = map[string]*Decision{}
		t.applied = map[string]store.Point{}
		t.sent = map[string]map[string]int64{}
		t.sentAt = map[string]time.Time{}
		t.wait = map[string]time.Duration{}
		t.remaining = -1
	}
}

// TombstoneStatus returns the state of tombstone collection at this node.
func (r *Replicator) TombstoneStatus() TombstoneStatus {
	r.tomb.mu.Lock()
	defer r.tomb.mu.Unlock()
	r.tomb.init()
	return TombstoneStatus{Collected: r.tomb.collected, Remaining: r.tomb.remaining,
		Waiting: append([]string(nil), r.tomb.waiting...), LastCut: r.tomb.lastCut,
		Pending: len(r.tomb.pending), Reporters: len(r.tomb.reports)}
}

func hubRole(r outpost.Role) bool { return r == outpost.RoleMaster || r == outpost.RoleNode }

// hubs returns the masters and nodes of the trust list other than this
// node: the ones reports go to.
func (r *Replicator) hubs() []identity.Peer {
	if r.cfg.Trust == nil {
		return nil
	}
	var out []identity.Peer
	for _, p := range r.cfg.Trust.List().Others() {
		if hubRole(p.Role) && p.Addr != "" {
			out = append(out, p)
		}
	}
	return out
}

// reported returns the knowledge a node last reported here (nil if none):
// it will not ask for what it holds, so log collection counts it as
// acknowledged.
func (r *Replicator) reported(name string) map[string]store.Point {
	r.tomb.mu.Lock()
	defer r.tomb.mu.Unlock()
	if rep := r.tomb.reports[name]; rep != nil {
		return rep.Known
	}
	return nil
}

// serveReport keeps a node's report and answers with this master's
// decision.
func (r *Replicator) serveReport(w http.ResponseWriter, req *http.Request) {
	p, _ := peer.From(req.Context())
	if !hubRole(r.cfg.Self.Role) {
		peer.WriteError(w, http.StatusForbidden, "not_hub", "tombstone reports go to masters and nodes; "+r.cfg.Self.Name+" is a "+string(r.cfg.Self.Role))
		return
	}
	rep, err := decodeReport(req.Body)
	if err != nil {
		peer.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if outpost.OriginName(rep.Origin) != p.Name {
		peer.WriteError(w, http.StatusForbidden, "origin_not_sender", fmt.Sprintf("a report of %s sent by %s: a node reports only for itself", outpost.OriginName(rep.Origin), p.Name))
		return
	}
	r.tomb.mu.Lock()
	r.tomb.init()
	r.tomb.reports[p.Name] = &rep
	r.tomb.mu.Unlock()
	d, err := r.decide(req.Context())
	if err != nil {
		peer.WriteError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	body, err := cbor.Marshal(d)
	if err != nil {
		peer.WriteError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/cbor")
	w.Write(body) //nolint:errcheck // the reporter asks again
}

func decodeReport(body io.Reader) (Report, error) {
	var rep Report
	b, err := io.ReadAll(io.LimitReader(body, maxReportBytes+1))
	if err != nil {
		return rep, fmt.Errorf("read report: %w", err)
	}
	if len(b) > maxReportBytes {
		return rep, fmt.Errorf("report over %d bytes", maxReportBytes)
	}
	if err := reportDec.Unmarshal(b, &rep); err != nil {
		return rep, fmt.Errorf("report: %w", err)
	}
	if rep.Origin == "" || outpost.OriginName(rep.Origin) == rep.Origin {
		return rep, fmt.Errorf("report: origin %q is not NAME/incarnation", rep.Origin)
	}
	for o, pt := range rep.Known {
		if o == "" || pt.Seq < 0 {
			return rep, fmt.Errorf("report: knowledge of %q is %d", o, pt.Seq)
		}
	}
	return rep, nil
}

// decide computes this hub's decision from the reports it keeps.
func (r *Replicator) decide(ctx context.Context) (*Decision, error) {
	own, err := r.cfg.Store.KnowledgePoints(ctx)
	if err != nil {
		return nil, err
	}
	var members []string
	if r.cfg.Trust != nil {
		for _, p := range r.cfg.Trust.List().Others() {
			members = append(members, p.Name)
		}
	}
	r.tomb.mu.Lock()
	r.tomb.init()
	d := Decide(own, members, r.tomb.reports)
	r.tomb.waiting = d.Waiting
	r.tomb.mu.Unlock()
	return d, nil
}

// Decide computes a hub's tombstone decision: own is what the hub holds,
// members the other nodes of its trust list, reports the latest report of
// each (by name). It is ready once every member has reported and the hub
// holds each member's own log through its report; the cut is then, per
// origin, the least any of them (the hub included) holds, and Need the
// most.
func Decide(own map[string]store.Point, members []string, reports map[string]*Report) *Decision {
	stable := make(map[string]store.Point, len(own))
	need := make(map[string]int64, len(own))
	for o, pt := range own {
		stable[o] = pt
		need[o] = pt.Seq
	}
	var waiting []string
	setBy := map[string]string{} // origin -> the member whose report set its cut
	for _, name := range members {
		rep := reports[name]
		if rep == nil {
			waiting = append(waiting, name+": no report yet")
			continue
		}
		if mine, theirs := own[rep.Origin].Seq, rep.Known[rep.Origin].Seq; mine < theirs {
			waiting = append(waiting, fmt.Sprintf("%s: its log through %d is not here yet (%d)", name, theirs, mine))
			continue
		}
		for o, pt := range stable {
			switch rp := rep.Known[o]; {
			case rp.Seq < pt.Seq:
				stable[o] = rp
				setBy[o] = name
			case rp.Seq == pt.Seq && pt.HLC == 0:
				stable[o] = store.Point{Seq: pt.Seq, HLC: rp.HLC}
			}
		}
		for o, pt := range rep.Known {
			need[o] = max(need[o], pt.Seq)
		}
	}
	ready := len(waiting) == 0
	if ready {
		// Say who holds the cut back (the nodes whose reports are behind
		// what this node holds), so an operator sees why tombstones stay.
		behind := map[string]string{}
		for o, name := range setBy {
			if stable[o].Seq < own[o].Seq {
				behind[name] = fmt.Sprintf("%s: reported %s through %d (%d here)", name, o, stable[o].Seq, own[o].Seq)
			}
		}
		for _, why := range behind {
			waiting = append(waiting, why)
		}
	}
	sort.Strings(waiting)
	if len(waiting) > maxWaiting {
		waiting = append(waiting[:maxWaiting], fmt.Sprintf("and %d more", len(waiting)-maxWaiting))
	}
	if !ready {
		return &Decision{Waiting: waiting}
	}
	for o, pt := range stable {
		if pt.Seq <= 0 || pt.HLC == 0 {
			delete(stable, o)
		}
	}
	return &Decision{Ready: true, Waiting: waiting, Stable: stable, Need: need}
}

// Usable reports whether a node holding known may use the decision.
func (d *Decision) Usable(known map[string]store.Point) bool {
	if !d.Ready {
		return false
	}
	for o, s := range d.Need {
		if known[o].Seq < s {
			return false
		}
	}
	return true
}

// tombstoneLoop reports to the masters and uses their decisions (a master
// also decides for itself), every TombstoneEvery, jittered.
func (r *Replicator) tombstoneLoop(ctx context.Context) {
	for {
		d := r.cfg.TombstoneEvery
		d = d/2 + rand.N(d)
		if !r.sleep(ctx, d) {
			return
		}
		if err := r.TombstonesOnce(ctx); err != nil && ctx.Err() == nil {
			r.log.Debug("sync: tombstone round failed", "err", err)
		}
	}
}

// TombstonesOnce runs one round of tombstone collection: a master decides
// for itself; every node reports to each other master when its knowledge
// moved since its last report there (or while it keeps tombstones, backing
// off), and collects what the usable decisions cover.
func (r *Replicator) TombstonesOnce(ctx context.Context) error {
	if r.cfg.Hello != nil && r.cfg.Hello().Protocol < 2 {
		// A node on protocol 1 moves changes outside the logs the
		// decisions count by: it neither reports (so no hub is ready)
		// nor collects.
		return nil
	}
	st := r.cfg.Store
	known, err := st.KnowledgePoints(ctx)
	if err != nil {
		return err
	}
	if hubRole(r.cfg.Self.Role) {
		d, err := r.decide(ctx)
		if err != nil {
			return err
		}
		r.offer(r.cfg.Self.Name, d)
	}
	seqs := make(map[string]int64, len(known))
	for o, pt := range known {
		seqs[o] = pt.Seq
	}
	r.tomb.mu.Lock()
	r.tomb.init()
	if !sameSeqs(r.tomb.counted, seqs) {
		// New changes may have brought tombstones: count again.
		r.tomb.remaining, r.tomb.counted = -1, seqs
	}
	r.tomb.mu.Unlock()
	var firstErr error
	for _, m := range r.hubs() {
		if !r.shouldReport(m.Name, seqs) {
			continue
		}
		d, err := r.report(ctx, m.Name, known)
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("report to %s: %w", m.Name, err)
			}
			continue
		}
		r.tomb.mu.Lock()
		r.tomb.sent[m.Name], r.tomb.sentAt[m.Name] = seqs, time.Now()
		r.tomb.mu.Unlock()
		r.offer(m.Name, d)
	}
	if err := r.usePending(ctx, known); err != nil {
		return err
	}
	return firstErr
}

// shouldReport: the knowledge moved since the last report to master, or
// tombstones remain here and the backoff has passed (a node still waiting
// for a decision asks again, ever less often, up to 10 minutes).
func (r *Replicator) shouldReport(master string, seqs map[string]int64) bool {
	r.tomb.mu.Lock()
	defer r.tomb.mu.Unlock()
	r.tomb.init()
	last, ok := r.tomb.sent[master]
	if !ok || !sameSeqs(last, seqs) {
		r.tomb.wait[master] = 0
		return true
	}
	if time.Since(r.tomb.sentAt[master]) >= reportBackstop {
		return true // a master that restarted lost the reports it kept
	}
	if r.tomb.remaining == 0 {
		return false
	}
	if time.Since(r.tomb.sentAt[master]) < r.tomb.wait[master] {
		return false
	}
	r.tomb.wait[master] = min(max(2*r.tomb.wait[master], r.cfg.TombstoneEvery), 10*time.Minute)
	return true
}

func sameSeqs(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for o, s := range a {
		if b[o] != s {
			return false
		}
	}
	return true
}

// report sends this node's knowledge to master and returns its decision.
func (r *Replicator) report(ctx context.Context, master string, known map[string]store.Point) (*Decision, error) {
	body, err := cbor.Marshal(Report{Origin: r.cfg.Store.Origin(), Known: known})
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := r.cfg.Client.Do(rctx, master, policy.Pull, http.MethodPost, ReportPath, body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxReportBytes+1))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(b))
	}
	var d Decision
	if err := reportDec.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("decision: %w", err)
	}
	return &d, nil
}

// offer keeps a master's decision until this node holds what it needs.
func (r *Replicator) offer(master string, d *Decision) {
	r.tomb.mu.Lock()
	defer r.tomb.mu.Unlock()
	r.tomb.init()
	if !hubRole(r.cfg.Self.Role) {
		r.tomb.waiting = d.Waiting // a hub's status shows its own decision (decide)
	}
	if d.Ready {
		r.tomb.pending[master] = d
	}
}

// usePending collects the tombstones of every decision this node now holds
// enough for. The cut only grows: each decision's cut was stable when it
// was made and stays so.
func (r *Replicator) usePending(ctx context.Context, known map[string]store.Point) error {
	r.tomb.mu.Lock()
	cut := make(map[string]store.Point, len(r.tomb.applied))
	for o, pt := range r.tomb.applied {
		cut[o] = pt
	}
	moved := false
	for m, d := range r.tomb.pending {
		if !d.Usable(known) {
			continue
		}
		delete(r.tomb.pending, m)
		for o, pt := range d.Stable {
			if pt.Seq > cut[o].Seq {
				cut[o] = pt
				moved = true
			}
		}
	}
	first, retry := r.tomb.remaining < 0, r.tomb.retry
	r.tomb.mu.Unlock()
	if !moved && !first && !retry {
		return nil // nothing new covers what is left
	}
	res, err := r.cfg.Store.CollectTombstones(ctx, cut)
	if err != nil {
		return err
	}
	r.tomb.mu.Lock()
	r.tomb.applied = cut
	r.tomb.remaining = res.Remaining
	r.tomb.collected += res.Collected
	r.tomb.retry = len(res.HeldTables) > 0 && res.Remaining > 0
	if moved {
		r.tomb.lastCut = time.Now()
	}
	r.tomb.mu.Unlock()
	if res.Collected > 0 {
		r.log.Debug("sync: collected tombstones", "collected", res.Collected, "remaining", res.Remaining)
	}
	if res.Collected > 0 || first {
		// After a crash between the collection and this, the next
		// start publishes them.
		if err := r.cfg.Store.PublishFloors(ctx); err != nil {
			return err
		}
	}
	if len(res.HeldTables) > 0 {
		r.log.Debug("sync: tombstones of tables with held changes kept", "tables", res.HeldTables)
	}
	return nil
}
