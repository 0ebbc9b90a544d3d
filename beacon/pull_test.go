package beacon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/beacon"
	"github.com/outpost-edge/outpost/policy"
)

// fakeEdge answers pulls like an edge, with an optional forgery.
type fakeEdge struct {
	mu    sync.Mutex
	log   string
	last  int64
	forge func(*beacon.PullAnswer)
	// noClock leaves now_ms out of the answers (an edge of an earlier
	// version).
	noClock bool
	pulls   int
	acked   int64
	called  chan struct{}
}

func (f *fakeEdge) Do(ctx context.Context, name string, action policy.Action, method, path string, body []byte) (*http.Response, error) {
	u, _ := url.Parse(path)
	q := u.Query()
	from, _ := strconv.ParseInt(q.Get("from"), 10, 64)
	f.mu.Lock()
	f.pulls++
	if q.Get("log") == f.log {
		f.acked = max(f.acked, from-1)
	}
	ans := beacon.PullAnswer{Edge: name, Log: f.log, Last: f.last, Now: time.Now().UnixMilli()}
	for s := from; s <= f.last && len(ans.Beacons) < 10; s++ {
		ans.Beacons = append(ans.Beacons, beacon.Beacon{Seq: s, RecvMS: 1000 + s, Body: json.RawMessage(`{"event":"e"}`)})
	}
	if f.noClock {
		ans.Now = 0
	}
	if f.forge != nil {
		f.forge(&ans)
	}
	f.mu.Unlock()
	select {
	case f.called <- struct{}{}:
	default:
	}
	if len(ans.Beacons) == 0 {
		time.Sleep(20 * time.Millisecond) // a long poll, short
	}
	b, _ := json.Marshal(ans)
	return &http.Response{StatusCode: 200, Body: io.NopCloser(bytes.NewReader(b))}, nil
}

func startPulling(t *testing.T, edge *fakeEdge) *beacon.Aggregator {
	t.Helper()
	a, err := beacon.OpenAggregator(context.Background(), beacon.AggregatorConfig{Self: "MASTER01", Store: openStore(t, t.TempDir()),
		Transport: edge, Edges: func() []string { return []string{"EDGE01"} }, CheckInterval: -1, PullWait: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	a.Start()
	t.Cleanup(a.Stop)
	return a
}

// TestAggregator_PullsAndAcknowledges: the pull loop learns the edge's log,
// pulls it in order and acknowledges by asking from its cursor.
func TestAggregator_PullsAndAcknowledges(t *testing.T) {
	edge := &fakeEdge{log: "abc", last: 35, called: make(chan struct{}, 1)}
	a := startPulling(t, edge)
	deadline := time.Now().Add(10 * time.Second)
	for a.Cursor("EDGE01") != 35 || edge.ackedSeq() != 35 {
		if time.Now().After(deadline) {
			t.Fatalf("cursor %d, acked %d", a.Cursor("EDGE01"), edge.ackedSeq())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if k := a.LogKey("EDGE01"); k != "EDGE01/abc" {
		t.Fatalf("log key %q", k)
	}
	if s := a.Stats(); s.Received != 35 || s.Refused != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func (f *fakeEdge) ackedSeq() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.acked
}

// TestAggregator_RefusesForgedRanges: answers that skip seqs, repeat them,
// or name another edge are refused whole and store nothing.
func TestAggregator_RefusesForgedRanges(t *testing.T) {
	for name, forge := range map[string]func(*beacon.PullAnswer){
		"skips a seq": func(a *beacon.PullAnswer) {
			if len(a.Beacons) > 2 {
				a.Beacons = append(a.Beacons[:1], a.Beacons[2:]...)
			}
		},
		"jumps ahead": func(a *beacon.PullAnswer) {
			for i := range a.Beacons {
				a.Beacons[i].Seq += 1000
			}
		},
		"another edge": func(a *beacon.PullAnswer) { a.Edge = "EDGE09" },
		"past its last seq": func(a *beacon.PullAnswer) {
			a.Last = 1
		},
	} {
		t.Run(name, func(t *testing.T) {
			edge := &fakeEdge{log: "abc", last: 30, forge: forge, called: make(chan struct{}, 1)}
			a := startPulling(t, edge)
			deadline := time.Now().Add(10 * time.Second)
			for a.Stats().Refused < 2 {
				if time.Now().After(deadline) {
					t.Fatalf("not refused: %+v", a.Stats())
				}
				time.Sleep(10 * time.Millisecond)
			}
			if s := a.Stats(); s.Received != 0 || a.Cursor("EDGE01") != 0 {
				t.Fatalf("stored from a forged answer: %+v cursor %d", s, a.Cursor("EDGE01"))
			}
		})
	}
}

// TestAggregator_PullLearnsEdgeTime: an answer that reaches the end of the
// edge's log carries the edge's clock, which tells the aggregator it holds
// everything the edge received until then, so the export can close the
// windows before it; without it (an older edge) only the last beacon's
// receive time does.
func TestAggregator_PullLearnsEdgeTime(t *testing.T) {
	for _, noClock := range []bool{false, true} {
		edge := &fakeEdge{log: "abc", last: 15, called: make(chan struct{}, 1), noClock: noClock}
		a, err := beacon.OpenAggregator(context.Background(), beacon.AggregatorConfig{Self: "MASTER01", Store: openStore(t, t.TempDir()),
			Transport: edge, Edges: func() []string { return []string{"EDGE01"} }, CheckInterval: -1, PullWait: 50 * time.Millisecond,
			ExportLateness: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		a.Start()
		deadline := time.Now().Add(10 * time.Second)
		for a.Cursor("EDGE01") != 15 {
			if time.Now().After(deadline) {
				t.Fatalf("cursor %d", a.Cursor("EDGE01"))
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond) // another pull, at the end of the log
		now := time.Now()
		got, why := a.ClosedThrough(now)
		a.Stop()
		if want := now.Add(-time.Minute).UnixMilli(); !noClock && (got != want-want%60_000-60_000 || why != "the lateness allowance") {
			t.Fatalf("closed through %d (%s), want %d: the edge's clock was not learnt", got, why, want-want%60_000-60_000)
		}
		// An edge without a clock in its answers: its last beacon (received at
		// 1,015 ms) is all the aggregator knows, so only the max wait (1 h)
		// closes windows.
		if want := now.Add(-time.Hour).UnixMilli(); noClock && got != want-want%60_000-60_000 {
			t.Fatalf("without the edge's clock: closed through %d (%s), want %d (the max wait)", got, why, want-want%60_000-60_000)
		}
	}
}
