package hlc_test

import (
	"errors"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/hlc"
	"pgregory.net/rapid"
)

// TestClock_Properties drives a clock with a fake physical clock that jumps
// in both directions, remote timestamps near and far, restores and bursts,
// and checks the invariants of DESIGN.md section 4 after every step.
func TestClock_Properties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		maxDrift := time.Duration(rapid.IntRange(1, 2000).Draw(t, "maxDriftMs")) * time.Millisecond
		fc := newFakeClock(epoch)
		c := hlc.New(fc.Now, maxDrift)
		var high hlc.Timestamp // model: highest timestamp returned, observed or restored

		now := func(t *rapid.T) {
			got := c.Now()
			if got <= high {
				t.Fatalf("Now() = %s, want after %s", got, high)
			}
			if phys := hlc.FromParts(fc.Now().UnixMilli(), 0); got < phys {
				t.Fatalf("Now() = %s, behind the physical clock %s", got, phys)
			}
			high = got
		}
		// remote draws a timestamp around the physical clock, up to twice the drift ahead.
		remote := func(t *rapid.T) hlc.Timestamp {
			ms := fc.Now().UnixMilli() + rapid.Int64Range(-5000, 2*maxDrift.Milliseconds()).Draw(t, "offsetMs")
			return hlc.FromParts(ms, rapid.Uint16().Draw(t, "counter"))
		}

		t.Repeat(map[string]func(*rapid.T){
			"now": now,
			"burst": func(t *rapid.T) {
				for range rapid.IntRange(1, 70000).Draw(t, "events") {
					now(t)
				}
			},
			"tick": func(t *rapid.T) {
				fc.Add(time.Duration(rapid.Int64Range(-10000, 10000).Draw(t, "stepMs")) * time.Millisecond)
			},
			"observe": func(t *rapid.T) {
				ts := remote(t)
				before := c.Last()
				ahead := time.Duration(ts.Millis()-fc.Now().UnixMilli()) * time.Millisecond
				err := c.Observe(ts)
				if ahead > maxDrift {
					if !errors.Is(err, hlc.ErrDrift) {
						t.Fatalf("Observe(%s) %v ahead = %v, want ErrDrift", ts, ahead, err)
					}
					if got := c.Last(); got != before {
						t.Fatalf("Last() after refused Observe = %s, want unchanged %s", got, before)
					}
					return
				}
				if err != nil {
					t.Fatalf("Observe(%s) %v ahead = %v, want nil", ts, ahead, err)
				}
				high = max(high, ts)
				if got := c.Now(); got <= ts {
					t.Fatalf("Now() after Observe(%s) = %s, want after it", ts, got)
				}
				high = c.Last()
			},
			"restore": func(t *rapid.T) {
				hwm := hlc.Timestamp(rapid.Uint64Range(0, uint64(high)+1<<32).Draw(t, "hwm"))
				before := c.Last()
				c.Restore(hwm)
				if got, want := c.Last(), max(before, hwm); got != want {
					t.Fatalf("Last() after Restore(%s) = %s, want %s", hwm, got, want)
				}
				high = max(high, hwm)
			},
			"": func(t *rapid.T) {
				if got := c.Last(); got != high {
					t.Fatalf("Last() = %s, want %s", got, high)
				}
			},
		})
	})
}
