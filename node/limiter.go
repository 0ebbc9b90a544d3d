package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/limiter"
	"github.com/outpost-edge/outpost/peer"
	"github.com/outpost-edge/outpost/policy"
	"github.com/outpost-edge/outpost/trust"
	"github.com/prometheus/client_golang/prometheus"
)

// Peer routes of the rate limiter; both are calls (policy.Call).
const (
	LimitDecidePath   = "/limit/v1/decide"
	LimitAnnouncePath = "/limit/v1/announce"
	maxLimitCallBody  = 16 << 10
)

// openLimiter builds the global rate limiter: members from the trust list,
// calls over the peer transport, blocks from the replicated
// outpost_limit_blocks table, routes on both listeners and metrics.
func (n *Node) openLimiter() {
	blocks := limiter.NewBlockSet()
	n.Limiter = limiter.New(limiter.Config{
		Self:      n.Identity.Name,
		Members:   n.limitMembers(),
		Transport: &peerTransport{n: n},
		Blocks:    blocks,
		PutBlock: func(ctx context.Context, key string, until int64) error {
			_, err := n.Store.PutLimitBlock(ctx, key, until)
			return err
		},
		OnForward: n.metrics.limiterForward(),
	})
	n.metrics.reg.MustRegister(&limiterCollector{l: n.Limiter})
	n.API.HandleLimiter(n.Limiter)
	if n.Trust != nil {
		n.Trust.OnChange(func(trust.Diff) { n.Limiter.SetMembers(n.limitMembers()) })
	}
	if n.Peers != nil {
		n.Peers.Handle("POST "+LimitDecidePath, policy.Call, n.limitRoute(func(ctx context.Context, from string, body []byte) (any, error) {
			var c limiter.DecideCall
			if err := json.Unmarshal(body, &c); err != nil {
				return nil, &limiter.RefusedError{Reason: "bad_request", Message: err.Error()}
			}
			return n.Limiter.HandleDecide(ctx, from, c)
		}))
		n.Peers.Handle("POST "+LimitAnnouncePath, policy.Call, n.limitRoute(func(ctx context.Context, from string, body []byte) (any, error) {
			var c limiter.AnnounceCall
			if err := json.Unmarshal(body, &c); err != nil {
				return nil, &limiter.RefusedError{Reason: "bad_request", Message: err.Error()}
			}
			return n.Limiter.HandleAnnounce(ctx, from, c)
		}))
	}
	n.limitStop = make(chan struct{})
	n.limitDone = make(chan struct{})
	n.loadBlocks()
	go n.watchBlocks()
}

// closeLimiter stops the block watcher.
func (n *Node) closeLimiter() {
	if n.limitStop == nil {
		return
	}
	n.limitOnce.Do(func() { close(n.limitStop) })
	<-n.limitDone
}

// limitMembers lists every node of the trust list (or this node alone);
// masters and nodes are core members (arbiters).
func (n *Node) limitMembers() []limiter.Member {
	if n.Trust == nil {
		return []limiter.Member{{Name: n.Identity.Name, Core: n.Identity.Role != outpost.RoleEdge}}
	}
	var ms []limiter.Member
	for _, p := range n.Trust.List().Peers() {
		ms = append(ms, limiter.Member{Name: p.Name, Core: p.Role != outpost.RoleEdge})
	}
	return ms
}

// loadBlocks reads the live blocks from the store into the limiter's set.
func (n *Node) loadBlocks() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := n.Store.LimitBlocks(ctx, time.Now().UnixMilli())
	if err != nil {
		n.log.Warn("limiter: load blocks", "err", err)
		return
	}
	n.Limiter.Blocks().Replace(m)
}

// watchBlocks reloads the blocks when the store changes (a replicated block
// arrives), at most once a second (each reload is a query on the read pool).
func (n *Node) watchBlocks() {
	defer close(n.limitDone)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := n.Store.DBVersion()
	for {
		select {
		case <-n.limitStop:
			return
		case <-tick.C:
		}
		if v := n.Store.DBVersion(); v != last {
			last = v
			n.loadBlocks()
		}
	}
}

// limitRoute serves one limiter call from an authenticated peer.
func (n *Node) limitRoute(h func(ctx context.Context, from string, body []byte) (any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := peer.From(r.Context())
		if !ok {
			peer.WriteError(w, http.StatusUnauthorized, "no_peer", "unauthenticated")
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxLimitCallBody))
		if err != nil {
			n.Peers.Refusals.Add("limiter", "body_too_large")
			peer.WriteError(w, http.StatusRequestEntityTooLarge, "body_too_large", "a limiter call is at most 16 KiB")
			return
		}
		out, err := h(r.Context(), p.Name, body)
		var re *limiter.RefusedError
		switch {
		case errors.As(err, &re):
			n.Peers.Refusals.Add("limiter", re.Reason)
			n.log.Warn("limiter: refused a peer call", "peer", p.Name, "reason", re.Reason, "err", re.Message)
			peer.WriteError(w, http.StatusForbidden, re.Reason, re.Message)
			return
		case err != nil:
			peer.WriteError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
			return
		}
		b, _ := json.Marshal(out)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	})
}

