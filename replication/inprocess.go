package replication

import (
	"net/http"
	"net/url"

	"github.com/outpost-edge/outpost/identity"
)

// Handler returns the sync routes (ChangesPath, EntriesPath) without the
// peer server's guard, for an in-process transport (package sim) that
// authenticates the caller and checks the policy itself, and passes the
// caller in the request context with peer.NewContext. A node serves them
// with Routes.
func (r *Replicator) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+ChangesPath, r.serveChanges)
	mux.HandleFunc("POST "+ChangesPath, r.receivePush)
	mux.HandleFunc("POST "+EntriesPath, r.serveEntries)
	mux.HandleFunc("GET "+SnapshotPath, r.serveSnapshot)
	mux.HandleFunc("POST "+AckPath, r.serveAck)
	mux.HandleFunc("POST "+ReportPath, r.serveReport)
	return mux
}

// ObserveHello reads the query of a hello from p (the pull cursor it
// reports), as the hook Routes registers on the peer server does.
func (r *Replicator) ObserveHello(p identity.Peer, q url.Values) { r.observeHello(p, q) }
