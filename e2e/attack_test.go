package e2e_test

// Attacks by a trusted but hostile peer. A fleet runs in this process
// (fleet.Start: real nodes, real mutual TLS, real HTTP); the attacker is
// EDGE01's own key and client, so every request passes the transport and the
// push/pull policy, and only the admission gate and the store's bounds stand
// between it and the data. Everything is observed from outside, through the
// app API, /v1/status and /metrics.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/fleet"
	"github.com/outpost-edge/outpost/hlc"
	"github.com/outpost-edge/outpost/node"
	"github.com/outpost-edge/outpost/peer"
	"github.com/outpost-edge/outpost/policy"
	"github.com/outpost-edge/outpost/store"
	"github.com/outpost-edge/outpost/wire"
)

// atkSchema has a table every role may write and one only masters may.
const atkSchema = `CREATE TABLE pages (
	id    TEXT PRIMARY KEY NOT NULL,
	slug  TEXT NOT NULL DEFAULT '',
	title TEXT NOT NULL DEFAULT '',
	body  TEXT
);
-- outpost: table prices writable by master
CREATE TABLE prices (sku TEXT PRIMARY KEY NOT NULL, cents INTEGER);
`

const (
	atkConverge = 20 * time.Second // how long the fleet may take to agree
	atkPoll     = 25 * time.Millisecond
)

// atkStart runs the demo topology on atkSchema; the test closes it.
func atkStart(t *testing.T) *fleet.Fleet {
	t.Helper()
	f, err := fleet.Start(context.Background(), t.TempDir(), fleet.Demo(0), fleet.Options{Schema: atkSchema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := f.Close(ctx); err != nil {
			t.Errorf("close fleet: %v", err)
		}
	})
	return f
}

func atkBase(n *node.Node) string { return n.APIURL() }

// atkStatus is the part of GET /v1/status the attack tests read.
type atkStatus struct {
	Incarnation string           `json:"incarnation"`
	Held        map[string]int64 `json:"held_changes"`
	Refused     []store.Refusal  `json:"refused_changes"`
}

func atkGetStatus(t *testing.T, n *node.Node) atkStatus {
	t.Helper()
	body := atkGet(t, atkBase(n)+"/v1/status")
	var st atkStatus
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("%s /v1/status: %v: %s", n.Identity.Name, err, body)
	}
	return st
}

func atkGet(t *testing.T, url string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d, %v: %s", url, resp.StatusCode, err, body)
	}
	return body
}

// refusedIn returns the count /v1/status reports for sender and rule.
func (s atkStatus) refusedIn(sender, rule string) int64 {
	for _, r := range s.Refused {
		if r.Sender == sender && r.Rule == rule {
			return r.Count
		}
	}
	return 0
}

// atkRefusedMetric reads outpost_replication_refused_total{sender,rule}
// from n's /metrics (0 when the series is absent).
func atkRefusedMetric(t *testing.T, n *node.Node, sender, rule string) int64 {
	t.Helper()
	body := atkGet(t, atkBase(n)+"/metrics")
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "outpost_replication_refused_total{") {
			continue
		}
		labels, value, ok := strings.Cut(strings.TrimPrefix(line, "outpost_replication_refused_total{"), "} ")
		if !ok {
			t.Fatalf("unparsable metric line %q", line)
		}
		if !slicesContainsAll(strings.Split(labels, ","), fmt.Sprintf("sender=%q", sender), fmt.Sprintf("rule=%q", rule)) {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		return int64(v)
	}
	return 0
}

func slicesContainsAll(have []string, want ...string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			found = found || h == w
		}
		if !found {
			return false
		}
	}
	return true
}

// atkExpectRefused checks that n reports exactly want refusals from sender
// under rule, in /v1/status and in /metrics.
func atkExpectRefused(t *testing.T, n *node.Node, sender, rule string, want int64) {
	t.Helper()
	if got := atkGetStatus(t, n).refusedIn(sender, rule); got != want {
		t.Errorf("%s /v1/status refused_changes{sender=%s, rule=%s} = %d, want %d", n.Identity.Name, sender, rule, got, want)
	}
	if got := atkRefusedMetric(t, n, sender, rule); got != want {
		t.Errorf("%s /metrics outpost_replication_refused_total{sender=%q,rule=%q} = %d, want %d", n.Identity.Name, sender, rule, got, want)
	}
}

