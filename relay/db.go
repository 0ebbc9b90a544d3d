package relay

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/outpost-edge/outpost/store"
)

// The relay's SQL on the replicated tables of store/relay.go.
const (
	msgCols = `id, cid, sender, to_user, room, body, node, hlc, created, sig`
	// A presence row counts only if the node it names wrote it and that
	// node's lease is alive and was written by that node too: the origin
	// of each row's clock entry is checked (another node's forged row is
	// ignored).
	sqlPresenceFrom = `SELECT DISTINCT p.node FROM outpost_relay_presence AS p
		JOIN outpost_relay_nodes AS n ON n.node = p.node
		JOIN outpost_clock__outpost_relay_presence AS c ON c.pk0 = p.user AND c.pk1 = p.node AND c.col = 'until'
		JOIN outpost_clock__outpost_relay_nodes AS cn ON cn.pk0 = n.node AND cn.col = 'until'
		WHERE p.until > 0 AND n.until > ?1
		AND substr(c.origin, 1, length(p.node) + 1) = p.node || '/'
		AND substr(cn.origin, 1, length(n.node) + 1) = n.node || '/' `
	sqlPresence     = sqlPresenceFrom + `AND p.user = ?2`
	sqlRoomPresence = sqlPresenceFrom + `AND p.user IN (SELECT user FROM outpost_relay_members WHERE room = ?2)`
	sqlReplay       = `SELECT ` + msgCols + ` FROM outpost_relay_messages
		WHERE (to_user = ?1 OR room IN (SELECT room FROM outpost_relay_members WHERE user = ?1)) AND hlc > ?2 AND created > ?3
		ORDER BY hlc, id LIMIT ?4`
	// A receipt's hlc is its row's clock (the sentinel of its clock entry:
	// the commit at the recipient's node), the same at every node.
	rcptCols = `r.msg, r.user, r.kind, r.sender, r.cid, r.at, coalesce(c.hlc, 0)`
	rcptFrom = ` FROM outpost_relay_receipts AS r
		LEFT JOIN outpost_clock__outpost_relay_receipts AS c ON c.pk0 = r.msg AND c.pk1 = r.user AND c.pk2 = r.kind AND c.col = ''`
	sqlWatchReceipts = `SELECT r.rowid, ` + rcptCols + rcptFrom + ` WHERE r.rowid > ?1 ORDER BY r.rowid LIMIT ?2`
	sqlMsgReceipts   = `SELECT ` + rcptCols + rcptFrom + ` WHERE r.msg = ?1 LIMIT ?2`
	// The receipts of the user's messages since a cursor: through the
	// user's messages (the messages' key starts with the sender; the
	// receipts' with the message), so the cost is the user's messages in
	// the retention, not every receipt. Keyset pages on (hlc, msg, user,
	// kind).
	sqlReplayReceipts = `SELECT ` + rcptCols + ` FROM outpost_relay_messages AS m
		JOIN outpost_relay_receipts AS r ON r.msg = m.id
		JOIN outpost_clock__outpost_relay_receipts AS c ON c.pk0 = r.msg AND c.pk1 = r.user AND c.pk2 = r.kind AND c.col = ''
		WHERE m.sender = ?1 AND m.created > ?2 AND r.at > ?2 AND (c.hlc, r.msg, r.user, r.kind) > (?3, ?4, ?5, ?6)
		ORDER BY c.hlc, r.msg, r.user, r.kind LIMIT ?7`
)

// scanReceipt reads a row of rcptCols (from offset off).
func scanReceipt(row []any, off int) receiptFrame {
	return receiptFrame{Type: "receipt", MsgID: asString(row[off]), User: asString(row[off+1]), Kind: asString(row[off+2]),
		senderUser: asString(row[off+3]), CID: asString(row[off+4]), At: asInt(row[off+5]), HLC: asInt(row[off+6])}
}

// receiptKey is what a connection remembers of a receipt it got.
func (f *receiptFrame) key() string { return "r:" + f.MsgID + "\x00" + f.User + "\x00" + f.Kind }

func (r *Relay) query(ctx context.Context, q string, args ...any) ([][]any, error) {
	rows, err := r.cfg.DB.Query(ctx, store.Statement{SQL: q, Args: args})
	if err != nil {
		return nil, err
	}
	return rows.Rows, nil
}

// sqlVersions reads, in one query per watcher wake, the highest rowids of
// the messages and receipts and the version of the tables presence is
// resolved from (the highest db_version in their clock tables: indexed).
const sqlVersions = `SELECT (SELECT coalesce(max(rowid), 0) FROM outpost_relay_messages),
	(SELECT coalesce(max(rowid), 0) FROM outpost_relay_receipts),
	(SELECT coalesce(max(dbv), 0) FROM outpost_clock__outpost_relay_presence)
	+ (SELECT coalesce(max(dbv), 0) FROM outpost_clock__outpost_relay_nodes)
	+ (SELECT coalesce(max(dbv), 0) FROM outpost_clock__outpost_relay_members)`

