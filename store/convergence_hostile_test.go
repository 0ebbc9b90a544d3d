package store_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/admission"
	"github.com/outpost-edge/outpost/hlc"
	"github.com/outpost-edge/outpost/merge"
	"github.com/outpost-edge/outpost/policy"
	"github.com/outpost-edge/outpost/store"
	"github.com/outpost-edge/outpost/wire"
	"pgregory.net/rapid"
)

// The hostile peer of TestConvergence_Randomized. Interleaved with the
// honest writes and pulls, it delivers groups (as pushes, over the links the
// policy gives an lhr edge) that forge honest nodes' origins, carry causal
// lengths and timestamps out of range, are huge, or are garbage (keys of the
// wrong arity, unknown tables and columns, text that is not UTF-8, malformed
// origins, a master-only table, another node's slugs). Every such change must
// be refused under its rule, or (for its own changes to tables and columns
// the schema lacks) held, and counted exactly. Its own valid writes are
// admitted like any edge's, and are part of the reference model; so the
// honest nodes must still converge on it.

type convHostileState struct {
	inc, origin string
	targets     []int // honest nodes the policy lets it push to or be pulled by
	through     int64 // its db_version numbering of what it sent
	counter     uint16
	// valid are the groups of its own admitted writes, each sent as is
	// (again) whenever it is delivered: one version, one value.
	valid [][]outpost.Change
	// Per honest node: refusals counted since the store's Open, by rule,
	// and changes held (durable, so kept over restarts).
	refused map[string]map[string]int64
	held    map[string]int64
}

func newConvHostile(w *convWorld) *convHostileState {
	h := &convHostileState{inc: "h0571le", refused: map[string]map[string]int64{}, held: map[string]int64{}}
	h.origin = convHostile.Name + "/" + h.inc
	m := policy.Default()
	hp := policy.PartyOf(convHostile)
	for i, n := range w.nodes {
		np := policy.PartyOf(n.id)
		if m.Check(np, hp, policy.Pull).Allowed || m.Check(hp, np, policy.Push).Allowed {
			h.targets = append(h.targets, i)
		}
		h.refused[n.id.Name] = map[string]int64{}
	}
	return h
}

// ts is a timestamp of the hostile peer: a second behind the shared clock,
// so that no receiver (skewed by at most 700 ms) holds it for drift, and
// unique.
func (w *convWorld) hostileTS() uint64 {
	w.h.counter++
	return uint64(hlc.FromParts(w.nowMS.Load()-1000, w.h.counter))
}

// hostileKind is what one group of a hostile delivery carries.
type hostileKind struct {
	name string
	rule string // the rule every change is refused under; "" = held (schema) or admitted
	held bool
}

var hostileKinds = []hostileKind{
	{"forge", admission.RuleNotSender, false},
	{"forge-unknown-table", admission.RuleNotSender, false},
	{"huge", admission.RuleNotSender, false},
	{"malformed-origin", admission.RuleOriginMalformed, false},
	{"cl", store.RuleCLRange, false},
	{"hlc", store.RuleHLCRange, false},
	{"bad-key", store.RuleBadKey, false},
	{"master-table", admission.RuleTablePermission, false},
	{"others-slug", admission.RuleSlugNotOrigin, false},
	{"unknown-own", "", true},
	{"valid", "", false},
	{"valid", "", false},
	{"valid", "", false},
	{"valid-again", "", false},
}

// hostileSend delivers one to three groups to one honest node and checks
// that exactly the expected changes were refused and held.
func (w *convWorld) hostileSend(rt *rapid.T, step int) {
	h := w.h
	dst := w.nodes[rapid.SampledFrom(h.targets).Draw(rt, "hostileTarget")]
	ngroups := rapid.IntRange(1, 3).Draw(rt, "hostileGroups")
	var groups []outpost.Group
	wantRefused := map[string]int64{}
	var wantHeld int64
	var kinds []string
	for range ngroups {
		k := rapid.SampledFrom(hostileKinds).Draw(rt, "hostileKind")
		chs := w.hostileChanges(rt, dst, k.name)
		if len(chs) == 0 {
			continue
		}
		kinds = append(kinds, fmt.Sprintf("%s×%d", k.name, len(chs)))
		h.through++
		groups = append(groups, outpost.Group{DBV: h.through, Changes: chs})
		switch {
		case k.rule != "":
			wantRefused[k.rule] += int64(len(chs))
		case k.held:
			wantHeld += int64(len(chs))
		}
	}
	if len(groups) == 0 {
		return
	}
	res, err := dst.s.Apply(context.Background(), convHostile.Name, store.CursorRecv, h.inc, groups, h.through)
	if err != nil {
		rt.Fatalf("step %d: %s applying the hostile %v: %v", step, dst.id.Name, kinds, err)
	}
	w.stats.HostileSends++
	var refused int64
	for rule, n := range wantRefused {
		refused += n
		h.refused[dst.id.Name][rule] += n
	}
	h.held[dst.id.Name] += wantHeld
	w.stats.HostileRefused += res.Refused
	w.stats.HostileHeld += res.Held
	rt.Logf("step %d: %s sends %s %v: %+v", step, convHostile.Name, dst.id.Name, kinds, res)
	if int64(res.Refused) != refused || int64(res.Held) != wantHeld {
		rt.Fatalf("step %d: %s took the hostile %v: refused %d, held %d; want refused %d (%v), held %d",
			step, dst.id.Name, kinds, res.Refused, res.Held, refused, wantRefused, wantHeld)
	}
	w.checkRefusals(rt, dst)
}

