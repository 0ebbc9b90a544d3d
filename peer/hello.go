package peer

import (
	"context"
	"net/http"
	"net/url"

	"github.com/outpost-edge/outpost/identity"
)

// HelloPath is the route every node answers with its public identity.
const HelloPath = "/sync/v1/hello"

// Hello is a node's answer to GET /sync/v1/hello.
type Hello struct {
	Name          string `json:"name"`
	Role          string `json:"role"`
	Farm          string `json:"farm,omitempty"`
	Location      string `json:"location"`
	Code          string `json:"code"`
	Key           string `json:"key"`
	Protocol      int    `json:"protocol"`
	MinProtocol   int    `json:"min_protocol"`
	SchemaVersion string `json:"schema_version"`
	Incarnation   string `json:"incarnation"`
	DBVersion     int64  `json:"db_version"`
	Version       string `json:"version"`
	// Features names optional protocol extensions the node understands
	// (e.g. "group-parts"); older nodes send none.
	Features []string `json:"features,omitempty"`
}

// HandleHello registers the hello route; hello() fills in the answer.
func (s *Server) HandleHello(hello func() Hello) {
	s.Handle("GET "+HelloPath, "", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.observeHello(r)
		writeJSON(w, http.StatusOK, hello())
	}))
}

// Hello asks the named peer who it is.
func (c *Client) Hello(ctx context.Context, name string) (Hello, error) {
	var h Hello
	err := c.GetJSON(ctx, name, "", HelloPath, &h)
	if err == nil {
		c.Seen.hello(name, h)
	}
	return h, err
}

// HelloWith asks the named peer who it is, passing q (e.g. how far this
// node has pulled from it) as the query; a peer that does not know a
// parameter ignores it.
func (c *Client) HelloWith(ctx context.Context, name string, q url.Values) (Hello, error) {
	var h Hello
	path := HelloPath
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	err := c.GetJSON(ctx, name, "", path, &h)
	if err == nil {
		c.Seen.hello(name, h)
	}
	return h, err
}

// OnHello registers fn to see the query of every hello a trusted peer sends
// before it is answered (e.g. the cursor it reports).
func (s *Server) OnHello(fn func(from identity.Peer, q url.Values)) {
	s.mu.Lock()
	s.helloHooks = append(s.helloHooks, fn)
	s.mu.Unlock()
}

func (s *Server) observeHello(r *http.Request) {
	p, ok := From(r.Context())
	if !ok || r.URL.RawQuery == "" {
		return
	}
	s.mu.Lock()
	hooks := s.helloHooks
	s.mu.Unlock()
	for _, fn := range hooks {
		fn(p, r.URL.Query())
	}
}

// NewContext returns ctx carrying p as the authenticated peer, as a Server
// does for its handlers (for tests that call handlers in process).
func NewContext(ctx context.Context, p identity.Peer) context.Context {
	return context.WithValue(ctx, peerKey, p)
}
