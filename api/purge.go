package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/outpost-edge/outpost/purge"
)

// Purger issues and reports cache purges (the node: a replicated
// outpost_purges row, applied by every node's purge watcher).
type Purger interface {
	// Purge records r durably and applies it locally; it returns the
	// purge's ID and the db_version of the write.
	Purge(ctx context.Context, r purge.Request) (id string, dbv int64, err error)
	// PurgeStatus tells which nodes have applied the purge id; ok is false
	// when this node has not seen it.
	PurgeStatus(ctx context.Context, id string) (st PurgeStatus, ok bool, err error)
}

// PurgeStatus is the answer of GET /v1/purge/{id}.
type PurgeStatus struct {
	ID       string         `json:"id"`
	Node     string         `json:"node"`      // issued at
	IssuedMS int64          `json:"issued_ms"` // Unix ms
	Request  purge.Request  `json:"request"`
	Applied  []PurgeApplied `json:"applied"` // nodes known to have applied it
	Pending  []string       `json:"pending"` // nodes of the trust list not known to have applied it yet
}

// PurgeApplied is one node that applied a purge.
type PurgeApplied struct {
	Node      string `json:"node"`
	AppliedMS int64  `json:"applied_ms"`
}

var purgeShape = shape{names: []string{"keys", "urls", "all", "soft"}}

// HandlePurge serves POST /v1/purge and GET /v1/purge/{id} with p, behind
// the API's bearer token. See docs/API.md.
func (s *Server) HandlePurge(p Purger) {
	s.mux.HandleFunc("POST /v1/purge", s.auth(func(w http.ResponseWriter, r *http.Request) {
		var req purge.Request
		if !s.decode(w, r, &req, purgeShape) {
			return
		}
		if err := req.Validate(); err != nil {
			writeError(w, http.StatusBadRequest, "bad_purge", err.Error()+"; see docs/API.md", -1)
			return
		}
		id, dbv, err := p.Purge(r.Context(), req)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		b := []byte(`{"id":`)
		b = AppendString(b, id)
		b = append(b, `,"db_version":`...)
		b = strconv.AppendInt(b, dbv, 10)
		b = append(b, '}')
		writeJSON(w, http.StatusOK, b)
	}))
	s.mux.HandleFunc("GET /v1/purge/{id}", s.auth(func(w http.ResponseWriter, r *http.Request) {
		st, ok, err := p.PurgeStatus(r.Context(), r.PathValue("id"))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if !ok {
			writeError(w, http.StatusNotFound, "not_found", "this node has not seen purge "+strconv.Quote(r.PathValue("id"))+" (yet): ask the node it was issued at, or wait for replication", -1)
			return
		}
		if st.Applied == nil {
			st.Applied = []PurgeApplied{}
		}
		if st.Pending == nil {
			st.Pending = []string{}
		}
		b, err := json.Marshal(st)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, b)
	}))
}
