package main

import (
	"flag"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/beacon"
	"github.com/outpost-edge/outpost/node"
)

// rollupFlag collects --beacon-rollup specs (repeatable; one value may hold
// several separated by spaces). Unset, it is the default rollup.
type rollupFlag struct {
	specs []beacon.Rollup
	set   bool
}

func (f *rollupFlag) String() string {
	if f == nil || !f.set {
		return beacon.DefaultRollup.String()
	}
	var s []string
	for _, r := range f.specs {
		s = append(s, r.String())
	}
	return strings.Join(s, " ")
}

func (f *rollupFlag) Set(v string) error {
	if !f.set {
		f.specs, f.set = nil, true
	}
	for _, spec := range strings.Fields(v) {
		r, err := beacon.ParseRollup(spec)
		if err != nil {
			return err
		}
		f.specs = append(f.specs, r)
	}
	return nil
}

// beaconFlags are serve's beacon flags (docs/BEACONS.md).
type beaconFlags struct {
	acks          *int
	budget        *int64
	aggregator    *string
	rollups       rollupFlag
	origins       *string
	perIP         *float64
	retention     *time.Duration
	checkInterval *time.Duration
	exportDir     *string
	exportEvery   *time.Duration
	exportLate    *time.Duration
	exportMaxWait *time.Duration
}

func (b *beaconFlags) register(fs *flag.FlagSet) {
	b.acks = fs.Int("beacon-acks", beacon.DefaultAcks, "an edge deletes a beacon once this many aggregators acknowledged it durably")
	b.budget = fs.Int64("beacon-disk-budget", beacon.DefaultBudget, "bytes of beacons an edge keeps until aggregators collect them; beyond, POST /beacon and /v1/beacons answer 503 with Retry-After")
	b.aggregator = fs.String("aggregator", "auto", "aggregate beacons (pull them from the edges, rollups, cross-check): auto (masters and nodes), on or off")
	fs.Var(&b.rollups, "beacon-rollup", "a rollup `SPEC`, NAME:by=F1,F2;window=1m;sum=F3;quantile=F4 (repeatable, or several in one value separated by spaces; replaces the default)")
	b.origins = fs.String("beacon-origins", "", "origins allowed to POST /beacon from a browser, comma-separated (e.g. https://shop.example); empty = any")
	b.perIP = fs.Float64("beacon-per-ip", beacon.DefaultPerIP, "POST /beacon beacons per second from one client address (burst twice that); beyond, 429; 0 = no bound")
	b.retention = fs.Duration("beacon-retention", beacon.DefaultRetention, "how long an aggregator keeps the beacons it received (for repairs of other aggregators); rollups stay")
	b.exportDir = fs.String("beacon-export-dir", "", "an aggregator writes the beacons it received as Parquet files into this directory, one per closed minute of receive time (each beacon in exactly one file); empty = no export")
	b.exportEvery = fs.Duration("beacon-export-interval", beacon.DefaultExportInterval, "how often --beacon-export-dir gets the files of the windows closed since")
	b.exportLate = fs.Duration("beacon-export-lateness", beacon.DefaultExportLateness, "a window is closed for the export this long after its end, once every edge was pulled that far and the cross-check agrees")
	b.exportMaxWait = fs.Duration("beacon-export-max-wait", beacon.DefaultExportMaxWait, "a window is closed for the export this long after its end in any case (beacons arriving later go to a late file of the window)")
	b.checkInterval = fs.Duration("beacon-check-interval", beacon.DefaultCheckInterval, "time between an aggregator's cross-checks with the others; 0 = never")
}

func (b *beaconFlags) config() node.BeaconConfig {
	c := node.BeaconConfig{Acks: *b.acks, DiskBudget: *b.budget, Aggregator: *b.aggregator, PerIP: *b.perIP,
		Retention: *b.retention, CheckInterval: *b.checkInterval, ExportDir: *b.exportDir, ExportInterval: *b.exportEvery,
		ExportLateness: *b.exportLate, ExportMaxWait: *b.exportMaxWait}
	if b.rollups.set {
		c.Rollups = b.rollups.specs
	}
	for _, o := range strings.Split(*b.origins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			c.Origins = append(c.Origins, o)
		}
	}
	if c.PerIP == 0 {
		c.PerIP = -1
	}
	if c.CheckInterval == 0 {
		c.CheckInterval = -1
	}
	return c
}
