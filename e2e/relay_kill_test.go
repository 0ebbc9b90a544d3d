package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Bounds of TestRelay_KillEdges.
const (
	relayOffline     = 500 * time.Millisecond // a recipient whose connection drops stays away this long: what is sent meanwhile comes by its replay
	relayMaxMessages = 600                    // the sender stops here whatever happens
	relaySendEvery   = 40 * time.Millisecond  // the sender's pace: at most 25 messages/s
	relayConverge    = 45 * time.Second       // how long the recipients may take to get every acknowledged message
)

// TestRelay_KillEdges runs the chat relay on one `outpost serve` process per
// node (MASTER01; farm lhr: EDGE01, EDGE02; farm cdg: EDGE03). alice sends
// over HTTP at EDGE01, at a steady pace, alternately to bob (at EDGE03,
// another farm: forwards go through the core) and carol (at EDGE02, the same
// farm); a send that fails is retried with the same client id at EDGE02,
// as a client that fails over does. Mid-stream the test SIGKILLs bob's edge
// (he reconnects at EDGE02 with his since cursor, and moves back once it is
// up again) and, right after an acknowledgement, alice's edge (restarted a
// second later). Then every message that got a 200 reaches its recipient;
// no message reaches a recipient under two IDs (a retry at another edge is
// the same message); each recipient's messages ordered by hlc, which is the
// order every replay gives, are in alice's order; and a new device of each
// recipient, connected at MASTER01 from the beginning, replays each
// message once, in that order.
func TestRelay_KillEdges(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process relay test; skipped with -short")
	}
	bin := outpostBinary(t)
	dir := t.TempDir()
	nodes := []*syncNode{
		{name: "MASTER01", role: "master", location: "FRA", code: "01ma"},
		{name: "EDGE01", role: "edge", farm: "lhr", location: "LHR", code: "43ax"},
		{name: "EDGE02", role: "edge", farm: "lhr", location: "LHR", code: "44bx"},
		{name: "EDGE03", role: "edge", farm: "cdg", location: "CDG", code: "51cy"},
	}
	byName, schemaFile, trustFile := layoutSyncFleet(t, bin, dir, "CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL);\n", nodes)
	defer func() {
		if t.Failed() {
			for _, n := range nodes {
				t.Logf("=== %s log (last 40 lines):\n%s", n.name, tailLines(n.log.String(), 40))
			}
		}
	}()
	for _, n := range nodes {
		startSyncNode(t, bin, n, schemaFile, trustFile)
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	// Tokens are valid fleet-wide: MASTER01 (never killed) issues them.
	token := func(user string) string {
		var out struct{ Token string }
		st, body := relayPost(t, hc, byName["MASTER01"].url+"/v1/relay/tokens", "", fmt.Sprintf(`{"user":%q}`, user), &out)
		if st != 200 || out.Token == "" {
			t.Fatalf("token for %s: %d %s", user, st, body)
		}
		return out.Token
	}
	urlOf := func(name string) string { return byName[name].url }

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	stopAll := sync.OnceFunc(func() { cancel(); wg.Wait() })
	defer stopAll()

	bob := &relayDevice{user: "bob", token: token("bob"), edges: []string{urlOf("EDGE03"), urlOf("EDGE02")}, ack: true}
	carol := &relayDevice{user: "carol", token: token("carol"), edges: []string{urlOf("EDGE02"), urlOf("EDGE01")}, ack: true}
	aliceToken := token("alice")
	// alice's own device, at her edge, gets the receipts (replayed after
	// the kill of EDGE01, when it reconnects at EDGE02 with its cursor).
	aliceDev := &relayDevice{user: "alice", token: aliceToken, edges: []string{urlOf("EDGE01"), urlOf("EDGE02")}}
	for _, d := range []*relayDevice{bob, carol, aliceDev} {
		d.init()
		wg.Add(1)
		go func() { defer wg.Done(); d.run(ctx) }()
	}
	for _, d := range []*relayDevice{bob, carol, aliceDev} {
		if !waitFor(30*time.Second, func() bool { return d.caughtUps.Load() > 0 }) {
			t.Fatalf("%s never connected: %s", d.user, d.lastErr())
		}
	}

	// alice: one message at a time, each retried with its client id until
	// a node acknowledges it (EDGE01 first, else EDGE02).
	alice := &relaySender{token: aliceToken, edges: []string{urlOf("EDGE01"), urlOf("EDGE02")}, hc: hc}
	stopSend := make(chan struct{})
	var sendDone sync.WaitGroup
	sendDone.Add(1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer sendDone.Done()
		alice.run(ctx, stopSend)
	}()
	stopSender := sync.OnceFunc(func() { close(stopSend); sendDone.Wait() })
	defer stopSender()
	waitAcks := func(n int64) {
		t.Helper()
		// Polled every 2 ms: a kill that follows lands right after an
		// acknowledgement (the next send, at the pace's next tick, finds
		// EDGE01 gone and is retried at EDGE02).
		if !waitEvery(60*time.Second, 2*time.Millisecond, func() bool { return alice.acked.Load() >= n || alice.done.Load() }) || alice.acked.Load() < n {
			t.Fatalf("alice has %d acknowledgements, waited for %d", alice.acked.Load(), n)
		}
	}

	// The recipient's edge (another farm) dies mid-stream; bob reconnects
	// at EDGE02 with his cursor, and moves back once EDGE03 is up.
	waitAcks(30)
	byName["EDGE03"].p.kill()
	t.Logf("killed EDGE03 after %d acks", alice.acked.Load())
	time.Sleep(time.Second)
	startSyncNode(t, bin, byName["EDGE03"], schemaFile, trustFile)
	bob.move()
	// The sender's edge dies right after an acknowledgement.
	waitAcks(alice.acked.Load() + 20)
	byName["EDGE01"].p.kill()
	t.Logf("killed EDGE01 after %d acks", alice.acked.Load())
	time.Sleep(time.Second)
	startSyncNode(t, bin, byName["EDGE01"], schemaFile, trustFile)
	waitAcks(alice.acked.Load() + 30)
	stopSender()

	acked := alice.ackedByUser()
	var ackedIDs []string
	for _, u := range []string{"bob", "carol"} {
		for _, cid := range acked[u] {
			ackedIDs = append(ackedIDs, alice.msgID(cid))
		}
	}
	start := time.Now()
	converged := waitFor(relayConverge, func() bool {
		return bob.hasAll(acked["bob"]) && carol.hasAll(acked["carol"]) && len(aliceDev.missingReceipts(ackedIDs)) == 0
	})
	t.Logf("converged in %v after the sender stopped", time.Since(start).Round(time.Millisecond))
	cancel()
	wg.Wait()
	t.Logf("alice: %d acknowledged (%d retried at another node, %d sends failed at a node), her device %d connections, %d repeated receipts dropped; bob: %d connections, %d repeats dropped; carol: %d connections, %d repeats dropped",
		alice.acked.Load(), alice.failovers.Load(), alice.failures.Load(), aliceDev.connects.Load(), aliceDev.repeats.Load(),
		bob.connects.Load(), bob.repeats.Load(), carol.connects.Load(), carol.repeats.Load())
	if missing := aliceDev.missingReceipts(ackedIDs); len(missing) > 0 {
		t.Errorf("alice lacks the delivered receipts of %d acknowledged messages after %v, e.g. %v (last error: %s)", len(missing), relayConverge, missing[:min(5, len(missing))], aliceDev.lastErr())
	}
	for _, d := range []*relayDevice{bob, carol} {
		if !converged {
			if missing := d.missing(acked[d.user]); len(missing) > 0 {
				t.Errorf("%s lacks %d acknowledged messages after %v, e.g. %v (last error: %s)", d.user, len(missing), relayConverge, missing[:min(5, len(missing))], d.lastErr())
			}
		}
		d.check(t, alice)
	}

	// A new device of each recipient, at MASTER01 (which every row reached),
	// replays from the beginning: each message once, in alice's order.
	for _, d := range []*relayDevice{bob, carol} {
		fresh := &relayDevice{user: d.user, token: d.token, edges: []string{urlOf("MASTER01")}, device: "fresh"}
		fresh.init()
		// MASTER01 may still be pulling from the restarted EDGE01 (the live
		// forwards went through it without its store): replay until it
		// has every acknowledged message.
		var msgs []relayMsg
		var err error
		replays := 0
		waitFor(30*time.Second, func() bool {
			replays++
			rctx, rcancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer rcancel()
			if msgs, err = fresh.replayOnce(rctx); err != nil {
				return false
			}
			have := map[string]bool{}
			for _, m := range msgs {
				have[m.ID] = true
			}
			for _, cid := range acked[d.user] {
				if !have[alice.msgID(cid)] {
					return false
				}
			}
			return true
		})
		if err != nil {
			t.Fatalf("%s replay at MASTER01: %v", d.user, err)
		}
		t.Logf("%s: a new device at MASTER01 replayed %d messages (%d attempts)", d.user, len(msgs), replays)
		var seqs []int
		ids := map[string]bool{}
		for _, m := range msgs {
			if ids[m.ID] {
				t.Errorf("%s replay: %s twice", d.user, m.ID)
			}
			ids[m.ID] = true
			seqs = append(seqs, m.seq)
		}
		for i := 1; i < len(seqs); i++ {
			if seqs[i] <= seqs[i-1] {
				t.Errorf("%s replay is not in alice's order: %v", d.user, seqs)
				break
			}
		}
		for _, cid := range acked[d.user] {
			if !ids[alice.msgID(cid)] {
				t.Errorf("%s replay lacks acknowledged %s", d.user, cid)
			}
		}
		if len(msgs) != len(ids) || len(msgs) < len(acked[d.user]) {
			t.Errorf("%s replay: %d messages, %d distinct, %d acknowledged", d.user, len(msgs), len(ids), len(acked[d.user]))
		}
	}
	// No node counts a lost message.
	for _, n := range nodes {
		resp, err := hc.Get(n.url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Contains(b, []byte("outpost_relay_drops_total 0")) {
			t.Errorf("%s: outpost_relay_drops_total is not 0", n.name)
		}
	}
}

// waitFor polls cond every 50 ms until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	return waitEvery(timeout, 50*time.Millisecond, cond)
}

