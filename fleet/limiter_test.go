package fleet_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/node"
	"github.com/outpost-edge/outpost/policy"
)

type limitAnswer struct {
	Allowed   bool   `json:"allowed"`
	Remaining int64  `json:"remaining"`
	ResetMS   int64  `json:"reset_ms"`
	Owner     string `json:"owner"`
	Path      string `json:"path"`
}

func postJSON(tb testing.TB, url, body string, out any) int {
	tb.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode == 200 {
		if err := json.Unmarshal(b, out); err != nil {
			tb.Fatalf("%s: %v", b, err)
		}
	}
	return resp.StatusCode
}

// TestFleet_LimiterSpreadOverEdges sends one key's requests to all four
// edges at once, over the real fleet (mutual TLS between nodes): the window
// admits no more than the limit, and the core owns the key.
func TestFleet_LimiterSpreadOverEdges(t *testing.T) {
	f := startDemo(t)
	const limit = 60
	edges := []string{"EDGE01", "EDGE02", "EDGE03", "EDGE04"}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		admitted = map[int64]int{} // by window (reset_ms)
		paths    = map[string]int{}
		owners   = map[string]bool{}
	)
	for _, e := range edges {
		url := f.Node(e).APIURL() + "/v1/limit"
		for c := 0; c < 4; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 40; i++ {
					var a limitAnswer
					if st := postJSON(t, url, `{"key":"ip:203.0.113.9","limit":60,"window":"24h"}`, &a); st != 200 {
						t.Errorf("status %d", st)
						return
					}
					mu.Lock()
					if a.Allowed {
						admitted[a.ResetMS]++
					}
					paths[a.Path]++
					if a.Path == "forwarded" {
						owners[a.Owner] = true
					}
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	t.Logf("admitted %v, paths %v, owners %v", admitted, paths, owners)
	for w, n := range admitted {
		if n > limit {
			t.Errorf("window ending %d admitted %d; limit %d", w, n, limit)
		}
	}
	if len(owners) != 1 || (!owners["MASTER01"] && !owners["NODE01"]) {
		t.Errorf("owners %v; want one core node", owners)
	}
	if paths["local"] == 0 || paths["forwarded"] == 0 {
		t.Errorf("paths %v; want local and forwarded decisions", paths)
	}
	// The metrics say so too.
	resp, err := http.Get(f.Node("EDGE01").APIURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`outpost_limiter_decisions_total{path="local"}`, `outpost_limiter_forward_seconds_bucket{kind="forward"`, `outpost_limiter_events_total{event="claims"}`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestFleet_LimiterBlockReachesEveryNode blocks a key at EDGE03: every node
// of the fleet refuses it locally once the block has replicated.
func TestFleet_LimiterBlockReachesEveryNode(t *testing.T) {
	f := startDemo(t)
	until := time.Now().Add(time.Hour).UnixMilli()
	if st := postJSON(t, f.Node("EDGE03").APIURL()+"/v1/limit/block", fmt.Sprintf(`{"key":"ip:6","until":%d}`, until), nil); st != 200 {
		t.Fatalf("block: %d", st)
	}
	deadline := time.Now().Add(15 * time.Second)
	for _, m := range f.Members {
		for {
			var a limitAnswer
			postJSON(t, f.Node(m.Name).APIURL()+"/v1/limit", `{"key":"ip:6","limit":1000,"window":"1m"}`, &a)
			if a.Path == "blocked" && !a.Allowed && a.ResetMS == until {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %+v; the block did not arrive", m.Name, a)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// TestFleet_LimiterPeerCalls: calls the policy refuses never leave the
// edge; a forged announce from an edge is refused by its sibling and counted.
func TestFleet_LimiterPeerCalls(t *testing.T) {
	f := startDemo(t)
	ctx := context.Background()
	e1 := f.Node("EDGE01")
	now := time.Now().UnixMilli()
	body := fmt.Sprintf(`{"key":"k","limit":10,"window_ms":60000,"start":%d,"owner":"EDGE01"}`, now-now%60000)
	if _, err := e1.Client.Do(ctx, "EDGE03", policy.Call, http.MethodPost, node.LimitAnnouncePath, []byte(body)); err == nil {
		t.Fatalf("EDGE01 called EDGE03 (other farm)")
	}
	_, err := e1.Client.Do(ctx, "EDGE02", policy.Call, http.MethodPost, node.LimitAnnouncePath, []byte(body))
	if err == nil || !strings.Contains(err.Error(), "not_arbiter") {
		t.Fatalf("forged announce to EDGE02: %v; want not_arbiter", err)
	}
	if n := f.Node("EDGE02").Limiter.Stats.PeerRefused()["not_arbiter"]; n != 1 {
		t.Fatalf("EDGE02 counted %d not_arbiter refusals", n)
	}
}
