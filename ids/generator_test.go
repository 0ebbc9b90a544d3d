package ids_test

import (
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/ids"
	"pgregory.net/rapid"
)

var (
	edge01 = outpost.Identity{Name: "EDGE01", Location: "LHR", Farm: "lhr", Role: outpost.RoleEdge, Code: "43ax"}
	idRE   = regexp.MustCompile(`^EDGE01-LHR-43ax-[23456789abcdefghjkmnpqrstuvwxyz]{8}-[0-9]{12}$`)
	frozen = time.Date(2026, 11, 22, 14, 25, 1, 0, time.UTC)
)

// frozenAt returns a clock stuck at t.
func frozenAt(t time.Time) func() time.Time { return func() time.Time { return t } }

func TestNewGenerator(t *testing.T) {
	t.Run("nil now uses the wall clock", func(t *testing.T) {
		before := time.Now().UTC().Truncate(time.Second)
		p, err := ids.ParseID(ids.NewGenerator(edge01, 1, nil).ID())
		if err != nil {
			t.Fatal(err)
		}
		if after := time.Now().UTC(); p.Time.Before(before) || p.Time.After(after) {
			t.Errorf("ID time = %v, want within [%v, %v]", p.Time, before, after)
		}
	})
}

func TestGenerator_ID(t *testing.T) {
	t.Run("format", func(t *testing.T) {
		g := NewGeneratorAt(7, frozen)
		got := g.ID()
		if !idRE.MatchString(got) {
			t.Fatalf("ID() = %q, want match for %s", got, idRE)
		}
		if want := "-221126142501"; got[len(got)-len(want):] != want {
			t.Errorf("ID() = %q, want it to end in %q", got, want)
		}
		p, err := ids.ParseID(got)
		if err != nil {
			t.Fatalf("ParseID(%q) = %v", got, err)
		}
		if p.Boot != 7 {
			t.Errorf("ParseID(%q).Boot = %d, want 7", got, p.Boot)
		}
	})

	t.Run("UTC whatever the clock's zone", func(t *testing.T) {
		tokyo := time.FixedZone("JST", 9*3600)
		got := ids.NewGenerator(edge01, 1, frozenAt(frozen.In(tokyo))).ID()
		if want := "-221126142501"; got[len(got)-len(want):] != want {
			t.Errorf("ID() = %q, want it to end in %q", got, want)
		}
	})

	t.Run("100k IDs in one frozen second are distinct", func(t *testing.T) {
		g := NewGeneratorAt(1, frozen)
		seen := make(map[string]bool, 100_000)
		for range 100_000 {
			id := g.ID()
			if seen[id] {
				t.Fatalf("ID() repeated %q", id)
			}
			seen[id] = true
		}
	})

	t.Run("100k IDs over a running clock are distinct", func(t *testing.T) {
		now := frozen
		g := ids.NewGenerator(edge01, 1, func() time.Time { now = now.Add(time.Millisecond); return now })
		seen := make(map[string]bool, 100_000)
		for range 100_000 {
			id := g.ID()
			if seen[id] {
				t.Fatalf("ID() repeated %q", id)
			}
			seen[id] = true
		}
	})

	t.Run("clock going backwards", func(t *testing.T) {
		steps := []time.Duration{0, -time.Hour, -24 * time.Hour, 2 * time.Second, 25 * time.Hour}
		wantTimes := []string{"221126142501", "221126142501", "221126142501", "221126142501", "221126142503"}
		now := frozen
		g := ids.NewGenerator(edge01, 1, func() time.Time { return now })
		seen := make(map[string]bool)
		for i, step := range steps {
			now = now.Add(step)
			for range 1000 {
				id := g.ID()
				if seen[id] {
					t.Fatalf("step %d: ID() repeated %q", i, id)
				}
				seen[id] = true
				if got := id[len(id)-12:]; got != wantTimes[i] {
					t.Fatalf("step %d: ID() = %q, want time %s", i, id, wantTimes[i])
				}
			}
		}
	})

	t.Run("concurrent callers get distinct IDs", func(t *testing.T) {
		g := ids.NewGenerator(edge01, 1, nil)
		const workers, each = 8, 5000
		results := make([][]string, workers)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for range each {
					results[w] = append(results[w], g.ID())
				}
			})
		}
		wg.Wait()
		seen := make(map[string]bool, workers*each)
		for _, got := range results {
			for _, id := range got {
				if seen[id] {
					t.Fatalf("ID() repeated %q", id)
				}
				seen[id] = true
			}
		}
	})
}

// TestGenerator_ID_boots checks that two runs of the same node with
// different boot counters, stamping the same frozen second, never collide.
func TestGenerator_ID_boots(t *testing.T) {
	t.Run("every pair of consecutive boots", func(t *testing.T) {
		for boot := range uint64(ids.BootCycle) {
			a, b := NewGeneratorAt(boot, frozen), NewGeneratorAt(boot+1, frozen)
			assertDisjoint(t, boot, boot+1, issue(a, 50), issue(b, 50))
		}
	})
	t.Run("random pairs", func(t *testing.T) {
		rapid.Check(t, func(t *rapid.T) {
			b1 := rapid.Uint64().Draw(t, "boot1")
			b2 := rapid.Uint64().Filter(func(b uint64) bool { return b%ids.BootCycle != b1%ids.BootCycle }).Draw(t, "boot2")
			a, b := NewGeneratorAt(b1, frozen), NewGeneratorAt(b2, frozen)
			assertDisjoint(t, b1, b2, issue(a, 200), issue(b, 200))
		})
	})
}

// NewGeneratorAt returns a generator for edge01 with the given boot counter
// and a clock frozen at t.
func NewGeneratorAt(boot uint64, t time.Time) *ids.Generator {
	return ids.NewGenerator(edge01, boot, frozenAt(t))
}

// issue returns n IDs from g.
func issue(g *ids.Generator, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = g.ID()
	}
	return out
}

// assertDisjoint fails when the IDs of boot b1 and boot b2 share one.
func assertDisjoint(t interface{ Fatalf(string, ...any) }, b1, b2 uint64, x, y []string) {
	seen := make(map[string]bool, len(x))
	for _, id := range x {
		seen[id] = true
	}
	for _, id := range y {
		if seen[id] {
			t.Fatalf("boots %d and %d both issued %q", b1, b2, id)
		}
	}
}