// waitEvery polls cond every interval until it holds or timeout passes.
func waitEvery(timeout, every time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(every)
	}
}

// relayPost posts a JSON body (with a bearer token, if any) and decodes
// the answer into out.
func relayPost(t *testing.T, hc *http.Client, url, token, body string, out any) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, out)
	return resp.StatusCode, string(b)
}

// relaySender is alice: it sends one message at a time and retries it, with
// the same client id, at each of its edges in turn until one answers 200.
type relaySender struct {
	token string
	edges []string
	hc    *http.Client

	acked     atomic.Int64
	failovers atomic.Int64 // messages acknowledged by another edge than the first tried
	failures  atomic.Int64 // send attempts that failed (node down, killed mid-request)
	done      atomic.Bool  // stopped at relayMaxMessages

	mu      sync.Mutex
	to      map[string]string // cid -> recipient, of every message attempted
	ids     map[string]string // cid -> msg_id acknowledged
	ackList map[string][]string
}

func (s *relaySender) run(ctx context.Context, stop <-chan struct{}) {
	s.mu.Lock()
	s.to, s.ids, s.ackList = map[string]string{}, map[string]string{}, map[string][]string{}
	s.mu.Unlock()
	tick := time.NewTicker(relaySendEvery)
	defer tick.Stop()
	for i := 0; i < relayMaxMessages; i++ {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		to := []string{"bob", "carol"}[i%2]
		cid := fmt.Sprintf("a-%04d", i)
		body := fmt.Sprintf(`{"to":%q,"id":%q,"body":{"seq":%d}}`, to, cid, i)
		s.mu.Lock()
		s.to[cid] = to
		s.mu.Unlock()
		for attempt := 0; ; attempt++ {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			default:
			}
			url := s.edges[attempt%len(s.edges)]
			if id, ok := s.post(ctx, url, body); ok {
				s.mu.Lock()
				s.ids[cid] = id
				s.ackList[to] = append(s.ackList[to], cid)
				s.mu.Unlock()
				s.acked.Add(1)
				if attempt > 0 && attempt%len(s.edges) != 0 {
					s.failovers.Add(1)
				}
				break
			}
			s.failures.Add(1)
			if attempt%len(s.edges) == len(s.edges)-1 {
				select { // every edge failed this round
				case <-time.After(100 * time.Millisecond):
				case <-stop:
					return
				case <-ctx.Done():
					return
				}
			}
		}
	}
	s.done.Store(true)
}

