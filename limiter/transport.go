package limiter

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// DecideCall is a claim or a forwarded decision, sent to the key's owner
// (or arbiter). Handover is the caller's count it hands over with it, once.
type DecideCall struct {
	Key      string `json:"key"`
	Limit    int64  `json:"limit"`
	WindowMS int64  `json:"window_ms"`
	Start    int64  `json:"start"` // window start (Unix ms) on the caller's clock
	Cost     int64  `json:"cost"`
	Handover int64  `json:"handover"`
	// Claim marks the caller's claim: it carries the caller's whole count
	// (Handover), so the owner releases the caller's reserved share. Other
	// calls never release it (the count may be in an announce answer
	// still on its way).
	Claim bool `json:"claim,omitempty"`
}

// DecideReply answers a DecideCall. Redirect names a better owner: the
// caller retries there.
type DecideReply struct {
	Allowed   bool   `json:"allowed"`
	Remaining int64  `json:"remaining"`
	ResetMS   int64  `json:"reset_ms"`
	Owner     string `json:"owner"`
	Redirect  string `json:"redirect,omitempty"`
	// Lease is budget the owner counted as admitted and hands to the
	// caller to admit locally, with no call, before it forwards again.
	Lease int64 `json:"lease,omitempty"`
}

// AnnounceCall tells a member that Owner owns Key for the window at Start.
type AnnounceCall struct {
	Key      string `json:"key"`
	Limit    int64  `json:"limit"`
	WindowMS int64  `json:"window_ms"`
	Start    int64  `json:"start"`
	Owner    string `json:"owner"`
}

// AnnounceReply hands the member's count over. Final is false when the
// member's count is already on its way in a claim (it must not be released).
type AnnounceReply struct {
	Count int64 `json:"count"`
	Final bool  `json:"final"`
	// Owner, if set, is a better owner than the announcer, which hands its
	// own count over to it.
	Owner string `json:"owner,omitempty"`
}

// Transport carries the limiter's calls to other members.
type Transport interface {
	Decide(ctx context.Context, to string, c DecideCall) (DecideReply, error)
	Announce(ctx context.Context, to string, c AnnounceCall) (AnnounceReply, error)
}

// RefusedError is a call the receiver refused (forged, out of range, not
// allowed); Reason is a stable name counted in Stats.PeerRefused.
type RefusedError struct{ Reason, Message string }

func (e *RefusedError) Error() string { return "refused (" + e.Reason + "): " + e.Message }

// ErrUnreachable is returned by MemNetwork for a member that is down.
var ErrUnreachable = errors.New("limiter: member unreachable")

// MemNetwork connects limiters in one process (tests and the bench), with
// injectable latency and failures.
type MemNetwork struct {
	mu    sync.Mutex
	nodes map[string]*Limiter
	down  map[string]bool
	// RTT, if set, is the round-trip time of a call from one member to
	// another; half is spent before the receiver runs, half after.
	RTT func(from, to string) time.Duration
	// Hang makes calls to a down member wait for their context to end
	// (a partition) instead of failing at once (a refused connection).
	Hang bool
	// Calls counts calls by kind ("decide", "announce").
	calls map[string]int64
}

// NewMemNetwork returns an empty network.
func NewMemNetwork() *MemNetwork {
	return &MemNetwork{nodes: map[string]*Limiter{}, down: map[string]bool{}, calls: map[string]int64{}}
}

// Add puts l on the network under name.
func (n *MemNetwork) Add(name string, l *Limiter) {
	n.mu.Lock()
	n.nodes[name] = l
	n.mu.Unlock()
}

// SetDown makes a member unreachable (true) or reachable again.
func (n *MemNetwork) SetDown(name string, down bool) {
	n.mu.Lock()
	n.down[name] = down
	n.mu.Unlock()
}

// Calls returns the number of calls of a kind so far ("" = all).
func (n *MemNetwork) Calls(kind string) int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	if kind == "" {
		var t int64
		for _, v := range n.calls {
			t += v
		}
		return t
	}
	return n.calls[kind]
}

// Transport returns the transport member from uses.
func (n *MemNetwork) Transport(from string) Transport { return &memTransport{n: n, from: from} }

type memTransport struct {
	n    *MemNetwork
	from string
}

func (t *memTransport) target(ctx context.Context, kind, to string) (*Limiter, time.Duration, error) {
	t.n.mu.Lock()
	l, down := t.n.nodes[to], t.n.down[to] || t.n.down[t.from]
	t.n.calls[kind]++
	t.n.mu.Unlock()
	var rtt time.Duration
	if t.n.RTT != nil {
		rtt = t.n.RTT(t.from, to)
	}
	if l == nil || down {
		if t.n.Hang {
			<-ctx.Done()
			return nil, 0, fmt.Errorf("call %s: %w", to, ctx.Err())
		}
		return nil, 0, fmt.Errorf("call %s: %w", to, ErrUnreachable)
	}
	if err := sleep(ctx, rtt/2); err != nil {
		return nil, 0, err
	}
	return l, rtt - rtt/2, nil
}

func (t *memTransport) Decide(ctx context.Context, to string, c DecideCall) (DecideReply, error) {
	l, back, err := t.target(ctx, "decide", to)
	if err != nil {
		return DecideReply{}, err
	}
	r, err := l.HandleDecide(ctx, t.from, c)
	if serr := sleep(ctx, back); serr != nil && err == nil {
		err = serr
	}
	return r, err
}

func (t *memTransport) Announce(ctx context.Context, to string, c AnnounceCall) (AnnounceReply, error) {
	l, back, err := t.target(ctx, "announce", to)
	if err != nil {
		return AnnounceReply{}, err
	}
	r, err := l.HandleAnnounce(ctx, t.from, c)
	if serr := sleep(ctx, back); serr != nil && err == nil {
		err = serr
	}
	return r, err
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
