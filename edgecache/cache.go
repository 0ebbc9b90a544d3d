package edgecache

import (
	"container/list"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// State is what a lookup found.
type State int

// Lookup results.
const (
	Miss    State = iota // nothing usable
	Fresh                // within its TTL
	Stale                // past its TTL but within stale-while-revalidate, or soft-purged: serve and refresh
	Expired              // past that too: usable only while the origin fails, within stale-if-error
)

// URLTag is the tag every entry carries for its URL (path and query), so a
// purge by URL drops every variant of it.
func URLTag(requestURI string) string { return "url:" + requestURI }

// Entry is one cached response.
type Entry struct {
	Key     string      // cache key (primary + variant)
	Primary string      // request URI; entries of one URL share it
	Vary    []string    // request headers the variant was chosen by (canonical names)
	Status  int         //
	Header  http.Header // response headers to replay (no hop-by-hop, no Surrogate-*)
	Body    []byte      //
	Tags    []string    // surrogate keys, URLTag(Primary) included
	Stored  time.Time   // when it was fetched or rendered
	Age     time.Duration
	TTL     time.Duration // fresh until Stored+TTL
	SWR     time.Duration // then stale-while-revalidate
	SIE     time.Duration // then stale-if-error

	soft bool // soft-purged: stale now
	size int64
	elem *list.Element
}

// State tells how e may be used at now.
func (e *Entry) State(now time.Time) State {
	age := now.Sub(e.Stored)
	switch {
	case e.soft:
		// Soft-purged: never fresh again; served stale while one request
		// refreshes it, within its usual stale-while-revalidate bound.
		if age < e.TTL+e.SWR {
			return Stale
		}
		return Expired
	case age < e.TTL:
		return Fresh
	case age < e.TTL+e.SWR:
		return Stale
	}
	return Expired
}

// CurrentAge is the Age header value at now (seconds).
func (e *Entry) CurrentAge(now time.Time) time.Duration { return e.Age + now.Sub(e.Stored) }

func (e *Entry) computeSize() int64 {
	n := int64(256 + len(e.Key) + len(e.Primary) + len(e.Body))
	for k, vs := range e.Header {
		n += int64(len(k)) + 16
		for _, v := range vs {
			n += int64(len(v)) + 16
		}
	}
	for _, t := range e.Tags {
		n += int64(len(t)) + 48 // the tag index's share
	}
	for _, v := range e.Vary {
		n += int64(len(v)) + 16
	}
	return n
}

// Stats are the cache's counters.
type Stats struct {
	Hits, Misses, Stale, Errors atomic.Int64 // lookups by outcome (Errors: stale served for an origin error)
	Evictions, Purged, Refused  atomic.Int64 // entries dropped by the bound, by purges; fills refused (raced a purge, too large)
}

// Cache holds responses up to a byte bound, least recently used first out.
// It is safe for concurrent use.
type Cache struct {
	mu        sync.Mutex
	max       int64
	maxObject int64
	used      int64
	lru       *list.List // front = most recent
	m         map[string]*Entry
	tags      map[string]map[*Entry]struct{}
	vary      map[string]*varyInfo
	seq       uint64            // purge sequence
	purgedAt  map[string]uint64 // tag -> seq of its last purge
	floor     uint64            // fills begun before floor are refused
	// Stats count lookups and drops.
	Stats Stats
}

type varyInfo struct {
	names []string
	refs  int
}

// maxPurgedTags bounds the memory of recent purges kept to refuse racing
// fills; past it they are forgotten and every fill in flight is refused.
const maxPurgedTags = 1 << 16

// New returns a cache of at most maxBytes (entries' bodies, headers, keys
// and tags, with a fixed overhead each); one entry is at most maxObject
// bytes (0 = maxBytes/8).
func New(maxBytes, maxObject int64) *Cache {
	if maxObject <= 0 || maxObject > maxBytes {
		maxObject = maxBytes / 8
	}
	return &Cache{max: maxBytes, maxObject: maxObject, lru: list.New(), m: map[string]*Entry{},
		tags: map[string]map[*Entry]struct{}{}, vary: map[string]*varyInfo{}, purgedAt: map[string]uint64{}}
}

// MaxObject is the largest entry the cache keeps.
func (c *Cache) MaxObject() int64 { return c.maxObject }

// Get returns the entry under key and how it may be used now.
func (c *Cache) Get(key string, now time.Time) (*Entry, State) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[key]
	if e == nil {
		return nil, Miss
	}
	c.lru.MoveToFront(e.elem)
	return e, e.State(now)
}

