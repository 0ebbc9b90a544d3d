package limiter

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Config.
const (
	DefaultMaxKeys     = 1_000_000
	DefaultCallTimeout = time.Second
	DefaultDownFor     = 2 * time.Second
)

// Config configures a Limiter.
type Config struct {
	Self      string    // this node's name
	Members   []Member  // every member, this node included; SetMembers changes them
	Transport Transport // calls to other members
	// Now is the clock (tests inject one); nil = time.Now.
	Now func() time.Time
	// MaxKeys bounds the counters held (about 100 bytes each); 0 =
	// DefaultMaxKeys.
	MaxKeys int
	// CallTimeout bounds a call to an owner; past it the POP falls back.
	CallTimeout time.Duration
	// DownFor is how long a member whose call failed is skipped as an
	// arbiter.
	DownFor time.Duration
	// Blocks are the blocked keys; nil = a new empty set.
	Blocks *BlockSet
	// PutBlock, if set, stores a block durably (replicated to every node).
	PutBlock func(ctx context.Context, key string, until int64) error
	// OnForward, if set, observes the added latency of each decision that
	// needed a remote call (claims included).
	OnForward func(d time.Duration, claim bool)
}

// Limiter decides requests against global limits; see the package
// documentation. It is safe for concurrent use.
type Limiter struct {
	cfg   Config
	self  string
	tab   *table
	mem   atomic.Pointer[membership]
	names names
	// Stats count decisions, claims, handovers and refusals.
	Stats *Stats

	downMu sync.Mutex
	down   map[string]int64 // member -> Unix ms until which it is skipped
}

// New returns a limiter for cfg.
func New(cfg Config) *Limiter {
	cfg.MaxKeys = cmp.Or(cfg.MaxKeys, DefaultMaxKeys)
	cfg.CallTimeout = cmp.Or(cfg.CallTimeout, DefaultCallTimeout)
	cfg.DownFor = cmp.Or(cfg.DownFor, DefaultDownFor)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Blocks == nil {
		cfg.Blocks = NewBlockSet()
	}
	l := &Limiter{cfg: cfg, self: cfg.Self, tab: newTable(cfg.MaxKeys), Stats: &Stats{}, down: map[string]int64{}}
	l.SetMembers(cfg.Members)
	return l
}

// SetMembers replaces the members (on a trust list reload).
func (l *Limiter) SetMembers(ms []Member) { l.mem.Store(newMembership(l.self, ms)) }

// Blocks returns the limiter's block set.
func (l *Limiter) Blocks() *BlockSet { return l.cfg.Blocks }

// Keys returns the number of counters held.
func (l *Limiter) Keys() int { return l.tab.len() }

func (l *Limiter) nowMS() int64 { return l.cfg.Now().UnixMilli() }

// Block blocks key until the given Unix ms everywhere: durably through
// PutBlock (replicated), and at once on this node. A past until unblocks.
func (l *Limiter) Block(ctx context.Context, key string, until int64) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	if until < 0 || until > l.nowMS()+int64(100*365*24*time.Hour/time.Millisecond) {
		return &InputError{CodeBadUntil, "until must be a Unix time in milliseconds (0 or a past time unblocks)"}
	}
	if l.cfg.PutBlock != nil {
		if err := l.cfg.PutBlock(ctx, key, until); err != nil {
			return fmt.Errorf("store block: %w", err)
		}
	}
	l.cfg.Blocks.Set(key, until)
	return nil
}

