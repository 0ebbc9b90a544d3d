package limiter

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// maxSkew is how far a caller's window start may be from this node's clock
// (beyond the window itself) before the call is refused.
const maxSkew = int64(time.Minute / time.Millisecond)

func (l *Limiter) refuse(reason, format string, args ...any) error {
	l.Stats.refusePeer(reason)
	return &RefusedError{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// checkCall validates what a peer sends about a key and window.
func (l *Limiter) checkCall(key string, limit, windowMS, start, now int64) error {
	if ValidKey(key) != nil || limit <= 0 || limit > MaxLimit ||
		windowMS < MinWindow.Milliseconds() || windowMS > MaxWindow.Milliseconds() {
		return l.refuse("bad_request", "malformed key, limit or window")
	}
	if start%windowMS != 0 || start < now-windowMS-maxSkew || start > now+maxSkew {
		return l.refuse("bad_request", "window start %d is not a window start near this node's clock", start)
	}
	return nil
}

// HandleDecide answers a claim or a forwarded decision from member from.
func (l *Limiter) HandleDecide(ctx context.Context, from string, c DecideCall) (DecideReply, error) {
	m := l.mem.Load()
	if !m.isMember(from) || from == l.self {
		return DecideReply{}, l.refuse("not_member", "%q is not a member", from)
	}
	if !m.isCandidate(l.self) {
		return DecideReply{}, l.refuse("not_arbiter", "%s owns no keys (only core members do)", l.self)
	}
	if err := l.checkCall(c.Key, c.Limit, c.WindowMS, c.Start, l.nowMS()); err != nil {
		return DecideReply{}, err
	}
	if c.Cost < 0 || c.Cost > c.Limit || c.Handover < 0 || c.Handover > c.Limit {
		return DecideReply{}, l.refuse("count_out_of_range", "cost %d or handover %d out of 0..limit %d", c.Cost, c.Handover, c.Limit)
	}
	return l.ownerDecide(ctx, from, c)
}

// ownerDecide decides as the key's owner, becoming it on the first call of
// the window (then it announces to every other member first).
func (l *Limiter) ownerDecide(ctx context.Context, from string, c DecideCall) (DecideReply, error) {
	now := l.nowMS()
	ws := max(c.Start, windowStart(now, c.WindowMS))
	k := ckey{c.Key, int32(c.WindowMS)}
	m := l.mem.Load()
	sh := l.tab.shard(c.Key)
	sh.mu.Lock()
	o := sh.owned[k]
	if o != nil && o.start < ws {
		delete(sh.owned, k)
		o = nil
	}
	fresh := false
	if o == nil {
		own, ok := l.tab.get(sh, k, now)
		if !ok {
			sh.mu.Unlock()
			l.Stats.Full.Add(1)
			return DecideReply{}, l.refuse("table_full", "the key table of %s is full", l.self)
		}
		share := c.Limit / int64(len(m.list))
		o = &owned{start: ws, pending: make(map[string]int64, len(m.list)), ready: make(chan struct{})}
		for _, x := range m.list {
			if x.Name != l.self {
				o.pending[x.Name] = share
				o.reserved += share
			}
		}
		// This node's own local count moves into the owner's.
		if own.start == ws && (own.state == stLocal || own.state == stFallback) {
			o.count += int64(own.n)
		}
		sh.m[k] = counter{start: ws, state: stOwner}
		sh.owned[k] = o
		fresh = true
		l.Stats.Owned.Add(1)
	}
	if from != l.self {
		if res, ok := o.pending[from]; ok && c.Claim {
			o.reserved -= res
			delete(o.pending, from)
		}
		o.count += c.Handover
		if c.Handover > 0 {
			l.Stats.Handovers.Add(1)
		}
	}
	if !fresh && o.movedTo == "" {
		// While an announce round is out, a request that fits even with
		// the unanswered members' shares reserved need not wait for it.
		if rep, ok := l.decideLocked(o, from, c, ws, m, false); ok {
			sh.mu.Unlock()
			return rep, nil
		}
	}
	sh.mu.Unlock()
	if fresh {
		l.announceAll(ctx, o, k, c, from, m)
	}
	select {
	case <-o.ready:
	case <-ctx.Done():
		return DecideReply{}, ctx.Err()
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if o.movedTo != "" {
		return DecideReply{Redirect: o.movedTo, Owner: o.movedTo}, nil
	}
	rep, _ := l.decideLocked(o, from, c, ws, m, true)
	return rep, nil
}

// decideLocked decides c against o (the shard's lock held). With final
// false it decides only if the request is allowed (ok reports whether it
// decided).
func (l *Limiter) decideLocked(o *owned, from string, c DecideCall, ws int64, m *membership, final bool) (DecideReply, bool) {
	used := o.count + o.reserved
	rep := DecideReply{ResetMS: ws + c.WindowMS, Owner: l.self}
	if c.Cost > 0 && used+c.Cost <= c.Limit {
		o.count += c.Cost
		used += c.Cost
		rep.Allowed = true
		if from != l.self {
			// A lease of 1/P of what is left: the caller decides that
			// much locally; it is counted here now, so the bound holds.
			if lease := (c.Limit - used) / int64(len(m.list)); lease > 0 {
				rep.Lease = min(lease, MaxLimit)
				o.count += rep.Lease
				used += rep.Lease
			}
		}
	} else if !final {
		return rep, false
	}
	rep.Remaining = max(0, c.Limit-used)
	return rep, true
}

// announceAll tells every other member (but the claimer) that this node owns
// the key, collecting their counts; members that do not answer within
// CallTimeout keep their share reserved. If a member names a better owner,
// this node hands its whole count over to it.
func (l *Limiter) announceAll(ctx context.Context, o *owned, k ckey, c DecideCall, claimer string, m *membership) {
	defer close(o.ready)
	a := AnnounceCall{Key: c.Key, Limit: c.Limit, WindowMS: c.WindowMS, Start: o.start, Owner: l.self}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.cfg.CallTimeout)
	defer cancel()
	sh := l.tab.shard(c.Key)
	var (
		wg     sync.WaitGroup
		better string
	)
	for _, x := range m.list {
		if x.Name == l.self || x.Name == claimer {
			continue
		}
		wg.Add(1)
		l.Stats.Announces.Add(1)
		go func(name string) {
			defer wg.Done()
			rep, err := l.cfg.Transport.Announce(actx, name, a)
			sh.mu.Lock()
			defer sh.mu.Unlock()
			switch {
			case err != nil:
				l.Stats.AnnounceFailed.Add(1)
			case rep.Owner != "" && rep.Owner != l.self:
				if m.isCandidate(rep.Owner) && outranks(rep.Owner, l.self, c.Key) && (better == "" || outranks(rep.Owner, better, c.Key)) {
					better = rep.Owner
				}
			case rep.Count < 0 || rep.Count > maxCount:
				l.Stats.refusePeer("count_out_of_range")
			default:
				if rep.Final {
					if res, ok := o.pending[name]; ok {
						o.reserved -= res
						delete(o.pending, name)
					}
				}
				o.count += rep.Count
				if rep.Count > 0 {
					l.Stats.Handovers.Add(1)
				}
			}
		}(x.Name)
	}
	wg.Wait()
	if better == "" {
		return
	}
	sh.mu.Lock()
	total := o.count
	o.movedTo = better
	sh.m[k] = counter{start: o.start, state: stForward, owner: l.names.id(better)}
	sh.mu.Unlock()
	_, err := l.cfg.Transport.Decide(actx, better, DecideCall{Key: c.Key, Limit: c.Limit, WindowMS: c.WindowMS, Start: o.start, Handover: min(total, c.Limit), Claim: true})
	if err != nil {
		l.Stats.CallFailed.Add(1)
	}
}

// HandleAnnounce takes an owner's announce from member from: this node
// hands its count over and forwards the key from now on.
func (l *Limiter) HandleAnnounce(ctx context.Context, from string, a AnnounceCall) (AnnounceReply, error) {
	m := l.mem.Load()
	if !m.isMember(from) || from == l.self {
		return AnnounceReply{}, l.refuse("not_member", "%q is not a member", from)
	}
	if !m.isCandidate(from) {
		return AnnounceReply{}, l.refuse("not_arbiter", "%s may not own keys (only core members do)", from)
	}
	if a.Owner != from {
		return AnnounceReply{}, l.refuse("forged_owner", "%s announced %q as owner; an announce names its sender", from, a.Owner)
	}
	now := l.nowMS()
	if err := l.checkCall(a.Key, a.Limit, a.WindowMS, a.Start, now); err != nil {
		return AnnounceReply{}, err
	}
	k := ckey{a.Key, int32(a.WindowMS)}
	sh := l.tab.shard(a.Key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	c, ok := l.tab.get(sh, k, now)
	if !ok {
		return AnnounceReply{Final: true}, nil // nothing counted here; new requests are refused (full)
	}
	if c.start > a.Start {
		return AnnounceReply{Final: true}, nil // a window this node has left
	}
	if c.start < a.Start {
		c = counter{start: a.Start}
	}
	rep := AnnounceReply{Final: true}
	switch c.state {
	case stLocal, stFallback:
		rep.Count = int64(c.n)
		c.state, c.n, c.budget, c.owner = stForward, 0, 0, l.names.id(from)
	case stClaiming:
		rep.Final = false // the count is in the claim on its way
	case stForward:
		// A lease left (c.n) was counted by the owner that granted it.
		if cur := l.names.name(c.owner); cur != from {
			if outranks(from, cur, a.Key) {
				c.owner = l.names.id(from)
			} else {
				rep.Owner = cur
			}
		}
	case stOwner:
		o := sh.owned[k]
		if o == nil || o.start != c.start {
			c.state, c.owner = stForward, l.names.id(from)
			break
		}
		if outranks(from, l.self, a.Key) {
			rep.Count = o.count
			o.movedTo = from
			c.state, c.owner = stForward, l.names.id(from)
		} else {
			rep.Owner = l.self
		}
	}
	sh.m[k] = c
	return rep, nil
}
