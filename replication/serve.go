package replication

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/peer"
	"github.com/outpost-edge/outpost/policy"
	"github.com/outpost-edge/outpost/store"
	"github.com/outpost-edge/outpost/wire"
)

// HeaderHeartbeatMax is the response header of a pull stream served with
// quiet heartbeats (the puller asked with quiet=1): the longest interval,
// in milliseconds, between two frames of an idle stream. The puller's
// watchdog allows four of them. A stream without it has a heartbeat every
// second (protocol 1).
const HeaderHeartbeatMax = "Outpost-Heartbeat-Max"

// Routes registers the sync routes on the peer server, and reads the pull
// cursors peers report in their hellos.
func (r *Replicator) Routes(s *peer.Server) {
	s.Handle("GET "+ChangesPath, policy.Pull, http.HandlerFunc(r.serveChanges))
	s.Handle("POST "+ChangesPath, policy.Push, http.HandlerFunc(r.receivePush))
	s.Handle("POST "+EntriesPath, policy.Pull, http.HandlerFunc(r.serveEntries))
	s.Handle("GET "+SnapshotPath, policy.Pull, http.HandlerFunc(r.serveSnapshot))
	s.Handle("POST "+AckPath, policy.Pull, http.HandlerFunc(r.serveAck))
	s.Handle("POST "+ReportPath, policy.Pull, http.HandlerFunc(r.serveReport))
	s.OnHello(r.observeHello)
}

// filter is what this node serves a peer whose current origin is exclude:
// everything but the peer's own current changes; an edge serves only its
// own writes (a farm sibling relays nothing else).
func (r *Replicator) filter(exclude string) store.ChangeFilter {
	return store.ChangeFilter{Exclude: exclude, OwnOnly: r.cfg.Self.Role == outpost.RoleEdge,
		MaxChanges: r.cfg.BatchSize, MaxBytes: r.cfg.MaxBatchBytes}
}

// serveChanges streams groups with db_version > since, then stays open and
// sends new groups as they commit, with heartbeats. Changes that originated
// at the requester's current incarnation are left out. A group too large
// for a frame is sent in parts to a puller that joins them (parts=1); one
// that cannot be sent at all is skipped with an error log and a refusal
// count, so it never wedges the stream.
//
// A puller that asks with quiet=1 gets quiet heartbeats: the interval
// doubles from Heartbeat while the stream is idle, up to MaxHeartbeat
// (announced in HeaderHeartbeatMax), and drops back once groups flow. When
// this node takes a new incarnation the stream ends with an
// incarnation_changed error frame, so the puller says hello again and
// starts over under the new one.
func (r *Replicator) serveChanges(w http.ResponseWriter, req *http.Request) {
	p, _ := peer.From(req.Context())
	q := req.URL.Query()
	since, err := strconv.ParseInt(q.Get("since"), 10, 64)
	if err != nil || since < 0 {
		peer.WriteError(w, http.StatusBadRequest, "bad_request", "since must be a db_version >= 0")
		return
	}
	origin := q.Get("origin")
	if originName(origin) != p.Name {
		peer.WriteError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("origin %q is not %s's (NAME/incarnation)", origin, p.Name))
		return
	}
	release, ok := r.acquire(w, p.Name)
	if !ok {
		return
	}
	defer release()
	if r.regressed(req.Context(), p.Name, q.Get("incarnation"), since, store.ParseFingerprint(q.Get("fp"))) {
		peer.WriteError(w, http.StatusConflict, "incarnation_changed", "this node's database is behind your cursor for it (restored from a copy); it has a new incarnation: say hello again")
		return
	}
	fs := r.openStream(w, q.Get("quiet") == "1")
	s := &server{r: r, peer: p.Name, fw: fs.fw, parts: q.Get("parts") == "1"}
	st := r.cfg.Store
	ctx := req.Context()
	f := r.filter(origin)
	// The incarnation the puller's cursor is for (from its hello): if this
	// node has another by now, the puller must start over under it.
	inc := q.Get("incarnation")
	if inc == "" {
		inc = st.Incarnation()
	}
	ended := func() string {
		if now := st.Incarnation(); now != inc {
			return fmt.Sprintf("incarnation_changed: this node has a new incarnation (%s, was %s): say hello again", now, inc)
		}
		return ""
	}
	next := func() (bool, error) {
		through, err := s.batch(ctx, fs.rc, since, f, fs.flush)
		if err != nil || through <= since {
			return false, err
		}
		since = through
		return true, nil
	}
	r.serveLoop(ctx, fs, q.Get("quiet") == "1", ended, next, func() wire.Frame { return wire.HeartbeatFrame(st.DBVersion()) })
}

// server is one pull stream being served.
type server struct {
	r     *Replicator
	peer  string
	fw    *wire.Writer
	parts bool // the puller joins groups in parts
}

// writeGroups writes groups, skipping (loudly) a group the frames cannot
// carry; it fails only when the stream does.
func (s *server) writeGroups(groups []outpost.Group) error {
	for i := range groups {
		err := s.fw.WriteGroup(&groups[i], s.parts)
		if err == nil {
			continue
		}
		if !errors.Is(err, wire.ErrTooLarge) && !errors.Is(err, wire.ErrMalformed) {
			return err // the stream broke
		}
		s.r.skipGroup(s.peer, &groups[i], err)
	}
	return nil
}