// Decide admits or refuses r.
func (l *Limiter) Decide(ctx context.Context, r Request) (Decision, error) {
	if err := r.Validate(); err != nil {
		return Decision{}, err
	}
	now := l.nowMS()
	if until, ok := l.cfg.Blocks.Blocked(r.Key, now); ok {
		l.Stats.Blocked.Add(1)
		l.Stats.Refused.Add(1)
		return Decision{ResetMS: until, Owner: l.self, Path: PathBlocked}, nil
	}
	w := r.Window.Milliseconds()
	start := windowStart(now, w)
	m := l.mem.Load()
	share := r.Limit / int64(len(m.list))
	k := ckey{r.Key, int32(w)}
	sh := l.tab.shard(r.Key)
	sh.mu.Lock()
	c, ok := l.tab.get(sh, k, now)
	if !ok {
		sh.mu.Unlock()
		l.Stats.Full.Add(1)
		return Decision{}, ErrFull
	}
	if c.start != start {
		c = counter{start: start}
	}
	switch c.state {
	case stLocal:
		if int64(c.n)+r.Cost <= share {
			c.n += int32(r.Cost)
			sh.m[k] = c
			sh.mu.Unlock()
			l.Stats.Local.Add(1)
			return Decision{Allowed: true, Remaining: share - int64(c.n), ResetMS: start + w, Owner: l.self, Path: PathLocal}, nil
		}
		// The threshold: claim the key.
		arb := l.arbiter(m, r.Key, now)
		l.Stats.Claims.Add(1)
		if arb == l.self {
			sh.m[k] = c
			sh.mu.Unlock()
			return l.decideHere(ctx, r, start)
		}
		if arb == "" {
			// No arbiter reachable: keep to the local share.
			c.state, c.n, c.budget = stFallback, 0, 0
			sh.m[k] = c
			sh.mu.Unlock()
			return l.fallback(r, k, start, m)
		}
		handover := int64(c.n)
		c.state, c.n, c.budget, c.owner = stClaiming, 0, 0, l.names.id(arb)
		sh.m[k] = c
		sh.mu.Unlock()
		return l.remote(ctx, r, k, start, arb, handover, true, true)
	case stForward:
		if int64(c.n) >= r.Cost {
			// Within the lease the owner granted: no call.
			c.n -= int32(r.Cost)
			sh.m[k] = c
			sh.mu.Unlock()
			l.Stats.Local.Add(1)
			return Decision{Allowed: true, Remaining: int64(c.n), ResetMS: start + w, Owner: l.self, Path: PathLocal}, nil
		}
		owner := l.names.name(c.owner)
		sh.m[k] = c
		sh.mu.Unlock()
		return l.remote(ctx, r, k, start, owner, 0, false, false)
	case stClaiming:
		// This POP's claim is in flight: the request waits for the
		// claim's announce round at the owner, so it counts as a claim.
		owner := l.names.name(c.owner)
		sh.m[k] = c
		sh.mu.Unlock()
		return l.remote(ctx, r, k, start, owner, 0, true, false)
	case stOwner:
		sh.mu.Unlock()
		return l.decideHere(ctx, r, start)
	default: // stFallback
		sh.mu.Unlock()
		return l.fallback(r, k, start, m)
	}
}

// decideHere decides as the owner (this node is the key's arbiter).
func (l *Limiter) decideHere(ctx context.Context, r Request, start int64) (Decision, error) {
	rep, err := l.ownerDecide(ctx, l.self, DecideCall{Key: r.Key, Limit: r.Limit, WindowMS: r.Window.Milliseconds(), Start: start, Cost: r.Cost})
	if err != nil {
		return Decision{}, err
	}
	if rep.Redirect != "" {
		// A better owner took the key meanwhile: our counter forwards now.
		return l.Decide(ctx, r)
	}
	l.count(PathOwner, rep.Allowed)
	return Decision{Allowed: rep.Allowed, Remaining: rep.Remaining, ResetMS: rep.ResetMS, Owner: l.self, Path: PathOwner}, nil
}

