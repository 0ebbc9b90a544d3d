package replication

import (
	"context"
	"net/url"
	"sort"
	"strconv"
	"time"

	"github.com/outpost-edge/outpost/identity"
	"github.com/outpost-edge/outpost/store"
)

// PullAck is how far a peer last said it has durably pulled this node's
// changes (its pull cursor, in this node's numbering).
type PullAck struct {
	Peer        string `json:"peer"`
	Role        string `json:"role"`
	Incarnation string `json:"incarnation"` // this node's incarnation the cursor is for
	Through     int64  `json:"through"`
	// Log marks a protocol 2 ack: Through is this node's log sequence
	// (of origin NAME/Incarnation), not a db_version.
	Log bool      `json:"log,omitempty"`
	At  time.Time `json:"at"`
}

// observeHello reads the pull cursor a peer reports in its hello
// (pulled=N&incarnation=INC, and fp=DBV:HLC when the peer knows a
// fingerprint): it is kept as the peer's acknowledgement, and a cursor past
// this node's db_version, or a fingerprint this database contradicts,
// reveals a restored database.
func (r *Replicator) observeHello(p identity.Peer, q url.Values) {
	pulled, err := strconv.ParseInt(q.Get("pulled"), 10, 64)
	inc := q.Get("incarnation")
	if err != nil || pulled < 0 || inc == "" {
		return
	}
	log := q.Get("log") == "1"
	if !log && r.regressed(context.Background(), p.Name, inc, pulled, store.ParseFingerprint(q.Get("fp"))) {
		return
	}
	r.ackMu.Lock()
	r.acks[p.Name] = PullAck{Peer: p.Name, Role: string(p.Role), Incarnation: inc, Through: pulled, Log: log, At: time.Now()}
	r.ackMu.Unlock()
}

// PullAcks returns the latest pull acknowledgement of each peer, sorted by
// peer.
func (r *Replicator) PullAcks() []PullAck {
	r.ackMu.Lock()
	out := make([]PullAck, 0, len(r.acks))
	for _, a := range r.acks {
		out = append(out, a)
	}
	r.ackMu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Peer < out[j].Peer })
	return out
}
