package api

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/store"
)

// MaxChangeStreams bounds the open GET /v1/changes streams of one node.
const MaxChangeStreams = 256

var changeStreams atomic.Int64

// feedReads lets one change stream per store at a time read the store's
// feed: the reads share the store's replication readers
// (store.ReplReaders), which replication itself must not be starved of.
var feedReads sync.Map // *store.Store -> chan struct{} (capacity 1)

// HandleChanges serves GET /v1/changes: the committed row changes of the
// node (local writes and replicated ones, with their origin) as
// Server-Sent Events, one event per committed group, its id the
// db_version; `table` filters (repeatable); Last-Event-ID (or ?since=)
// resumes. See docs/API.md.
func (s *Server) HandleChanges() {
	s.mux.HandleFunc("GET /v1/changes", s.auth(s.changes))
}

func (s *Server) changes(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	tables := map[string]bool{}
	for _, t := range q["table"] {
		tables[strings.ToLower(t)] = true
	}
	since := s.store.DBVersion()
	from := r.Header.Get("Last-Event-ID")
	if from == "" {
		from = q.Get("since")
	}
	if from != "" {
		v, err := strconv.ParseInt(from, 10, 64)
		if err != nil || v < 0 {
			writeError(w, http.StatusBadRequest, "bad_since", "Last-Event-ID or since must be a db_version (a non-negative integer)", -1)
			return
		}
		since = v
	}
	if changeStreams.Add(1) > MaxChangeStreams {
		changeStreams.Add(-1)
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "too_many_streams", "this node serves at most 256 change streams at once", -1)
		return
	}
	defer changeStreams.Add(-1)
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // a stream outlives the API's write timeout
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(": outpost change feed from db_version " + strconv.FormatInt(since, 10) + "\n\n"))
	_ = rc.Flush()
	ctx := r.Context()
	v, _ := feedReads.LoadOrStore(s.store, make(chan struct{}, 1))
	sem := v.(chan struct{})
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	var b []byte
	for {
		changed := s.store.Changed()
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		groups, through, err := s.store.ChangesSinceFilter(ctx, since, store.ChangeFilter{MaxChanges: 2000})
		<-sem
		if err != nil {
			return
		}
		for _, g := range groups {
			b = appendGroup(b[:0], g, tables)
			if b == nil {
				continue
			}
			// A client that stops reading for 30 s loses its stream.
			_ = rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, err := w.Write(b); err != nil {
				return
			}
		}
		since = through
		_ = rc.Flush()
		if through < s.store.DBVersion() {
			continue
		}
		select {
		case <-changed:
		case <-ping.C:
			_ = rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, err := w.Write([]byte(": ping\n\n")); err != nil {
				return
			}
			_ = rc.Flush()
		case <-ctx.Done():
			return
		}
	}
}

// appendGroup appends one SSE event for g, keeping user tables (and only
// those in tables when it is not empty); nil when nothing is left.
func appendGroup(b []byte, g outpost.Group, tables map[string]bool) []byte {
	n := 0
	b = append(b, "id: "...)
	b = strconv.AppendInt(b, g.DBV, 10)
	b = append(b, "\nevent: change\ndata: {\"db_version\":"...)
	b = strconv.AppendInt(b, g.DBV, 10)
	b = append(b, `,"changes":[`...)
	for _, ch := range g.Changes {
		t := strings.ToLower(ch.Table)
		if strings.HasPrefix(t, "outpost_") || (len(tables) > 0 && !tables[t]) {
			continue
		}
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = append(b, `{"table":`...)
		b = AppendString(b, ch.Table)
		b = append(b, `,"pk":[`...)
		for i, v := range ch.PK {
			if i > 0 {
				b = append(b, ',')
			}
			b = AppendValue(b, v)
		}
		b = append(b, ']')
		if ch.Col == "" {
			b = append(b, `,"deleted":`...)
			b = strconv.AppendBool(b, ch.CL%2 == 0)
		} else {
			b = append(b, `,"column":`...)
			b = AppendString(b, ch.Col)
			b = append(b, `,"value":`...)
			b = AppendValue(b, ch.Val)
		}
		b = append(b, `,"origin":`...)
		b = AppendString(b, ch.Origin)
		b = append(b, '}')
	}
	if n == 0 {
		return nil
	}
	return append(b, "]}\n\n"...)
}