// remote asks the owner (or arbiter) to decide; on failure the POP falls
// back for the rest of the window.
func (l *Limiter) remote(ctx context.Context, r Request, k ckey, start int64, to string, handover int64, claim, carrier bool) (Decision, error) {
	t0 := time.Now()
	call := DecideCall{Key: r.Key, Limit: r.Limit, WindowMS: int64(k.w), Start: start, Cost: r.Cost, Handover: handover, Claim: carrier}
	cctx, cancel := context.WithTimeout(ctx, l.cfg.CallTimeout)
	var (
		rep DecideReply
		err error
	)
	m := l.mem.Load()
	for hop := 0; hop < 3; hop++ {
		rep, err = l.cfg.Transport.Decide(cctx, to, call)
		if err != nil || rep.Redirect == "" || rep.Redirect == to || !m.isMember(rep.Redirect) {
			break
		}
		to = rep.Redirect
	}
	cancel()
	if err == nil && rep.Redirect != "" {
		err = fmt.Errorf("limiter: %s redirects to %s: too many hops", to, rep.Redirect)
	}
	sh := l.tab.shard(r.Key)
	if err != nil {
		if ctx.Err() != nil {
			return Decision{}, ctx.Err() // our client gave up, not the owner
		}
		l.Stats.CallFailed.Add(1)
		l.markDown(to)
		sh.mu.Lock()
		if c, ok := sh.m[k]; ok && c.start == start && (c.state == stClaiming || c.state == stForward) {
			// The owner's last word on what is left, shared among the POPs.
			c.state, c.n, c.budget = stFallback, 0, int32(int64(c.budget)/int64(len(m.list)))
			sh.m[k] = c
		}
		sh.mu.Unlock()
		return l.fallback(r, k, start, m)
	}
	sh.mu.Lock()
	if c, ok := sh.m[k]; ok && c.start == start && (c.state == stClaiming || c.state == stForward) {
		c.state, c.owner, c.budget = stForward, l.names.id(rep.Owner), int32(min(rep.Remaining, MaxLimit))
		c.n = int32(min(int64(c.n)+rep.Lease, MaxLimit))
		sh.m[k] = c
	}
	sh.mu.Unlock()
	if l.cfg.OnForward != nil {
		l.cfg.OnForward(time.Since(t0), claim)
	}
	l.count(PathForwarded, rep.Allowed)
	return Decision{Allowed: rep.Allowed, Remaining: rep.Remaining, ResetMS: rep.ResetMS, Owner: rep.Owner, Path: PathForwarded}, nil
}

// fallback decides within the fallback budget of k's counter.
func (l *Limiter) fallback(r Request, k ckey, start int64, m *membership) (Decision, error) {
	sh := l.tab.shard(r.Key)
	sh.mu.Lock()
	c := sh.m[k]
	allowed := c.start == start && c.state == stFallback && int64(c.n)+r.Cost <= int64(c.budget)
	if allowed {
		c.n += int32(r.Cost)
		sh.m[k] = c
	}
	rem := max(0, int64(c.budget)-int64(c.n))
	sh.mu.Unlock()
	l.count(PathFallback, allowed)
	return Decision{Allowed: allowed, Remaining: rem, ResetMS: start + int64(k.w), Owner: l.self, Path: PathFallback}, nil
}

func (l *Limiter) count(path string, allowed bool) {
	switch path {
	case PathOwner:
		l.Stats.Owner.Add(1)
	case PathForwarded:
		l.Stats.Forwarded.Add(1)
	case PathFallback:
		l.Stats.Fallback.Add(1)
	}
	if !allowed {
		l.Stats.Refused.Add(1)
	}
}

// arbiter returns the candidate of highest rank for key that is not marked
// down, or "" if all are.
func (l *Limiter) arbiter(m *membership, key string, now int64) string {
	best := ""
	for _, c := range m.candidates {
		if c != l.self && l.isDown(c, now) {
			continue
		}
		if best == "" || outranks(c, best, key) {
			best = c
		}
	}
	return best
}

func (l *Limiter) markDown(name string) {
	l.downMu.Lock()
	l.down[name] = l.nowMS() + l.cfg.DownFor.Milliseconds()
	l.downMu.Unlock()
}

func (l *Limiter) isDown(name string, now int64) bool {
	l.downMu.Lock()
	defer l.downMu.Unlock()
	until, ok := l.down[name]
	if ok && until <= now {
		delete(l.down, name)
		return false
	}
	return ok
}
