package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"sort"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/admission"
	"github.com/outpost-edge/outpost/peer"
	"github.com/outpost-edge/outpost/policy"
	"github.com/outpost-edge/outpost/relay"
	"github.com/prometheus/client_golang/prometheus"
)

// RelayForwardPath is the peer route of the chat relay's forwards (a call).
const RelayForwardPath = "/relay/v1/forward"

// RelayConfig tunes the chat relay; zero fields take relay's defaults.
type RelayConfig struct {
	Retention  time.Duration // --relay-retention
	Lease      time.Duration // --relay-lease
	MaxMessage int           // --relay-max-message
	MaxConns   int           // --relay-max-conns
	SendBuffer int           // frames queued per connection before it is closed as slow
}

// openRelay builds the chat relay: client routes on the API listener
// (Relay.Handler, also for the public listener), the token route behind the
// API token, the forward route on the peer listener, metrics.
func (n *Node) openRelay(ctx context.Context) error {
	rc := n.cfg.Relay
	cfg := relay.Config{
		Self: n.Identity.Name, Core: n.Identity.Role != outpost.RoleEdge,
		DB: n.Store, Keys: admission.Keys{Self: n.Identity.Name, Key: n.Key, Trust: trustDir(n.Trust)},
		Retention: rc.Retention, Lease: rc.Lease, MaxMessage: rc.MaxMessage, MaxConns: rc.MaxConns, SendBuffer: rc.SendBuffer,
		OnForward: n.metrics.relayForward(),
		Logger:    n.log.With("component", "relay"),
	}
	if n.Client != nil {
		cfg.Transport = &relayTransport{n: n}
	}
	n.Relay = relay.New(cfg)
	h := n.Relay.Handler()
	n.API.Handle("GET /v1/relay/connect", h)
	n.API.Handle("POST /v1/relay/send", h)
	n.API.Handle("POST /v1/relay/rooms", h)
	n.API.Handle("GET /chat/", h)
	n.API.HandleAuth("POST /v1/relay/tokens", n.Relay.ServeTokens)
	n.metrics.reg.MustRegister(&relayCollector{r: n.Relay})
	if n.Peers != nil {
		n.Peers.Handle("POST "+RelayForwardPath, policy.Call, http.HandlerFunc(n.serveRelayForward))
	}
	return n.Relay.Start(ctx)
}

func (n *Node) closeRelay() {
	if n.Relay != nil {
		n.Relay.Close()
	}
}

