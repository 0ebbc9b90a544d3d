package ids

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/outpost-edge/outpost"
)

// scriptedRand returns a randRead that yields the given 30-bit values in
// turn, cycling, so tests can force repeats.
func scriptedRand(values ...uint32) func([]byte) {
	i := 0
	return func(b []byte) {
		binary.LittleEndian.PutUint32(b, values[i%len(values)])
		i++
	}
}

func TestGenerator_ID_redraws(t *testing.T) {
	id := outpost.Identity{Name: "EDGE01", Location: "LHR", Code: "43ax", Role: outpost.RoleEdge, Farm: "lhr"}
	frozen := time.Date(2026, 11, 22, 14, 25, 1, 0, time.UTC)

	t.Run("repeat within a second is drawn again", func(t *testing.T) {
		g := NewGenerator(id, 1, func() time.Time { return frozen })
		g.randRead = scriptedRand(7, 7, 7, 8)
		first, second := g.ID(), g.ID()
		if first == second {
			t.Fatalf("ID() twice = %q, want distinct", first)
		}
	})
	t.Run("out-of-range draws are rejected", func(t *testing.T) {
		g := NewGenerator(id, 1, func() time.Time { return frozen })
		g.randRead = scriptedRand(randomSpace, 1<<30-1, 0)
		got, err := ParseID(g.ID())
		if err != nil {
			t.Fatal(err)
		}
		if want := string(Alphabet[0]); got.Random[2:] != want+want+want+want+want+want {
			t.Errorf("random part = %q, want six %q", got.Random[2:], want)
		}
	})
	t.Run("same random draws, different boots", func(t *testing.T) {
		// Uniqueness across boots does not rely on the random characters.
		for boot := range uint64(BootCycle - 1) {
			a := NewGenerator(id, boot, func() time.Time { return frozen })
			b := NewGenerator(id, boot+1, func() time.Time { return frozen })
			a.randRead, b.randRead = scriptedRand(42), scriptedRand(42)
			if x, y := a.ID(), b.ID(); x == y {
				t.Fatalf("boots %d and %d both issued %q", boot, boot+1, x)
			}
		}
	})
	t.Run("clock stepping back keeps the remembered second", func(t *testing.T) {
		now := frozen
		g := NewGenerator(id, 1, func() time.Time { return now })
		g.randRead = scriptedRand(5, 5, 6)
		first := g.ID()
		now = now.Add(-time.Hour)
		if second := g.ID(); second == first {
			t.Fatalf("ID() after the clock stepped back = %q again", second)
		}
	})
}