// atkExpectNothingHeld checks that n holds no change to judge later.
func atkExpectNothingHeld(t *testing.T, n *node.Node) {
	t.Helper()
	st := atkGetStatus(t, n)
	for rule, c := range st.Held {
		if c != 0 {
			t.Errorf("%s holds %d changes under %s, want none: %+v", n.Identity.Name, c, rule, st.Held)
		}
	}
}

// atkPushRaw sends body to the push route of the peer named to, as from
// (its key, its mTLS client: the transport and the policy let it through).
func atkPushRaw(from *node.Node, to string, through int64, body []byte) (*http.Response, error) {
	q := url.Values{"through": {strconv.FormatInt(through, 10)}, "incarnation": {"attacker-" + from.Store.Incarnation()}}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	resp, err := from.Client.Do(ctx, to, policy.Push, http.MethodPost, "/sync/v1/changes?"+q.Encode(), body)
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, nil
}

// atkPush encodes groups like replication's push does and sends them; the
// receiver must answer 200 (a refused change is acknowledged, not retried).
func atkPush(t *testing.T, from *node.Node, to string, groups ...outpost.Group) {
	t.Helper()
	body, err := wire.EncodeGroups(groups)
	if err != nil {
		t.Fatalf("encode push: %v", err)
	}
	if _, err := atkPushRaw(from, to, groups[len(groups)-1].DBV, body); err != nil {
		t.Fatalf("%s pushing %d groups to %s: %v", from.Identity.Name, len(groups), to, err)
	}
}

// atkNow is a timestamp of now, as an honest writer's would be.
func atkNow() uint64 { return uint64(hlc.FromParts(time.Now().UnixMilli(), 0)) }

// atkRow is a whole-row insert as changes: the sentinel, then each column.
func atkRow(table, key, origin string, cl int64, ts uint64, cols ...any) []outpost.Change {
	out := []outpost.Change{{Table: table, PK: []any{key}, CL: cl, HLC: ts, Origin: origin}}
	for i := 0; i+1 < len(cols); i += 2 {
		out = append(out, outpost.Change{Table: table, PK: []any{key}, Col: cols[i].(string), Val: cols[i+1], CL: cl, HLC: ts, Origin: origin})
	}
	return out
}

// atkCount returns how many rows of table n holds with the key.
func atkCount(t *testing.T, n *node.Node, table, keyCol, key string) int64 {
	t.Helper()
	rows := query(t, atkBase(n), fmt.Sprintf(`SELECT count(*) FROM %s WHERE %s = ?`, table, keyCol), key)
	return asInt(t, rows[0][0])
}

// atkWaitAll waits until every node answers q (a query with one row of one
// value, e.g. a count or a title) with want.
func atkWaitAll(t *testing.T, f *fleet.Fleet, what, q string, want string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(atkConverge)
	for {
		var got []string
		ok := true
		for _, n := range f.Nodes {
			rows, err := syncQuery(atkBase(n), q, args...)
			v := fmt.Sprint(rows)
			if err == nil && len(rows) == 1 && len(rows[0]) == 1 {
				v = fmt.Sprint(rows[0][0])
			}
			got = append(got, n.Identity.Name+"="+v)
			ok = ok && err == nil && v == want
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			for _, n := range f.Nodes {
				t.Logf("%s status: %s", n.Identity.Name, fetchStatus(atkBase(n)))
			}
			t.Fatalf("%s: the fleet did not agree on %s within %s: %v", what, want, atkConverge, got)
		}
		time.Sleep(atkPoll)
	}
}