// hostileChanges builds the changes of one group of the given kind for dst.
func (w *convWorld) hostileChanges(rt *rapid.T, dst *convNode, kind string) []outpost.Change {
	h := w.h
	key := func() string { return rapid.SampledFrom(convKeys).Draw(rt, "hkey") }
	col := func() string { return rapid.SampledFrom(append([]string{""}, convCols...)).Draw(rt, "hcol") }
	// An honest node's real origin (dst's own included), a plausible cl.
	forged := func() outpost.Change {
		victim := w.nodes[rapid.IntRange(0, len(w.nodes)-1).Draw(rt, "victim")]
		k := key()
		cl := int64(1)
		if r := w.ref[k]; r != nil {
			cl = r.CL + int64(rapid.IntRange(0, 2).Draw(rt, "hcl"))
		}
		c := col()
		if c != "" && cl%2 == 0 {
			cl++
		}
		return outpost.Change{Table: "t", PK: []any{k}, Col: c, Val: convValue().Draw(rt, "hval"), CL: cl,
			HLC: w.hostileTS(), Origin: victim.s.Origin()}
	}
	own := func(table string, pk []any, col string, val any, cl int64) outpost.Change {
		return outpost.Change{Table: table, PK: pk, Col: col, Val: val, CL: cl, HLC: w.hostileTS(), Origin: h.origin}
	}
	n := rapid.IntRange(1, 4).Draw(rt, "hn")
	var out []outpost.Change
	switch kind {
	case "forge":
		for range n {
			out = append(out, forged())
		}
	case "forge-unknown-table":
		for range n {
			ch := forged()
			ch.Table = rapid.SampledFrom([]string{"ghost", "T2", "\xff\xfeghost"}).Draw(rt, "htable")
			out = append(out, ch)
		}
	case "huge":
		// Far more changes than any honest group of this test.
		m := rapid.IntRange(2000, 5000).Draw(rt, "hhuge")
		base := forged()
		for i := range m {
			ch := base
			ch.PK = []any{fmt.Sprint("k", i%7)}
			ch.HLC += uint64(i)
			out = append(out, ch)
		}
	case "malformed-origin":
		for range n {
			ch := own("t", []any{key()}, col(), convValue().Draw(rt, "hval"), 1)
			ch.Origin = rapid.SampledFrom([]string{convHostile.Name, "/" + h.inc, convHostile.Name + "/", convHostile.Name + "/a/b", ""}).Draw(rt, "horigin")
			out = append(out, ch)
		}
	case "cl":
		for range n {
			cl := rapid.SampledFrom([]int64{math.MaxInt64, math.MaxInt64 - 1, store.MaxCL + 1, store.MaxCL + 2, 1 << 62}).Draw(rt, "hbigcl")
			out = append(out, own("t", []any{key()}, col(), convValue().Draw(rt, "hval"), cl))
		}
	case "hlc":
		now := w.nowMS.Load() + dst.skew.Load()
		for range n {
			ch := own("t", []any{key()}, col(), convValue().Draw(rt, "hval"), 1)
			ch.HLC = rapid.SampledFrom([]uint64{
				uint64(hlc.FromParts(now+2*time.Hour.Milliseconds(), 0)),
				uint64(hlc.FromParts(now+10*365*24*time.Hour.Milliseconds(), 7)),
				math.MaxUint64,
				1 << 63,
			}).Draw(rt, "hfar")
			out = append(out, ch)
		}
	case "bad-key":
		for range n {
			pk := rapid.SampledFrom([][]any{{}, {"k0", "k1"}, {"k0", int64(1), nil}}).Draw(rt, "hpk")
			out = append(out, own("t", pk, col(), convValue().Draw(rt, "hval"), 1))
		}
	case "master-table":
		for range n {
			out = append(out, own("mo", []any{key()}, rapid.SampledFrom([]string{"", "v"}).Draw(rt, "hmocol"), "price", 1))
		}
	case "others-slug":
		for range n {
			victim := rapid.SampledFrom(convIdentities).Draw(rt, "hslugvictim")
			out = append(out, own("outpost_slugs", []any{"page-" + victim.Code}, "", nil, 1))
		}
	case "unknown-own":
		// Its own changes for tables or columns this schema lacks: they
		// may be a newer schema's, so they are held, not refused.
		for range n {
			if rapid.Bool().Draw(rt, "htableOrCol") {
				tbl := rapid.SampledFrom([]string{"ghost", "\xff\xfeghost", "t\x00"}).Draw(rt, "htable")
				out = append(out, own(tbl, []any{key()}, "x", "\xc3\x28", 1))
			} else {
				c := rapid.SampledFrom([]string{"zz", "\xffcol", "a\x00"}).Draw(rt, "hcolname")
				out = append(out, own("t", []any{key()}, c, int64(1), 1))
			}
		}
	case "valid":
		// Its own write, as its store would capture it: a delete, or a
		// row in a (new or current) life with some columns. Recorded in
		// the reference model at once: it is delivered to every node it
		// may reach by the end (hostileHeal).
		k := key()
		cur := int64(0)
		if r := w.ref[k]; r != nil {
			cur = r.CL
		}
		ts := w.hostileTS()
		// The next even (deleted) or odd (alive) causal length above cur.
		next := func(odd bool) int64 {
			cl := cur + 1
			if (cl%2 == 1) != odd {
				cl++
			}
			return cl
		}
		switch what := rapid.SampledFrom([]string{"delete", "update", "new-life"}).Draw(rt, "hwrite"); what {
		case "delete":
			out = append(out, outpost.Change{Table: "t", PK: []any{k}, CL: next(false), HLC: ts, Origin: h.origin})
		default:
			cl := cur
			if cur%2 == 0 || what == "new-life" {
				// A new life: the sentinel first, as a capture would.
				cl = next(true)
				out = append(out, outpost.Change{Table: "t", PK: []any{k}, CL: cl, HLC: ts, Origin: h.origin})
			}
			for _, c := range rapid.SliceOfNDistinct(rapid.SampledFrom(convCols), 1, 3, rapid.ID[string]).Draw(rt, "hcols") {
				out = append(out, outpost.Change{Table: "t", PK: []any{k}, Col: c, Val: convValue().Draw(rt, "hval"), CL: cl, HLC: ts, Origin: h.origin})
			}
		}
		for _, ch := range out {
			w.facts = append(w.facts, convFact{step: -1, node: convHostile.Name, ch: ch})
			r := w.ref[k]
			if r == nil {
				r = &merge.Row{}
				w.ref[k] = r
			}
			r.Apply(ch.Col, ch.Val, ch.CL, merge.Version{HLC: ch.HLC, Origin: ch.Origin})
		}
		h.valid = append(h.valid, out)
		w.stats.HostileWrites++
	case "valid-again":
		if len(h.valid) > 0 {
			out = slices.Clone(rapid.SampledFrom(h.valid).Draw(rt, "hagain"))
		}
	default:
		rt.Fatalf("unknown hostile kind %q", kind)
	}
	return out
}

