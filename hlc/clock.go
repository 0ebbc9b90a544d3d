package hlc

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// DefaultMaxDrift is how far ahead of the local physical clock a remote
// timestamp may be before Observe refuses it (DESIGN.md section 4).
const DefaultMaxDrift = 500 * time.Millisecond

// ErrDrift reports a remote timestamp too far ahead of the local physical
// clock. The change carrying it must not be applied; the sender keeps it and
// retries later.
var ErrDrift = errors.New("hlc: remote clock too far ahead")

// Clock is a hybrid logical clock. It is safe for concurrent use.
type Clock struct {
	now      func() time.Time
	maxDrift time.Duration

	mu   sync.Mutex
	last Timestamp // highest timestamp returned, observed or restored
}

// New returns a Clock reading physical time from now (time.Now when nil)
// and refusing remote timestamps more than maxDrift ahead of it
// (DefaultMaxDrift when maxDrift is zero or negative).
func New(now func() time.Time, maxDrift time.Duration) *Clock {
	if now == nil {
		now = time.Now
	}
	if maxDrift <= 0 {
		maxDrift = DefaultMaxDrift
	}
	return &Clock{now: now, maxDrift: maxDrift}
}

// Now returns the timestamp of a local event: max(physical<<16, last+1).
// It is strictly greater than every timestamp the clock has returned,
// observed or restored, even when the physical clock goes backwards or more
// than 65,536 events happen in one millisecond (the counter then carries
// into the millisecond bits, running slightly ahead of physical time).
func (c *Clock) Now() Timestamp {
	pt := c.physical()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last = max(pt, c.last+1)
	return c.last
}

// Observe advances the clock past ts, the timestamp of a remote change, so
// that every later Now is greater than ts. If ts is more than the maximum
// drift ahead of the physical clock, Observe leaves the clock unchanged and
// returns an error wrapping ErrDrift.
func (c *Clock) Observe(ts Timestamp) error {
	if err := c.Check(ts); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last = max(c.last, ts)
	return nil
}

// Check reports, without changing the clock, whether Observe(ts) would
// fail: an error wrapping ErrDrift if ts is more than the maximum drift
// ahead of the physical clock.
func (c *Clock) Check(ts Timestamp) error {
	pt := c.physical()
	if ahead := time.Duration(ts.Millis()-pt.Millis()) * time.Millisecond; ahead > c.maxDrift {
		return fmt.Errorf("%w: timestamp %s is %v ahead of the local physical clock, more than the maximum drift of %v",
			ErrDrift, ts, ahead, c.maxDrift)
	}
	return nil
}

// Last returns the clock's high-water mark: the highest timestamp it has
// returned, observed or restored. Persist it and hand it to Restore after a
// restart.
func (c *Clock) Last() Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// Restore raises the clock to hwm, a high-water mark persisted from Last
// before a restart, so the clock never goes back below it. It does no drift
// check and never lowers the clock.
func (c *Clock) Restore(hwm Timestamp) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last = max(c.last, hwm)
}

// physical returns the physical clock as a Timestamp with a zero counter.
func (c *Clock) physical() Timestamp {
	return FromParts(c.now().UnixMilli(), 0)
}