func (s *relaySender) post(ctx context.Context, url, body string) (string, bool) {
	req, _ := http.NewRequestWithContext(ctx, "POST", url+"/v1/relay/send", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := s.hc.Do(req)
	if err != nil {
		return "", false
	}
	defer resp.Body.Close()
	var out struct {
		MsgID string `json:"msg_id"`
	}
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&out) != nil || out.MsgID == "" {
		return "", false
	}
	return out.MsgID, true
}

// ackedByUser returns the acknowledged client ids per recipient, in send
// order.
func (s *relaySender) ackedByUser() map[string][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]string{}
	for u, l := range s.ackList {
		out[u] = slices.Clone(l)
	}
	return out
}

// msgID returns the msg_id the send of cid was acknowledged with.
func (s *relaySender) msgID(cid string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ids[cid]
}

func (s *relaySender) recipient(cid string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.to[cid]
}

// relayDevice is one device of a recipient: it stays connected, trying its
// edges in order, reconnects with its since cursor when the connection
// drops, and drops repeats by message ID, as the demo page does.
type relayDevice struct {
	user, token, device string
	edges               []string
	ack                 bool // send a delivered receipt for every message frame (repeats too: the node keeps one)

	connects  atomic.Int64
	caughtUps atomic.Int64
	repeats   atomic.Int64

	mu      sync.Mutex
	ws      *websocket.Conn
	cursor  int64
	got     map[string]relayMsg // by message ID
	byCID   map[string][]string // client id -> message IDs it came under
	arrival []string            // message IDs in the order first received
	rcpts   map[string]bool     // delivered receipts got, by message ID
	err     string
}

