package store

import (
	"fmt"
)

// relaySchema holds the chat relay's replicated tables (package relay,
// docs/RELAY.md). They are part of Outpost's internal schema, so clients of
// /v1/exec cannot write them; only the relay does, through Tx.ExecInternal.
//
// outpost_relay_messages: one row per message, keyed by (sender user, client
// message id) so a client's retry finds the row it already wrote; id is
// derived from that key (relay.MessageID), so a retry at another edge is the
// same row and the same id; node the sender's edge (which signs the row),
// hlc the sender's edge's clock at the commit (the order of one sender).
//
// outpost_relay_presence: which node holds a user's connections (until > 0:
// since when; 0: withdrawn). A row counts only while its node's lease in
// outpost_relay_nodes is alive: one row per node is renewed, not one per
// user, and a killed node's users drop out together when its lease ends.
//
// outpost_relay_members: room membership.
//
// outpost_relay_receipts: delivery and read receipts, for the sender.
const relaySchema = `
CREATE TABLE outpost_relay_messages (
	sender  TEXT NOT NULL,
	cid     TEXT NOT NULL,
	id      TEXT NOT NULL DEFAULT '',
	to_user TEXT NOT NULL DEFAULT '',
	room    TEXT NOT NULL DEFAULT '',
	body    TEXT NOT NULL DEFAULT '',
	node    TEXT NOT NULL DEFAULT '',
	hlc     INTEGER NOT NULL DEFAULT 0,
	created INTEGER NOT NULL DEFAULT 0,
	sig     BLOB NOT NULL DEFAULT x'',
	PRIMARY KEY (sender, cid)
);
CREATE TABLE outpost_relay_presence (
	user  TEXT NOT NULL,
	node  TEXT NOT NULL,
	until INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (user, node)
);
CREATE TABLE outpost_relay_nodes (
	node  TEXT PRIMARY KEY NOT NULL,
	until INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE outpost_relay_members (
	room TEXT NOT NULL,
	user TEXT NOT NULL,
	PRIMARY KEY (room, user)
);
CREATE TABLE outpost_relay_receipts (
	msg    TEXT NOT NULL,
	user   TEXT NOT NULL,
	kind   TEXT NOT NULL,
	sender TEXT NOT NULL DEFAULT '',
	cid    TEXT NOT NULL DEFAULT '',
	at     INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (msg, user, kind)
);
CREATE INDEX outpost_relay_messages_id ON outpost_relay_messages (id);
CREATE INDEX outpost_relay_messages_to ON outpost_relay_messages (to_user, hlc);
CREATE INDEX outpost_relay_messages_room ON outpost_relay_messages (room, hlc);
CREATE INDEX outpost_relay_messages_created ON outpost_relay_messages (node, created);
CREATE INDEX outpost_relay_members_user ON outpost_relay_members (user);`

// ExecInternal runs one statement on Outpost's own tables inside the
// transaction, with capture on (what it writes to a replicated table
// replicates). It is for Outpost's services (the chat relay), never for
// client SQL. It returns the rows affected.
func (tx *Tx) ExecInternal(query string, args ...any) (int64, error) {
	st, err := tx.s.stmts.get(tx.ctx, query)
	if err != nil {
		return 0, fmt.Errorf("internal statement: %w", err)
	}
	res, err := st.ExecContext(tx.ctx, args...)
	if err != nil {
		return 0, &Error{Code: CodeInternal, Statement: -1, Message: "internal statement: " + err.Error(), Err: err}
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// QueryInternal reads inside the transaction (it sees the transaction's own
// writes) and returns every row.
func (tx *Tx) QueryInternal(query string, args ...any) ([][]any, error) {
	st, err := tx.s.stmts.get(tx.ctx, query)
	if err != nil {
		return nil, fmt.Errorf("internal query: %w", err)
	}
	rows, err := st.QueryContext(tx.ctx, args...)
	if err != nil {
		return nil, fmt.Errorf("internal query: %w", err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out [][]any
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		out = append(out, vals)
	}
	return out, rows.Err()
}
