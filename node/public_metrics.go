package node

import (
	"github.com/outpost-edge/outpost/edgecache"
	"github.com/outpost-edge/outpost/purge"
	"github.com/prometheus/client_golang/prometheus"
)

var (
	descCacheLookups = prometheus.NewDesc("outpost_cache_lookups_total", "Public listener cache lookups by result (hit, miss, stale, stale_if_error).", []string{"result"}, nil)
	descCacheDrops   = prometheus.NewDesc("outpost_cache_drops_total", "Cache entries dropped by the byte bound (evicted) and by purges (purged); fills refused (refused: raced a purge or too large).", []string{"reason"}, nil)
	descCacheBytes   = prometheus.NewDesc("outpost_cache_bytes", "Bytes held by the public listener cache (bounded by --cache-size).", nil, nil)
	descCacheEntries = prometheus.NewDesc("outpost_cache_entries", "Entries in the public listener cache.", nil, nil)
	descPurgeBehind  = prometheus.NewDesc("outpost_purge_lag_versions", "Committed db_versions the purge watcher has not applied to the cache yet.", nil, nil)
)

// cacheCollector reads the cache's counters at scrape time.
type cacheCollector struct {
	c  *edgecache.Cache
	w  *purge.Watcher
	db func() int64
}

func (c *cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCacheLookups, descCacheDrops, descCacheBytes, descCacheEntries, descPurgeBehind} {
		ch <- d
	}
}

func (c *cacheCollector) Collect(ch chan<- prometheus.Metric) {
	s := &c.c.Stats
	for k, v := range map[string]int64{"hit": s.Hits.Load(), "miss": s.Misses.Load(), "stale": s.Stale.Load(), "stale_if_error": s.Errors.Load()} {
		ch <- prometheus.MustNewConstMetric(descCacheLookups, prometheus.CounterValue, float64(v), k)
	}
	for k, v := range map[string]int64{"evicted": s.Evictions.Load(), "purged": s.Purged.Load(), "refused": s.Refused.Load()} {
		ch <- prometheus.MustNewConstMetric(descCacheDrops, prometheus.CounterValue, float64(v), k)
	}
	ch <- prometheus.MustNewConstMetric(descCacheBytes, prometheus.GaugeValue, float64(c.c.Bytes()))
	ch <- prometheus.MustNewConstMetric(descCacheEntries, prometheus.GaugeValue, float64(c.c.Len()))
	ch <- prometheus.MustNewConstMetric(descPurgeBehind, prometheus.GaugeValue, float64(max(0, c.db()-c.w.Through())))
}