// hostileHeal delivers every valid write of the hostile peer to every node
// it may reach, as the pulls and pushes of a healed network would; the
// honest pulls take them on to the other farm.
func (w *convWorld) hostileHeal(rt *rapid.T) {
	h := w.h
	if len(h.valid) == 0 {
		return
	}
	for _, i := range h.targets {
		dst := w.nodes[i]
		var groups []outpost.Group
		for _, chs := range h.valid {
			h.through++
			groups = append(groups, outpost.Group{DBV: h.through, Changes: chs})
		}
		res, err := dst.s.Apply(context.Background(), convHostile.Name, store.CursorRecv, h.inc, groups, h.through)
		if err != nil {
			rt.Fatalf("%s applying the hostile peer's writes: %v", dst.id.Name, err)
		}
		if res.Refused != 0 || res.Held != 0 {
			rt.Fatalf("%s refused or held the hostile peer's own valid writes: %+v", dst.id.Name, res)
		}
	}
}

// checkRefusals checks what n counts as refused: from the hostile peer,
// exactly what it sent to be refused since n's store opened; from honest
// peers, only what an edge relayed.
func (w *convWorld) checkRefusals(rt *rapid.T, n *convNode) {
	got := map[string]int64{}
	for _, r := range n.s.Refusals() {
		if r.Sender == convForger {
			if r.Rule != store.RuleSignature {
				rt.Fatalf("%s refused the forger's entries under %s, want %s", n.id.Name, r.Rule, store.RuleSignature)
			}
			continue // counted by forge itself
		}
		if r.Sender == convHostile.Name {
			got[r.Rule] = r.Count
			continue
		}
		var sender outpost.Identity
		for _, id := range convIdentities {
			if id.Name == r.Sender {
				sender = id
			}
		}
		if r.Rule != admission.RuleNotSender || sender.Name == "" || slices.Contains(admission.DefaultRelays, sender.Role) {
			rt.Fatalf("%s refused %d changes from honest %s under %s", n.id.Name, r.Count, r.Sender, r.Rule)
		}
	}
	want := map[string]int64{}
	if w.h != nil {
		for rule, c := range w.h.refused[n.id.Name] {
			if c > 0 {
				want[rule] = c
			}
		}
	}
	if !maps.Equal(got, want) {
		rt.Fatalf("%s counts refusals from %s %v, want %v", n.id.Name, convHostile.Name, got, want)
	}
}

