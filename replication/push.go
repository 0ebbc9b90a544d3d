package replication

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/peer"
	"github.com/outpost-edge/outpost/policy"
	"github.com/outpost-edge/outpost/store"
	"github.com/outpost-edge/outpost/wire"
)

// pushAck is the receiver's answer to a push.
type pushAck struct {
	AppliedThrough int64 `json:"applied_through"`
}

// push sends this node's groups past the push cursor and waits for each
// batch to be acknowledged as durably applied; then waits for new commits.
// An idle push link says hello only every HelloInterval (is the peer there,
// with the same incarnation?) and on a trust list reload.
func (l *loop) push() error {
	h, cursor, _, err := l.start(store.CursorPush)
	if err != nil {
		return err
	}
	if v, _ := Negotiate(l.r.cfg.Hello(), h); v >= 2 {
		// Protocol 2 has no pushes: the peer pulls this node's log.
		// Say hello again on a trust list reload, and now and then in
		// case the peer rolled back to protocol 1.
		l.update(func(s *LinkStatus) { s.Connected, s.LastError = true, "" })
		select {
		case <-l.ctx.Done():
		case <-l.poke:
		case <-time.After(10 * l.r.cfg.HelloInterval):
		}
		return nil
	}
	st := l.r.cfg.Store
	f := l.r.filter(l.peer.Name + "/" + h.Incarnation)
	parts := slices.Contains(h.Features, FeatureGroupParts)
	l.update(func(s *LinkStatus) { s.Connected, s.Cursor, s.LastError = true, cursor, "" })
	tick := time.NewTicker(l.r.cfg.HelloInterval)
	defer tick.Stop()
	for l.ctx.Err() == nil {
		changed := st.Changed()
		groups, through, err := st.ChangesSinceFilter(l.ctx, cursor, f)
		if err != nil {
			return err
		}
		l.update(func(s *LinkStatus) { s.PeerDBVersion = st.DBVersion(); s.behind(time.Now()) })
		if through == cursor {
			select {
			case <-l.ctx.Done():
				return nil
			case <-changed:
			case <-l.poke:
				if err := l.recheck(h.Incarnation); err != nil {
					return err
				}
			case <-tick.C:
				if err := l.recheck(h.Incarnation); err != nil {
					return err
				}
			}
			continue
		}
		groups = l.sendable(groups, parts)
		if len(groups) > 0 {
			ack, err := l.send(h.Incarnation, groups, through, parts)
			if err != nil {
				return err
			}
			through = ack.AppliedThrough
		}
		if len(groups) > 0 {
			if err := st.SetCursor(l.ctx, l.peer.Name, store.CursorPush, h.Incarnation, through); err != nil {
				return err
			}
		}
		cursor = through
		l.update(func(s *LinkStatus) {
			s.Cursor = cursor
			s.Applied += int64(countChanges(groups))
			s.behind(time.Now())
		})
	}
	return nil
}

// recheck says hello to check the peer is there with incarnation inc.
func (l *loop) recheck(inc string) error {
	h, err := l.hello(nil)
	if err != nil {
		return err
	}
	if h.Incarnation != inc {
		return errors.New("peer restarted with a new incarnation")
	}
	return nil
}

// sendable drops, loudly, the groups a push body cannot carry to this peer.
func (l *loop) sendable(groups []outpost.Group, parts bool) []outpost.Group {
	out := groups[:0]
	for i := range groups {
		size := 0
		for k := range groups[i].Changes {
			size += store.ChangeBytes(&groups[i].Changes[k])
		}
		if size < l.r.cfg.Limits.MaxFrameBytes/2 {
			out = append(out, groups[i])
			continue
		}
		if _, err := wire.EncodeGroupsSplit(groups[i:i+1], l.r.cfg.Limits, parts); err != nil {
			l.r.skipGroup(l.peer.Name, &groups[i], err)
			continue
		}
		out = append(out, groups[i])
	}
	return out
}

