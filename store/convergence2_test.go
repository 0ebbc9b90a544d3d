package store_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"testing"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/store"
	"pgregory.net/rapid"
)

// convRing holds the keys of the convergence test's nodes (the hostile one
// included: it signs what it forges with its own key).
var convRing = keyring("MASTER1", "NODE1", "EDGE01", "EDGE02", "EDGE03", "EDGE09")

// TestConvergence_Protocol2 is TestConvergence_Randomized with changes
// moving as protocol 2 moves them: signed log entries, asked for by the
// puller's knowledge, through any allowed path (an edge relays too),
// with entries lost (gaps), duplicated and reordered, logs collected at
// random (a puller behind a collected floor bootstraps from a hub's
// snapshot), and forged or altered entries from a hostile relay. Then the
// network heals and every node must equal the reference model.
func TestConvergence_Protocol2(t *testing.T) {
	runConvergence(t, func(w *convWorld) {
		w.proto2 = true
		// The protocol 1 hostile peer has no log: its valid writes would
		// reach protocol 2 nodes only as protocol 1 groups (a mixed fleet,
		// tested in package fleet). Here the hostile relay forges entries.
		if w.h != nil {
			w.h = nil
			w.stats.HostileRuns--
		}
	})
}

// pull2 moves the entries src has and dst lacks, over a faulty link.
func (w *convWorld) pull2(rt *rapid.T, dst, src *convNode, mode string) {
	ctx := context.Background()
	have, err := dst.s.Knowledge(ctx)
	if err != nil {
		rt.Fatal(err)
	}
	f := store.EntryFilter{ExceptOrigin: dst.s.Origin()}
	if rapid.Bool().Draw(rt, "only-own") {
		f.Only = []string{src.id.Name}
	}
	es, err := src.s.EntriesFor(ctx, have, f)
	var sn *store.SnapshotNeededError
	if errors.As(err, &sn) {
		w.snapshot(rt, dst, src)
		return
	}
	if err != nil {
		rt.Fatal(err)
	}
	w.stats.Pulls++
	rt.Logf("%s pulls entries from %s (%s): %d", dst.id.Name, src.id.Name, mode, len(es))
	switch {
	case mode == "lossy" && len(es) > 1:
		w.stats.Lossy++
		drop := rapid.IntRange(0, len(es)-1).Draw(rt, "drop")
		w.applyEntries(rt, dst, src, append(append([]outpost.Entry{}, es[:drop]...), es[drop+1:]...))
	case mode == "dup":
		w.stats.Dup++
		w.applyEntries(rt, dst, src, es)
		w.applyEntries(rt, dst, src, es)
	case mode == "reorder" && len(es) > 1:
		w.stats.Reorder++
		k := rapid.IntRange(1, len(es)-1).Draw(rt, "split")
		w.applyEntries(rt, dst, src, es[k:])
		w.applyEntries(rt, dst, src, es[:k])
	default:
		w.applyEntries(rt, dst, src, es)
	}
}

// applyEntries applies entries at dst; a batch cut inside a chain by a
// lost or reordered entry is refused whole (and asked again later).
func (w *convWorld) applyEntries(rt *rapid.T, dst, src *convNode, es []outpost.Entry) {
	if len(es) == 0 {
		return
	}
	if es[len(es)-1].More {
		if _, err := dst.s.ApplyEntries(context.Background(), src.id.Name, es); err == nil {
			rt.Fatalf("%s applied a batch that ends inside a chain", dst.id.Name)
		}
		return
	}
	res, err := dst.s.ApplyEntries(context.Background(), src.id.Name, es)
	if err != nil {
		rt.Fatalf("%s applying %d entries from %s: %v", dst.id.Name, len(es), src.id.Name, err)
	}
	if res.Bad != 0 || res.Refused != 0 {
		rt.Fatalf("%s refused honest entries from %s: %+v (%v)", dst.id.Name, src.id.Name, res, dst.s.Refusals())
	}
}

// collect drops everything n's log holds: pullers behind it need a snapshot.
func (w *convWorld) collect(rt *rapid.T, n *convNode) {
	k, err := n.s.Knowledge(context.Background())
	if err != nil {
		rt.Fatal(err)
	}
	if _, err := n.s.CollectLog(context.Background(), k); err != nil {
		rt.Fatal(err)
	}
}

