package beacon

import (
	"encoding/json"
	"io"
)

// AggregatorStats count an aggregator's work since it started.
type AggregatorStats struct {
	Received   int64            `json:"received"`   // beacons stored at their first delivery
	Duplicates int64            `json:"duplicates"` // deliveries of an (edge, seq) already stored
	Refused    int64            `json:"refused"`    // answers refused (forged or malformed ranges)
	Skipped    int64            `json:"skipped"`    // seqs an edge deleted before this aggregator pulled them
	Repaired   int64            `json:"repaired"`   // beacons stored by cross-check repairs
	Problems   map[string]int64 `json:"problems"`   // problems detected by the cross-check, by kind
}

// Stats returns the aggregator's counters.
func (a *Aggregator) Stats() AggregatorStats {
	s := AggregatorStats{Received: a.stats.received.Load(), Duplicates: a.stats.duplicates.Load(), Refused: a.stats.refused.Load(),
		Skipped: a.stats.skipped.Load(), Repaired: a.stats.repaired.Load(), Problems: map[string]int64{"gap": 0, "peer_gap": 0}}
	a.check.mu.Lock()
	for k, n := range a.check.found {
		s.Problems[k] = n
	}
	a.check.mu.Unlock()
	return s
}

// OpenProblems returns how many cross-check problems are not repaired.
func (a *Aggregator) OpenProblems() int {
	a.check.mu.Lock()
	defer a.check.mu.Unlock()
	n := 0
	for _, p := range a.check.problems {
		if p.State != "repaired" {
			n++
		}
	}
	return n
}

// decodeLimited decodes one JSON value of at most maxAnswerBytes.
func decodeLimited(r io.Reader, v any) error {
	return json.NewDecoder(io.LimitReader(r, maxAnswerBytes)).Decode(v)
}