// TestAttack_ForgedOrigin: EDGE01 pushes to its farm sibling EDGE02 (an
// exchange the policy allows) changes that claim to come from MASTER01 on a
// table only masters may write. EDGE02 applies nothing, counts the refusals
// against EDGE01 under origin_not_sender, and no node ever holds the row.
// Changes with EDGE01's own origin on that table are refused under
// table_permission.
func TestAttack_ForgedOrigin(t *testing.T) {
	f := atkStart(t)
	e1, e2, m := f.Node("EDGE01"), f.Node("EDGE02"), f.Node("MASTER01")
	// Nothing is written before the attack, so no honest change is relayed
	// (and refused) in the background while the counters are checked.
	masterOrigin := "MASTER01/" + atkGetStatus(t, m).Incarnation
	forged := atkRow("prices", "forged", masterOrigin, 1, atkNow(), "cents", int64(1))
	atkPush(t, e1, "EDGE02", outpost.Group{DBV: 1, Changes: forged})
	if n := atkCount(t, e2, "prices", "sku", "forged"); n != 0 {
		t.Fatalf("EDGE02 applied a price forged by EDGE01 in MASTER01's name")
	}
	atkExpectRefused(t, e2, "EDGE01", "origin_not_sender", int64(len(forged)))
	atkExpectNothingHeld(t, e2)

	// EDGE01's own origin: the origin is honest, but an edge may not write
	// prices.
	own := atkRow("prices", "edge-price", "EDGE01/"+e1.Store.Incarnation(), 1, atkNow(), "cents", int64(2))
	atkPush(t, e1, "EDGE02", outpost.Group{DBV: 2, Changes: own})
	if n := atkCount(t, e2, "prices", "sku", "edge-price"); n != 0 {
		t.Fatalf("EDGE02 applied a price written by edge EDGE01")
	}
	atkExpectRefused(t, e2, "EDGE01", "table_permission", int64(len(own)))
	atkExpectRefused(t, e2, "EDGE01", "origin_not_sender", int64(len(forged)))
	atkExpectNothingHeld(t, e2)

	// Whatever EDGE02 had kept would travel on with its later writes: a
	// marker written there after the attack reaches everyone, and by then
	// the forged rows would have too.
	mustExec(t, atkBase(e2), stmt{SQL: `INSERT INTO pages (id, title) VALUES ('marker', 'after the attack')`, Args: []any{}})
	atkWaitAll(t, f, "EDGE02's marker", `SELECT count(*) FROM pages WHERE id = 'marker'`, "1")
	// And an honest master price goes everywhere, prices replicate.
	mustExec(t, atkBase(m), stmt{SQL: `INSERT INTO prices (sku, cents) VALUES ('real', 100)`, Args: []any{}})
	atkWaitAll(t, f, "MASTER01's price", `SELECT cents FROM prices WHERE sku = 'real'`, "100")
	for _, n := range f.Nodes {
		for _, key := range []string{"forged", "edge-price"} {
			if c := atkCount(t, n, "prices", "sku", key); c != 0 {
				t.Errorf("%s holds the price %q EDGE01 injected", n.Identity.Name, key)
			}
		}
	}
}

