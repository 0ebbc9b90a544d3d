package store

import (
	"container/list"
	"context"
	"database/sql"
)

// stmtCache keeps the writer's prepared statements, least recently used
// evicted first. Used only by the writer goroutine.
type stmtCache struct {
	conn  *sql.Conn
	max   int
	order *list.List // of *cached, most recent at front
	m     map[string]*list.Element
}

type cached struct {
	sql  string
	stmt *sql.Stmt
}

func newStmtCache(conn *sql.Conn, max int) *stmtCache {
	return &stmtCache{conn: conn, max: max, order: list.New(), m: map[string]*list.Element{}}
}

func (c *stmtCache) get(ctx context.Context, query string) (*sql.Stmt, error) {
	if e, ok := c.m[query]; ok {
		c.order.MoveToFront(e)
		return e.Value.(*cached).stmt, nil
	}
	st, err := c.conn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.m[query] = c.order.PushFront(&cached{sql: query, stmt: st})
	for c.order.Len() > c.max {
		e := c.order.Back()
		c.order.Remove(e)
		old := e.Value.(*cached)
		delete(c.m, old.sql)
		old.stmt.Close()
	}
	return st, nil
}

func (c *stmtCache) close() {
	for _, e := range c.m {
		e.Value.(*cached).stmt.Close()
	}
	c.m = map[string]*list.Element{}
	c.order.Init()
}
