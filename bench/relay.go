package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/outpost-edge/outpost/fleet"
	"github.com/outpost-edge/outpost/node"
	"github.com/outpost-edge/outpost/store"
)

// RelayOptions shape `outpost bench --suite relay`.
type RelayOptions struct {
	Rates    []int         // messages per second, EDGE01 -> EDGE04
	Duration time.Duration // per rate
	Conns    int           // idle WebSocket connections on one edge (0 = skip)
	Senders  int           // sending connections at EDGE01
	// Binary, if set, is this outpost binary: the idle connections'
	// clients then run in a child process (`outpost bench --suite
	// relay-clients`), so the memory measured here is the server's alone.
	Binary string
}

// DefaultRelayOptions: 100, 1,000 and 5,000 messages/s for 5 s each, 10,000
// connections.
var DefaultRelayOptions = RelayOptions{Rates: []int{100, 1000, 5000}, Duration: 5 * time.Second, Conns: 10000, Senders: 32}

// RelayResult is one scenario of the relay suite.
type RelayResult struct {
	Scenario   string        `json:"scenario"`
	Rate       int           `json:"rate_per_s,omitempty"`
	Sent       int           `json:"sent"`       // frames the clients sent
	Acked      int           `json:"acked"`      // of which the sender's edge acknowledged (durable) by the end
	Received   int           `json:"received"`   // distinct messages the recipients got
	Lost       int           `json:"lost"`       // acknowledged but never received
	Duplicated int           `json:"duplicated"` // frames a client got twice (before its own dedupe)
	P50        time.Duration `json:"p50_ns"`
	P99        time.Duration `json:"p99_ns"`
	Note       string        `json:"note,omitempty"`
	// Stages splits the latency along the message's path (relay.Stage).
	Stages []StageTimes `json:"stages,omitempty"`
	// ViaReplication counts the messages the recipient's edge queued from
	// its store watcher (the replicated row) before the forward arrived.
	ViaReplication int `json:"via_replication,omitempty"`
}

// benchClient is one WebSocket client of the bench.
type benchClient struct {
	ws  *websocket.Conn
	mu  sync.Mutex
	got map[string]int // message id -> times received
	lat []time.Duration
	// times of each message with a send time in its body (first receipt)
	times map[string]msgTimes
	sent  atomic.Int64 // "sent" acks
	hook  func(f map[string]any)
}

func relayTokenFor(ctx context.Context, api string, user string) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, "POST", api+"/v1/relay/tokens", strings.NewReader(fmt.Sprintf(`{"user":%q}`, user)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Token == "" {
		return "", fmt.Errorf("relay token: %v (status %d)", err, resp.StatusCode)
	}
	return out.Token, nil
}

func dialBench(ctx context.Context, n *node.Node, user string) (*benchClient, error) {
	return dialBenchURL(ctx, n.APIURL(), user)
}

func dialBenchURL(ctx context.Context, api string, user string) (*benchClient, error) {
	tok, err := relayTokenFor(ctx, api, user)
	if err != nil {
		return nil, err
	}
	url := strings.Replace(api, "http://", "ws://", 1) + "/v1/relay/connect?device=bench&token=" + tok
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: &http.Client{Transport: &http.Transport{}}})
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(1 << 20)
	c := &benchClient{ws: ws, got: map[string]int{}, times: map[string]msgTimes{}}
	ready := make(chan struct{})
	go func() {
		var once sync.Once
		for {
			_, b, err := ws.Read(context.Background())
			if err != nil {
				once.Do(func() { close(ready) })
				return
			}
			now := time.Now()
			var f map[string]any
			if json.Unmarshal(b, &f) != nil {
				continue
			}
			switch f["type"] {
			case "caughtup":
				once.Do(func() { close(ready) })
			case "sent":
				c.sent.Add(1)
			case "msg":
				id, _ := f["id"].(string)
				c.mu.Lock()
				c.got[id]++
				if body, ok := f["body"].(map[string]any); ok && c.got[id] == 1 {
					if t0, ok := body["t"].(float64); ok {
						c.lat = append(c.lat, now.Sub(time.Unix(0, int64(t0))))
						c.times[id] = msgTimes{sent: time.Unix(0, int64(t0)), recv: now}
					}
				}
				c.mu.Unlock()
				if c.hook != nil {
					c.hook(f)
				}
			}
		}
	}()
	select {
	case <-ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return c, nil
}

func (c *benchClient) write(ctx context.Context, v any) error {
	b, _ := json.Marshal(v)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ws.Write(ctx, websocket.MessageText, b)
}

