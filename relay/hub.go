package relay

import (
	"context"
	"sync"
	"sync/atomic"
)

// conn is one client connection (one device of a user) as the hub sees it:
// a bounded queue of frames drained by the connection's writer. The queue
// is a slice that exists only while frames wait, and the writer only while
// there is something to write (wake starts it): an idle connection holds
// neither a buffer nor a goroutine for its output.
type conn struct {
	user, device string
	limit        int             // frames queued before the connection is closed as slow
	kill         func(slow bool) // closes the connection (slow: as a slow consumer)
	wake         func()          // the queue got frames and no writer runs: start one
	closed       atomic.Bool

	mu        sync.Mutex
	queue     []outFrame        // frames to write, oldest first
	qbytes    int               // bytes in queue
	writing   bool              // a writer drains queue (wake was called)
	space     chan struct{}     // closed when a frame leaves a full queue (pushWait)
	replaying bool              // frames wait in pending until the replay is sent
	pending   [][]byte          // live frames that arrived during the replay
	seen      map[string]msgRef // delivered message ids (and what a receipt needs)
	order     []string          // seen, oldest first (bounded)
}

// outFrame is a queued frame and the message it carries (for the tracer).
type outFrame struct {
	b  []byte
	id string
}

// maxSeen bounds the message IDs a connection remembers for dedupe.
const maxSeen = 4096

func newConn(user, device string, buffer int, kill func(bool)) *conn {
	return &conn{user: user, device: device, limit: buffer, kill: kill, replaying: true}
}

// msgRef is what a receipt for a delivered message needs.
type msgRef struct{ from, cid string }

// markSeen records key and reports whether it was new.
func (c *conn) markSeen(key string, ref msgRef) bool {
	if c.seen == nil {
		c.seen = map[string]msgRef{}
	}
	if _, ok := c.seen[key]; ok {
		return false
	}
	c.seen[key] = ref
	c.order = append(c.order, key)
	if len(c.order) > maxSeen {
		delete(c.seen, c.order[0])
		c.order = c.order[1:]
	}
	return true
}

// offer queues a live frame unless the connection already got key. It
// returns false for a duplicate. A full queue closes the connection as a
// slow consumer (the message stays durable; the client resumes with since).
func (c *conn) offer(key string, ref msgRef, frame []byte, st *Stats) bool {
	c.mu.Lock()
	if !c.markSeen(key, ref) {
		c.mu.Unlock()
		st.Redeliveries.Add(1)
		return false
	}
	if c.replaying {
		c.pending = append(c.pending, frame)
		c.mu.Unlock()
		return true
	}
	c.mu.Unlock()
	return c.pushID(frame, key, st)
}

func (c *conn) push(frame []byte, st *Stats) bool { return c.pushID(frame, "", st) }

// pushID queues a frame without waiting; a full queue closes the
// connection as a slow consumer.
func (c *conn) pushID(frame []byte, id string, st *Stats) bool {
	if c.closed.Load() {
		return false
	}
	c.mu.Lock()
	if c.full(len(frame)) {
		c.mu.Unlock()
		st.SlowConsumers.Add(1)
		c.kill(true)
		return false
	}
	start := c.enqueue(outFrame{frame, id})
	c.mu.Unlock()
	st.MessagesOut.Add(1)
	if start && c.wake != nil {
		c.wake()
	}
	return true
}

