package relay

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// forwardQueue bounds the messages waiting to be forwarded to one node;
// beyond it a forward is skipped (replication still delivers the message).
const forwardQueue = 4096

// forwardAttempts is how often a forward is tried before it is left to
// replication.
const forwardAttempts = 5

// forwarder sends messages to one target node in order.
type forwarder struct {
	target string
	ch     chan *Message
}

// dispatch resolves the nodes where m's recipients are connected and queues
// a forward to each other node (in send order per target). It returns the
// nodes found.
func (r *Relay) dispatch(ctx context.Context, m *Message) []string {
	nodes, err := r.presence(ctx, m)
	if err != nil {
		r.log.Warn("relay: resolve presence", "err", err)
		return nil
	}
	if r.cfg.Transport == nil {
		return nodes
	}
	if m.Node != r.cfg.Self {
		// A retry answered with another edge's row (replicated here):
		// that edge forwarded it, and an edge forwards only its own
		// (a forward carrying it would be refused whole).
		return nodes
	}
	for _, n := range nodes {
		if n == r.cfg.Self {
			continue // the store watcher delivers here
		}
		fw := r.forwarder(n)
		select {
		case fw.ch <- m:
		default:
			r.Stats.ForwardFailed.Add(1)
		}
	}
	return nodes
}

func (r *Relay) forwarder(target string) *forwarder {
	r.fwMu.Lock()
	defer r.fwMu.Unlock()
	fw := r.forwarders[target]
	if fw == nil {
		fw = &forwarder{target: target, ch: make(chan *Message, forwardQueue)}
		r.forwarders[target] = fw
		r.wg.Add(1)
		go r.forwardLoop(fw)
	}
	return fw
}

// forwardWindow is how many forward calls to one target may be in flight:
// a message queued while a call is out goes in the next call now, not
// after the answer (the target restores the order: Forward.Seq).
const forwardWindow = 4

// forwardLoop sends what is queued for one target, in order, as batches:
// whatever queued up while the window was full goes in the next call.
func (r *Relay) forwardLoop(fw *forwarder) {
	defer r.wg.Done()
	slots := make(chan struct{}, forwardWindow)
	var seq uint64
	for {
		var m *Message
		select {
		case m = <-fw.ch:
		case <-r.ctx.Done():
			return
		}
		select {
		case slots <- struct{}{}:
		case <-r.ctx.Done():
			return
		}
		batch, size := []Message{*m}, len(m.Body)
	fill:
		for len(batch) < MaxForwardMessages && size < MaxForwardBytes {
			select {
			case m = <-fw.ch:
				batch = append(batch, *m)
				size += len(m.Body)
			default:
				break fill
			}
		}
		seq++
		r.wg.Add(1)
		go func(f Forward) {
			defer r.wg.Done()
			defer func() { <-slots }()
			r.forwardBatch(f)
		}(Forward{Target: fw.target, Msgs: batch, Stream: r.stream, Seq: seq})
	}
}

// forwardBatch sends f to its target, through a core node when the policy
// forbids a direct call, retrying a few times with backoff. A message not
// forwarded is not lost: it is durable here and replicates.
func (r *Relay) forwardBatch(f Forward) {
	target, msgs := f.Target, f.Msgs
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		via, ok := r.cfg.Transport.Route(target)
		if ok {
			for i := range msgs {
				r.trace(StageForwardStart, msgs[i].ID)
			}
			t := time.Now()
			ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
			_, err := r.cfg.Transport.Forward(ctx, via, f)
			cancel()
			if err == nil {
				for i := range msgs {
					r.trace(StageForwardDone, msgs[i].ID)
				}
				r.Stats.Forwarded.Add(int64(len(msgs)))
				if r.cfg.OnForward != nil {
					r.cfg.OnForward(time.Since(t))
				}
				return
			}
			var e *Error
			if errors.As(err, &e) && e.Status == http.StatusForbidden {
				r.log.Warn("relay: forward refused", "target", target, "via", via, "err", err)
				break
			}
			r.log.Debug("relay: forward failed", "target", target, "via", via, "attempt", attempt, "err", err)
		}
		if attempt >= forwardAttempts {
			break
		}
		select {
		case <-time.After(backoff):
		case <-r.ctx.Done():
			return
		}
		backoff *= 2
	}
	r.Stats.ForwardFailed.Add(int64(len(msgs)))
}

// HandleForward serves a forward from the peer from (authenticated by the
// peer transport; fromCore: a master or node). A forward must carry a
// message signed by the node it names, and an edge may only forward its
// own; a core node passes on forwards for other nodes.
func (r *Relay) HandleForward(ctx context.Context, from string, fromCore bool, f Forward) (ForwardReply, error) {
	if len(f.Msgs) == 0 || len(f.Msgs) > MaxForwardMessages {
		return ForwardReply{}, errorf(http.StatusBadRequest, "bad_forward", "a forward carries 1 to %d messages, got %d", MaxForwardMessages, len(f.Msgs))
	}
	for i := range f.Msgs {
		r.trace(StageForwardIn, f.Msgs[i].ID)
	}
	for i := range f.Msgs {
		m := &f.Msgs[i]
		if err := r.verify(m); err != nil {
			r.Stats.Refused.Add(1)
			return ForwardReply{}, errorf(http.StatusForbidden, "forged_message", "%v", err)
		}
		if !fromCore && m.Node != from {
			r.Stats.Refused.Add(1)
			return ForwardReply{}, errorf(http.StatusForbidden, "forged_sender", "%s forwarded a message of %s; an edge forwards only its own", from, m.Node)
		}
	}
	if f.Target == r.cfg.Self {
		done := r.inOrder(ctx, &f)
		defer done()
		n := 0
		for i := range f.Msgs {
			n += r.deliver(ctx, &f.Msgs[i])
		}
		return ForwardReply{Delivered: n}, nil
	}
	if !r.cfg.Core || r.cfg.Transport == nil {
		r.Stats.Refused.Add(1)
		return ForwardReply{}, errorf(http.StatusForbidden, "not_a_relay", "%s is not a core node and does not pass forwards on (target %s)", r.cfg.Self, f.Target)
	}
	via, ok := r.cfg.Transport.Route(f.Target)
	if !ok || via != f.Target {
		return ForwardReply{}, errorf(http.StatusBadGateway, "no_route", "no direct route from %s to %s", r.cfg.Self, f.Target)
	}
	rep, err := r.cfg.Transport.Forward(ctx, via, f)
	if err != nil {
		return ForwardReply{}, fmt.Errorf("relay: pass on to %s: %w", via, err)
	}
	r.Stats.Forwarded.Add(int64(len(f.Msgs)))
	return rep, nil
}
