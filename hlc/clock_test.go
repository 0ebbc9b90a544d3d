package hlc_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/hlc"
)

func TestNew(t *testing.T) {
	t.Run("nil now uses the wall clock", func(t *testing.T) {
		before := time.Now().UnixMilli()
		got := hlc.New(nil, 0).Now().Millis()
		after := time.Now().UnixMilli()
		if got < before || got > after {
			t.Errorf("Now().Millis() = %d, want within [%d, %d]", got, before, after)
		}
	})
	t.Run("zero max drift uses the default", func(t *testing.T) {
		fc := newFakeClock(epoch)
		c := hlc.New(fc.Now, 0)
		phys := hlc.FromParts(epoch.UnixMilli(), 0)
		if err := c.Observe(phys + hlc.Timestamp(hlc.DefaultMaxDrift.Milliseconds())<<16); err != nil {
			t.Errorf("Observe(at default drift) = %v, want nil", err)
		}
		if err := c.Observe(phys + hlc.Timestamp(hlc.DefaultMaxDrift.Milliseconds()+1)<<16); !errors.Is(err, hlc.ErrDrift) {
			t.Errorf("Observe(past default drift) = %v, want ErrDrift", err)
		}
	})
}

func TestClock_Now(t *testing.T) {
	ms := epoch.UnixMilli()
	tests := []struct {
		name  string
		steps []time.Duration // physical clock moves before each Now
		want  []hlc.Timestamp
	}{
		{
			name:  "follows physical time",
			steps: []time.Duration{0, time.Millisecond, 5 * time.Millisecond},
			want:  []hlc.Timestamp{hlc.FromParts(ms, 0), hlc.FromParts(ms+1, 0), hlc.FromParts(ms+6, 0)},
		},
		{
			name:  "counts within one millisecond",
			steps: []time.Duration{0, 0, 0},
			want:  []hlc.Timestamp{hlc.FromParts(ms, 0), hlc.FromParts(ms, 1), hlc.FromParts(ms, 2)},
		},
		{
			name:  "physical clock goes backwards",
			steps: []time.Duration{0, -time.Second, 500 * time.Millisecond, time.Second},
			want:  []hlc.Timestamp{hlc.FromParts(ms, 0), hlc.FromParts(ms, 1), hlc.FromParts(ms, 2), hlc.FromParts(ms+500, 0)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := newFakeClock(epoch)
			c := hlc.New(fc.Now, 0)
			for i, step := range tt.steps {
				fc.Add(step)
				if got := c.Now(); got != tt.want[i] {
					t.Errorf("Now() #%d = %s, want %s", i, got, tt.want[i])
				}
			}
		})
	}

	t.Run("70000 events in one millisecond", func(t *testing.T) {
		fc := newFakeClock(epoch)
		c := hlc.New(fc.Now, 0)
		prev := c.Now()
		for i := 1; i < 70000; i++ {
			got := c.Now()
			if got <= prev {
				t.Fatalf("Now() #%d = %s, not after %s", i, got, prev)
			}
			prev = got
		}
		if want := hlc.FromParts(ms, 0) + 69999; prev != want {
			t.Errorf("last Now() = %s, want %s (counter carried into the milliseconds)", prev, want)
		}
		fc.Add(time.Millisecond) // physical clock is now behind the carried clock
		if got := c.Now(); got != prev+1 {
			t.Errorf("Now() after carry = %s, want %s", got, prev+1)
		}
	})

	t.Run("concurrent callers get distinct increasing timestamps", func(t *testing.T) {
		c := hlc.New(nil, 0)
		const workers, each = 8, 2000
		results := make([][]hlc.Timestamp, workers)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for range each {
					results[w] = append(results[w], c.Now())
				}
			})
		}
		wg.Wait()
		seen := make(map[hlc.Timestamp]bool, workers*each)
		for w, got := range results {
			for i, ts := range got {
				if seen[ts] {
					t.Fatalf("timestamp %s returned twice", ts)
				}
				seen[ts] = true
				if i > 0 && ts <= got[i-1] {
					t.Fatalf("worker %d: Now() = %s, not after %s", w, ts, got[i-1])
				}
			}
		}
	})
}