// Vary returns the request headers the last response for primary varied
// on (nil when unknown or none).
func (c *Cache) Vary(primary string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v := c.vary[primary]; v != nil {
		return v.names
	}
	return nil
}

// Begin returns a token to pass to Put for a fill that starts now: a purge
// of one of the fill's tags after Begin makes Put refuse it, so a response
// built from data older than a purge is never stored after the purge.
func (c *Cache) Begin() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seq
}

// Put stores e (replacing the entry under e.Key) unless a purge since
// token touched one of its tags or it is larger than MaxObject. It reports
// whether e was stored.
func (c *Cache) Put(e *Entry, token uint64) bool {
	e.size = e.computeSize()
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.size > c.maxObject || token < c.floor {
		c.Stats.Refused.Add(1)
		return false
	}
	for _, t := range e.Tags {
		if c.purgedAt[t] > token {
			c.Stats.Refused.Add(1)
			return false
		}
	}
	if old := c.m[e.Key]; old != nil {
		c.remove(old)
	}
	c.m[e.Key] = e
	e.elem = c.lru.PushFront(e)
	c.used += e.size
	for _, t := range e.Tags {
		set := c.tags[t]
		if set == nil {
			set = map[*Entry]struct{}{}
			c.tags[t] = set
		}
		set[e] = struct{}{}
	}
	v := c.vary[e.Primary]
	if v == nil {
		v = &varyInfo{}
		c.vary[e.Primary] = v
	}
	v.names = e.Vary
	v.refs++
	for c.used > c.max && c.lru.Len() > 0 {
		c.remove(c.lru.Back().Value.(*Entry))
		c.Stats.Evictions.Add(1)
	}
	return true
}

// remove drops e; c.mu is held.
func (c *Cache) remove(e *Entry) {
	if c.m[e.Key] != e {
		return
	}
	delete(c.m, e.Key)
	c.lru.Remove(e.elem)
	c.used -= e.size
	for _, t := range e.Tags {
		if set := c.tags[t]; set != nil {
			delete(set, e)
			if len(set) == 0 {
				delete(c.tags, t)
			}
		}
	}
	if v := c.vary[e.Primary]; v != nil {
		if v.refs--; v.refs <= 0 {
			delete(c.vary, e.Primary)
		}
	}
}

// Remove drops the entry under key, if any.
func (c *Cache) Remove(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.m[key]; e != nil {
		c.remove(e)
	}
}

// markPurged records that tag was purged now; c.mu is held.
func (c *Cache) markPurged(tag string) {
	if len(c.purgedAt) >= maxPurgedTags {
		clear(c.purgedAt)
		c.floor = c.seq
	}
	c.purgedAt[tag] = c.seq
}

// PurgeTags drops (or, soft, marks stale) every entry tagged with one of
// tags and returns how many it touched. Fills begun before the purge with
// one of these tags are refused.
func (c *Cache) PurgeTags(tags []string, soft bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	n := 0
	for _, t := range tags {
		c.markPurged(t)
		for e := range c.tags[t] {
			n++
			if soft {
				e.soft = true
			} else {
				c.remove(e)
			}
		}
	}
	c.Stats.Purged.Add(int64(n))
	return n
}

// PurgeAll drops (or, soft, marks stale) every entry.
func (c *Cache) PurgeAll(soft bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	c.floor = c.seq
	n := len(c.m)
	if soft {
		for _, e := range c.m {
			e.soft = true
		}
	} else {
		c.m = map[string]*Entry{}
		c.tags = map[string]map[*Entry]struct{}{}
		c.vary = map[string]*varyInfo{}
		c.lru.Init()
		c.used = 0
	}
	c.Stats.Purged.Add(int64(n))
	return n
}

// Len is the number of entries; Bytes their accounted size.
func (c *Cache) Len() int { c.mu.Lock(); defer c.mu.Unlock(); return len(c.m) }

// Bytes is the accounted size of all entries (at most the bound).
func (c *Cache) Bytes() int64 { c.mu.Lock(); defer c.mu.Unlock(); return c.used }

// VariantKey is the cache key of a request for primary that varies on the
// request headers names.
func VariantKey(primary string, names []string, h http.Header) string {
	if len(names) == 0 {
		return primary
	}
	var b strings.Builder
	b.WriteString(primary)
	for _, n := range names {
		b.WriteString("\x00")
		b.WriteString(n)
		b.WriteString("=")
		b.WriteString(strings.Join(h.Values(n), ","))
	}
	return b.String()
}