// peerTransport carries limiter calls over the peer transport (mutual TLS,
// policy action call).
type peerTransport struct{ n *Node }

func (t *peerTransport) call(ctx context.Context, to, path string, in, out any) error {
	if t.n.Client == nil {
		return fmt.Errorf("limiter: call %s: no peer transport (no trust list)", to)
	}
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	resp, err := t.n.Client.Do(ctx, to, policy.Call, http.MethodPost, path, b)
	if err != nil {
		var se *peer.StatusError
		if errors.As(err, &se) && se.Status == http.StatusForbidden {
			return &limiter.RefusedError{Reason: se.Code, Message: se.Message}
		}
		return fmt.Errorf("limiter: call %s: %w", to, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxLimitCallBody))
	if err != nil {
		return fmt.Errorf("limiter: call %s: %w", to, err)
	}
	if err := json.NewDecoder(bytes.NewReader(data)).Decode(out); err != nil {
		return fmt.Errorf("limiter: call %s: answer: %w", to, err)
	}
	return nil
}

func (t *peerTransport) Decide(ctx context.Context, to string, c limiter.DecideCall) (limiter.DecideReply, error) {
	var r limiter.DecideReply
	err := t.call(ctx, to, LimitDecidePath, c, &r)
	return r, err
}

func (t *peerTransport) Announce(ctx context.Context, to string, c limiter.AnnounceCall) (limiter.AnnounceReply, error) {
	var r limiter.AnnounceReply
	err := t.call(ctx, to, LimitAnnouncePath, c, &r)
	return r, err
}

// limiterForward returns the observer of forwarded-decision latency.
func (m *metrics) limiterForward() func(time.Duration, bool) {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "outpost_limiter_forward_seconds", Help: "Added latency of rate limiter decisions that called another node, by kind (claim, forward).",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
	}, []string{"kind"})
	m.reg.MustRegister(h)
	claim, fwd := h.WithLabelValues("claim"), h.WithLabelValues("forward")
	return func(d time.Duration, isClaim bool) {
		if isClaim {
			claim.Observe(d.Seconds())
		} else {
			fwd.Observe(d.Seconds())
		}
	}
}

var (
	descLimitDecisions = prometheus.NewDesc("outpost_limiter_decisions_total", "Rate limiter decisions by path (local, owner, forwarded, fallback, blocked).", []string{"path"}, nil)
	descLimitRefused   = prometheus.NewDesc("outpost_limiter_refused_total", "Rate limiter decisions that did not allow the request.", nil, nil)
	descLimitEvents    = prometheus.NewDesc("outpost_limiter_events_total", "Rate limiter events: claims, owned (keys this node became owner of), announces, announce_failed, handovers, call_failed, full.", []string{"event"}, nil)
	descLimitPeer      = prometheus.NewDesc("outpost_limiter_peer_refused_total", "Limiter calls from peers refused, by reason (not_member, not_arbiter, forged_owner, count_out_of_range, bad_request, table_full).", []string{"reason"}, nil)
	descLimitKeys      = prometheus.NewDesc("outpost_limiter_keys", "Counters held in the rate limiter's key table.", nil, nil)
)

// limiterCollector reads the limiter's counters at scrape time.
type limiterCollector struct{ l *limiter.Limiter }

func (c *limiterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLimitDecisions, descLimitRefused, descLimitEvents, descLimitPeer, descLimitKeys} {
		ch <- d
	}
}

func (c *limiterCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.l.Stats
	for path, v := range map[string]int64{"local": s.Local.Load(), "owner": s.Owner.Load(), "forwarded": s.Forwarded.Load(), "fallback": s.Fallback.Load(), "blocked": s.Blocked.Load()} {
		ch <- prometheus.MustNewConstMetric(descLimitDecisions, prometheus.CounterValue, float64(v), path)
	}
	ch <- prometheus.MustNewConstMetric(descLimitRefused, prometheus.CounterValue, float64(s.Refused.Load()))
	for ev, v := range map[string]int64{"claims": s.Claims.Load(), "owned": s.Owned.Load(), "announces": s.Announces.Load(), "announce_failed": s.AnnounceFailed.Load(),
		"handovers": s.Handovers.Load(), "call_failed": s.CallFailed.Load(), "full": s.Full.Load()} {
		ch <- prometheus.MustNewConstMetric(descLimitEvents, prometheus.CounterValue, float64(v), ev)
	}
	for reason, v := range s.PeerRefused() {
		ch <- prometheus.MustNewConstMetric(descLimitPeer, prometheus.CounterValue, float64(v), reason)
	}
	ch <- prometheus.MustNewConstMetric(descLimitKeys, prometheus.GaugeValue, float64(c.l.Keys()))
}

// limiterState is the node's limiter plumbing (embedded in Node).
type limiterState struct {
	// Limiter is the global rate limiter behind /v1/limit.
	Limiter   *limiter.Limiter
	limitStop chan struct{}
	limitDone chan struct{}
	limitOnce sync.Once
}