// skipGroup logs and counts a group that cannot be sent to peer; the
// cursor moves past it so the link goes on.
func (r *Replicator) skipGroup(peerName string, g *outpost.Group, err error) {
	r.refuse("group_not_sent", peerName)
	r.log.Error("sync: a group cannot be sent to this peer and is skipped; the peer will not get it over this link",
		"peer", peerName, "db_version", g.DBV, "changes", len(g.Changes), "max_frame_bytes", r.cfg.Limits.MaxFrameBytes,
		"max_group_bytes", r.cfg.Limits.MaxGroupBytes, "err", err)
}

// regressed reports whether a peer's cursor for this node's current
// incarnation (inc) shows that this database was restored from an older
// copy, so that every db_version it issues again would be skipped by that
// peer: the cursor (or the fingerprint's group) is past this node's
// db_version, or the fingerprint fp of the last of this node's groups the
// peer received contradicts what this node now has at that db_version
// (the restored node has issued it again, for another transaction; see
// store.Fingerprint). A peer that sends no fingerprint (zero) gets the
// numbers-only check. The node then takes a new incarnation, so peers start
// again from 0 and its lost writes (of the old origin) come back.
func (r *Replicator) regressed(ctx context.Context, peerName, inc string, cursor int64, fp store.Fingerprint) bool {
	st := r.cfg.Store
	if inc == "" || inc != st.Incarnation() {
		return false
	}
	var reason string
	if dbv := st.DBVersion(); max(cursor, fp.DBV) > dbv {
		reason = fmt.Sprintf("%s has pulled this node's changes up to db_version %d of incarnation %s, but this database is at %d: it was restored from an older copy", peerName, max(cursor, fp.DBV), inc, dbv)
	} else if !fp.IsZero() {
		m, err := st.MatchFingerprint(ctx, inc, fp)
		if err != nil {
			r.log.Warn("sync: cannot check a peer's fingerprint", "peer", peerName, "fingerprint", fp.String(), "err", err)
			return false
		}
		if m != store.FingerprintDiffers {
			return false
		}
		reason = fmt.Sprintf("%s received this node's db_version %d of incarnation %s with HLC %d, but this database has another transaction at that db_version: it was restored from an older copy and issued it again", peerName, fp.DBV, inc, fp.HLC)
	} else {
		return false
	}
	r.rotate(ctx, peerName, inc, reason)
	return true
}

// rotate takes a new incarnation for this node, whose database was found
// restored from an older copy (reason), unless incarnation inc is already
// gone; pulls start over under the new one.
func (r *Replicator) rotate(ctx context.Context, peerName, inc, reason string) {
	st := r.cfg.Store
	r.rotateMu.Lock()
	defer r.rotateMu.Unlock()
	if inc != st.Incarnation() {
		return // rotated meanwhile
	}
	newInc, err := st.RotateIncarnation(context.WithoutCancel(ctx), reason)
	if err != nil {
		r.log.Error("sync: database regression detected but the new incarnation failed", "peer", peerName, "err", err)
		return
	}
	r.log.Warn("sync: database regression detected; took a new incarnation", "peer", peerName, "reason", reason,
		"db_version", st.DBVersion(), "incarnation", newInc)
	// A pull counts as caught up again only if it starts from here
	// (pull remembers the epoch it started in).
	r.epoch++
	// This node's own pull streams named the old origin, which peers
	// leave out as an echo: pull again from 0 under the new one, so the
	// writes this node lost come back.
	pulls := 0
	r.mu.Lock()
	for _, l := range r.loops {
		if l.action == policy.Pull {
			l.fromZero.Store(true)
			l.reconnect()
			pulls++
		}
	}
	r.mu.Unlock()
	if pulls == 0 {
		// No upstream to wait for: nothing would bring back what was
		// lost, and nothing would ever signal.
		r.signalCaughtUp(r.epoch)
	}
}

// errStreamWrite marks a failure to write to the puller (the stream is
// gone or stalled): nothing more can be said on it.
var errStreamWrite = errors.New("pull stream write failed")

// batch reads the next batch after since and writes it, with a progress
// frame when the cursor moves, holding one of the MaxServeBatches slots
// (the batch is in memory meanwhile) and a write deadline (a puller that
// stopped reading frees the slot). It returns the new cursor.
func (s *server) batch(ctx context.Context, rc *http.ResponseController, since int64, f store.ChangeFilter, flush func() error) (int64, error) {
	release, ok := s.r.batchSlot(ctx)
	if !ok {
		return since, ctx.Err()
	}
	defer release()
	groups, through, err := s.r.cfg.Store.ChangesSinceFilter(ctx, since, f)
	if err != nil {
		return since, err
	}
	if len(groups) == 0 && through <= since {
		return since, nil
	}
	// Not every ResponseWriter supports deadlines (in-process transports):
	// then the stream's context is the only bound.
	_ = rc.SetWriteDeadline(time.Now().Add(s.r.cfg.BatchWriteTimeout))
	defer func() { _ = rc.SetWriteDeadline(time.Time{}) }()
	if err := s.writeGroups(groups); err != nil {
		return since, fmt.Errorf("%w: %v", errStreamWrite, err)
	}
	if through > since {
		if err := s.fw.Write(wire.ProgressFrame(through)); err != nil {
			return since, fmt.Errorf("%w: %v", errStreamWrite, err)
		}
		if err := flush(); err != nil {
			return since, fmt.Errorf("%w: %v", errStreamWrite, err)
		}
	}
	return through, nil
}