type relayMsg struct {
	ID, CID, From string
	seq           int
	hlc           int64
}

func (d *relayDevice) init() {
	if d.device == "" {
		d.device = "phone"
	}
	d.got, d.byCID, d.rcpts = map[string]relayMsg{}, map[string][]string{}, map[string]bool{}
}

func (d *relayDevice) lastErr() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

// dial connects at the first edge that answers.
func (d *relayDevice) dial(ctx context.Context) (*websocket.Conn, error) {
	d.mu.Lock()
	since := d.cursor
	d.mu.Unlock()
	var last error
	for _, base := range d.edges {
		dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		url := strings.Replace(base, "http://", "ws://", 1) + fmt.Sprintf("/v1/relay/connect?token=%s&since=%d&device=%s", d.token, since, d.device)
		ws, _, err := websocket.Dial(dctx, url, nil)
		cancel()
		if err == nil {
			ws.SetReadLimit(1 << 20)
			return ws, nil
		}
		last = err
	}
	return nil, last
}

// run keeps the device connected until ctx ends.
func (d *relayDevice) run(ctx context.Context) {
	for ctx.Err() == nil {
		ws, err := d.dial(ctx)
		if err != nil {
			d.mu.Lock()
			d.err = err.Error()
			d.mu.Unlock()
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
			}
			continue
		}
		d.connects.Add(1)
		d.mu.Lock()
		d.ws = ws
		d.mu.Unlock()
		err = d.read(ctx, ws)
		ws.CloseNow()
		d.mu.Lock()
		d.ws = nil
		if err != nil && ctx.Err() == nil {
			d.err = err.Error()
		}
		d.mu.Unlock()
		select {
		case <-time.After(relayOffline):
		case <-ctx.Done():
		}
	}
}

// move closes the current connection: the device reconnects from the first
// of its edges.
func (d *relayDevice) move() {
	d.mu.Lock()
	ws := d.ws
	d.mu.Unlock()
	if ws != nil {
		ws.CloseNow()
	}
}

