package replication

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/outpost-edge/outpost"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/outpost-edge/outpost/peer"
	"github.com/outpost-edge/outpost/policy"
	"github.com/outpost-edge/outpost/store"
	"github.com/outpost-edge/outpost/wire"
)

// pushAck is the receiver's answer to a push.
type pushAck struct {
	AppliedThrough int64  `json:"applied_through"`
	Drift          string `json:"drift,omitempty"`
}

// push sends this node's groups past the push cursor and waits for each
// batch to be acknowledged as durably applied; then waits for new commits.
func (l *loop) push() error {
	h, cursor, err := l.start(store.CursorPush)
	if err != nil {
		return err
	}
	st := l.r.cfg.Store
	exclude := l.peer.Name + "/" + h.Incarnation
	l.update(func(s *LinkStatus) { s.Connected, s.Cursor, s.LastError = true, cursor, "" })
	tick := time.NewTicker(l.r.cfg.Heartbeat)
	defer tick.Stop()
	for l.ctx.Err() == nil {
		changed := st.Changed()
		groups, through, err := st.ChangesSince(l.ctx, cursor, exclude, l.r.cfg.BatchSize)
		if err != nil {
			return err
		}
		l.update(func(s *LinkStatus) { s.PeerDBVersion = st.DBVersion(); s.behind(time.Now()) })
		if through == cursor {
			select {
			case <-l.ctx.Done():
				return nil
			case <-changed:
			case <-tick.C:
				// Re-check the peer is there (and the same incarnation).
				if h2, err := l.hello(); err != nil {
					return err
				} else if h2.Incarnation != h.Incarnation {
					return errors.New("peer restarted with a new incarnation")
				}
			}
			continue
		}
		if len(groups) > 0 {
			ack, err := l.send(h.Incarnation, groups, through)
			if err != nil {
				return err
			}
			if ack.Drift != "" {
				if ack.AppliedThrough > cursor {
					cursor = ack.AppliedThrough
					if err := st.SetCursor(l.ctx, l.peer.Name, store.CursorPush, h.Incarnation, cursor); err != nil {
						return err
					}
				}
				return fmt.Errorf("peer held changes back: %s", ack.Drift)
			}
			through = ack.AppliedThrough
			cursor = through
			if err := st.SetCursor(l.ctx, l.peer.Name, store.CursorPush, h.Incarnation, cursor); err != nil {
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

func (l *loop) send(inc string, groups []outpost.Group, through int64) (pushAck, error) {
	var ack pushAck
	body, err := wire.EncodeGroups(groups)
	if err != nil {
		return ack, err
	}
	q := url.Values{"through": {strconv.FormatInt(through, 10)}, "incarnation": {l.r.cfg.Store.Incarnation()}, "to": {inc}}
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
// the sender's numbering) durably applied.
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
	body, err := io.ReadAll(io.LimitReader(req.Body, int64(wire.DefaultLimits.MaxFrameBytes)*4))
	if err != nil {
		peer.WriteError(w, http.StatusBadRequest, "bad_body", err.Error())
		return
	}
	groups, err := wire.DecodeGroups(body, wire.DefaultLimits)
	if err != nil {
		peer.WriteError(w, http.StatusBadRequest, "malformed", err.Error())
		return
	}
	for _, g := range groups {
		if g.DBV > through {
			peer.WriteError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("group %d is past through=%d", g.DBV, through))
			return
		}
	}
	res, err := r.cfg.Store.Apply(req.Context(), p.Name, store.CursorRecv, inc, groups, through)
	if err != nil {
		peer.WriteError(w, http.StatusServiceUnavailable, "apply_failed", err.Error())
		return
	}
	ack := pushAck{AppliedThrough: res.Through}
	if res.Drift != nil {
		ack.Drift = res.Drift.Error()
	}
	b, _ := json.Marshal(ack)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}
