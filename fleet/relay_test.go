package fleet_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/outpost-edge/outpost/fleet"
	"github.com/outpost-edge/outpost/node"
	"github.com/outpost-edge/outpost/policy"
	"github.com/outpost-edge/outpost/relay"
	"github.com/outpost-edge/outpost/store"
)

// relayClient is a test device: one WebSocket to a node's relay.
type relayClient struct {
	tb     testing.TB
	ws     *websocket.Conn
	frames chan map[string]any
	closed chan websocket.StatusCode
	seen   map[string]bool // message ids shown (a client drops repeats)
	last   int64           // hlc cursor
}

func relayToken(tb testing.TB, n *node.Node, user string) string {
	tb.Helper()
	var out struct{ Token string }
	if st := postJSON(tb, n.APIURL()+"/v1/relay/tokens", fmt.Sprintf(`{"user":%q}`, user), &out); st != 200 {
		tb.Fatalf("token: status %d", st)
	}
	return out.Token
}

func dialRelay(tb testing.TB, n *node.Node, user string, since int64) *relayClient {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	url := strings.Replace(n.APIURL(), "http://", "ws://", 1) + fmt.Sprintf("/v1/relay/connect?token=%s&since=%d&device=test", relayToken(tb, n, user), since)
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	ws.SetReadLimit(1 << 20)
	c := &relayClient{tb: tb, ws: ws, frames: make(chan map[string]any, 10000), closed: make(chan websocket.StatusCode, 1), seen: map[string]bool{}, last: since}
	go func() {
		for {
			_, b, err := ws.Read(context.Background())
			if err != nil {
				c.closed <- websocket.CloseStatus(err)
				close(c.frames)
				return
			}
			var f map[string]any
			_ = json.Unmarshal(b, &f)
			c.frames <- f
		}
	}()
	tb.Cleanup(func() { ws.CloseNow() })
	c.next("hello")
	return c
}

// next returns the next frame of the given type (others are skipped, except
// messages, which are recorded).
func (c *relayClient) next(typ string) map[string]any {
	c.tb.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				c.tb.Fatalf("connection closed waiting for %s", typ)
			}
			if f["type"] == typ {
				return f
			}
		case <-timeout:
			c.tb.Fatalf("no %s frame within 20s", typ)
		}
	}
}

// messages reads until it has n new messages (repeats are dropped, as the
// demo page does) and returns their bodies' text in arrival order.
func (c *relayClient) messages(n int) []string {
	c.tb.Helper()
	var out []string
	for len(out) < n {
		f := c.next("msg")
		id := f["id"].(string)
		if c.seen[id] {
			continue
		}
		c.seen[id] = true
		c.last = max(c.last, int64(f["hlc"].(float64)))
		body, _ := f["body"].(map[string]any)
		out = append(out, fmt.Sprint(body["text"]))
	}
	return out
}

func (c *relayClient) send(v any) {
	c.tb.Helper()
	b, _ := json.Marshal(v)
	if err := c.ws.Write(context.Background(), websocket.MessageText, b); err != nil {
		c.tb.Fatal(err)
	}
}

func relaySend(tb testing.TB, n *node.Node, token, body string) (int, map[string]any) {
	tb.Helper()
	req, _ := http.NewRequest("POST", n.APIURL()+"/v1/relay/send", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &out); err != nil {
		tb.Fatalf("%s: %v", b, err)
	}
	return resp.StatusCode, out
}

func startRelayFleet(tb testing.TB, rc node.RelayConfig) *fleet.Fleet {
	tb.Helper()
	f, err := fleet.Start(context.Background(), tb.TempDir(), fleet.Demo(0), fleet.Options{
		Configure: func(m fleet.Member, c *node.Config) { c.Relay = rc },
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close(context.Background()) })
	return f
}

