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
}

func newReadStmts(db *sql.DB, max int) *readStmts {
	return &readStmts{db: db, max: max, m: map[string]*sql.Stmt{}}
}

func (c *readStmts) get(ctx context.Context, query string) (*sql.Stmt, error) {
	c.mu.RLock()
	st := c.m[query]
	c.mu.RUnlock()
	if st != nil {
		return st, nil
	}
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.m[query]; old != nil {
		st.Close()
		return old, nil
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
	return st, nil
}

func (c *readStmts) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, st := range c.m {
		st.Close()
		delete(c.m, k)
	}
}