func TestClock_Observe(t *testing.T) {
	ms := epoch.UnixMilli()
	tests := []struct {
		name     string
		remote   hlc.Timestamp
		wantErr  bool
		wantLast hlc.Timestamp // Last() after Observe; the clock has issued FromParts(ms, 0) before
		wantNext hlc.Timestamp // the following Now()
	}{
		{"behind", hlc.FromParts(ms-1000, 9), false, hlc.FromParts(ms, 0), hlc.FromParts(ms, 1)},
		{"equal", hlc.FromParts(ms, 0), false, hlc.FromParts(ms, 0), hlc.FromParts(ms, 1)},
		{"same millisecond higher counter", hlc.FromParts(ms, 40), false, hlc.FromParts(ms, 40), hlc.FromParts(ms, 41)},
		{"ahead within drift", hlc.FromParts(ms+300, 2), false, hlc.FromParts(ms+300, 2), hlc.FromParts(ms+300, 3)},
		{"exactly at max drift", hlc.FromParts(ms+500, 0xffff), false, hlc.FromParts(ms+500, 0xffff), hlc.FromParts(ms+501, 0)},
		{"past max drift", hlc.FromParts(ms+501, 0), true, hlc.FromParts(ms, 0), hlc.FromParts(ms, 1)},
		{"far future", hlc.FromParts(ms+24*3600*1000, 0), true, hlc.FromParts(ms, 0), hlc.FromParts(ms, 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := newFakeClock(epoch)
			c := hlc.New(fc.Now, 500*time.Millisecond)
			c.Now()
			err := c.Observe(tt.remote)
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("Observe(%s) error = %v, want error %v", tt.remote, err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, hlc.ErrDrift) {
				t.Errorf("Observe(%s) error = %v, want it to wrap ErrDrift", tt.remote, err)
			}
			if got := c.Last(); got != tt.wantLast {
				t.Errorf("Last() = %s, want %s", got, tt.wantLast)
			}
			if got := c.Now(); got != tt.wantNext {
				t.Errorf("Now() = %s, want %s", got, tt.wantNext)
			}
		})
	}

	t.Run("error names how far ahead and the limit", func(t *testing.T) {
		fc := newFakeClock(epoch)
		c := hlc.New(fc.Now, 250*time.Millisecond)
		err := c.Observe(hlc.FromParts(ms+1500, 0))
		if err == nil {
			t.Fatal("Observe() = nil, want ErrDrift")
		}
		for _, want := range []string{"1.5s ahead", "250ms"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Observe() error = %q, want it to contain %q", err, want)
			}
		}
	})

	t.Run("accepted once the physical clock catches up", func(t *testing.T) {
		fc := newFakeClock(epoch)
		c := hlc.New(fc.Now, 0)
		remote := hlc.FromParts(ms+2000, 0)
		if err := c.Observe(remote); !errors.Is(err, hlc.ErrDrift) {
			t.Fatalf("Observe() = %v, want ErrDrift", err)
		}
		fc.Add(1600 * time.Millisecond)
		if err := c.Observe(remote); err != nil {
			t.Fatalf("Observe() after catching up = %v, want nil", err)
		}
		if got := c.Now(); got <= remote {
			t.Errorf("Now() = %s, want after %s", got, remote)
		}
	})
}

func TestClock_Restore(t *testing.T) {
	ms := epoch.UnixMilli()
	tests := []struct {
		name     string
		hwm      hlc.Timestamp
		wantNext hlc.Timestamp // the clock has issued FromParts(ms, 5) before
	}{
		{"below current", hlc.FromParts(ms-10, 0), hlc.FromParts(ms, 6)},
		{"equal to current", hlc.FromParts(ms, 5), hlc.FromParts(ms, 6)},
		{"far ahead: no drift check", hlc.FromParts(ms+3600*1000, 7), hlc.FromParts(ms+3600*1000, 8)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := newFakeClock(epoch)
			c := hlc.New(fc.Now, 0)
			c.Restore(hlc.FromParts(ms, 4))
			c.Now()
			c.Restore(tt.hwm)
			if got := c.Now(); got != tt.wantNext {
				t.Errorf("Now() = %s, want %s", got, tt.wantNext)
			}
		})
	}

	t.Run("restart with the wall clock set back", func(t *testing.T) {
		fc := newFakeClock(epoch)
		before := hlc.New(fc.Now, 0)
		for range 10 {
			before.Now()
		}
		hwm := before.Last()

		fc.Add(-time.Hour)
		after := hlc.New(fc.Now, 0)
		after.Restore(hwm)
		if got := after.Now(); got <= hwm {
			t.Errorf("Now() after restart = %s, want after persisted %s", got, hwm)
		}
	})
}

func TestClock_Last(t *testing.T) {
	fc := newFakeClock(epoch)
	c := hlc.New(fc.Now, 0)
	if got := c.Last(); got != 0 {
		t.Errorf("Last() of a new clock = %s, want 0", got)
	}
	ts := c.Now()
	if got := c.Last(); got != ts {
		t.Errorf("Last() = %s, want the last Now() %s", got, ts)
	}
}