// waitPresence waits until node n sees user online at want.
func waitPresence(tb testing.TB, n *node.Node, token, user, want string) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		st, out := relaySend(tb, n, token, fmt.Sprintf(`{"to":%q,"id":"probe-%s-%d","body":{"text":"probe"}}`, user, user, i))
		if st != 200 {
			tb.Fatalf("probe: %d %v", st, out)
		}
		for _, o := range out["online"].([]any) {
			if o == want {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.Fatalf("%s never saw %s online at %s", n.Identity.Name, user, want)
}

// TestFleet_RelayAcrossFarms: alice at EDGE01 (farm lhr) and bob at EDGE04
// (farm cdg) chat both ways; the forward goes through the core; receipts
// come back; the metrics count no drops.
func TestFleet_RelayAcrossFarms(t *testing.T) {
	f := startRelayFleet(t, node.RelayConfig{})
	e1, e4 := f.Node("EDGE01"), f.Node("EDGE04")
	bob := dialRelay(t, e4, "bob", 0)
	bob.next("caughtup")
	alice := dialRelay(t, e1, "alice", 0)
	alice.next("caughtup")
	aliceTok := relayToken(t, e1, "alice")
	waitPresence(t, e1, aliceTok, "bob", "EDGE04")
	bob.messages(1) // at least one probe
	fwd := e1.Relay.Stats.Forwarded.Load()

	alice.send(map[string]any{"type": "send", "to": "bob", "id": "a1", "body": map[string]any{"text": "hello bob"}})
	sent := alice.next("sent")
	if sent["id"] != "a1" || sent["msg_id"] == "" {
		t.Fatalf("sent = %v", sent)
	}
	for {
		got := bob.messages(1)
		if got[0] == "hello bob" {
			break
		}
	}
	bob.send(map[string]any{"type": "ack", "id": sent["msg_id"]})
	bob.send(map[string]any{"type": "read", "id": sent["msg_id"]})
	kinds := map[string]bool{}
	for len(kinds) < 2 {
		r := alice.next("receipt")
		if r["msg_id"] == sent["msg_id"] {
			kinds[r["kind"].(string)] = true
		}
	}
	if e1.Relay.Stats.Forwarded.Load() <= fwd {
		t.Errorf("EDGE01 forwarded nothing: the message came only by replication")
	}
	// And back, over HTTP.
	st, out := relaySend(t, e4, relayToken(t, e4, "bob"), `{"to":"alice","id":"b1","body":{"text":"hi alice"}}`)
	if st != 200 {
		t.Fatalf("send: %d %v", st, out)
	}
	if got := alice.messages(1); got[0] != "hi alice" {
		t.Fatalf("alice got %q", got)
	}
	resp, err := http.Get(e1.APIURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"outpost_relay_drops_total 0", `outpost_relay_messages_total{direction="in"}`, "outpost_relay_connections 1", "outpost_relay_forward_seconds_count"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestFleet_RelayOfflineAndMoving: messages sent while bob is offline reach
// him when he connects at another edge, in the sender's order; after a
// move, a since cursor brings only what he missed; retries are one message.
func TestFleet_RelayOfflineAndMoving(t *testing.T) {
	f := startRelayFleet(t, node.RelayConfig{})
	e1 := f.Node("EDGE01")
	tok := relayToken(t, e1, "carol")
	const n = 12
	var want []string
	for i := range n {
		text := fmt.Sprintf("m%02d", i)
		want = append(want, text)
		st, out := relaySend(t, e1, tok, fmt.Sprintf(`{"to":"dave","id":"c%d","body":{"text":%q}}`, i, text))
		if st != 200 {
			t.Fatalf("send %d: %d %v", i, st, out)
		}
		if len(out["online"].([]any)) != 0 {
			t.Fatalf("dave is offline, got online %v", out["online"])
		}
	}
	// A client retry with the same id: the same message, not a second one.
	st, out := relaySend(t, e1, tok, `{"to":"dave","id":"c0","body":{"text":"m00"}}`)
	if st != 200 || out["duplicate"] != true {
		t.Fatalf("retry: %d %v", st, out)
	}
	st, out = relaySend(t, e1, tok, `{"to":"dave","id":"c0","body":{"text":"other"}}`)
	if st != 409 || out["error"].(map[string]any)["code"] != "id_reused" {
		t.Fatalf("reused id: %d %v", st, out)
	}
	// Dave connects at EDGE04 (other farm) once the messages replicated.
	e4 := f.Node("EDGE04")
	waitRows(t, e4, `SELECT count(*) FROM outpost_relay_messages WHERE to_user = 'dave'`, n)
	dave := dialRelay(t, e4, "dave", 0)
	if got := dave.messages(n); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("dave got %v, want %v", got, want)
	}
	dave.next("caughtup")
	cursor := dave.last
	dave.ws.Close(websocket.StatusNormalClosure, "")
	// He moves to EDGE02 with his cursor; carol sends more meanwhile.
	for i := n; i < n+5; i++ {
		relaySend(t, e1, tok, fmt.Sprintf(`{"to":"dave","id":"c%d","body":{"text":"m%02d"}}`, i, i))
	}
	e2 := f.Node("EDGE02")
	waitRows(t, e2, `SELECT count(*) FROM outpost_relay_messages WHERE to_user = 'dave'`, n+5)
	dave2 := dialRelay(t, e2, "dave", cursor)
	dave2.seen = dave.seen
	if got := dave2.messages(5); strings.Join(got, ",") != "m12,m13,m14,m15,m16" {
		t.Fatalf("after the move dave got %v", got)
	}
}

func waitRows(tb testing.TB, n *node.Node, q string, want int64) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if r := rows(tb, n.Store, q); r[0][0].(int64) >= want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Fatalf("%s: %s never reached %d", n.Identity.Name, q, want)
}

// TestFleet_RelayRoomFanOut: a room message reaches every member, forwarded
// once per receiving node (not once per member).
func TestFleet_RelayRoomFanOut(t *testing.T) {
	f := startRelayFleet(t, node.RelayConfig{})
	e1, e3, e4 := f.Node("EDGE01"), f.Node("EDGE03"), f.Node("EDGE04")
	var members []*relayClient
	for _, m := range []struct {
		n    *node.Node
		user string
	}{{e3, "u1"}, {e3, "u2"}, {e3, "u3"}, {e4, "u4"}} {
		c := dialRelay(t, m.n, m.user, 0)
		c.send(map[string]any{"type": "join", "room": "lobby"})
		c.next("joined")
		members = append(members, c)
	}
	tok := relayToken(t, e1, "host")
	for _, u := range []string{"u1", "u4"} {
		at := map[string]string{"u1": "EDGE03", "u4": "EDGE04"}[u]
		waitPresence(t, e1, tok, u, at)
	}
	waitRows(t, e1, `SELECT count(*) FROM outpost_relay_members WHERE room = 'lobby'`, 4)
	// One probe per user found it online and was forwarded: wait for both.
	deadline := time.Now().Add(10 * time.Second)
	for e1.Relay.Stats.Forwarded.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	before := e1.Relay.Stats.Forwarded.Load()
	st, out := relaySend(t, e1, tok, `{"room":"lobby","id":"r1","body":{"text":"welcome"}}`)
	if st != 200 || len(out["online"].([]any)) != 2 {
		t.Fatalf("room send: %d %v (want online at EDGE03 and EDGE04)", st, out)
	}
	for i, c := range members {
		for {
			f := c.next("msg")
			if f["room"] == "lobby" {
				break
			}
			_ = i
		}
	}
	deadline = time.Now().Add(10 * time.Second)
	for e1.Relay.Stats.Forwarded.Load()-before < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := e1.Relay.Stats.Forwarded.Load() - before; got != 2 {
		t.Errorf("EDGE01 forwarded the room message %d times, want 2 (one per receiving node)", got)
	}
}

// TestFleet_RelayPresence: a lease that is not renewed (a killed edge)
// expires; a presence row written by another node than the one it names is
// ignored; a forged forward is refused.
func TestFleet_RelayPresence(t *testing.T) {
	f := startRelayFleet(t, node.RelayConfig{})
	e1, e3, e4 := f.Node("EDGE01"), f.Node("EDGE03"), f.Node("EDGE04")
	put := func(n *node.Node, q string, args ...any) {
		t.Helper()
		_, err := n.Store.Write(context.Background(), func(tx *store.Tx) error {
			_, err := tx.ExecInternal(q, args...)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	const presence = `INSERT INTO outpost_relay_presence (user, node, until) VALUES (?, ?, 1) ON CONFLICT (user, node) DO UPDATE SET until = 1`
	const lease = `INSERT INTO outpost_relay_nodes (node, until) VALUES (?, ?) ON CONFLICT (node) DO UPDATE SET until = excluded.until`
	// EDGE04 marks zed connected, leases itself for 4 s and then dies (no
	// renewal, no withdrawal).
	until := time.Now().Add(4 * time.Second)
	put(e4, presence, "zed", "EDGE04")
	put(e4, lease, "EDGE04", until.UnixMilli())
	// EDGE03 forges a presence row in EDGE04's name, and a lease of EDGE02.
	put(e3, presence, "yan", "EDGE04")
	put(e3, presence, "yan", "EDGE02")
	put(e3, lease, "EDGE02", time.Now().Add(time.Hour).UnixMilli())
	waitRows(t, e1, `SELECT count(*) FROM outpost_relay_presence WHERE user IN ('zed', 'yan')`, 3)
	waitRows(t, e1, `SELECT count(*) FROM outpost_relay_nodes WHERE node IN ('EDGE02', 'EDGE04')`, 2)
	tok := relayToken(t, e1, "x")
	online := func(user string, i int) []any {
		_, out := relaySend(t, e1, tok, fmt.Sprintf(`{"to":%q,"id":"p%d","body":1}`, user, i))
		return out["online"].([]any)
	}
	if got := online("yan", 0); len(got) != 0 {
		t.Errorf("a forged presence row counted: online %v", got)
	}
	if got := online("zed", 1); len(got) != 1 && time.Now().Before(until) {
		t.Errorf("zed's live lease: online %v", got)
	}
	time.Sleep(time.Until(until) + 100*time.Millisecond)
	if got := online("zed", 2); len(got) != 0 {
		t.Errorf("an expired lease counted: online %v", got)
	}
	// EDGE02 forwards a message in EDGE01's name (and a tampered one).
	e2 := f.Node("EDGE02")
	_, m := relaySend(t, e1, tok, `{"to":"zed","id":"p3","body":1}`)
	stored := rows(t, e1.Store, `SELECT id, cid, sender, to_user, room, body, node, hlc, created, sig FROM outpost_relay_messages WHERE id = ?`, m["msg_id"])
	r := stored[0]
	msg := relay.Message{ID: r[0].(string), CID: r[1].(string), From: r[2].(string), To: r[3].(string), Body: json.RawMessage(r[5].(string)),
		Node: r[6].(string), HLC: r[7].(int64), Created: r[8].(int64), Sig: r[9].([]byte)}
	for name, fw := range map[string]relay.Forward{
		"forged_sender":  {Target: "EDGE02", Msgs: []relay.Message{msg}},
		"forged_message": {Target: "EDGE01", Msgs: []relay.Message{func() relay.Message { c := msg; c.Body = json.RawMessage(`2`); c.Node = "EDGE02"; return c }()}},
	} {
		b, _ := json.Marshal(fw)
		_, err := e2.Client.Do(context.Background(), "EDGE01", policy.Call, "POST", node.RelayForwardPath, b)
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

// TestFleet_RelayBadInput: clear errors for bad tokens, oversize bodies,
// malformed requests and frames; an unknown recipient is accepted (kept
// for the retention).
func TestFleet_RelayBadInput(t *testing.T) {
	f := startRelayFleet(t, node.RelayConfig{MaxMessage: 1024})
	e1 := f.Node("EDGE01")
	tok := relayToken(t, e1, "eve")
	cases := []struct {
		name, token, body string
		status            int
		code              string
	}{
		{"no token", "", `{"to":"x","id":"1","body":1}`, 401, "no_token"},
		{"bad token", "ort1.e30.AAAA", `{"to":"x","id":"1","body":1}`, 401, "bad_token"},
		{"tampered token", tok[:len(tok)-4] + "AAAA", `{"to":"x","id":"1","body":1}`, 401, "bad_token"},
		{"oversize", tok, `{"to":"x","id":"1","body":"` + strings.Repeat("a", 2000) + `"}`, 413, "message_too_large"},
		{"oversize request", tok, `{"to":"x","id":"1","body":"` + strings.Repeat("a", 8000) + `"}`, 413, "message_too_large"},
		{"not json", tok, `{"to":`, 400, "bad_json"},
		{"unknown field", tok, `{"to":"x","id":"1","body":1,"x":2}`, 400, "bad_json"},
		{"to and room", tok, `{"to":"x","room":"r","id":"1","body":1}`, 400, "bad_recipient"},
		{"no id", tok, `{"to":"x","body":1}`, 400, "bad_id"},
		{"no body", tok, `{"to":"x","id":"1"}`, 400, "bad_body"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", e1.APIURL()+"/v1/relay/send", strings.NewReader(c.body))
			if c.token != "" {
				req.Header.Set("Authorization", "Bearer "+c.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var out struct {
				Error struct{ Code, Message string }
			}
			_ = json.NewDecoder(resp.Body).Decode(&out)
			if resp.StatusCode != c.status || out.Error.Code != c.code || out.Error.Message == "" {
				t.Errorf("got %d %+v, want %d %s", resp.StatusCode, out.Error, c.status, c.code)
			}
		})
	}
	st, out := relaySend(t, e1, tok, `{"to":"nobody-knows","id":"u1","body":1}`)
	if st != 200 || len(out["online"].([]any)) != 0 {
		t.Errorf("unknown recipient: %d %v", st, out)
	}
	resp, err := http.Get(e1.APIURL() + "/v1/relay/connect?token=nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("connect with a bad token: %d", resp.StatusCode)
	}
	c := dialRelay(t, e1, "eve", 0)
	for _, frame := range []string{`not json`, `{"type":"shout"}`, `{"type":"send","to":"x","id":"1","body":"` + strings.Repeat("a", 2000) + `"}`} {
		if err := c.ws.Write(context.Background(), websocket.MessageText, []byte(frame)); err != nil {
			t.Fatal(err)
		}
		e := c.next("error")
		if e["code"] == "" || e["message"] == "" {
			t.Errorf("%s: error frame %v", frame, e)
		}
	}
}

// TestFleet_RelaySlowConsumer: a client that never reads is closed with
// 4008 once its queue is full; nothing is lost: it gets everything on
// reconnect.
func TestFleet_RelaySlowConsumer(t *testing.T) {
	f := startRelayFleet(t, node.RelayConfig{SendBuffer: 4})
	e1 := f.Node("EDGE01")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	url := strings.Replace(e1.APIURL(), "http://", "ws://", 1) + "/v1/relay/connect?token=" + relayToken(t, e1, "slow")
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	tok := relayToken(t, e1, "fast")
	big := strings.Repeat("x", 60000)
	sent := 0
	for e1.Relay.Stats.SlowConsumers.Load() == 0 {
		if sent > 2000 {
			t.Fatal("2000 messages and the connection was never closed as slow")
		}
		st, out := relaySend(t, e1, tok, fmt.Sprintf(`{"to":"slow","id":"s%d","body":{"text":%q}}`, sent, big))
		if st != 200 {
			t.Fatalf("send: %d %v", st, out)
		}
		sent++
	}
	// Reconnect and read everything. With a 4-frame queue the replay of
	// these 60 KB messages can trip the slow-consumer close again on a
	// loaded host: then resume from the last message seen, as a client
	// does; nothing may be missing.
	seen, last := map[string]bool{}, int64(0)
	for attempt := 0; len(seen) < sent; attempt++ {
		if attempt > 20 {
			t.Fatalf("got %d of %d after %d reconnects", len(seen), sent, attempt)
		}
		c := dialRelay(t, e1, "slow", last)
		deadline := time.After(20 * time.Second)
	read:
		for len(seen) < sent {
			select {
			case f, ok := <-c.frames:
				if !ok {
					break read // closed as slow again: resume
				}
				if f["type"] != "msg" {
					continue
				}
				seen[f["id"].(string)] = true
				last = max(last, int64(f["hlc"].(float64)))
			case <-deadline:
				t.Fatalf("got %d of %d: no message within 20s", len(seen), sent)
			}
		}
		c.ws.CloseNow()
	}
}

// TestFleet_RelayReplicationPath: a message that is never forwarded (as
// when the sender's edge does not see the recipient's presence yet, or
// every forward failed) still reaches the connected recipient: it
// replicates, and the recipient's edge pushes what arrives in its store.
func TestFleet_RelayReplicationPath(t *testing.T) {
	f := startRelayFleet(t, node.RelayConfig{})
	e1, e4 := f.Node("EDGE01"), f.Node("EDGE04")
	kim := dialRelay(t, e4, "kim", 0)
	kim.next("caughtup")
	// Stored at EDGE01 the way Send stores it, but not dispatched.
	_, err := e1.Store.Write(context.Background(), func(tx *store.Tx) error {
		_, err := tx.ExecInternal(`INSERT INTO outpost_relay_messages (id, cid, sender, to_user, body, node, hlc, created) VALUES (?, 'k1', 'lee', 'kim', '{"text":"by replication"}', 'EDGE01', ?, ?)`,
			e1.Store.ID(), int64(tx.HLC()), time.Now().UnixMilli())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if got := kim.messages(1); got[0] != "by replication" {
		t.Fatalf("kim got %q", got)
	}
	t.Logf("delivered by replication in %v", time.Since(start))
}

// TestFleet_RelaySenderEdgeRestart: the sender's edge goes down right after
// acknowledging (and comes back); the recipient, who connects at another
// farm's edge, gets every acknowledged message once, in order. (A kill -9
// after the ack is the store's guarantee: the ack follows the fsync; see
// the e2e kill tests.)
func TestFleet_RelaySenderEdgeRestart(t *testing.T) {
	f := startRelayFleet(t, node.RelayConfig{})
	e1 := f.Node("EDGE01")
	tok := relayToken(t, e1, "ann")
	var want []string
	for i := range 5 {
		text := fmt.Sprintf("r%d", i)
		if st, out := relaySend(t, e1, tok, fmt.Sprintf(`{"to":"ben","id":"r%d","body":{"text":%q}}`, i, text)); st != 200 {
			t.Fatalf("send: %d %v", st, out)
		}
		want = append(want, text)
	}
	if _, err := f.Restart(context.Background(), "EDGE01", nil); err != nil {
		t.Fatal(err)
	}
	e4 := f.Node("EDGE04")
	waitRows(t, e4, `SELECT count(*) FROM outpost_relay_messages WHERE to_user = 'ben'`, 5)
	ben := dialRelay(t, e4, "ben", 0)
	if got := ben.messages(5); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("ben got %v, want %v", got, want)
	}
	ben.next("caughtup")
}

// TestFleet_RelayRetryAtTwoEdges: a client that sends the same message
// (same client id) at EDGE01 and, as a retry, at EDGE04 before either row
// replicated gets one msg_id from both; replication merges the two rows
// into one version at every node (a valid signed message), and the
// recipient gets one message.
func TestFleet_RelayRetryAtTwoEdges(t *testing.T) {
	f := startRelayFleet(t, node.RelayConfig{})
	e1, e4 := f.Node("EDGE01"), f.Node("EDGE04")
	eli := dialRelay(t, f.Node("EDGE02"), "eli", 0)
	eli.next("caughtup")
	want := relay.MessageID("fay", "dup-1")
	req := relay.SendRequest{To: "eli", ID: "dup-1", Body: json.RawMessage(`{"text":"once"}`)}
	answers := make(chan string, 2)
	for _, n := range []*node.Node{e1, e4} {
		go func() {
			s, err := n.Relay.Send(context.Background(), "fay", req)
			if err != nil {
				answers <- err.Error()
				return
			}
			answers <- s.MsgID
		}()
	}
	for range 2 {
		if got := <-answers; got != want {
			t.Fatalf("msg_id %q, want %q at both edges", got, want)
		}
	}
	// Every node ends with the same version of the one row (the later
	// send's: last writer wins, column by column, and each row's columns
	// were written together).
	deadline := time.Now().Add(30 * time.Second)
	for {
		versions := map[string][]string{}
		for _, n := range f.Nodes {
			r := rows(t, n.Store, `SELECT count(*), coalesce(max(id), ''), coalesce(max(node || '/' || hlc), '') FROM outpost_relay_messages WHERE sender = 'fay' AND cid = 'dup-1'`)
			if r[0][0].(int64) == 1 && r[0][1] != want {
				t.Fatalf("%s: id %v", n.Identity.Name, r[0][1])
			}
			v := fmt.Sprint(r[0][0], " ", r[0][2])
			versions[v] = append(versions[v], n.Identity.Name)
		}
		if len(versions) == 1 && len(versions[fmt.Sprint(1, " ", r0version(versions))]) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the nodes hold %v, want one version", versions)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The merged row is a valid message: EDGE02 verifies its signature.
	r := rows(t, f.Node("EDGE02").Store, `SELECT id, cid, sender, to_user, room, body, node, hlc, created, sig FROM outpost_relay_messages WHERE id = ?`, want)[0]
	m := relay.Message{ID: r[0].(string), CID: r[1].(string), From: r[2].(string), To: r[3].(string), Room: r[4].(string), Body: json.RawMessage(r[5].(string)),
		Node: r[6].(string), HLC: r[7].(int64), Created: r[8].(int64), Sig: r[9].([]byte)}
	if _, err := f.Node("EDGE02").Relay.HandleForward(context.Background(), m.Node, false, relay.Forward{Target: "EDGE02", Msgs: []relay.Message{m}}); err != nil {
		t.Fatalf("the merged row does not verify: %v", err)
	}
	if got := eli.messages(1); got[0] != "once" {
		t.Fatalf("eli got %q", got)
	}
	// Nothing else for eli: a fresh device replays one message.
	again := dialRelay(t, f.Node("EDGE03"), "eli", 0)
	var ids []any
	for fr := range again.frames {
		if fr["type"] == "msg" {
			ids = append(ids, fr["id"])
		}
		if fr["type"] == "caughtup" {
			break
		}
	}
	if len(ids) != 1 || ids[0] != want {
		t.Fatalf("replay: messages %v, want [%s]", ids, want)
	}
}

// r0version returns the version of the first "count version" key.
func r0version(m map[string][]string) string {
	for k := range m {
		_, v, _ := strings.Cut(k, " ")
		return v
	}
	return ""
}

// untilCaughtUp returns the frames before the replay's end.
func (c *relayClient) untilCaughtUp() (frames []map[string]any, cursor int64) {
	c.tb.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				c.tb.Fatal("connection closed during the replay")
			}
			if f["type"] == "caughtup" {
				return frames, int64(f["cursor"].(float64))
			}
			frames = append(frames, f)
		case <-timeout:
			c.tb.Fatal("no caughtup within 20s")
		}
	}
}

// TestFleet_RelayReceiptsReplayed: receipts that arrive while the sender is
// away are replayed when the sender reconnects (at another edge), with an
// hlc, once each; and a receipt that reached a node before its message is
// pushed to the sender connected there when the message arrives.
func TestFleet_RelayReceiptsReplayed(t *testing.T) {
	f := startRelayFleet(t, node.RelayConfig{})
	e1, e2, e3, e4 := f.Node("EDGE01"), f.Node("EDGE02"), f.Node("EDGE03"), f.Node("EDGE04")
	bob := dialRelay(t, e4, "bob", 0)
	bob.next("caughtup")
	ann := dialRelay(t, e1, "ann", 0)
	_, cursor := ann.untilCaughtUp()
	var ids []string
	for i := range 3 {
		ann.send(map[string]any{"type": "send", "to": "bob", "id": fmt.Sprintf("a%d", i), "body": map[string]any{"text": i}})
		ids = append(ids, ann.next("sent")["msg_id"].(string))
	}
	ann.ws.Close(websocket.StatusNormalClosure, "")
	// Bob gets them while ann is away and sends both receipts.
	bob.messages(3)
	for _, id := range ids {
		bob.send(map[string]any{"type": "ack", "id": id})
		bob.send(map[string]any{"type": "read", "id": id})
	}
	waitRows(t, e2, `SELECT count(*) FROM outpost_relay_receipts WHERE sender = 'ann'`, 6)
	waitRows(t, e2, `SELECT count(*) FROM outpost_relay_messages WHERE sender = 'ann'`, 3)
	// Ann comes back at EDGE02 with her cursor.
	ann2 := dialRelay(t, e2, "ann", cursor)
	frames, cursor2 := ann2.untilCaughtUp()
	got := map[string]bool{}
	var maxHLC int64
	for _, fr := range frames {
		if fr["type"] != "receipt" {
			continue
		}
		k := fmt.Sprint(fr["msg_id"], "/", fr["user"], "/", fr["kind"], "/", fr["id"])
		if got[k] {
			t.Errorf("receipt %s replayed twice", k)
		}
		got[k] = true
		h, _ := fr["hlc"].(float64)
		if h <= 0 {
			t.Errorf("receipt %s without an hlc: %v", k, fr)
		}
		maxHLC = max(maxHLC, int64(h))
	}
	for i, id := range ids {
		for _, kind := range []string{"delivered", "read"} {
			if k := fmt.Sprintf("%s/bob/%s/a%d", id, kind, i); !got[k] {
				t.Errorf("receipt %s not replayed (got %v)", k, got)
			}
		}
	}
	if cursor2 < maxHLC {
		t.Errorf("caughtup cursor %d is before the last receipt's hlc %d", cursor2, maxHLC)
	}

	// A receipt that reached EDGE03 before its message.
	put := func(q string, args ...any) {
		t.Helper()
		if _, err := e3.Store.Write(context.Background(), func(tx *store.Tx) error {
			_, err := tx.ExecInternal(q, args...)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	gid := relay.MessageID("gus", "g1")
	obs := dialRelay(t, e3, "obs", 0)
	obs.next("caughtup")
	put(`INSERT INTO outpost_relay_receipts (msg, user, kind, sender, cid, at) VALUES (?, 'hal', 'delivered', 'gus', 'g1', ?)`, gid, time.Now().UnixMilli())
	// EDGE03's store watcher has passed the receipt (nobody to push it to)
	// once it pushed two later messages to obs, each in its own round.
	for i := range 2 {
		put(`INSERT INTO outpost_relay_messages (id, cid, sender, to_user, body, node, hlc, created) VALUES (?, ?, 'x', 'obs', '1', 'EDGE03', 1, ?)`,
			fmt.Sprint("obs-", i), fmt.Sprint("o", i), time.Now().UnixMilli())
		obs.messages(1)
	}
	gus := dialRelay(t, e3, "gus", 0)
	if frames, _ := gus.untilCaughtUp(); len(frames) != 0 {
		t.Fatalf("gus replayed %v before his message is here", frames)
	}
	_, err := e3.Store.Write(context.Background(), func(tx *store.Tx) error {
		_, err := tx.ExecInternal(`INSERT INTO outpost_relay_messages (id, cid, sender, to_user, body, node, hlc, created) VALUES (?, 'g1', 'gus', 'hal', '1', 'EDGE01', ?, ?)`,
			gid, int64(tx.HLC()), time.Now().UnixMilli())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if r := gus.next("receipt"); r["msg_id"] != gid || r["user"] != "hal" || r["id"] != "g1" {
		t.Fatalf("gus got %v", r)
	}
}