func (c *benchClient) counts() (uniq, dups int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range c.got {
		uniq++
		dups += k - 1
	}
	return
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// relayRun sends rate messages/s for d from senders at src to one
// recipient at dst and measures send-to-receipt latency at the client.
func relayRun(ctx context.Context, all []*node.Node, src, dst *node.Node, rate int, d time.Duration, senders int, name string) (RelayResult, error) {
	res := RelayResult{Scenario: name, Rate: rate}
	user := fmt.Sprintf("rcpt-%s-%d", dst.Identity.Name, rate)
	rcpt, err := dialBench(ctx, dst, user)
	if err != nil {
		return res, err
	}
	defer rcpt.ws.CloseNow()
	senders = max(1, min(senders, rate/10))
	var cs []*benchClient
	for i := range senders {
		c, err := dialBench(ctx, src, fmt.Sprintf("sender-%s-%d-%d", dst.Identity.Name, rate, i))
		if err != nil {
			return res, err
		}
		defer c.ws.CloseNow()
		cs = append(cs, c)
	}
	// Wait until the sender's edge routes to the recipient's (presence
	// replicated), so the run measures the live path.
	fwd0 := src.Relay.Stats.Forwarded.Load()
	for i := 0; ; i++ {
		if err := cs[0].write(ctx, map[string]any{"type": "send", "to": user, "id": fmt.Sprintf("warm-%d", i), "body": map[string]any{"warm": true}}); err != nil {
			return res, err
		}
		time.Sleep(100 * time.Millisecond)
		if u, _ := rcpt.counts(); u > 0 && src.Relay.Stats.Forwarded.Load() > fwd0 {
			break
		}
		if i > 600 {
			return res, fmt.Errorf("the recipient got no warm-up message in 60 s (the fleet is still busy with the previous scenario)")
		}
	}
	warm, _ := rcpt.counts()
	acked0 := 0
	for _, c := range cs {
		acked0 += int(c.sent.Load())
	}
	rcpt.mu.Lock()
	rcpt.lat = nil
	rcpt.times = map[string]msgTimes{}
	rcpt.mu.Unlock()
	trace, untrace := newStageTrace(all)
	defer untrace()
	total := int(float64(rate) * d.Seconds())
	interval := time.Duration(float64(time.Second) * float64(senders) / float64(rate))
	var wg sync.WaitGroup
	var sent atomic.Int64
	start := time.Now()
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ; k++ {
				seq := k*senders + i
				if seq >= total {
					return
				}
				at := start.Add(time.Duration(k)*interval + time.Duration(i)*interval/time.Duration(senders))
				time.Sleep(time.Until(at))
				if err := c.write(ctx, map[string]any{"type": "send", "to": user, "id": fmt.Sprintf("m%d", seq), "body": map[string]any{"t": time.Now().UnixNano(), "seq": seq}}); err != nil {
					return
				}
				sent.Add(1)
			}
		}()
	}
	wg.Wait()
	res.Sent = int(sent.Load())
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if u, _ := rcpt.counts(); u-warm >= res.Sent {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Let the last acks and deliveries in flight land before counting.
	time.Sleep(500 * time.Millisecond)
	u, dups := rcpt.counts()
	for _, c := range cs {
		res.Acked += int(c.sent.Load())
	}
	res.Acked -= acked0
	res.Received = u - warm
	// A message the edge acknowledged after the recipient's count was
	// taken is not lost: count it lost only if it was acked and the
	// recipient has fewer than that.
	res.Lost = max(0, res.Acked-res.Received)
	res.Duplicated = dups
	rcpt.mu.Lock()
	res.P50, res.P99 = quantile(rcpt.lat, 0.5), quantile(rcpt.lat, 0.99)
	times := maps.Clone(rcpt.times)
	rcpt.mu.Unlock()
	untrace()
	res.Stages, res.ViaReplication = trace.breakdown(src.Identity.Name, dst.Identity.Name, times)
	st := &src.Relay.Stats
	res.Note = fmt.Sprintf("sender's edge: %d forwarded, %d left to replication; drops %d; slow consumers closed %d", st.Forwarded.Load()-fwd0, st.ForwardFailed.Load(), st.Drops.Load()+dst.Relay.Stats.Drops.Load(), dst.Relay.Stats.SlowConsumers.Load()+st.SlowConsumers.Load())
	return res, nil
}

