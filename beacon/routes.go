package beacon

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/api"
	"github.com/outpost-edge/outpost/identity"
	"github.com/outpost-edge/outpost/peer"
	"github.com/outpost-edge/outpost/policy"
)

// Router registers routes on the peer listener (peer.Server).
type Router interface {
	Handle(pattern string, action policy.Action, h http.Handler)
}

// MaxPullWait bounds how long an edge holds a pull with nothing new.
const MaxPullWait = 30 * time.Second

// RegisterEdge serves GET /beacon/v1/pull for log on the peer listener: a
// pull exchange, so the policy decides who may pull (masters and nodes
// pull edges in the default matrix); an edge is refused as an aggregator.
func RegisterEdge(r Router, self string, log *Log) {
	r.Handle("GET "+PullPath, policy.Pull, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		p, ok := core(w, req)
		if !ok {
			return
		}
		q := req.URL.Query()
		from, err1 := strconv.ParseInt(q.Get("from"), 10, 64)
		to, err2 := optInt(q.Get("to"))
		wait, err3 := optInt(q.Get("wait"))
		if err1 != nil || err2 != nil || err3 != nil || from < 1 || to < 0 || wait < 0 {
			peer.WriteError(w, http.StatusBadRequest, "bad_request", "want from=SEQ (>= 1), optional to=SEQ, wait=MS, repair=1")
			return
		}
		ctx := req.Context()
		repair := q.Get("repair") == "1"
		if !repair && q.Get("log") == log.ID() {
			// Asking from a seq acknowledges, durably stored, all before
			// it (of this log: a cursor for another log acknowledges
			// nothing here). Recorded off this request's path.
			log.NoteAck(p.Name, from-1)
		}
		floor := log.Floor()
		start := max(from, floor+1)
		headed := false
		if !repair && q.Get("log") == log.ID() && log.Last() < start && wait > 0 {
			// The headers go at once and the body when a beacon commits
			// (or the wait ends): a puller that stops while waiting then
			// ends a response body, as it ends a sync stream, rather than
			// a request still awaiting its headers, which would keep its
			// HTTP/2 connection busy past its own shutdown.
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			_ = http.NewResponseController(w).Flush()
			headed = true
			log.Wait(ctx, start-1, min(time.Duration(wait)*time.Millisecond, MaxPullWait))
			floor = log.Floor()
			start = max(from, floor+1)
		}
		now := time.Now().UnixMilli()
		bs, err := log.Read(ctx, start, to, PullBatch, PullBatchBytes)
		if err != nil {
			if headed {
				panic(http.ErrAbortHandler) // the puller sees a cut body and retries
			}
			peer.WriteError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
			return
		}
		b := appendAnswer(nil, PullAnswer{Edge: self, Log: log.ID(), Floor: floor, Last: log.Last(), Now: now, Beacons: bs})
		if headed {
			_, _ = w.Write(append(b, '\n'))
			return
		}
		writeJSON(w, http.StatusOK, b)
	}))
}

// RegisterAggregator serves the cross-check routes of a on the peer
// listener: GET /beacon/v1/summary (coverage) and GET /beacon/v1/range
// (received beacons of a log NAME/LOGID, for another aggregator's repair). Both are calls
// answered only to masters and nodes.
func RegisterAggregator(r Router, a *Aggregator) {
	r.Handle("GET "+SummaryPath, policy.Call, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if _, ok := core(w, req); !ok {
			return
		}
		since, err := optInt(req.URL.Query().Get("since"))
		if err != nil {
			peer.WriteError(w, http.StatusBadRequest, "bad_request", "want since=UNIX_MS")
			return
		}
		s, err := a.Coverage(req.Context(), since)
		if err != nil {
			peer.WriteError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
			return
		}
		b, _ := json.Marshal(s)
		writeJSON(w, http.StatusOK, b)
	}))
	r.Handle("GET "+RangePath, policy.Call, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if _, ok := core(w, req); !ok {
			return
		}
		q := req.URL.Query()
		edge := q.Get("edge")
		from, err1 := strconv.ParseInt(q.Get("from"), 10, 64)
		to, err2 := strconv.ParseInt(q.Get("to"), 10, 64)
		if edge == "" || err1 != nil || err2 != nil || from < 1 || to < from {
			peer.WriteError(w, http.StatusBadRequest, "bad_request", "want edge=NAME/LOG&from=SEQ&to=SEQ")
			return
		}
		bs, err := a.Range(req.Context(), edge, from, to)
		if err != nil {
			peer.WriteError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
			return
		}
		writeAnswer(w, PullAnswer{Edge: edge, Last: a.Cursor(edge), Beacons: bs})
	}))
}

// core returns the calling peer if it is a master or a node: edges neither
// aggregate nor cross-check.
func core(w http.ResponseWriter, r *http.Request) (identity.Peer, bool) {
	p, ok := peer.From(r.Context())
	if !ok || p.Role == outpost.RoleEdge {
		peer.WriteError(w, http.StatusForbidden, "not_aggregator", "only masters and nodes aggregate beacons")
		return p, false
	}
	return p, true
}

func optInt(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	return strconv.ParseInt(s, 10, 64)
}

// writeAnswer writes a PullAnswer. It is built by hand: the bodies are
// compact JSON already (checked at intake), which json.Marshal would scan
// and compact again.
func writeAnswer(w http.ResponseWriter, a PullAnswer) {
	writeJSON(w, http.StatusOK, appendAnswer(nil, a))
}

// appendAnswer appends a PullAnswer as JSON to out.
func appendAnswer(out []byte, a PullAnswer) []byte {
	n := 96
	for _, b := range a.Beacons {
		n += len(b.Body) + 48
	}
	out = slices.Grow(out, n)
	out = append(out, `{"edge":`...)
	out = api.AppendString(out, a.Edge)
	if a.Log != "" {
		out = append(out, `,"log":`...)
		out = api.AppendString(out, a.Log)
	}
	out = append(out, `,"floor":`...)
	out = strconv.AppendInt(out, a.Floor, 10)
	out = append(out, `,"last_seq":`...)
	out = strconv.AppendInt(out, a.Last, 10)
	if a.Now != 0 {
		out = append(out, `,"now_ms":`...)
		out = strconv.AppendInt(out, a.Now, 10)
	}
	out = append(out, `,"beacons":[`...)
	for i, b := range a.Beacons {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, `{"seq":`...)
		out = strconv.AppendInt(out, b.Seq, 10)
		out = append(out, `,"recv_ms":`...)
		out = strconv.AppendInt(out, b.RecvMS, 10)
		out = append(out, `,"body":`...)
		out = append(out, b.Body...)
		out = append(out, '}')
	}
	return append(out, "]}"...)
}
