package hlc_test

import (
	"sync"
	"time"
)

// fakeClock is a physical clock the test moves by hand, in any direction.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{t: t} }

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeClock) Add(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.t = f.t.Add(d)
}

// epoch is a fixed physical time used by the tests: 2024-11-22 04:33:20.123 UTC.
var epoch = time.UnixMilli(1732250000123)