// pushWait queues a frame, waiting while the queue is full (the replay:
// the client reads at its pace).
func (c *conn) pushWait(ctx context.Context, frame []byte, id string, st *Stats) error {
	for {
		c.mu.Lock()
		if !c.full(len(frame)) {
			start := c.enqueue(outFrame{frame, id})
			c.mu.Unlock()
			st.MessagesOut.Add(1)
			if start && c.wake != nil {
				c.wake()
			}
			return nil
		}
		if c.space == nil {
			c.space = make(chan struct{})
		}
		space := c.space
		c.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// maxQueueBytes bounds the bytes queued on a connection (besides its
// frame limit): a frame that would pass it finds the queue full.
const maxQueueBytes = 1 << 20

// full reports whether a frame of n bytes does not fit (c.mu held).
func (c *conn) full(n int) bool {
	return len(c.queue) >= c.limit || len(c.queue) > 0 && c.qbytes+n > maxQueueBytes
}

// enqueue appends f (c.mu held) and reports whether a writer must start.
func (c *conn) enqueue(f outFrame) bool {
	c.queue = append(c.queue, f)
	c.qbytes += len(f.b)
	if c.writing {
		return false
	}
	c.writing = true
	return true
}

// next takes the oldest queued frame for the writer; when there is none it
// ends the writer's turn (ok false: the next frame calls wake again).
func (c *conn) next() (f outFrame, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) == 0 {
		c.queue = nil // (the backing array goes)
		c.writing = false
		return outFrame{}, false
	}
	f = c.queue[0]
	c.qbytes -= len(f.b)
	c.queue[0] = outFrame{}
	c.queue = c.queue[1:]
	if c.space != nil {
		close(c.space)
		c.space = nil
	}
	return f, true
}

// hub indexes the node's connections by user.
type hub struct {
	mu    sync.RWMutex
	users map[string]map[*conn]struct{}
	n     int
}

func newHub() *hub { return &hub{users: map[string]map[*conn]struct{}{}} }

// add registers c and reports whether it is the user's first connection
// here.
func (h *hub) add(c *conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.users[c.user]
	first := set == nil
	if first {
		set = map[*conn]struct{}{}
		h.users[c.user] = set
	}
	set[c] = struct{}{}
	h.n++
	return first
}

// remove unregisters c and reports whether it was the user's last one.
func (h *hub) remove(c *conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.users[c.user]
	if _, ok := set[c]; !ok {
		return false
	}
	delete(set, c)
	h.n--
	if len(set) == 0 {
		delete(h.users, c.user)
		return true
	}
	return false
}

func (h *hub) count() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.n
}

func (h *hub) has(user string) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.users[user]) > 0
}

// conns returns the user's connections.
func (h *hub) conns(user string) []*conn {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]*conn, 0, len(h.users[user]))
	for c := range h.users[user] {
		out = append(out, c)
	}
	return out
}

func (h *hub) userList() []string {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]string, 0, len(h.users))
	for u := range h.users {
		out = append(out, u)
	}
	return out
}

// closeAll closes every connection and returns the users that had one.
func (h *hub) closeAll() []string {
	users := h.userList()
	h.mu.RLock()
	var all []*conn
	for _, set := range h.users {
		for c := range set {
			all = append(all, c)
		}
	}
	h.mu.RUnlock()
	for _, c := range all {
		c.kill(false)
	}
	return users
}

// Stats are the relay's counters (exported as metrics by the node).
type Stats struct {
	MessagesIn    atomic.Int64 // messages accepted from clients (durable)
	MessagesOut   atomic.Int64 // frames pushed to client connections
	Duplicates    atomic.Int64 // sends that were retries of a stored message
	Redeliveries  atomic.Int64 // a message reached a connection again and was suppressed
	Forwarded     atomic.Int64 // forwards answered by the target (or relayed)
	ForwardFailed atomic.Int64 // forwards given up (replication delivers them)
	Refused       atomic.Int64 // forwards refused (forged sender or signature, not a relay)
	SlowConsumers atomic.Int64 // connections closed because their queue was full
	BadFrames     atomic.Int64 // malformed client frames
	Drops         atomic.Int64 // messages lost on the server side: should stay 0
}

// delivered returns what a receipt for the message id needs, if this
// connection got it.
func (c *conn) delivered(id string) (msgRef, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ref, ok := c.seen[id]
	return ref, ok && ref.from != ""
}
