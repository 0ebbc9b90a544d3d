package relay

import (
	"context"
	"time"
)

// watchPage is how many new rows one watcher query reads.
const watchPage = 1000

// watch pushes the messages and receipts that arrive in the store (written
// here or replicated from elsewhere) to this node's connections. It wakes
// on the store's Changed notification: no polling. A wake costs one query
// (sqlVersions) when nothing of the relay's changed, which is most of them:
// every commit of the node (replication of any table) wakes it.
func (r *Relay) watch(lastMsg, lastRcpt int64) {
	defer r.wg.Done()
	for {
		changed := r.cfg.DB.Changed()
		lastMsg, lastRcpt = r.watchOnce(lastMsg, lastRcpt)
		select {
		case <-changed:
		case <-r.ctx.Done():
			return
		}
	}
}

func (r *Relay) watchOnce(lastMsg, lastRcpt int64) (int64, int64) {
	mx, rmx, pv, err := r.versions(r.ctx)
	if err != nil {
		if r.ctx.Err() == nil {
			r.log.Warn("relay: watch", "err", err)
		}
		return lastMsg, lastRcpt
	}
	r.pcache.observe(pv)
	// Nobody to push to: skip what arrived. The highest rowids are read
	// before the hub is asked: a connection registered after that asks
	// the store for its replay later, so it gets every row up to them.
	if r.hub.count() == 0 {
		return max(mx, lastMsg), max(rmx, lastRcpt)
	}
	// Retention may have emptied a table and SQLite reuses rowids from 1
	// then: start over below the highest one.
	if mx < lastMsg {
		lastMsg = 0
	}
	if rmx < lastRcpt {
		lastRcpt = 0
	}
	if mx > lastMsg {
		lastMsg = r.watchMessages(lastMsg)
	}
	if rmx > lastRcpt {
		lastRcpt = r.watchReceipts(lastRcpt)
	}
	return lastMsg, lastRcpt
}

func (r *Relay) watchMessages(last int64) int64 {
	for {
		rows, err := r.query(r.ctx, `SELECT rowid, `+msgCols+` FROM outpost_relay_messages WHERE rowid > ? ORDER BY rowid LIMIT ?`, last, watchPage)
		if err != nil {
			if r.ctx.Err() == nil {
				r.log.Warn("relay: watch messages", "err", err)
			}
			return last
		}
		for _, row := range rows {
			last = asInt(row[0])
			m := scanMsg(row, 1)
			r.trace(StageWatchSeen, m.ID)
			r.deliver(r.ctx, m)
			// A message written here has no receipt yet when it is
			// new here: only another node's may have been overtaken.
			if m.Node != r.cfg.Self && r.hub.has(m.From) {
				r.receiptsOf(m)
			}
		}
		if len(rows) < watchPage {
			return last
		}
	}
}

func (r *Relay) watchReceipts(last int64) int64 {
	for {
		rows, err := r.query(r.ctx, sqlWatchReceipts, last, watchPage)
		if err != nil {
			if r.ctx.Err() == nil {
				r.log.Warn("relay: watch receipts", "err", err)
			}
			return last
		}
		for _, row := range rows {
			last = asInt(row[0])
			r.deliverReceipt(scanReceipt(row, 1))
		}
		if len(rows) < watchPage {
			return last
		}
	}
}

// maxMsgReceipts bounds the receipts of one message pushed when the
// message arrives (two per recipient: a room of that many members).
const maxMsgReceipts = 2000

// receiptsOf pushes the receipts of m already here to its sender's
// connections here: a receipt can replicate to a node before the message
// it is for, and the replay finds receipts through their messages, so a
// sender who connected in between gets them when the message arrives.
// Connections drop the ones they had.
func (r *Relay) receiptsOf(m *Message) {
	rows, err := r.query(r.ctx, sqlMsgReceipts, m.ID, maxMsgReceipts)
	if err != nil {
		if r.ctx.Err() == nil {
			r.log.Warn("relay: receipts of a message", "err", err)
		}
		return
	}
	for _, row := range rows {
		if f := scanReceipt(row, 0); f.senderUser == m.From {
			r.deliverReceipt(f)
		}
	}
}

// renewLoop renews this node's lease while users are connected: one row,
// every third of the lease.
func (r *Relay) renewLoop() {
	defer r.wg.Done()
	t := time.NewTicker(r.cfg.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-r.ctx.Done():
			return
		}
		if r.hub.count() > 0 {
			if err := r.renew(r.ctx); err != nil && r.ctx.Err() == nil {
				r.log.Warn("relay: renew presence", "err", err)
			}
		}
	}
}

// sweepLoop deletes the messages this node stored once they are older than
// the retention (the deletes replicate), and old receipts.
func (r *Relay) sweepLoop() {
	defer r.wg.Done()
	every := min(r.cfg.Retention/10, time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-r.ctx.Done():
			return
		}
		cutoff := time.Now().Add(-r.cfg.Retention).UnixMilli()
		if err := r.sweep(r.ctx, cutoff); err != nil && r.ctx.Err() == nil {
			r.log.Warn("relay: retention sweep", "err", err)
		}
	}
}

func (r *Relay) sweep(ctx context.Context, cutoff int64) error {
	rows, err := r.query(ctx, `SELECT (SELECT count(*) FROM outpost_relay_messages WHERE node = ? AND created <= ?), (SELECT count(*) FROM outpost_relay_receipts WHERE at <= ?)`, r.cfg.Self, cutoff, cutoff)
	if err != nil {
		return err
	}
	if asInt(rows[0][0]) == 0 && asInt(rows[0][1]) == 0 {
		return nil
	}
	_, err = r.cfg.DB.Write(ctx, func(tx *storeTx) error {
		if _, err := tx.ExecInternal(`DELETE FROM outpost_relay_messages WHERE node = ? AND created <= ?`, r.cfg.Self, cutoff); err != nil {
			return err
		}
		_, err := tx.ExecInternal(`DELETE FROM outpost_relay_receipts WHERE at <= ?`, cutoff)
		return err
	})
	return err
}