// serveRelayForward serves a forward from an authenticated peer.
func (n *Node) serveRelayForward(w http.ResponseWriter, r *http.Request) {
	p, ok := peer.From(r.Context())
	if !ok {
		peer.WriteError(w, http.StatusUnauthorized, "no_peer", "unauthenticated")
		return
	}
	// JSON escaping can double a body; signatures and headers add ~1 KiB.
	limit := int64(2*(relay.MaxForwardBytes+n.relayMaxMessage()) + relay.MaxForwardMessages*2<<10)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		n.Peers.Refusals.Add("relay", "body_too_large")
		peer.WriteError(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("a relay forward is at most %d bytes", limit))
		return
	}
	var f relay.Forward
	if err := json.Unmarshal(body, &f); err != nil {
		n.Peers.Refusals.Add("relay", "bad_request")
		peer.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	rep, err := n.Relay.HandleForward(r.Context(), p.Name, p.Role != outpost.RoleEdge, f)
	var re *relay.Error
	switch {
	case errors.As(err, &re):
		if re.Status == http.StatusForbidden {
			n.Peers.Refusals.Add("relay", re.Code)
			n.log.Warn("relay: refused a peer forward", "peer", p.Name, "code", re.Code, "err", re.Message)
		}
		peer.WriteError(w, re.Status, re.Code, re.Message)
		return
	case err != nil:
		peer.WriteError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	b, _ := json.Marshal(rep)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

func (n *Node) relayMaxMessage() int {
	if n.cfg.Relay.MaxMessage > 0 {
		return n.cfg.Relay.MaxMessage
	}
	return relay.DefaultMaxMessage
}

// relayTransport carries forwards over the peer transport, through a core
// node when the policy forbids a direct call (edges of different farms).
type relayTransport struct{ n *Node }

func (t *relayTransport) Route(target string) (string, bool) {
	c := t.n.Client
	if _, err := c.Check(target, policy.Call); err == nil {
		return target, true
	}
	var cores []string
	for _, p := range t.n.Trust.List().Others() {
		if p.Role != outpost.RoleEdge && p.Addr != "" {
			cores = append(cores, p.Name)
		}
	}
	if len(cores) == 0 {
		return "", false
	}
	sort.Strings(cores)
	// Spread senders over the core, deterministically per (self, target)
	// so one pair's forwards stay in order on one path.
	h := fnv.New32a()
	h.Write([]byte(t.n.Identity.Name + "\x00" + target))
	start := int(h.Sum32() % uint32(len(cores)))
	for i := range cores {
		via := cores[(start+i)%len(cores)]
		if _, err := c.Check(via, policy.Call); err == nil {
			return via, true
		}
	}
	return "", false
}

func (t *relayTransport) Forward(ctx context.Context, via string, f relay.Forward) (relay.ForwardReply, error) {
	var rep relay.ForwardReply
	b, err := json.Marshal(f)
	if err != nil {
		return rep, err
	}
	resp, err := t.n.Client.Do(ctx, via, policy.Call, http.MethodPost, RelayForwardPath, b)
	if err != nil {
		var se *peer.StatusError
		if errors.As(err, &se) {
			return rep, &relay.Error{Status: se.Status, Code: se.Code, Message: se.Message}
		}
		return rep, fmt.Errorf("relay: forward via %s: %w", via, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&rep); err != nil {
		return rep, fmt.Errorf("relay: forward via %s: answer: %w", via, err)
	}
	return rep, nil
}

// relayForward returns the observer of forward call latency.
func (m *metrics) relayForward() func(time.Duration) {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "outpost_relay_forward_seconds", Help: "Time of chat relay forwards to the recipient's node (through the core when needed), answered.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
	})
	m.reg.MustRegister(h)
	return func(d time.Duration) { h.Observe(d.Seconds()) }
}

var (
	descRelayConns    = prometheus.NewDesc("outpost_relay_connections", "Open chat relay client connections (WebSocket and SSE).", nil, nil)
	descRelayMessages = prometheus.NewDesc("outpost_relay_messages_total", "Chat relay messages by direction: in (accepted from clients, durable), out (frames pushed to connections).", []string{"direction"}, nil)
	descRelayEvents   = prometheus.NewDesc("outpost_relay_events_total", "Chat relay events: duplicates (client retries), redeliveries (suppressed repeats), forwarded, forward_failed (left to replication), refused (forged forwards), slow_consumers, bad_frames.", []string{"event"}, nil)
	descRelayDrops    = prometheus.NewDesc("outpost_relay_drops_total", "Chat relay messages lost on the server side (should stay 0).", nil, nil)
)

// relayCollector reads the relay's counters at scrape time.
type relayCollector struct{ r *relay.Relay }

func (c *relayCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRelayConns, descRelayMessages, descRelayEvents, descRelayDrops} {
		ch <- d
	}
}

func (c *relayCollector) Collect(ch chan<- prometheus.Metric) {
	s := &c.r.Stats
	ch <- prometheus.MustNewConstMetric(descRelayConns, prometheus.GaugeValue, float64(c.r.Connections()))
	ch <- prometheus.MustNewConstMetric(descRelayMessages, prometheus.CounterValue, float64(s.MessagesIn.Load()), "in")
	ch <- prometheus.MustNewConstMetric(descRelayMessages, prometheus.CounterValue, float64(s.MessagesOut.Load()), "out")
	for ev, v := range map[string]int64{"duplicates": s.Duplicates.Load(), "redeliveries": s.Redeliveries.Load(), "forwarded": s.Forwarded.Load(),
		"forward_failed": s.ForwardFailed.Load(), "refused": s.Refused.Load(), "slow_consumers": s.SlowConsumers.Load(), "bad_frames": s.BadFrames.Load()} {
		ch <- prometheus.MustNewConstMetric(descRelayEvents, prometheus.CounterValue, float64(v), ev)
	}
	ch <- prometheus.MustNewConstMetric(descRelayDrops, prometheus.CounterValue, float64(s.Drops.Load()))
}