// TestAttack_UnknownTableRefusedNotHeld: a change for a table this node does
// not know is normally held until a schema upgrade brings the table; but one
// from a sender that may not send it at all (an edge claiming another node's
// origin) is refused outright, and nothing is kept.
func TestAttack_UnknownTableRefusedNotHeld(t *testing.T) {
	f := atkStart(t)
	e1, e2, m := f.Node("EDGE01"), f.Node("EDGE02"), f.Node("MASTER01")
	masterOrigin := "MASTER01/" + atkGetStatus(t, m).Incarnation
	var groups []outpost.Group
	for i := range 20 {
		groups = append(groups, outpost.Group{DBV: int64(i + 1),
			Changes: atkRow("ghost_"+strconv.Itoa(i%3), fmt.Sprint("k", i), masterOrigin, 1, atkNow(), "payload", strings.Repeat("x", 1000))})
	}
	atkPush(t, e1, "EDGE02", groups...)
	want := int64(0)
	for _, g := range groups {
		want += int64(len(g.Changes))
	}
	atkExpectRefused(t, e2, "EDGE01", "origin_not_sender", want)
	atkExpectNothingHeld(t, e2)
	// The store agrees with the status page.
	held, err := e2.Store.Held(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(held) != 0 {
		t.Fatalf("EDGE02's store holds %v, want nothing", held)
	}
	// The node still works: a write at EDGE02 reaches the fleet.
	mustExec(t, atkBase(e2), stmt{SQL: `INSERT INTO pages (id, title) VALUES ('still-here', 'x')`, Args: []any{}})
	atkWaitAll(t, f, "EDGE02's write after the attack", `SELECT count(*) FROM pages WHERE id = 'still-here'`, "1")
}

// TestAttack_OutOfRange: a trusted edge pushes, with its own honest origin,
// changes whose causal length is absurd (2^63-1, just over store.MaxCL) or
// whose timestamp lies far in the future. Each is refused under its rule;
// the row keeps its value, a later local DELETE at the receiver works and
// replicates, and the receiver's clock did not jump (a later write elsewhere
// still wins over its earlier one).
func TestAttack_OutOfRange(t *testing.T) {
	f := atkStart(t)
	e1, e2, m := f.Node("EDGE01"), f.Node("EDGE02"), f.Node("MASTER01")
	mustExec(t, atkBase(e1), stmt{SQL: `INSERT INTO pages (id, title) VALUES ('victim', 'v1')`, Args: []any{}})
	atkWaitAll(t, f, "the victim row", `SELECT title FROM pages WHERE id = 'victim'`, "v1")

	origin := "EDGE01/" + e1.Store.Incarnation()
	future := uint64(hlc.FromParts(time.Now().Add(10*365*24*time.Hour).UnixMilli(), 0))
	clMax := []outpost.Change{
		{Table: "pages", PK: []any{"victim"}, CL: math.MaxInt64, HLC: atkNow(), Origin: origin},
		{Table: "pages", PK: []any{"victim"}, Col: "title", Val: "hijacked", CL: math.MaxInt64, HLC: atkNow(), Origin: origin},
		{Table: "pages", PK: []any{"victim"}, CL: store.MaxCL + 2, HLC: atkNow(), Origin: origin}, // an even cl: a delete
	}
	hlcFar := []outpost.Change{
		{Table: "pages", PK: []any{"victim"}, Col: "title", Val: "from the future", CL: 1, HLC: future, Origin: origin},
		{Table: "pages", PK: []any{"victim"}, Col: "body", Val: "end of time", CL: 1, HLC: math.MaxUint64, Origin: origin},
	}
	atkPush(t, e1, "EDGE02", outpost.Group{DBV: 100, Changes: clMax}, outpost.Group{DBV: 101, Changes: hlcFar})
	atkExpectRefused(t, e2, "EDGE01", "cl_out_of_range", int64(len(clMax)))
	atkExpectRefused(t, e2, "EDGE01", "hlc_out_of_range", int64(len(hlcFar)))
	atkExpectNothingHeld(t, e2)
	if rows := query(t, atkBase(e2), `SELECT title, body FROM pages WHERE id = 'victim'`); len(rows) != 1 || rows[0][0] != "v1" || rows[0][1] != nil {
		t.Fatalf("EDGE02's victim row after the attack: %v, want [[v1 <nil>]]", rows)
	}

	// A local delete of the row works and reaches every node.
	mustExec(t, atkBase(e2), stmt{SQL: `DELETE FROM pages WHERE id = 'victim'`, Args: []any{}})
	atkWaitAll(t, f, "EDGE02's delete", `SELECT count(*) FROM pages WHERE id = 'victim'`, "0")
	// And it can be written again, everywhere.
	mustExec(t, atkBase(e2), stmt{SQL: `INSERT INTO pages (id, title) VALUES ('victim', 'v2')`, Args: []any{}})
	atkWaitAll(t, f, "EDGE02's re-insert", `SELECT title FROM pages WHERE id = 'victim'`, "v2")

	// EDGE02's clock did not adopt the future: a later update at MASTER01
	// wins over EDGE02's write on every node.
	mustExec(t, atkBase(e2), stmt{SQL: `INSERT INTO pages (id, title) VALUES ('later', 'edge02')`, Args: []any{}})
	atkWaitAll(t, f, "EDGE02's later write", `SELECT title FROM pages WHERE id = 'later'`, "edge02")
	mustExec(t, atkBase(m), stmt{SQL: `UPDATE pages SET title = 'master' WHERE id = 'later'`, Args: []any{}})
	atkWaitAll(t, f, "MASTER01's update after EDGE02's write", `SELECT title FROM pages WHERE id = 'later'`, "master")
}

// TestAttack_GarbageFrames: bodies that are not valid push frames (random
// bytes, CBOR cut short, absurd declared lengths, oversized arrays, wrong
// frame types) sent to the sync endpoint over a valid mTLS connection get a
// 4xx; the node keeps serving and replicating.
func TestAttack_GarbageFrames(t *testing.T) {
	f := atkStart(t)
	e1, e2 := f.Node("EDGE01"), f.Node("EDGE02")
	valid, err := wire.EncodeGroups([]outpost.Group{{DBV: 1, Changes: atkRow("pages", "g", "EDGE01/"+e1.Store.Incarnation(), 1, atkNow(), "title", "garbage test")}})
	if err != nil {
		t.Fatal(err)
	}
	frame := func(n uint32, body []byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, n), body...)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	hb, err := func() ([]byte, error) {
		var buf bytes.Buffer
		err := wire.NewWriter(&buf).Write(wire.HeartbeatFrame(3))
		return buf.Bytes(), err
	}()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		body []byte
	}{
		{"random bytes", random(4096)},
		{"random small", random(7)},
		{"length only", []byte{0, 0, 1}},
		{"truncated CBOR", frame(uint32(len(valid)-4), valid[4:len(valid)/2])},
		{"frame cut in half", valid[:len(valid)/2]},
		{"CBOR cut short inside its declared length", frame(uint32(len(valid)/2-4), valid[4:len(valid)/2])},
		{"declared 4 GiB", frame(math.MaxUint32, random(64))},
		{"declared just over the frame limit", frame(uint32(wire.DefaultLimits.MaxFrameBytes+1), random(64))},
		{"declared length within the limit, body short", frame(uint32(wire.DefaultLimits.MaxFrameBytes), random(1024))},
		{"array of 2^60 elements", frame(10, []byte{0x9b, 0x10, 0, 0, 0, 0, 0, 0, 0, 0})},
		{"map of 2^32 pairs", frame(5, []byte{0xba, 0xff, 0xff, 0xff, 0xff})},
		{"deep nesting", frame(200, bytes.Repeat([]byte{0x81}, 200))},
		{"text of 2^40 bytes", frame(9, []byte{0x7b, 0, 0, 1, 0, 0, 0, 0, 0})},
		{"not a map", frame(1, []byte{0x01})},
		{"heartbeat in a push", hb},
		{"valid frame then garbage", append(append([]byte{}, valid...), random(100)...)},
		{"valid frame twice (db_version not increasing)", append(append([]byte{}, valid...), valid...)},
	}
	for _, c := range cases {
		_, err := atkPushRaw(e1, "EDGE02", 1, c.body)
		var se *peer.StatusError
		if !errors.As(err, &se) || se.Status < 400 || se.Status > 499 {
			t.Errorf("%s: push answered %v, want a 4xx", c.name, err)
			continue
		}
		t.Logf("%s: %d %s: %s", c.name, se.Status, se.Code, se.Message)
	}
	// Nothing of it was applied (the one valid frame came with garbage).
	if n := atkCount(t, e2, "pages", "id", "g"); n != 0 {
		t.Errorf("EDGE02 applied part of a malformed push")
	}
	// A fuzz of random garbage, shorter bodies and flipped bytes of a valid
	// frame: anything but a 2xx or 4xx (a panic is a 500, or a reset) fails.
	for i := range 200 {
		var body []byte
		switch i % 3 {
		case 0:
			body = random(rng.IntN(512))
		case 1:
			body = append([]byte{}, valid[:rng.IntN(len(valid))]...)
		default:
			body = append([]byte{}, valid...)
			for range 1 + rng.IntN(4) {
				body[rng.IntN(len(body))] = byte(rng.Uint32())
			}
		}
		resp, err := atkPushRaw(e1, "EDGE02", 1, body)
		var se *peer.StatusError
		switch {
		case err == nil && resp.StatusCode/100 == 2:
		case errors.As(err, &se) && se.Status/100 == 4:
		default:
			t.Fatalf("fuzz body %d (%x): %v", i, body, err)
		}
	}
	// The node is alive, takes writes, and replicates both ways.
	atkGet(t, atkBase(e2)+"/healthz")
	mustExec(t, atkBase(e2), stmt{SQL: `INSERT INTO pages (id, title) VALUES ('after-garbage-e2', 'x')`, Args: []any{}})
	mustExec(t, atkBase(e1), stmt{SQL: `INSERT INTO pages (id, title) VALUES ('after-garbage-e1', 'y')`, Args: []any{}})
	atkWaitAll(t, f, "writes after the garbage", `SELECT count(*) FROM pages WHERE id IN ('after-garbage-e1', 'after-garbage-e2')`, "2")
	// An honest push from EDGE01 is still accepted.
	atkPush(t, e1, "EDGE02", outpost.Group{DBV: 1, Changes: atkRow("pages", "pushed", "EDGE01/"+e1.Store.Incarnation(), 1, atkNow(), "title", "honest")})
	if n := atkCount(t, e2, "pages", "id", "pushed"); n != 1 {
		t.Errorf("EDGE02 did not apply an honest push after the garbage")
	}
}
