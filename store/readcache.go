package store

import (
	"context"
	"database/sql"
	"sync"
)

// readStmts caches prepared statements on a pool (the replication readers':
// ChangesSince), so a statement is parsed once per connection rather than
// per call; use them inside a transaction (Tx.StmtContext).
type readStmts struct {
	db  *sql.DB
	max int
	mu  sync.RWMutex
	m   map[string]*sql.Stmt

	preparing map[string]bool // queries being prepared in the background
	closed    bool
}

func newReadStmts(db *sql.DB, max int) *readStmts {
	return &readStmts{db: db, max: max, m: map[string]*sql.Stmt{}, preparing: map[string]bool{}}
}

// lookup returns the cached statement for query, or nil. On a miss it
// prepares query in the background for the next call: preparing on the
// pool needs a free connection, and a caller inside a transaction holds
// one, so waiting for it here could wait for ever once every connection
// of the pool is held by such a caller. The caller runs the query on its
// own transaction meanwhile.
func (c *readStmts) lookup(query string) *sql.Stmt {
	c.mu.RLock()
	st := c.m[query]
	pending := c.preparing[query]
	c.mu.RUnlock()
	if st != nil || pending {
		return st
	}
	c.mu.Lock()
	if c.m[query] != nil || c.preparing[query] || c.closed {
		st := c.m[query]
		c.mu.Unlock()
		return st
	}
	c.preparing[query] = true
	c.mu.Unlock()
	go c.prepare(query)
	return nil
}

func (c *readStmts) prepare(query string) {
	st, err := c.db.PrepareContext(context.Background(), query)
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.preparing, query)
	if err != nil {
		return // asked again on the next miss
	}
	if c.closed || c.m[query] != nil {
		st.Close()
		return
	}
	if len(c.m) >= c.max {
		// Many distinct statements: start over rather than track recency on
		// the read path's hot lock.
		for k, old := range c.m {
			old.Close()
			delete(c.m, k)
		}
	}
	c.m[query] = st
}

func (c *readStmts) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for k, st := range c.m {
		st.Close()
		delete(c.m, k)
	}
}
