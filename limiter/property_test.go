package limiter

import (
	"context"
	"fmt"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestProperty_AdmittedBound: in any sequence of requests at any members,
// window changes and owner losses, a window admits at most the limit if no
// core member was down during it or DownFor before it, and at most twice
// the limit otherwise (the documented fallback bound).
func TestProperty_AdmittedBound(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		cores := rapid.IntRange(1, 2).Draw(rt, "cores")
		edges := rapid.IntRange(1, 5).Draw(rt, "edges")
		limit := rapid.Int64Range(1, 60).Draw(rt, "limit")
		cl := newCluster(rt, cores, edges, nil)
		const w = int64(1000)
		admitted := map[int64]int64{} // window start -> admitted cost
		lossy := map[int64]bool{}     // windows in which, or DownFor before which, a core member was down
		down := map[string]bool{}
		steps := rapid.IntRange(1, 400).Draw(rt, "steps")
		for i := 0; i < steps; i++ {
			start := windowStart(cl.clk.ms_(), w)
			for _, d := range down {
				if d {
					for s := start; s <= start+DefaultDownFor.Milliseconds()+w; s += w {
						lossy[s] = true
					}
				}
			}
			switch op := rapid.IntRange(0, 19).Draw(rt, "op"); {
			case op == 0:
				cl.clk.Add(time.Duration(rapid.Int64Range(1, 1500).Draw(rt, "ms")) * time.Millisecond)
			case op == 1:
				name := fmt.Sprintf("C%d", rapid.IntRange(1, cores).Draw(rt, "core"))
				down[name] = rapid.Bool().Draw(rt, "down")
				cl.net.SetDown(name, down[name])
				if down[name] {
					for s := start; s <= start+DefaultDownFor.Milliseconds()+w; s += w {
						lossy[s] = true
					}
				}
			default:
				at := cl.order[rapid.IntRange(0, len(cl.order)-1).Draw(rt, "at")]
				cost := rapid.Int64Range(1, limit).Draw(rt, "cost")
				d, err := cl.nodes[at].Decide(context.Background(), Request{Key: "k", Limit: limit, Window: time.Duration(w) * time.Millisecond, Cost: cost})
				if err != nil {
					rt.Fatalf("decide: %v", err)
				}
				if d.Allowed {
					admitted[start] += cost
				}
			}
		}
		for start, n := range admitted {
			bound := limit
			if lossy[start] {
				bound = 2 * limit
			}
			if n > bound {
				rt.Fatalf("window %d admitted %d; bound %d (lossy %v)", start, n, bound, lossy[start])
			}
		}
	})
}