// wireGarbage feeds the wire decoders bytes a hostile peer could send: a
// valid push body cut short, with a declared length over the limit, with
// bytes flipped, or random bytes. None may panic; cut-short and oversized
// ones must be errors; whatever is accepted must be a valid frame that
// encodes again.
func (w *convWorld) wireGarbage(rt *rapid.T) {
	w.stats.WireGarbage++
	ch := outpost.Change{Table: "t", PK: []any{"k0"}, Col: "a", Val: convValue().Draw(rt, "wval"), CL: 1, HLC: w.hostileTS(), Origin: w.h.origin}
	valid, err := wire.EncodeGroups([]outpost.Group{{DBV: 1, Changes: []outpost.Change{ch, ch}}})
	if err != nil {
		rt.Fatal(err)
	}
	mode := rapid.SampledFrom([]string{"cut", "length", "flip", "random"}).Draw(rt, "wmode")
	var b []byte
	mustFail := false
	switch mode {
	case "cut":
		b = valid[:rapid.IntRange(1, len(valid)-1).Draw(rt, "wcut")]
		mustFail = true
	case "length":
		b = slices.Clone(valid)
		binary.BigEndian.PutUint32(b, uint32(rapid.Int64Range(int64(wire.DefaultLimits.MaxFrameBytes)+1, math.MaxUint32).Draw(rt, "wlen")))
		mustFail = true
	case "flip":
		b = slices.Clone(valid)
		for range rapid.IntRange(1, 4).Draw(rt, "wflips") {
			b[rapid.IntRange(0, len(b)-1).Draw(rt, "wat")] = rapid.Byte().Draw(rt, "wbyte")
		}
	case "random":
		b = rapid.SliceOfN(rapid.Byte(), 1, 512).Draw(rt, "wrandom")
	}
	groups, err := wire.DecodeGroups(b, wire.DefaultLimits)
	switch {
	case err != nil:
		if !errors.Is(err, wire.ErrMalformed) && !errors.Is(err, wire.ErrTooLarge) && !errors.Is(err, io.ErrUnexpectedEOF) {
			rt.Fatalf("%s garbage %x: DecodeGroups error %v wraps neither ErrMalformed, ErrTooLarge nor io.ErrUnexpectedEOF", mode, b, err)
		}
	case mustFail:
		rt.Fatalf("%s garbage %x decoded without error: %+v", mode, b, groups)
	default:
		if _, err := wire.EncodeGroups(groups); err != nil {
			rt.Fatalf("%s garbage %x decoded to groups that do not encode: %v", mode, b, err)
		}
	}
	// The same bytes as a stream, and as a held change's encoding.
	r := wire.NewReader(bytes.NewReader(b), wire.Limits{MaxFrameBytes: 1 << 16, MaxChanges: 64, MaxValueBytes: 1 << 10})
	for range 8 {
		if _, err := r.Read(); err != nil {
			break
		}
	}
	if c, err := wire.DecodeChange(b); err == nil {
		if _, err := wire.EncodeChange(&c); err != nil {
			rt.Fatalf("garbage %x decoded to a change that does not encode: %v", b, err)
		}
	}
}