func (r *Relay) versions(ctx context.Context) (msgs, rcpts, presence int64, err error) {
	rows, err := r.query(ctx, sqlVersions)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("relay: %w", err)
	}
	return asInt(rows[0][0]), asInt(rows[0][1]), asInt(rows[0][2]), nil
}

func (r *Relay) maxRowids(ctx context.Context) (msgs, rcpts int64, err error) {
	rows, err := r.query(ctx, `SELECT (SELECT coalesce(max(rowid), 0) FROM outpost_relay_messages), (SELECT coalesce(max(rowid), 0) FROM outpost_relay_receipts)`)
	if err != nil {
		return 0, 0, fmt.Errorf("relay: %w", err)
	}
	return asInt(rows[0][0]), asInt(rows[0][1]), nil
}

func asInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case float64:
		return int64(x)
	}
	return 0
}

func asString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	}
	return ""
}

func asBytes(v any) []byte {
	switch x := v.(type) {
	case []byte:
		return x
	case string:
		return []byte(x)
	}
	return nil
}

// scanMsg reads a row of msgCols (from offset off).
func scanMsg(row []any, off int) *Message {
	return &Message{
		ID: asString(row[off]), CID: asString(row[off+1]), From: asString(row[off+2]), To: asString(row[off+3]),
		Room: asString(row[off+4]), Body: json.RawMessage(asString(row[off+5])), Node: asString(row[off+6]),
		HLC: asInt(row[off+7]), Created: asInt(row[off+8]), Sig: asBytes(row[off+9]),
	}
}

// storeBatch makes the messages of one sender durable in one transaction,
// in their order (a client that sends faster than a commit gets its sends
// committed together, not one commit each). Each message's hlc is the
// transaction's clock, raised past the last one this node gave a message
// (r.lastHLC), so the messages of one transaction, and of the next ones,
// keep the order they were sent in. errs holds a message's own refusal
// (id_reused); err a failure of the whole transaction.
func (r *Relay) storeBatch(ctx context.Context, from string, ins []*SendRequest) (ms []*Message, dups []bool, errs []error, err error) {
	_, err = r.cfg.DB.Write(ctx, func(tx *store.Tx) error {
		ms, dups = make([]*Message, len(ins)), make([]bool, len(ins))
		for i, in := range ins {
			rows, err := tx.QueryInternal(`SELECT `+msgCols+` FROM outpost_relay_messages WHERE sender = ? AND cid = ?`, from, in.ID)
			if err != nil {
				return err
			}
			if len(rows) > 0 {
				ms[i], dups[i] = scanMsg(rows[0], 0), true
				continue
			}
			m := &Message{ID: MessageID(from, in.ID), CID: in.ID, From: from, To: in.To, Room: in.Room, Body: in.Body, Node: r.cfg.Self,
				HLC: r.nextHLC(int64(tx.HLC())), Created: time.Now().UnixMilli()}
			m.Sig = r.cfg.Keys.Sign(m.signed())
			if _, err := tx.ExecInternal(`INSERT INTO outpost_relay_messages (`+msgCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				m.ID, m.CID, m.From, m.To, m.Room, string(m.Body), m.Node, m.HLC, m.Created, m.Sig); err != nil {
				return err
			}
			ms[i] = m
		}
		return nil
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("relay: store message: %w", err)
	}
	errs = make([]error, len(ins))
	for i, in := range ins {
		if m := ms[i]; dups[i] && (m.To != in.To || m.Room != in.Room || !jsonEqual(m.Body, in.Body)) {
			errs[i] = errorf(http.StatusConflict, "id_reused", "message id %q was already used for a different message; use a new id per message and the same id only for retries", in.ID)
		}
	}
	return ms, dups, errs, nil
}

// nextHLC returns the hlc of a new message: the transaction's clock, or
// just past the last message's if that is not below it.
func (r *Relay) nextHLC(txHLC int64) int64 {
	r.hlcMu.Lock()
	defer r.hlcMu.Unlock()
	r.lastHLC = max(txHLC, r.lastHLC+1)
	return r.lastHLC
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return string(a) == string(b)
	}
	ab, _ := json.Marshal(x)
	bb, _ := json.Marshal(y)
	return string(ab) == string(bb)
}

// presence returns the nodes holding connections of the recipient(s),
// from the cache when it has a recent answer (presenceCache).
func (r *Relay) presence(ctx context.Context, m *Message) ([]string, error) {
	key := "u\x00" + m.To
	if m.Room != "" {
		key = "r\x00" + m.Room
	}
	t := time.Now()
	nodes, gen, ok := r.pcache.get(key, t)
	if ok {
		return nodes, nil
	}
	now := t.UnixMilli()
	var rows [][]any
	var err error
	if m.Room != "" {
		rows, err = r.query(ctx, sqlRoomPresence, now, m.Room)
	} else {
		rows, err = r.query(ctx, sqlPresence, now, m.To)
	}
	if err != nil {
		return nil, fmt.Errorf("relay: presence: %w", err)
	}
	out := make([]string, 0, len(rows))
	for _, row := range rows {
		out = append(out, asString(row[0]))
	}
	r.pcache.put(key, out, gen, t)
	return out, nil
}