func (d *relayDevice) read(ctx context.Context, ws *websocket.Conn) error {
	for {
		_, b, err := ws.Read(ctx)
		if err != nil {
			return err
		}
		var f struct {
			Type  string          `json:"type"`
			ID    string          `json:"id"`
			CID   string          `json:"cid"`
			From  string          `json:"from"`
			HLC   int64           `json:"hlc"`
			Body  json.RawMessage `json:"body"`
			MsgID string          `json:"msg_id"`
			Kind  string          `json:"kind"`
		}
		if err := json.Unmarshal(b, &f); err != nil {
			return fmt.Errorf("bad frame %q: %v", b, err)
		}
		switch f.Type {
		case "caughtup":
			d.caughtUps.Add(1)
		case "receipt":
			d.mu.Lock()
			d.cursor = max(d.cursor, f.HLC)
			if f.Kind == "delivered" {
				if d.rcpts[f.MsgID] {
					d.repeats.Add(1)
				}
				d.rcpts[f.MsgID] = true
			}
			d.mu.Unlock()
		case "msg":
			if d.ack {
				if err := ws.Write(ctx, websocket.MessageText, []byte(`{"type":"ack","id":"`+f.ID+`"}`)); err != nil {
					return err
				}
			}
			var body struct{ Seq int }
			_ = json.Unmarshal(f.Body, &body)
			d.mu.Lock()
			d.cursor = max(d.cursor, f.HLC)
			if _, ok := d.got[f.ID]; ok {
				d.repeats.Add(1)
			} else {
				d.got[f.ID] = relayMsg{ID: f.ID, CID: f.CID, From: f.From, seq: body.Seq, hlc: f.HLC}
				d.byCID[f.From+"/"+f.CID] = append(d.byCID[f.From+"/"+f.CID], f.ID)
				d.arrival = append(d.arrival, f.ID)
			}
			d.mu.Unlock()
		}
	}
}

// replayOnce connects, collects the replay until caughtup and closes.
func (d *relayDevice) replayOnce(ctx context.Context) ([]relayMsg, error) {
	ws, err := d.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer ws.CloseNow()
	var out []relayMsg
	for {
		_, b, err := ws.Read(ctx)
		if err != nil {
			return nil, err
		}
		var f struct {
			Type string          `json:"type"`
			ID   string          `json:"id"`
			CID  string          `json:"cid"`
			From string          `json:"from"`
			HLC  int64           `json:"hlc"`
			Body json.RawMessage `json:"body"`
		}
		if err := json.Unmarshal(b, &f); err != nil {
			return nil, err
		}
		switch f.Type {
		case "caughtup":
			return out, nil
		case "msg":
			var body struct{ Seq int }
			_ = json.Unmarshal(f.Body, &body)
			out = append(out, relayMsg{ID: f.ID, CID: f.CID, From: f.From, seq: body.Seq, hlc: f.HLC})
		}
	}
}

func (d *relayDevice) missing(cids []string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, cid := range cids {
		if len(d.byCID["alice/"+cid]) == 0 {
			out = append(out, cid)
		}
	}
	return out
}

func (d *relayDevice) hasAll(cids []string) bool { return len(d.missing(cids)) == 0 }

// missingReceipts returns the msg_ids of ids without a delivered receipt.
func (d *relayDevice) missingReceipts(ids []string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, id := range ids {
		if !d.rcpts[id] {
			out = append(out, id)
		}
	}
	return out
}

// check asserts what the device showed: each (sender, client id) under one
// message ID, only messages for this user, and in alice's order once
// ordered by hlc (the replay order). It logs how many arrived live out of
// that order (a message stranded on the killed sender's edge arrives when
// it is back, after later ones sent at the other edge).
func (d *relayDevice) check(t *testing.T, s *relaySender) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	for key, ids := range d.byCID {
		if len(ids) > 1 {
			t.Errorf("%s: message %s shown under %d IDs %v", d.user, key, len(ids), ids)
		}
	}
	var msgs []relayMsg
	for _, m := range d.got {
		if m.From != "alice" || s.recipient(m.CID) != d.user {
			t.Errorf("%s got a message not for it: %+v", d.user, m)
			continue
		}
		if id := s.msgID(m.CID); id != "" && id != m.ID {
			t.Errorf("%s: %s came as %s, acknowledged as %s", d.user, m.CID, m.ID, id)
		}
		msgs = append(msgs, m)
	}
	sort.Slice(msgs, func(i, j int) bool {
		if msgs[i].hlc != msgs[j].hlc {
			return msgs[i].hlc < msgs[j].hlc
		}
		return msgs[i].ID < msgs[j].ID
	})
	for i := 1; i < len(msgs); i++ {
		if msgs[i].seq <= msgs[i-1].seq {
			t.Errorf("%s: by hlc, %s (seq %d) comes after %s (seq %d)", d.user, msgs[i].CID, msgs[i].seq, msgs[i-1].CID, msgs[i-1].seq)
		}
	}
	late, hi := 0, -1
	for _, id := range d.arrival {
		if m := d.got[id]; m.seq < hi {
			late++
		} else {
			hi = m.seq
		}
	}
	t.Logf("%s: %d messages, %d arrived live after a later one", d.user, len(d.got), late)
}
