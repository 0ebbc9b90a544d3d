package bench

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/node"
	"github.com/outpost-edge/outpost/relay"
)

// stageTrace records, per message ID, the first time each node saw it at
// each stage of its path (relay.SetTracer on every node of the in-process
// fleet: one clock).
type stageTrace struct {
	mu sync.Mutex
	ev map[string]map[stageKey]time.Time
}

type stageKey struct {
	node  string
	stage relay.Stage
}

func newStageTrace(nodes []*node.Node) (*stageTrace, func()) {
	t := &stageTrace{ev: map[string]map[stageKey]time.Time{}}
	for _, n := range nodes {
		n.Relay.SetTracer(t.observe)
	}
	return t, func() {
		for _, n := range nodes {
			n.Relay.SetTracer(nil)
		}
	}
}

func (t *stageTrace) observe(node string, st relay.Stage, id string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.ev[id]
	if m == nil {
		m = map[stageKey]time.Time{}
		t.ev[id] = m
	}
	k := stageKey{node, st}
	if _, ok := m[k]; !ok {
		m[k] = at
	}
}

// StageTimes is the time between two points of a message's path, over the
// messages of a run.
type StageTimes struct {
	Name string        `json:"name"`
	N    int           `json:"n"`
	P50  time.Duration `json:"p50_ns"`
	P99  time.Duration `json:"p99_ns"`
}

// msgTimes is what the recipient client saw of one message: the sender's
// client clock at the send (in the body) and the receipt.
type msgTimes struct{ sent, recv time.Time }

// breakdown splits each received message's latency into stages: src is the
// sender's edge, dst the recipient's.
func (t *stageTrace) breakdown(src, dst string, got map[string]msgTimes) (out []StageTimes, viaRepl int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	type span struct {
		name     string
		from, to func(id string, m map[stageKey]time.Time, mt msgTimes) (time.Time, bool)
	}
	at := func(n string, st relay.Stage) func(string, map[stageKey]time.Time, msgTimes) (time.Time, bool) {
		return func(_ string, m map[stageKey]time.Time, _ msgTimes) (time.Time, bool) {
			v, ok := m[stageKey{n, st}]
			return v, ok
		}
	}
	sent := func(_ string, _ map[stageKey]time.Time, mt msgTimes) (time.Time, bool) { return mt.sent, true }
	recv := func(_ string, _ map[stageKey]time.Time, mt msgTimes) (time.Time, bool) { return mt.recv, true }
	spans := []span{
		{"client send -> sender's edge read it", sent, at(src, relay.StageRecv)},
		{"read -> durable (commit)", at(src, relay.StageRecv), at(src, relay.StageDurable)},
		{"durable -> presence resolved, queued", at(src, relay.StageDurable), at(src, relay.StageDispatched)},
		{"durable -> forward call starts", at(src, relay.StageDurable), at(src, relay.StageForwardStart)},
		{"forward call -> at the recipient's edge", at(src, relay.StageForwardStart), at(dst, relay.StageForwardIn)},
		{"forward call -> answered", at(src, relay.StageForwardStart), at(src, relay.StageForwardDone)},
		{"forward in -> queued on the connection", at(dst, relay.StageForwardIn), at(dst, relay.StageQueued)},
		{"durable -> row seen by the recipient edge's watcher", at(src, relay.StageDurable), at(dst, relay.StageWatchSeen)},
		{"queued -> written to the socket", at(dst, relay.StageQueued), at(dst, relay.StageWritten)},
		{"queued -> client got it", at(dst, relay.StageQueued), recv},
		{"client send -> client got it", sent, recv},
	}
	ds := make([][]time.Duration, len(spans))
	for id, mt := range got {
		m := t.ev[id]
		for i, s := range spans {
			a, ok1 := s.from(id, m, mt)
			b, ok2 := s.to(id, m, mt)
			if ok1 && ok2 {
				ds[i] = append(ds[i], b.Sub(a))
			}
		}
		q, okq := m[stageKey{dst, relay.StageQueued}]
		f, okf := m[stageKey{dst, relay.StageForwardIn}]
		if okq && (!okf || f.After(q)) {
			viaRepl++
		}
	}
	for i, s := range spans {
		out = append(out, StageTimes{Name: s.name, N: len(ds[i]), P50: quantile(ds[i], 0.5), P99: quantile(ds[i], 0.99)})
	}
	return out, viaRepl
}

func formatStages(st []StageTimes, viaRepl int) string {
	var b strings.Builder
	for _, s := range st {
		if s.N == 0 {
			continue
		}
		fmt.Fprintf(&b, "      %-52s n %5d  p50 %-9s p99 %s\n", s.Name, s.N, s.P50.Round(10*time.Microsecond), s.P99.Round(10*time.Microsecond))
	}
	fmt.Fprintf(&b, "      %-52s %d\n", "queued by the replication path before the forward", viaRepl)
	return b.String()
}