func (l *loop) send(inc string, groups []outpost.Group, through int64, parts bool) (pushAck, error) {
	var ack pushAck
	body, err := wire.EncodeGroupsSplit(groups, l.r.cfg.Limits, parts)
	if err != nil {
		return ack, err
	}
	q := url.Values{"through": {strconv.FormatInt(through, 10)}, "incarnation": {l.r.cfg.Store.Incarnation()}, "to": {inc}}
	l.r.traffic.pushes.Add(1)
	l.r.traffic.pushBytes.Add(int64(len(body)))
	resp, err := l.r.cfg.Client.Do(l.ctx, l.peer.Name, policy.Push, http.MethodPost, ChangesPath+"?"+q.Encode(), body)
	if err != nil {
		return ack, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&ack); err != nil {
		return ack, fmt.Errorf("push ack: %w", err)
	}
	return ack, nil
}

// receivePush applies pushed groups and answers the highest db_version (in
// the sender's numbering) durably applied. The body is decoded frame by
// frame within the frame limits and MaxPushBytes, and applied in batches
// of BatchSize changes or MaxBatchBytes, so a push costs bounded memory
// whatever it declares or sends; a body that stops delivering frames for
// PushReadTimeout is cut off.
func (r *Replicator) receivePush(w http.ResponseWriter, req *http.Request) {
	p, _ := peer.From(req.Context())
	q := req.URL.Query()
	through, err := strconv.ParseInt(q.Get("through"), 10, 64)
	inc := q.Get("incarnation")
	if err != nil || through < 1 || inc == "" {
		peer.WriteError(w, http.StatusBadRequest, "bad_request", "push needs through=<db_version> and incarnation=<sender incarnation>")
		return
	}
	if to := q.Get("to"); to != "" && to != r.cfg.Store.Incarnation() {
		peer.WriteError(w, http.StatusConflict, "incarnation_changed", "this node has a new incarnation; say hello again")
		return
	}
	if req.ContentLength > r.cfg.MaxPushBytes {
		r.refuse("push_too_large", p.Name)
		peer.WriteError(w, http.StatusRequestEntityTooLarge, "push_too_large", fmt.Sprintf("a push body of %d bytes is over the limit of %d", req.ContentLength, r.cfg.MaxPushBytes))
		return
	}
	release, ok := r.acquire(w, p.Name)
	if !ok {
		return
	}
	defer release()
	rc := http.NewResponseController(w)
	body := http.MaxBytesReader(w, req.Body, r.cfg.MaxPushBytes)
	rd := wire.NewReader(bufio.NewReaderSize(body, 64<<10), r.cfg.Limits)
	var batch []outpost.Group
	changes, size := 0, 0
	var last int64
	apply := func(upTo int64) error {
		_, err := r.cfg.Store.Apply(req.Context(), p.Name, store.CursorRecv, inc, batch, upTo)
		batch, changes, size = nil, 0, 0
		return err
	}
	for {
		_ = rc.SetReadDeadline(time.Now().Add(r.cfg.PushReadTimeout))
		f, err := rd.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) || errors.Is(err, wire.ErrTooLarge) {
				r.refuse("push_too_large", p.Name)
				peer.WriteError(w, http.StatusRequestEntityTooLarge, "push_too_large", err.Error())
				return
			}
			peer.WriteError(w, http.StatusBadRequest, "malformed", err.Error())
			return
		}
		if f.Type != wire.FrameGroup {
			peer.WriteError(w, http.StatusBadRequest, "malformed", fmt.Sprintf("a push body holds only group frames, not a %s frame", f.Type))
			return
		}
		if g := f.Group; g.DBV <= last || g.DBV > through {
			peer.WriteError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("group %d is not above the previous one (%d) and at most through=%d", g.DBV, last, through))
			return
		}
		last = f.Group.DBV
		batch = append(batch, *f.Group)
		changes += len(f.Group.Changes)
		size += rd.LastFrameBytes()
		if changes >= r.cfg.BatchSize || size >= r.cfg.MaxBatchBytes {
			if err := apply(last); err != nil {
				peer.WriteError(w, http.StatusServiceUnavailable, "apply_failed", err.Error())
				return
			}
		}
	}
	_ = rc.SetReadDeadline(time.Time{})
	if err := apply(through); err != nil {
		peer.WriteError(w, http.StatusServiceUnavailable, "apply_failed", err.Error())
		return
	}
	b, _ := json.Marshal(pushAck{AppliedThrough: through})
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}
