package limiter

import "sync"

// BlockSet holds the blocked keys this node knows: key -> until (Unix ms).
// The node fills it from the replicated outpost_limit_blocks table.
type BlockSet struct {
	mu sync.RWMutex
	m  map[string]int64
}

// NewBlockSet returns an empty set.
func NewBlockSet() *BlockSet { return &BlockSet{m: map[string]int64{}} }

// Set blocks key until the given Unix ms (a past time unblocks it).
func (b *BlockSet) Set(key string, until int64) {
	b.mu.Lock()
	b.m[key] = until
	b.mu.Unlock()
}

// Replace makes the set exactly m.
func (b *BlockSet) Replace(m map[string]int64) {
	b.mu.Lock()
	b.m = m
	b.mu.Unlock()
}

// Blocked reports whether key is blocked at now (Unix ms) and until when.
func (b *BlockSet) Blocked(key string, now int64) (int64, bool) {
	b.mu.RLock()
	until, ok := b.m[key]
	b.mu.RUnlock()
	return until, ok && until > now
}

// Len returns the number of entries (expired ones included).
func (b *BlockSet) Len() int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return len(b.m)
}