// relayConns opens n idle connections on one edge, reports memory per
// connection, then sends room messages to all of them.
func relayConns(ctx context.Context, e *node.Node, n int) ([]RelayResult, error) {
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	ic, err := openIdleClients(ctx, n, func(ctx context.Context, user string) (*benchClient, error) { return dialBench(ctx, e, user) })
	if err != nil {
		return nil, err
	}
	defer ic.close()
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	used := int64(after.HeapInuse+after.StackInuse) - int64(before.HeapInuse+before.StackInuse)
	mem := RelayResult{Scenario: fmt.Sprintf("%d idle WebSocket connections on %s", n, e.Identity.Name), Sent: n, Acked: n, Received: e.Relay.Connections(),
		Note: fmt.Sprintf("%.1f KiB per connection, server and client ends together (one process: heap + stacks)", float64(used)/1024/float64(n))}
	// Everyone joins one room.
	_, err = e.Store.Write(ctx, func(tx *store.Tx) error {
		for i := range n {
			if _, err := tx.ExecInternal(`INSERT INTO outpost_relay_members (room, user) VALUES ('all', ?) ON CONFLICT DO NOTHING`, fmt.Sprintf("idle-%d", i)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	const rounds = 5
	for r := range rounds {
		if err := ic.clients[0].write(ctx, map[string]any{"type": "send", "room": "all", "id": fmt.Sprintf("fan-%d", r), "body": map[string]any{"t": time.Now().UnixNano()}}); err != nil {
			return nil, err
		}
		ic.wait(r + 1)
	}
	rep := ic.report(rounds)
	fan := RelayResult{Scenario: fmt.Sprintf("room message fan-out to %d connections on %s", n, e.Identity.Name), Sent: rounds * n, Acked: rounds * n,
		Received: rep.Received, Lost: rep.Lost, Duplicated: rep.Duplicated, P50: rep.P50, P99: rep.P99}
	fan.Note = fmt.Sprintf("%d room messages; latency from send to each client", rounds)
	return []RelayResult{mem, fan}, nil
}

// RelaySuite runs the relay scenarios on the demo fleet in this process
// and writes a Markdown table (or JSON).
func RelaySuite(ctx context.Context, dir string, o RelayOptions, stdout, stderr io.Writer, asJSON bool) error {
	f, err := fleet.Start(ctx, dir, fleet.Demo(0), fleet.Options{})
	if err != nil {
		return err
	}
	defer f.Close(context.Background())
	var results []RelayResult
	add := func(r RelayResult) {
		results = append(results, r)
		if !asJSON {
			fmt.Fprintf(stderr, "  %-58s sent %6d acked %6d lost %d dup %d p50 %-9s p99 %-9s %s\n", r.Scenario, r.Sent, r.Acked, r.Lost, r.Duplicated, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Note)
			if len(r.Stages) > 0 {
				fmt.Fprint(stderr, formatStages(r.Stages, r.ViaReplication))
			}
		}
	}
	e1, e2, e4 := f.Node("EDGE01"), f.Node("EDGE02"), f.Node("EDGE04")
	run := func(dst *node.Node, rate int, name string) {
		r, err := relayRun(ctx, f.Nodes, e1, dst, rate, o.Duration, o.Senders, name)
		if err != nil {
			r = RelayResult{Scenario: name, Rate: rate, Note: "not measured: " + err.Error()}
		}
		add(r)
	}
	// The low rates and the connections first: the high rates saturate
	// the in-process fleet, whose backlog would spill into what follows.
	run(e2, 100, "EDGE01 -> EDGE02 (same farm)")
	run(e4, 100, "EDGE01 -> EDGE04 (other farm, through the core)")
	if o.Conns > 0 {
		conns := relayConns
		if o.Binary != "" {
			conns = func(ctx context.Context, e *node.Node, n int) ([]RelayResult, error) {
				return relayConnsChild(ctx, o.Binary, e, n)
			}
		}
		rs, err := conns(ctx, f.Node("EDGE03"), o.Conns)
		if err != nil {
			return err
		}
		for _, r := range rs {
			add(r)
		}
	}
	for _, rate := range o.Rates {
		if rate != 100 {
			run(e4, rate, "EDGE01 -> EDGE04 (other farm, through the core)")
		}
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(results)
	}
	fmt.Fprintln(stdout, "| scenario | rate/s | sent | acked | received | lost | duplicated | p50 | p99 | note |")
	fmt.Fprintln(stdout, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range results {
		fmt.Fprintf(stdout, "| %s | %d | %d | %d | %d | %d | %d | %s | %s | %s |\n", r.Scenario, r.Rate, r.Sent, r.Acked, r.Received, r.Lost, r.Duplicated, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Note)
	}
	return nil
}
