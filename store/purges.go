package store

import (
	"context"
	"fmt"
)

// purgesSchema holds the site cache's purge log, two more of Outpost's own
// replicated tables (appended to internalSchema):
//
// outpost_purges is one row per purge (POST /v1/purge): its request as
// JSON, the node it was issued at and when. Replicated, so a purge reaches
// every node durably, a node that was away included.
//
// outpost_purge_acks is one row per purge and node that applied it to its
// cache, written by that node: GET /v1/purge/{id} reads it.
const purgesSchema = `
CREATE TABLE outpost_purges (
	id     TEXT PRIMARY KEY NOT NULL,
	body   TEXT NOT NULL DEFAULT '',
	node   TEXT NOT NULL DEFAULT '',
	issued INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE outpost_purge_acks (
	id      TEXT NOT NULL,
	node    TEXT NOT NULL,
	applied INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (id, node)
);`

// Purge is one row of outpost_purges.
type Purge struct {
	ID     string
	Body   string // the request, JSON
	Node   string // issued at
	Issued int64  // Unix ms
}

// PurgeAck says a node applied a purge (Unix ms).
type PurgeAck struct {
	Node    string
	Applied int64
}

// PutPurge records a purge durably, replicated to every node, and returns
// the db_version of the write.
func (s *Store) PutPurge(ctx context.Context, p Purge) (int64, error) {
	return s.Write(ctx, func(tx *Tx) error {
		st, err := s.stmts.get(tx.ctx, `INSERT INTO outpost_purges (id, body, node, issued) VALUES (?, ?, ?, ?)`)
		if err != nil {
			return fmt.Errorf("purge: %w", err)
		}
		if _, err := st.ExecContext(tx.ctx, p.ID, p.Body, s.opts.Identity.Name, p.Issued); err != nil {
			return &Error{Code: CodeInternal, Statement: -1, Message: "purge: " + err.Error(), Err: err}
		}
		return nil
	})
}

// AckPurges records that this node applied the purges ids at the Unix ms
// applied (one transaction).
func (s *Store) AckPurges(ctx context.Context, ids []string, applied int64) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := s.Write(ctx, func(tx *Tx) error {
		st, err := s.stmts.get(tx.ctx, `INSERT INTO outpost_purge_acks (id, node, applied) VALUES (?, ?, ?) ON CONFLICT (id, node) DO NOTHING`)
		if err != nil {
			return fmt.Errorf("purge ack: %w", err)
		}
		for _, id := range ids {
			if _, err := st.ExecContext(tx.ctx, id, s.opts.Identity.Name, applied); err != nil {
				return &Error{Code: CodeInternal, Statement: -1, Message: "purge ack: " + err.Error(), Err: err}
			}
		}
		return nil
	})
	return err
}

// GetPurge returns the purge id and the nodes that have applied it, as far
// as this node knows; ok is false when this node has not seen the purge.
func (s *Store) GetPurge(ctx context.Context, id string) (p Purge, acks []PurgeAck, ok bool, err error) {
	rows, err := s.Query(ctx, Statement{SQL: `SELECT id, body, node, issued FROM outpost_purges WHERE id = ?`, Args: []any{id}})
	if err != nil {
		return p, nil, false, fmt.Errorf("get purge: %w", err)
	}
	if len(rows.Rows) == 0 {
		return p, nil, false, nil
	}
	r := rows.Rows[0]
	p.ID, _ = r[0].(string)
	p.Body, _ = r[1].(string)
	p.Node, _ = r[2].(string)
	p.Issued, _ = r[3].(int64)
	ar, err := s.Query(ctx, Statement{SQL: `SELECT node, applied FROM outpost_purge_acks WHERE id = ? ORDER BY node`, Args: []any{id}})
	if err != nil {
		return p, nil, false, fmt.Errorf("get purge: %w", err)
	}
	for _, r := range ar.Rows {
		var a PurgeAck
		a.Node, _ = r[0].(string)
		a.Applied, _ = r[1].(int64)
		acks = append(acks, a)
	}
	return p, acks, true, nil
}

// UnackedPurges returns up to limit purges this node has not acknowledged.
func (s *Store) UnackedPurges(ctx context.Context, limit int) ([]Purge, error) {
	rows, err := s.Query(ctx, Statement{SQL: `SELECT id, body, node, issued FROM outpost_purges AS p
		WHERE NOT EXISTS (SELECT 1 FROM outpost_purge_acks AS a WHERE a.id = p.id AND a.node = ?) LIMIT ?`,
		Args: []any{s.opts.Identity.Name, limit}})
	if err != nil {
		return nil, fmt.Errorf("unacked purges: %w", err)
	}
	out := make([]Purge, 0, len(rows.Rows))
	for _, r := range rows.Rows {
		var p Purge
		p.ID, _ = r[0].(string)
		p.Body, _ = r[1].(string)
		p.Node, _ = r[2].(string)
		p.Issued, _ = r[3].(int64)
		out = append(out, p)
	}
	return out, nil
}
