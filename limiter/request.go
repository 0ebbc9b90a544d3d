package limiter

import (
	"errors"
	"fmt"
	"time"
)

// Bounds of a request.
const (
	MaxKeyLen = 256                     // bytes
	MaxLimit  = 1_000_000_000           // the largest limit (and cost)
	MaxWindow = 24 * time.Hour          // the longest window
	MinWindow = time.Millisecond        // the shortest window
	maxCount  = int64(MaxLimit) * 1_000 // never a sane count (owner totals included)
)

// Error codes of InputError, stable for clients (docs/API.md).
const (
	CodeBadKey    = "bad_key"
	CodeBadLimit  = "bad_limit"
	CodeBadWindow = "bad_window"
	CodeBadCost   = "bad_cost"
	CodeBadUntil  = "bad_until"
)

// InputError is a request the limiter refuses to decide (400).
type InputError struct {
	Code    string
	Message string
}

func (e *InputError) Error() string { return e.Code + ": " + e.Message }

// ErrFull reports a new key refused because the key table is full of live
// counters (see Config.MaxKeys).
var ErrFull = errors.New("limiter: the key table is full")

// Request asks for Cost units of Key's budget of Limit per Window.
type Request struct {
	Key    string
	Limit  int64
	Window time.Duration
	Cost   int64
}

// Decision answers a Request.
type Decision struct {
	Allowed bool
	// Remaining is, when decided by the owner, the budget left in the
	// window (exact); when decided locally, this POP's local share left.
	Remaining int64
	ResetMS   int64  // Unix ms at which the window ends (or the block, for a blocked key)
	Owner     string // the node that decided
	Path      string // how: local, owner, forwarded, fallback, blocked
}

// The paths of a Decision.
const (
	PathLocal     = "local"     // within this POP's share, no remote call
	PathOwner     = "owner"     // this node owns the key
	PathForwarded = "forwarded" // decided by the owner, one remote call
	PathFallback  = "fallback"  // the owner was lost; local share of the remaining budget
	PathBlocked   = "blocked"   // the key is blocked
)

// Validate checks r and fills defaults (Cost 0 = 1).
func (r *Request) Validate() error {
	if err := ValidKey(r.Key); err != nil {
		return err
	}
	if r.Limit <= 0 || r.Limit > MaxLimit {
		return &InputError{CodeBadLimit, fmt.Sprintf("limit must be an integer from 1 to %d", MaxLimit)}
	}
	if r.Window < MinWindow || r.Window > MaxWindow || r.Window%time.Millisecond != 0 {
		return &InputError{CodeBadWindow, "window must be a whole number of milliseconds from 1ms to 24h, e.g. \"60s\""}
	}
	if r.Cost == 0 {
		r.Cost = 1
	}
	if r.Cost < 0 || r.Cost > r.Limit {
		return &InputError{CodeBadCost, fmt.Sprintf("cost must be from 1 to the limit (%d)", r.Limit)}
	}
	return nil
}

// ValidKey checks a key: 1 to MaxKeyLen bytes of printable ASCII, no spaces.
func ValidKey(k string) error {
	if k == "" {
		return &InputError{CodeBadKey, "missing key: send e.g. \"ip:203.0.113.9\""}
	}
	if len(k) > MaxKeyLen {
		return &InputError{CodeBadKey, fmt.Sprintf("key is %d bytes; the limit is %d", len(k), MaxKeyLen)}
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c <= ' ' || c > '~' {
			return &InputError{CodeBadKey, fmt.Sprintf("key has byte 0x%02x at %d; keys are printable ASCII without spaces", c, i)}
		}
	}
	return nil
}

// windowStart returns the start (Unix ms) of the window of length w ms
// holding now (Unix ms).
func windowStart(now, w int64) int64 {
	s := now - now%w
	if now < 0 && now%w != 0 {
		s -= w
	}
	return s
}
