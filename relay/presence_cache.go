package relay

import (
	"sync"
	"time"
)

// presenceTTL bounds how long a resolved presence is reused: the leases
// are checked against the clock when it is resolved, so a lease that ends
// is noticed this much later at most.
const presenceTTL = time.Second

// presenceCache keeps the nodes resolved for a recipient (a user or a
// room), so a send does not run the presence query (a four-way join) per
// message. It is emptied when this node changes presence and when the
// store watcher sees the presence, lease or membership tables change (the
// highest db_version of their clock tables: a cheap index lookup, in the
// watcher's one query per wake). Between a change's commit here and the
// watcher's next look a send may use the old answer: the message then
// reaches a newly connected node by replication, as when the presence had
// not replicated yet (the safety net), and a node that left gets a forward
// that reaches nobody.
type presenceCache struct {
	mu      sync.Mutex
	version int64
	gen     uint64 // bumped by every invalidation: a lookup that began before one is not cached
	m       map[string]presenceEntry
}

type presenceEntry struct {
	nodes []string
	at    time.Time
}

// cacheMax bounds the entries; beyond it the cache starts over.
const cacheMax = 10000

func (c *presenceCache) get(key string, now time.Time) ([]string, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if ok && now.Sub(e.at) < presenceTTL && !now.Before(e.at) {
		return e.nodes, c.gen, true
	}
	return nil, c.gen, false
}

// put caches nodes for key unless the cache was invalidated since gen
// (the lookup's answer may predate the change).
func (c *presenceCache) put(key string, nodes []string, gen uint64, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if c.m == nil || len(c.m) >= cacheMax {
		c.m = map[string]presenceEntry{}
	}
	c.m[key] = presenceEntry{nodes: nodes, at: at}
}

func (c *presenceCache) invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.m = nil
}

// observe records the presence tables' version seen by the watcher and
// empties the cache when it moved.
func (c *presenceCache) observe(version int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if version != c.version {
		c.version = version
		c.gen++
		c.m = nil
	}
}
