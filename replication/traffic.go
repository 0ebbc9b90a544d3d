package replication

import (
	"context"
	"io"
	"net/url"
	"sync/atomic"

	"github.com/outpost-edge/outpost/peer"
)

// Traffic counts what this node's sync loops sent and received since New:
// enough to see what an idle fleet costs.
type Traffic struct {
	Hellos     int64 `json:"hellos"`      // hellos sent (by pull and push loops)
	Pulls      int64 `json:"pulls"`       // pull streams opened
	Pushes     int64 `json:"pushes"`      // push requests sent
	Frames     int64 `json:"frames"`      // frames read from pull streams
	Heartbeats int64 `json:"heartbeats"`  // heartbeat frames among them
	PullBytes  int64 `json:"pull_bytes"`  // bytes read from pull streams
	PushBytes  int64 `json:"push_bytes"`  // push bodies sent
	ServeBytes int64 `json:"serve_bytes"` // bytes written to pull streams served
	Entries    int64 `json:"entries"`     // log entries received (protocol 2)
	Duplicates int64 `json:"duplicates"`  // of which this node held already
}

type traffic struct {
	hellos, pulls, pushes, frames, heartbeats, pullBytes, pushBytes, serveBytes, entries, duplicates atomic.Int64
}

// Traffic returns the sync traffic counters.
func (r *Replicator) Traffic() Traffic {
	t := &r.traffic
	return Traffic{Hellos: t.hellos.Load(), Pulls: t.pulls.Load(), Pushes: t.pushes.Load(),
		Frames: t.frames.Load(), Heartbeats: t.heartbeats.Load(), PullBytes: t.pullBytes.Load(),
		PushBytes: t.pushBytes.Load(), ServeBytes: t.serveBytes.Load(),
		Entries: t.entries.Load(), Duplicates: t.duplicates.Load()}
}

// sayHello sends a hello to the named peer with query q, counted.
func (r *Replicator) sayHello(ctx context.Context, name string, q url.Values) (peer.Hello, error) {
	r.traffic.hellos.Add(1)
	return r.cfg.Client.HelloWith(ctx, name, q)
}

// trafficReader counts the bytes read through it.
type trafficReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c trafficReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// trafficWriter counts the bytes written through it.
type trafficWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c trafficWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}
