package relay

import (
	"context"
	"encoding/json"
	"time"
)

// deliver pushes m to this node's connections of its recipient (or of its
// room's members) and returns how many got it now.
func (r *Relay) deliver(ctx context.Context, m *Message) int {
	var users []string
	if m.Room != "" {
		members, err := r.roomMembers(ctx, m.Room)
		if err != nil {
			r.log.Warn("relay: room members", "room", m.Room, "err", err)
			return 0
		}
		for _, u := range members {
			if r.hub.has(u) {
				users = append(users, u)
			}
		}
	} else if r.hub.has(m.To) {
		users = []string{m.To}
	}
	if len(users) == 0 {
		return 0
	}
	frame := encodeMsg(m)
	n := 0
	for _, u := range users {
		for _, c := range r.hub.conns(u) {
			if c.offer(m.ID, msgRef{from: m.From, cid: m.CID}, frame, &r.Stats) {
				n++
			}
		}
	}
	if n > 0 {
		r.trace(StageQueued, m.ID)
	}
	return n
}

// deliverReceipt pushes a receipt to the sender's connections here.
func (r *Relay) deliverReceipt(f receiptFrame) {
	if !r.hub.has(f.senderUser) {
		return
	}
	b, _ := json.Marshal(f)
	for _, c := range r.hub.conns(f.senderUser) {
		c.offer(f.key(), msgRef{}, b, &r.Stats)
	}
}

// replayPage is how many messages one replay query reads.
const replayPage = 500

// replaySlack is how far behind its cursor a reconnecting device is sent
// messages again: a message of another node can arrive here after a newer
// one; the connection (and the client) drop what they already had.
const replaySlack = 30 * time.Second

// replay sends c what it missed since the cursor (an HLC), oldest first,
// then the live frames that arrived meanwhile, and ends the replay.
func (r *Relay) replay(ctx context.Context, c *conn, since int64) error {
	cursor := since
	if cursor > 0 {
		cursor -= int64(replaySlack/time.Millisecond) << 16
	}
	if cursor < 0 {
		cursor = 0
	}
	cutoff := time.Now().Add(-r.cfg.Retention).UnixMilli()
	for {
		rows, err := r.query(ctx, sqlReplay, c.user, cursor, cutoff, replayPage)
		if err != nil {
			return err
		}
		for _, row := range rows {
			m := scanMsg(row, 0)
			cursor = m.HLC
			c.mu.Lock()
			fresh := c.markSeen(m.ID, msgRef{from: m.From, cid: m.CID})
			c.mu.Unlock()
			if !fresh {
				continue
			}
			if err := c.pushWait(ctx, encodeMsg(m), m.ID, &r.Stats); err != nil {
				return err
			}
		}
		if len(rows) < replayPage {
			break
		}
	}
	rcursor, err := r.replayReceipts(ctx, c, since, cutoff)
	if err != nil {
		return err
	}
	cursor = max(cursor, rcursor)
	for {
		c.mu.Lock()
		pending := c.pending
		c.pending = nil
		if len(pending) == 0 {
			c.replaying = false
		}
		c.mu.Unlock()
		if len(pending) == 0 {
			break
		}
		for _, f := range pending {
			if err := c.pushWait(ctx, f, "", &r.Stats); err != nil {
				return err
			}
		}
	}
	caught, _ := json.Marshal(map[string]any{"type": "caughtup", "cursor": cursor})
	c.push(caught, &r.Stats)
	return nil
}

// replayReceipts sends c the receipts of its user's messages that it
// missed since the cursor (with the same slack as messages), oldest first,
// and returns the last one's hlc.
func (r *Relay) replayReceipts(ctx context.Context, c *conn, since, cutoff int64) (int64, error) {
	cursor := max(since-int64(replaySlack/time.Millisecond)<<16, 0)
	var msg, user, kind string
	last := int64(0)
	for {
		rows, err := r.query(ctx, sqlReplayReceipts, c.user, cutoff, cursor, msg, user, kind, replayPage)
		if err != nil {
			return last, err
		}
		for _, row := range rows {
			f := scanReceipt(row, 0)
			cursor, msg, user, kind = f.HLC, f.MsgID, f.User, f.Kind
			last = f.HLC
			c.mu.Lock()
			fresh := c.markSeen(f.key(), msgRef{})
			c.mu.Unlock()
			if !fresh {
				continue
			}
			b, _ := json.Marshal(f)
			if err := c.pushWait(ctx, b, "", &r.Stats); err != nil {
				return last, err
			}
		}
		if len(rows) < replayPage {
			return last, nil
		}
	}
}
