package beacon

import "github.com/prometheus/client_golang/prometheus"

// Collector exposes a node's beacon counters to Prometheus; either part may
// be nil (a node that only takes beacons in, or only aggregates).
type Collector struct {
	Log *Log
	Agg *Aggregator
}

var (
	descAccepted   = prometheus.NewDesc("outpost_beacon_accepted_total", "Beacons this edge stored durably (answered 2xx).", nil, nil)
	descFull       = prometheus.NewDesc("outpost_beacon_refused_full_total", "Beacon requests refused with 503 because the disk budget was full.", nil, nil)
	descStored     = prometheus.NewDesc("outpost_beacon_stored", "Beacons kept on this edge (not yet acknowledged by enough aggregators).", nil, nil)
	descStoredB    = prometheus.NewDesc("outpost_beacon_stored_bytes", "Bytes of beacons counted against the disk budget.", nil, nil)
	descReceived   = prometheus.NewDesc("outpost_beacon_received_total", "Beacons this aggregator stored and counted (once per edge and seq).", nil, nil)
	descDuplicates = prometheus.NewDesc("outpost_beacon_duplicates_total", "Deliveries of a beacon this aggregator already held (not counted again).", nil, nil)
	descRefused    = prometheus.NewDesc("outpost_beacon_refused_answers_total", "Pull or repair answers refused (forged or malformed ranges).", nil, nil)
	descRepaired   = prometheus.NewDesc("outpost_beacon_repaired_total", "Beacons stored by cross-check repairs.", nil, nil)
	descProblems   = prometheus.NewDesc("outpost_beacon_check_problems_total", "Gaps (this aggregator) and peer gaps (another one) found by the cross-check.", []string{"kind"}, nil)
	descOpen       = prometheus.NewDesc("outpost_beacon_check_open", "Cross-check problems not repaired yet.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descAccepted, descFull, descStored, descStoredB, descReceived, descDuplicates, descRefused, descRepaired, descProblems, descOpen} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	if c.Log != nil {
		s := c.Log.Stats()
		ch <- prometheus.MustNewConstMetric(descAccepted, prometheus.CounterValue, float64(s.Accepted))
		ch <- prometheus.MustNewConstMetric(descFull, prometheus.CounterValue, float64(s.RefusedFull))
		ch <- prometheus.MustNewConstMetric(descStored, prometheus.GaugeValue, float64(s.StoredBeacons))
		ch <- prometheus.MustNewConstMetric(descStoredB, prometheus.GaugeValue, float64(s.StoredBytes))
	}
	if c.Agg != nil {
		s := c.Agg.Stats()
		ch <- prometheus.MustNewConstMetric(descReceived, prometheus.CounterValue, float64(s.Received))
		ch <- prometheus.MustNewConstMetric(descDuplicates, prometheus.CounterValue, float64(s.Duplicates))
		ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(s.Refused))
		ch <- prometheus.MustNewConstMetric(descRepaired, prometheus.CounterValue, float64(s.Repaired))
		for k, n := range s.Problems {
			ch <- prometheus.MustNewConstMetric(descProblems, prometheus.CounterValue, float64(n), k)
		}
		ch <- prometheus.MustNewConstMetric(descOpen, prometheus.GaugeValue, float64(c.Agg.OpenProblems()))
	}
}
