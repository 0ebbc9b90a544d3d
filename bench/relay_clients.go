package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost/node"
	"github.com/outpost-edge/outpost/store"
)

// fanReport is what the child process of the connections scenario reports
// once its clients got the room messages.
type fanReport struct {
	Received   int           `json:"received"`
	Lost       int           `json:"lost"`
	Duplicated int           `json:"duplicated"`
	P50        time.Duration `json:"p50_ns"`
	P99        time.Duration `json:"p99_ns"`
}

// RelayClients is the child process of the relay suite's connections
// scenario (`outpost bench --suite relay-clients --target API --conns N`):
// it opens n WebSocket clients (users idle-0..n-1) on the node at api,
// prints "ready", then on a line "rounds K" from stdin waits (60 s at
// most) until every client got K room messages and prints a fanReport as
// JSON. It stops when stdin closes.
func RelayClients(ctx context.Context, api string, n int, stdin io.Reader, stdout io.Writer) error {
	ic, err := openIdleClients(ctx, n, func(ctx context.Context, user string) (*benchClient, error) { return dialBenchURL(ctx, api, user) })
	if err != nil {
		return err
	}
	defer ic.close()
	fmt.Fprintln(stdout, "ready")
	sc := bufio.NewScanner(stdin)
	for sc.Scan() {
		var rounds int
		if _, err := fmt.Sscanf(sc.Text(), "rounds %d", &rounds); err != nil {
			continue
		}
		ic.wait(rounds)
		b, _ := json.Marshal(ic.report(rounds))
		fmt.Fprintln(stdout, string(b))
	}
	return nil
}

// idleClients are the room members of the connections scenario: each
// records the latency of every room message it gets (the send time is in
// the body).
type idleClients struct {
	clients []*benchClient
	mu      sync.Mutex
	lat     []time.Duration
}

// openIdleClients dials n clients (users idle-0..idle-n-1), 64 at a time.
func openIdleClients(ctx context.Context, n int, dial func(ctx context.Context, user string) (*benchClient, error)) (*idleClients, error) {
	ic := &idleClients{clients: make([]*benchClient, n)}
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := dial(ctx, fmt.Sprintf("idle-%d", i))
			if err != nil {
				firstErr.CompareAndSwap(nil, err)
				return
			}
			c.hook = func(f map[string]any) {
				if body, ok := f["body"].(map[string]any); ok {
					if t0, ok := body["t"].(float64); ok {
						ic.mu.Lock()
						ic.lat = append(ic.lat, time.Since(time.Unix(0, int64(t0))))
						ic.mu.Unlock()
					}
				}
			}
			ic.clients[i] = c
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		ic.close()
		return nil, fmt.Errorf("open %d connections: %w", n, err)
	}
	return ic, nil
}

// wait waits (60 s at most) until every client got rounds room messages.
func (ic *idleClients) wait(rounds int) {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		ic.mu.Lock()
		k := len(ic.lat)
		ic.mu.Unlock()
		if k >= rounds*len(ic.clients) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// report counts what the clients got of rounds room messages each.
func (ic *idleClients) report(rounds int) fanReport {
	var rep fanReport
	for _, c := range ic.clients {
		u, d := c.counts()
		rep.Lost += max(0, rounds-u)
		rep.Duplicated += d
	}
	ic.mu.Lock()
	rep.Received = len(ic.lat)
	rep.P50, rep.P99 = quantile(ic.lat, 0.5), quantile(ic.lat, 0.99)
	ic.mu.Unlock()
	return rep
}

func (ic *idleClients) close() {
	for _, c := range ic.clients {
		if c != nil {
			c.ws.CloseNow()
		}
	}
}

// relayConnsChild is relayConns with the clients in a child process (the
// outpost binary bin): the memory measured is the server side's alone
// (the whole in-process fleet's heap and stacks, before and after).
func relayConnsChild(ctx context.Context, bin string, e *node.Node, n int) ([]RelayResult, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "bench", "--suite", "relay-clients", "--target", e.APIURL(), "--conns", fmt.Sprint(n))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() {
		in.Close()
		_ = cmd.Wait() // (the context kills it if it hangs)
	}()
	out := bufio.NewScanner(outp)
	if !out.Scan() || strings.TrimSpace(out.Text()) != "ready" {
		return nil, fmt.Errorf("relay clients process: %q %v", out.Text(), out.Err())
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	heap := int64(after.HeapInuse) - int64(before.HeapInuse)
	stacks := int64(after.StackInuse) - int64(before.StackInuse)
	per := func(v int64) float64 { return float64(v) / 1024 / float64(n) }
	mem := RelayResult{Scenario: fmt.Sprintf("%d idle WebSocket connections on %s", n, e.Identity.Name), Sent: n, Acked: n, Received: e.Relay.Connections(),
		Note: fmt.Sprintf("%.1f KiB per connection, server side alone (clients in another process): heap in use %.1f KiB + stacks %.1f KiB, %.2f goroutines",
			per(heap+stacks), per(heap), per(stacks), float64(runtime.NumGoroutine()-g0)/float64(n))}
	if p := os.Getenv("OUTPOST_BENCH_RELAY_HEAPPROFILE"); p != "" { // where the server side's memory goes
		if f, err := os.Create(p); err == nil {
			_ = pprof.Lookup("heap").WriteTo(f, 0)
			f.Close()
		}
	}
	_, err = e.Store.Write(ctx, func(tx *store.Tx) error {
		for i := range n {
			if _, err := tx.ExecInternal(`INSERT INTO outpost_relay_members (room, user) VALUES ('all', ?) ON CONFLICT DO NOTHING`, fmt.Sprintf("idle-%d", i)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sender, err := dialBench(ctx, e, "fan-sender")
	if err != nil {
		return nil, err
	}
	defer sender.ws.CloseNow()
	const rounds = 5
	for r := range rounds {
		if err := sender.write(ctx, map[string]any{"type": "send", "room": "all", "id": fmt.Sprintf("fan-%d", r), "body": map[string]any{"t": time.Now().UnixNano()}}); err != nil {
			return nil, err
		}
		time.Sleep(time.Second) // each message's fan-out alone
	}
	fmt.Fprintf(in, "rounds %d\n", rounds)
	if !out.Scan() {
		return nil, fmt.Errorf("relay clients process: no report: %v", out.Err())
	}
	var rep fanReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		return nil, fmt.Errorf("relay clients process: report %q: %v", out.Text(), err)
	}
	fan := RelayResult{Scenario: fmt.Sprintf("room message fan-out to %d connections on %s", n, e.Identity.Name), Sent: rounds * n, Acked: rounds * n,
		Received: rep.Received, Lost: rep.Lost, Duplicated: rep.Duplicated, P50: rep.P50, P99: rep.P99,
		Note: fmt.Sprintf("%d room messages, 1 s apart; latency from send to each client (clients in another process, same clock)", rounds)}
	return []RelayResult{mem, fan}, nil
}
