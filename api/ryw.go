package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/store"
)

// Read-your-writes (docs/API.md): a write's answer says where it is in this
// node's log ("origin", "seq"); a read may ask to wait until this node holds
// given origins' logs through given sequences ("min_version"); a write may
// ask to wait until named peers hold it ("wait_for").

// Bounds of the waits.
const (
	DefaultWaitTimeout = 5 * time.Second
	MaxWaitTimeout     = 60 * time.Second
	maxMinVersions     = 1000
)

// Holder is a peer known to hold an origin's log through a sequence.
type Holder struct {
	Name string `json:"name"`
	Role string `json:"role"`
}

// waitForJSON is the "wait_for" member of /v1/exec.
type waitForJSON struct {
	Peers     []string `json:"peers"`      // node names, or "master" / "node" for any of that role; empty = any peer
	Count     *int     `json:"count"`      // how many of them; default: all named, or 1
	TimeoutMS *int64   `json:"timeout_ms"` // default 5000, at most 60000
}

// waitTimeout reads a timeout_ms member.
func waitTimeout(ms *int64) (time.Duration, error) {
	if ms == nil {
		return DefaultWaitTimeout, nil
	}
	if *ms < 0 || time.Duration(*ms)*time.Millisecond > MaxWaitTimeout {
		return 0, fmt.Errorf("timeout_ms must be from 0 to %d", MaxWaitTimeout.Milliseconds())
	}
	return time.Duration(*ms) * time.Millisecond, nil
}

// withPosition adds the write's log position to an exec answer.
func (s *Server) withPosition(body []byte, dbv int64) []byte {
	origin, seq, ok := s.store.LogPosition(dbv)
	if !ok || len(body) == 0 || body[len(body)-1] != '}' {
		return body
	}
	out := append([]byte{}, body[:len(body)-1]...)
	out = append(out, `,"origin":`...)
	out = AppendString(out, origin)
	out = append(out, `,"seq":`...)
	out = strconv.AppendInt(out, seq, 10)
	return append(out, '}')
}

// checkMinVersion validates a query's min_version.
func checkMinVersion(mv map[string]int64) error {
	if len(mv) > maxMinVersions {
		return fmt.Errorf("min_version names %d origins; at most %d", len(mv), maxMinVersions)
	}
	for o, n := range mv {
		name, inc, ok := strings.Cut(o, "/")
		if !ok || name == "" || inc == "" {
			return fmt.Errorf("min_version key %q is not an origin NAME/incarnation (a write's answer gives it as \"origin\")", o)
		}
		if n < 0 {
			return fmt.Errorf("min_version of %s is %d; want a sequence >= 0", o, n)
		}
	}
	return nil
}

// awaitMinVersion waits until this node holds what a read asks for; it
// answers the request itself (503 not_caught_up) and returns false if not.
func (s *Server) awaitMinVersion(w http.ResponseWriter, r *http.Request, mv map[string]int64, ms *int64) bool {
	if len(mv) == 0 {
		return true
	}
	if err := checkMinVersion(mv); err != nil {
		writeError(w, http.StatusBadRequest, store.CodeBadRequest, err.Error(), -1)
		return false
	}
	d, err := waitTimeout(ms)
	if err != nil {
		writeError(w, http.StatusBadRequest, store.CodeBadRequest, err.Error(), -1)
		return false
	}
	ctx, cancel := context.WithTimeout(r.Context(), d)
	defer cancel()
	err = s.store.WaitKnown(ctx, store.Knowledge(mv))
	var nr *store.NotReachedError
	switch {
	case err == nil:
		return true
	case errors.As(err, &nr):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "not_caught_up", nr.Error()+fmt.Sprintf(" after waiting %s; retry, or read at the node that took the write", d), -1)
	default:
		s.fail(w, r, err)
	}
	return false
}

// awaitHolders waits, after a write, until the peers wait_for names hold it;
// it returns the "wait_for" member of the answer.
func (s *Server) awaitHolders(ctx context.Context, dbv int64, wf *waitForJSON) ([]byte, error) {
	d, err := waitTimeout(wf.TimeoutMS)
	if err != nil {
		return nil, err
	}
	want := 1
	if len(wf.Peers) > 0 {
		want = len(wf.Peers)
	}
	if wf.Count != nil {
		if *wf.Count < 1 || (len(wf.Peers) > 0 && *wf.Count > len(wf.Peers)) {
			return nil, fmt.Errorf("wait_for.count must be from 1 to the number of peers named")
		}
		want = *wf.Count
	}
	origin, seq, ok := s.store.LogPosition(dbv)
	start := time.Now()
	var got []Holder
	if ok && s.cfg.Holders != nil {
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			got = matchHolders(s.cfg.Holders(origin, seq), wf.Peers)
			if len(got) >= want {
				break
			}
			select {
			case <-ctx.Done():
			case <-tick.C:
				continue
			}
			break
		}
	}
	b := []byte(`{"reached":`)
	b = strconv.AppendBool(b, len(got) >= want)
	b = append(b, `,"holders":[`...)
	for i, h := range got {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendString(b, h.Name)
	}
	b = append(b, `],"waited_ms":`...)
	b = strconv.AppendInt(b, time.Since(start).Milliseconds(), 10)
	return append(b, '}'), nil
}

// matchHolders keeps the holders wait_for's peers name (all if none).
func matchHolders(hs []Holder, peers []string) []Holder {
	if len(peers) == 0 {
		return hs
	}
	var out []Holder
	for _, h := range hs {
		if slices.Contains(peers, h.Name) || slices.Contains(peers, h.Role) {
			out = append(out, h)
		}
	}
	return out
}