// setPresence marks users connected here (or, with on false, no longer)
// and, when marking, renews this node's lease.
func (r *Relay) setPresence(ctx context.Context, users []string, on bool) error {
	now := time.Now().UnixMilli()
	_, err := r.cfg.DB.Write(ctx, func(tx *store.Tx) error {
		since := int64(0)
		if on {
			since = now
			if err := r.renewTx(tx, now); err != nil {
				return err
			}
		}
		for _, u := range users {
			if _, err := tx.ExecInternal(`INSERT INTO outpost_relay_presence (user, node, until) VALUES (?, ?, ?)
				ON CONFLICT (user, node) DO UPDATE SET until = excluded.until`, u, r.cfg.Self, since); err != nil {
				return err
			}
		}
		return nil
	})
	r.pcache.invalidate()
	if err != nil {
		return fmt.Errorf("relay: presence: %w", err)
	}
	return nil
}

// renewTx renews this node's lease.
func (r *Relay) renewTx(tx *store.Tx, now int64) error {
	_, err := tx.ExecInternal(`INSERT INTO outpost_relay_nodes (node, until) VALUES (?, ?)
		ON CONFLICT (node) DO UPDATE SET until = excluded.until`, r.cfg.Self, now+r.cfg.Lease.Milliseconds())
	return err
}

// renew renews this node's lease (one row, whatever the number of users).
func (r *Relay) renew(ctx context.Context) error {
	_, err := r.cfg.DB.Write(ctx, func(tx *store.Tx) error { return r.renewTx(tx, time.Now().UnixMilli()) })
	return err
}

// resetPresence withdraws the presence rows this node left when it stopped
// without withdrawing them (killed): nobody is connected at start.
func (r *Relay) resetPresence(ctx context.Context) error {
	rows, err := r.query(ctx, `SELECT count(*) FROM outpost_relay_presence WHERE node = ? AND until > 0`, r.cfg.Self)
	if err != nil || asInt(rows[0][0]) == 0 {
		return err
	}
	_, err = r.cfg.DB.Write(ctx, func(tx *store.Tx) error {
		_, err := tx.ExecInternal(`UPDATE outpost_relay_presence SET until = 0 WHERE node = ? AND until > 0`, r.cfg.Self)
		return err
	})
	return err
}

// receipt records that user got (or read) the message msgID. A message
// the connection got is known by the connection (the forward may arrive
// before the row replicates here); otherwise the row must be here and the
// user one of its recipients.
func (r *Relay) receipt(ctx context.Context, c *conn, msgID, kind string) error {
	now := time.Now().UnixMilli()
	ref, ok := c.delivered(msgID)
	_, err := r.cfg.DB.Write(ctx, func(tx *store.Tx) error {
		if ok {
			_, err := tx.ExecInternal(`INSERT INTO outpost_relay_receipts (msg, user, kind, sender, cid, at) VALUES (?, ?, ?, ?, ?, ?)
				ON CONFLICT (msg, user, kind) DO NOTHING`, msgID, c.user, kind, ref.from, ref.cid, now)
			return err
		}
		_, err := tx.ExecInternal(`INSERT INTO outpost_relay_receipts (msg, user, kind, sender, cid, at)
			SELECT id, ?1, ?2, sender, cid, ?3 FROM outpost_relay_messages
			WHERE id = ?4 AND (to_user = ?1 OR room IN (SELECT room FROM outpost_relay_members WHERE user = ?1))
			ON CONFLICT (msg, user, kind) DO NOTHING`, c.user, kind, now, msgID)
		return err
	})
	return err
}

// join adds (or with leave removes) user to room.
func (r *Relay) join(ctx context.Context, user, room string, leave bool) error {
	if err := checkName("room", room); err != nil {
		return err
	}
	_, err := r.cfg.DB.Write(ctx, func(tx *store.Tx) error {
		q := `INSERT INTO outpost_relay_members (room, user) VALUES (?, ?) ON CONFLICT DO NOTHING`
		if leave {
			q = `DELETE FROM outpost_relay_members WHERE room = ? AND user = ?`
		}
		_, err := tx.ExecInternal(q, room, user)
		return err
	})
	r.pcache.invalidate()
	return err
}

// roomMembers lists a room's members.
func (r *Relay) roomMembers(ctx context.Context, room string) ([]string, error) {
	rows, err := r.query(ctx, `SELECT user FROM outpost_relay_members WHERE room = ?`, room)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(rows))
	for i, row := range rows {
		out[i] = asString(row[0])
	}
	return out, nil
}
