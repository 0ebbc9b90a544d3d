package main

import (
	"context"
	"fmt"

	"github.com/outpost-edge/outpost/bench"
)

// benchBeacons runs the beacons suite: single-row writes (the reference),
// single beacons and 100-beacon batches at c=16 against one edge, the bytes
// each stored beacon takes there, then end to end on the 'up' fleet in this
// process. local says the node is ours (its data directory is dataDir).
func benchBeacons(ctx context.Context, c16 *bench.Client, dataDir string, local bool, lim bench.Limits, add func(bench.Result), done func() error) error {
	w16, _ := bench.Writes(ctx, c16, 16, lim, "beacons-ref")
	add(w16)
	before := bench.DBBytes(dataDir)
	s0, err := bench.BeaconLog(ctx, c16)
	if err != nil {
		return fmt.Errorf("beacons suite: %w (is the target an edge?)", err)
	}
	single := bench.BeaconSingle(ctx, c16, 16, lim)
	single.Note = fmt.Sprintf("%.2f x the single-row write rate above", single.PerSecond/max(w16.PerSecond, 1))
	add(single)
	add(bench.BeaconBatch(ctx, c16, 16, 100, lim))
	s1, err := bench.BeaconLog(ctx, c16)
	if err != nil {
		return err
	}
	if n := s1.StoredBeacons - s0.StoredBeacons; n > 0 {
		r := bench.Result{Name: "bytes per stored beacon at the edge", Ops: n,
			Note: fmt.Sprintf("%d beacons: %.0f bytes each counted against the budget (body + 32)", n, float64(s1.StoredBytes-s0.StoredBytes)/float64(n))}
		if local {
			r.Note += fmt.Sprintf(", %.0f bytes each of database + WAL growth", float64(bench.DBBytes(dataDir)-before)/float64(n))
		}
		add(r)
	}
	for _, run := range []struct{ rate, edges int }{{1000, 1}, {5000, 1}, {5000, 4}} {
		rs, err := bench.BeaconsEndToEnd(ctx, run.rate, run.edges, lim)
		if err != nil {
			return err
		}
		for _, r := range rs {
			add(r)
		}
	}
	return done()
}
