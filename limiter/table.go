package limiter

import (
	"sync"
)

const (
	shardCount = 64
	minSweep   = 1024 // a shard sweeps expired counters when it grows past this, then at twice its size
)

// ckey names a counter: a key and a window length (ms).
type ckey struct {
	key string
	w   int32
}

// Counter states.
const (
	stLocal    uint8 = iota // counting within the local share
	stClaiming              // a claim carrying this POP's count is in flight
	stForward               // the owner is known: forward
	stFallback              // the owner was lost: local share of the remaining budget
	stOwner                 // this node owns the key (see owned)
)

// counter is one key's state on this node for one window: 24 bytes.
type counter struct {
	start  int64  // window start, Unix ms
	n      int32  // stLocal/stFallback: admitted here; stForward: lease left (granted by the owner, already counted there)
	budget int32  // stForward/stClaiming: remaining last reported by the owner; stFallback: the most n may reach
	owner  uint16 // names id of the owner (stClaiming, stForward)
	state  uint8
}

// owned is the owner's state of a claimed key (only on the owner).
type owned struct {
	start    int64
	count    int64            // admitted in the window, handed-over counts included
	reserved int64            // sum of pending
	pending  map[string]int64 // members whose count has not arrived: their share is reserved
	ready    chan struct{}    // closed when the announce round is over
	movedTo  string           // a better owner took the key
}

type shard struct {
	mu      sync.Mutex
	m       map[ckey]counter
	owned   map[ckey]*owned
	sweepAt int
}

type table struct {
	shards   [shardCount]shard
	perShard int
}

func newTable(maxKeys int) *table {
	t := &table{perShard: max(1, maxKeys/shardCount)}
	for i := range t.shards {
		t.shards[i].m = map[ckey]counter{}
		t.shards[i].owned = map[ckey]*owned{}
		t.shards[i].sweepAt = min(minSweep, t.perShard)
	}
	return t
}

func (t *table) shard(key string) *shard {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return &t.shards[h%shardCount]
}

// get returns k's counter, or room for a new one; ok is false when the
// shard is full of live counters. sh.mu must be held.
func (t *table) get(sh *shard, k ckey, now int64) (c counter, ok bool) {
	if c, ok := sh.m[k]; ok {
		return c, true
	}
	if len(sh.m) >= sh.sweepAt {
		t.sweep(sh, now)
	}
	return counter{}, len(sh.m) < t.perShard
}

// sweep drops the counters (and owned states) of ended windows.
func (t *table) sweep(sh *shard, now int64) {
	for k, c := range sh.m {
		if c.start+int64(k.w) <= now {
			delete(sh.m, k)
		}
	}
	for k, o := range sh.owned {
		if o.start+int64(k.w) <= now {
			delete(sh.owned, k)
		}
	}
	sh.sweepAt = min(max(minSweep, 2*len(sh.m)), t.perShard)
}

// len returns the number of counters held.
func (t *table) len() int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}
