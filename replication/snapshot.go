package replication

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/identity"
	"github.com/outpost-edge/outpost/peer"
	"github.com/outpost-edge/outpost/policy"
	"github.com/outpost-edge/outpost/store"
	"github.com/outpost-edge/outpost/wire"
)

// SnapshotPath is the protocol 2 snapshot route: a hub streams the current
// state of every replicated table, framed by its knowledge, to a puller
// that lacks log entries the hub has already collected (or a new node).
const SnapshotPath = "/sync/v2/snapshot"

// CursorSnapshot is the cursor kind a snapshot's groups are applied under.
const CursorSnapshot = "snapshot"

// errSnapshotNeeded marks a pull answered with snapshot_needed.
var errSnapshotNeeded = errors.New("snapshot needed")

// serveSnapshot streams a snapshot: a known frame with this node's
// knowledge, read first; then the state of every row (its clock rows, as
// groups, with progress frames), read after, so it holds at least
// everything that knowledge names; then the same known frame again, which
// marks the end. A puller takes a hub's (master's or node's) state on its
// word (the origins' signatures cover entries, not merged state); an edge
// serves only its own writes.
func (r *Replicator) serveSnapshot(w http.ResponseWriter, req *http.Request) {
	p, _ := peer.From(req.Context())
	// A hub's snapshot covers every origin; an edge's only its own writes
	// (a receiver's gate refuses what an edge relays anyway).
	hub := isHubRole(r.cfg.Self.Role)
	release, ok := r.acquire(w, p.Name)
	if !ok {
		return
	}
	defer release()
	st := r.cfg.Store
	ctx := req.Context()
	k, err := st.Knowledge(ctx)
	if err == nil {
		k, err = st.WithoutHeld(ctx, k) // held changes are not in the state
	}
	if err != nil {
		peer.WriteError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	if !hub {
		for o := range k {
			if originName(o) != r.cfg.Self.Name {
				delete(k, o)
			}
		}
	}
	upTo := st.DBVersion()
	fs := r.openStream(w, false)
	if err := fs.fw.Write(wire.KnownFrame(k)); err != nil {
		return
	}
	s := &server{r: r, peer: p.Name, fw: fs.fw, parts: true}
	f := store.ChangeFilter{OwnOnly: !hub, MaxChanges: r.cfg.BatchSize, MaxBytes: r.cfg.MaxBatchBytes}
	for since := int64(0); since < upTo; {
		through, err := s.batch(ctx, fs.rc, since, f, fs.flush)
		if err != nil {
			fs.fail(ctx, err)
			return
		}
		if through <= since {
			break
		}
		since = through
	}
	_ = fs.fw.Write(wire.KnownFrame(k))
	_ = fs.flush()
	r.log.Info("sync: served a snapshot", "peer", p.Name, "db_version", upTo, "origins", len(k))
}

func isHubRole(role outpost.Role) bool { return role == outpost.RoleMaster || role == outpost.RoleNode }

// snapshot bootstraps this node from a peer's snapshot: it merges the
// peer's state (by the merge rules: nothing this node holds is lost) and
// adopts the peer's knowledge, then pulls go on from there. A hub's
// snapshot covers every origin; an edge's only its own (that is all this
// node adopts from it).
func (l *loop) snapshot(from identity.Peer) error {
	src := from
	ctx, cancel := context.WithTimeout(l.ctx, 30*time.Minute)
	defer cancel()
	l.r.log.Warn("sync: log entries this node lacks were collected; bootstrapping from a snapshot", "peer", src.Name)
	resp, err := l.r.cfg.Client.Do(ctx, src.Name, policy.Pull, http.MethodGet, SnapshotPath, nil)
	if err != nil {
		return fmt.Errorf("snapshot from %s: %w", src.Name, err)
	}
	defer resp.Body.Close()
	rd := wire.NewReader(bufio.NewReaderSize(resp.Body, 256<<10), l.r.cfg.Limits)
	var known map[string]int64
	var batch []outpost.Group
	st := l.r.cfg.Store
	applied := 0
	for {
		f, err := rd.Read()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("snapshot from %s ended before its last frame", src.Name)
			}
			return fmt.Errorf("snapshot from %s: %w", src.Name, err)
		}
		switch f.Type {
		case wire.FrameKnown:
			if known == nil {
				known = f.Known
				if known == nil {
					known = map[string]int64{}
				}
				if !isHub(src) {
					for o := range known {
						if originName(o) != src.Name {
							delete(known, o)
						}
					}
				}
				continue
			}
			if err := st.AdoptKnowledge(ctx, store.Knowledge(known)); err != nil {
				return fmt.Errorf("snapshot from %s: %w", src.Name, err)
			}
			l.r.log.Info("sync: bootstrapped from a snapshot", "hub", src.Name, "changes", applied, "origins", len(known))
			return nil
		case wire.FrameGroup:
			batch = append(batch, *f.Group)
		case wire.FrameProgress:
			res, err := st.Apply(ctx, src.Name, CursorSnapshot, "", batch, f.DBV)
			if err != nil {
				return fmt.Errorf("snapshot from %s: %w", src.Name, err)
			}
			applied += res.Applied
			batch = nil
		case wire.FrameError:
			return fmt.Errorf("snapshot from %s: %s", src.Name, f.Message)
		}
	}
}

// isSnapshotNeeded reports whether a peer's error frame asks for a snapshot.
func isSnapshotNeeded(msg string) bool { return strings.HasPrefix(msg, "snapshot_needed") }
