package limiter

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a manual clock shared by a test's limiters.
type clock struct{ ms atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ms.Store(1_700_000_000_000) // a window start for every window up to 10s
	return c
}

func (c *clock) Now() time.Time          { return time.UnixMilli(c.ms.Load()) }
func (c *clock) Add(d time.Duration)     { c.ms.Add(d.Milliseconds()) }
func (c *clock) Set(ms int64)            { c.ms.Store(ms) }
func (c *clock) ms_() int64              { return c.ms.Load() }
func (c *clock) windowEnd(w int64) int64 { s := c.ms.Load(); return s - s%w + w }

// cluster is a set of limiters on a MemNetwork.
type cluster struct {
	net   *MemNetwork
	clk   *clock
	nodes map[string]*Limiter
	order []string
}

// newCluster builds core members named C1..Cn and edges E1..Em.
func newCluster(t interface{ Helper() }, cores, edges int, tune func(*Config)) *cluster {
	t.Helper()
	cl := &cluster{net: NewMemNetwork(), clk: newClock(), nodes: map[string]*Limiter{}}
	var ms []Member
	for i := 1; i <= cores; i++ {
		ms = append(ms, Member{Name: fmt.Sprintf("C%d", i), Core: true})
	}
	for i := 1; i <= edges; i++ {
		ms = append(ms, Member{Name: fmt.Sprintf("E%d", i)})
	}
	for _, m := range ms {
		cfg := Config{Self: m.Name, Members: ms, Transport: cl.net.Transport(m.Name), Now: cl.clk.Now}
		if tune != nil {
			tune(&cfg)
		}
		l := New(cfg)
		cl.net.Add(m.Name, l)
		cl.nodes[m.Name] = l
		cl.order = append(cl.order, m.Name)
	}
	return cl
}

func (cl *cluster) decide(t testing.TB, at, key string, limit int64, window time.Duration) Decision {
	t.Helper()
	d, err := cl.nodes[at].Decide(context.Background(), Request{Key: key, Limit: limit, Window: window, Cost: 1})
	if err != nil {
		t.Fatalf("decide at %s: %v", at, err)
	}
	return d
}

// arbiterOf returns the arbiter every member agrees on (none down).
func (cl *cluster) arbiterOf(key string) string {
	l := cl.nodes[cl.order[0]]
	return l.arbiter(l.mem.Load(), key, cl.clk.ms_())
}
