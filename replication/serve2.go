package replication

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/outpost-edge/outpost/peer"
	"github.com/outpost-edge/outpost/store"
	"github.com/outpost-edge/outpost/wire"
)

// EntriesPath is the protocol 2 pull route: the puller posts what it knows
// (a PullRequest) and the server streams the log entries it lacks.
const EntriesPath = "/sync/v2/entries"

// maxPullRequestBytes bounds a pull request body (a knowledge vector of
// about 100,000 origins).
const maxPullRequestBytes = 8 << 20

// maxFilterNames bounds the node names of a pull request's only / except.
const maxFilterNames = 4096

// PullRequest is the body of a protocol 2 pull: who asks (its current
// origin, whose entries it has), what it holds of every origin's log, and
// which origins it wants from this server (its source choice).
type PullRequest struct {
	Origin string          `cbor:"1,keyasint"`
	Known  store.Knowledge `cbor:"2,keyasint"`
	Only   []string        `cbor:"3,keyasint,omitempty"` // node names; empty = all
	Except []string        `cbor:"4,keyasint,omitempty"` // node names left out
	Quiet  bool            `cbor:"5,keyasint,omitempty"` // heartbeats back off while idle
}

var pullRequestDec = func() cbor.DecMode {
	dm, err := cbor.DecOptions{
		MaxNestedLevels:  4,
		MaxArrayElements: 1 << 16,
		MaxMapPairs:      1 << 20,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return dm
}()

// decodePullRequest reads and checks a pull request body.
func decodePullRequest(body io.Reader) (PullRequest, error) {
	var pr PullRequest
	b, err := io.ReadAll(io.LimitReader(body, maxPullRequestBytes+1))
	if err != nil {
		return pr, fmt.Errorf("read pull request: %w", err)
	}
	if len(b) > maxPullRequestBytes {
		return pr, fmt.Errorf("pull request over %d bytes", maxPullRequestBytes)
	}
	if err := pullRequestDec.Unmarshal(b, &pr); err != nil {
		return pr, fmt.Errorf("pull request: %w", err)
	}
	for o, t := range pr.Known {
		if t < 0 || o == "" {
			return pr, fmt.Errorf("pull request: knowledge of %q is %d", o, t)
		}
	}
	// Each name is compared with every origin served: bound the lists.
	if len(pr.Only) > maxFilterNames || len(pr.Except) > maxFilterNames {
		return pr, fmt.Errorf("pull request: %d only / %d except names; at most %d each", len(pr.Only), len(pr.Except), maxFilterNames)
	}
	return pr, nil
}

// serveEntries streams the log entries a puller lacks (protocol 2): per
// origin it selects, everything after what its knowledge says it holds,
// whatever path the entries reached this node by; then it stays open and
// sends new entries as they are appended, with heartbeats (backing off
// while idle for a quiet puller). The server tracks what it sent, so a
// long stream never repeats itself.
//
// A puller that knows more of this node's own current origin than this
// node holds shows that this database was restored from an older copy:
// this node takes a new incarnation (409). A puller that lacks entries
// already collected here gets a snapshot_needed error frame.
func (r *Replicator) serveEntries(w http.ResponseWriter, req *http.Request) {
	p, _ := peer.From(req.Context())
	pr, err := decodePullRequest(req.Body)
	if err != nil {
		peer.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if originName(pr.Origin) != p.Name {
		peer.WriteError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("origin %q is not %s's (NAME/incarnation)", pr.Origin, p.Name))
		return
	}
	release, ok := r.acquire(w, p.Name)
	if !ok {
		return
	}
	defer release()
	r.deps.observe(p.Name, pr)
	st := r.cfg.Store
	ctx := req.Context()
	own := st.Origin()
	if mine, err := st.Knowledge(ctx); err == nil && pr.Known[own] > mine[own] {
		r.rotate(ctx, p.Name, st.Incarnation(), fmt.Sprintf("%s holds this node's log of %s through %d, but this database only through %d: it was restored from an older copy", p.Name, own, pr.Known[own], mine[own]))
		peer.WriteError(w, http.StatusConflict, "incarnation_changed", "this node's database is behind what you hold of it (restored from a copy); it has a new incarnation: say hello again")
		return
	}
	fs := r.openStream(w, pr.Quiet)
	have := pr.Known
	if have == nil {
		have = store.Knowledge{}
	}
	f := store.EntryFilter{Only: pr.Only, Except: pr.Except, ExceptOrigin: pr.Origin, MaxBytes: r.cfg.MaxBatchBytes}
	ended := func() string {
		if now := st.Origin(); now != own {
			return fmt.Sprintf("incarnation_changed: this node has a new incarnation (%s, was %s): say hello again", now, own)
		}
		return ""
	}
	next := func() (bool, error) {
		n, err := r.entriesBatch(ctx, fs, have, f)
		return n > 0, err
	}
	r.serveLoop(ctx, fs, pr.Quiet, ended, next, func() wire.Frame { return wire.HeartbeatFrame(0) })
}

// entriesBatch reads and writes the next batch of entries the puller
// lacks, holding a serve slot; it returns how many it sent and moves have.
func (r *Replicator) entriesBatch(ctx context.Context, fs *frameStream, have store.Knowledge, f store.EntryFilter) (int, error) {
	release, ok := r.batchSlot(ctx)
	if !ok {
		return 0, ctx.Err()
	}
	defer release()
	es, err := r.cfg.Store.EntriesFor(ctx, have, f)
	if err != nil {
		var sn *store.SnapshotNeededError
		if errors.As(err, &sn) {
			return 0, fmt.Errorf("snapshot_needed: %w", err)
		}
		return 0, err
	}
	if len(es) == 0 {
		return 0, nil
	}
	_ = fs.rc.SetWriteDeadline(time.Now().Add(r.cfg.BatchWriteTimeout))
	defer func() { _ = fs.rc.SetWriteDeadline(time.Time{}) }()
	// Frames of about a quarter batch; a chain may span frames (the
	// puller applies it once it has all of it).
	for start := 0; start < len(es); {
		end, size := start, 0
		for end < len(es) && (end == start || size+len(es[end].Body) < r.cfg.MaxBatchBytes/4) {
			size += len(es[end].Body) + 128
			end++
		}
		if err := fs.fw.Write(wire.EntriesFrame(es[start:end])); err != nil {
			if errors.Is(err, wire.ErrTooLarge) || errors.Is(err, wire.ErrMalformed) {
				return 0, fmt.Errorf("entries of %s from %d cannot be sent: %w", es[start].Origin, es[start].Seq, err)
			}
			return 0, fmt.Errorf("%w: %v", errStreamWrite, err)
		}
		start = end
	}
	if err := fs.flush(); err != nil {
		return 0, fmt.Errorf("%w: %v", errStreamWrite, err)
	}
	for _, e := range es {
		have[e.Origin] = max(have[e.Origin], e.Seq)
	}
	return len(es), nil
}
