package node

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/admission"
	"github.com/outpost-edge/outpost/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the node's Prometheus metrics, served on /metrics of the API
// listener. Latencies are observed on the request path; everything else is
// read from the store and the replicator when scraped.
type metrics struct {
	n         *Node // set once the node is built; scrapes before that see nothing
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	groupSize prometheus.Histogram
	fsync     prometheus.Histogram
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_api_requests_total", Help: "App API requests by route (exec = writes, query = reads) and HTTP status.",
		}, []string{"route", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "outpost_api_request_seconds", Help: "App API request latency by route (exec = durable writes, query = reads).",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16),
		}, []string{"route"}),
		groupSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "outpost_commit_group_size", Help: "Transactions per commit group (one fsync each).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		fsync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "outpost_commit_seconds", Help: "Time of each group's COMMIT, which is the fsync of the WAL.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 14),
		}),
	}
	m.reg.MustRegister(m.requests, m.latency, m.groupSize, m.fsync, &collector{m: m},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) onRequest(route string, status int, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(route).Observe(d.Seconds())
}

func (m *metrics) onGroup(size int, commit time.Duration) {
	m.groupSize.Observe(float64(size))
	m.fsync.Observe(commit.Seconds())
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// collector reads the node's state at scrape time.
type collector struct {
	m *metrics

	mu        sync.Mutex
	tombs     int64
	tombsTime time.Time
}

// tombstones counts kept tombstones at most once a minute: it scans every
// clock table, which scrapes every few seconds should not repeat.
func (c *collector) tombstones(ctx context.Context) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.tombsTime) > time.Minute {
		t, err := c.m.n.Store.Tombstones(ctx)
		if err != nil {
			return 0, false
		}
		c.tombs, c.tombsTime = t, time.Now()
	}
	return c.tombs, true
}

var (
	descDBVersion  = prometheus.NewDesc("outpost_db_version", "Last committed db_version.", nil, nil)
	descTx         = prometheus.NewDesc("outpost_transactions_total", "Transactions by outcome (committed, failed) since start.", []string{"outcome"}, nil)
	descLagVers    = prometheus.NewDesc("outpost_replication_lag_versions", "How many of the peer's db_versions this link is behind.", []string{"peer", "direction"}, nil)
	descLagSecs    = prometheus.NewDesc("outpost_replication_lag_seconds", "How long this link has been behind.", []string{"peer", "direction"}, nil)
	descConnected  = prometheus.NewDesc("outpost_replication_connected", "1 while the link's stream or push loop is up.", []string{"peer", "direction"}, nil)
	descSyncErrors = prometheus.NewDesc("outpost_sync_errors_total", "Sync loop failures (reconnects) per link.", []string{"peer", "direction"}, nil)
	descChanges    = prometheus.NewDesc("outpost_replication_changes_total", "Remote changes by result: applied, ignored (lost to or equal local state), refused (never applied), held (kept to be judged again).", []string{"result"}, nil)
	descRefused    = prometheus.NewDesc("outpost_replication_refused_total", "Remote changes refused, by the peer that sent them and the rule that refused them (origin_not_sender, table_permission, cl_out_of_range, ...).", []string{"sender", "rule"}, nil)
	descRefusals   = prometheus.NewDesc("outpost_policy_refusals_total", "Refused peers and exchanges by kind (unknown_key, policy, removed_key, outgoing_policy, ...).", []string{"kind"}, nil)
	descHeld       = prometheus.NewDesc("outpost_held_changes", "Remote changes held to be judged again, by rule (schema, drift, origin_unknown, constraint).", []string{"rule"}, nil)
	descTombstones = prometheus.NewDesc("outpost_tombstones", "Deleted rows whose tombstone is kept.", nil, nil)
	descReady      = prometheus.NewDesc("outpost_ready", "1 when /readyz answers 200.", nil, nil)
	descPeerBytes  = prometheus.NewDesc("outpost_peer_bytes_total", "Bytes on the peer transport's TCP connections (TLS included), accepted and dialed, by direction (in = read, out = written).", []string{"direction"}, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDBVersion, descTx, descLagVers, descLagSecs, descConnected, descSyncErrors, descChanges, descRefused, descRefusals, descHeld, descTombstones, descReady, descPeerBytes} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	n := c.m.n
	if n == nil {
		return
	}
	st := n.Store
	ch <- prometheus.MustNewConstMetric(descDBVersion, prometheus.GaugeValue, float64(st.DBVersion()))
	ws := st.Stats()
	ch <- prometheus.MustNewConstMetric(descTx, prometheus.CounterValue, float64(ws.Transactions), "committed")
	ch <- prometheus.MustNewConstMetric(descTx, prometheus.CounterValue, float64(ws.Failed), "failed")
	rs := st.ReplStats()
	for result, v := range map[string]int64{"applied": rs.Applied, "ignored": rs.Ignored, "refused": rs.Refused, "held": rs.Held} {
		ch <- prometheus.MustNewConstMetric(descChanges, prometheus.CounterValue, float64(v), result)
	}
	for _, r := range st.Refusals() {
		ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(r.Count), r.Sender, r.Rule)
	}
	if n.Peers != nil && n.Client != nil {
		ch <- prometheus.MustNewConstMetric(descPeerBytes, prometheus.CounterValue, float64(n.Peers.Bytes.In()+n.Client.Bytes.In()), "in")
		ch <- prometheus.MustNewConstMetric(descPeerBytes, prometheus.CounterValue, float64(n.Peers.Bytes.Out()+n.Client.Bytes.Out()), "out")
	}
	if n.Repl != nil {
		for _, l := range n.Repl.Status() {
			ch <- prometheus.MustNewConstMetric(descLagVers, prometheus.GaugeValue, float64(l.LagChanges), l.Peer, l.Direction)
			ch <- prometheus.MustNewConstMetric(descLagSecs, prometheus.GaugeValue, l.LagSeconds, l.Peer, l.Direction)
			up := 0.0
			if l.Connected {
				up = 1
			}
			ch <- prometheus.MustNewConstMetric(descConnected, prometheus.GaugeValue, up, l.Peer, l.Direction)
			ch <- prometheus.MustNewConstMetric(descSyncErrors, prometheus.CounterValue, float64(l.Errors), l.Peer, l.Direction)
		}
	}
	refusals := map[string]int64{}
	for _, r := range n.Status().Refusals {
		refusals[r.Kind] += r.Count
	}
	for kind, v := range refusals {
		ch <- prometheus.MustNewConstMetric(descRefusals, prometheus.CounterValue, float64(v), kind)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if held, err := st.Held(ctx); err == nil {
		for _, rule := range []string{store.RuleSchema, store.RuleDrift, store.RuleConstraint, admission.RuleOriginUnknown} {
			ch <- prometheus.MustNewConstMetric(descHeld, prometheus.GaugeValue, float64(held[rule]), rule)
		}
	}
	if t, ok := c.tombstones(ctx); ok {
		ch <- prometheus.MustNewConstMetric(descTombstones, prometheus.GaugeValue, float64(t))
	}
	ready := 0.0
	if n.Ready() == nil {
		ready = 1
	}
	ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, ready)
}