// snapshot bootstraps dst from src's state and knowledge (as replication's
// snapshot does): the knowledge read first, then the state. A hub's word
// covers every origin; an edge's only its own (the gate refuses what an
// edge relays, and only its own origins' knowledge is adopted).
func (w *convWorld) snapshot(rt *rapid.T, dst, src *convNode) {
	ctx := context.Background()
	k, err := src.s.Knowledge(ctx)
	if err == nil {
		k, err = src.s.WithoutHeld(ctx, k)
	}
	if err != nil {
		rt.Fatal(err)
	}
	hub := src.id.Role == outpost.RoleMaster || src.id.Role == outpost.RoleNode
	if !hub {
		for o := range k {
			if outpost.OriginName(o) != src.id.Name {
				delete(k, o)
			}
		}
	}
	for since := int64(0); ; {
		groups, through, err := src.s.ChangesSinceFilter(ctx, since, store.ChangeFilter{})
		if err != nil {
			rt.Fatal(err)
		}
		if _, err := dst.s.Apply(ctx, src.id.Name, "snapshot", "", groups, through); err != nil {
			rt.Fatal(err)
		}
		if through <= since {
			break
		}
		since = through
	}
	if err := dst.s.AdoptKnowledge(ctx, k); err != nil {
		rt.Fatal(err)
	}
	w.stats.Snapshots++
	rt.Logf("%s bootstrapped from %s's snapshot", dst.id.Name, src.id.Name)
}

// convForger is the sender name of forged entries (a relay on the trust
// list; its refusals are checked by forge, not checkRefusals).
const convForger = "FORGER"

// forge has the hostile relay (an edge on every trust list) send a node
// an entry of another origin that it altered or signed itself: refused.
func (w *convWorld) forge(rt *rapid.T) {
	ctx := context.Background()
	src := w.nodes[rapid.IntRange(0, len(w.nodes)-1).Draw(rt, "victim")]
	dst := w.nodes[rapid.IntRange(0, len(w.nodes)-1).Draw(rt, "target")]
	if src == dst {
		return
	}
	es, err := src.s.EntriesFor(ctx, store.Knowledge{}, store.EntryFilter{Only: []string{src.id.Name}})
	if err != nil || len(es) == 0 {
		return // nothing to forge from (or collected)
	}
	e := es[len(es)-1]
	e.More = false
	if rapid.Bool().Draw(rt, "alter") {
		e.Body = append([]byte{}, e.Body...)
		e.Body[len(e.Body)-1] ^= 0x01
	} else {
		e.Seq++ // a change of src's that src never made
		e.Sig = ed25519.Sign(convRing["EDGE09"], e.SignedMessage())
	}
	before := convData(rt, dst.s)
	res, err := dst.s.ApplyEntries(ctx, convForger, []outpost.Entry{e})
	if err != nil {
		rt.Fatal(err)
	}
	if res.Bad != 1 || res.Entries != 0 {
		rt.Fatalf("%s took a forged entry of %s: %+v", dst.id.Name, e.Origin, res)
	}
	if after := convData(rt, dst.s); len(after) != len(before) {
		rt.Fatalf("a forged entry changed %s", dst.id.Name)
	}
	w.stats.HostileRefused++
}

// heal2 pulls entries over every link until nothing moves.
func (w *convWorld) heal2(rt *rapid.T) {
	const maxRounds = 10
	for round := 1; ; round++ {
		if round > maxRounds {
			rt.Fatalf("still changing after %d rounds of pulls", maxRounds)
		}
		w.stats.HealRounds++
		moved := 0
		for _, l := range w.links {
			dst, src := w.nodes[l[0]], w.nodes[l[1]]
			have, err := dst.s.Knowledge(context.Background())
			if err != nil {
				rt.Fatal(err)
			}
			es, err := src.s.EntriesFor(context.Background(), have, store.EntryFilter{ExceptOrigin: dst.s.Origin(), MaxBytes: 1 << 30})
			var sn *store.SnapshotNeededError
			if errors.As(err, &sn) {
				w.snapshot(rt, dst, src)
				moved++
				continue
			}
			if err != nil {
				rt.Fatal(err)
			}
			if len(es) == 0 {
				continue
			}
			res, err := dst.s.ApplyEntries(context.Background(), src.id.Name, es)
			if err != nil {
				rt.Fatal(err)
			}
			if res.Held != 0 {
				rt.Fatalf("%s pulling from %s after the clocks healed held %d changes", dst.id.Name, src.id.Name, res.Held)
			}
			moved += res.Entries
		}
		if moved == 0 {
			return
		}
	}
}
