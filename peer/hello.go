package peer

import (
	"context"
	"net/http"
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
}

// HandleHello registers the hello route; hello() fills in the answer.
func (s *Server) HandleHello(hello func() Hello) {
	s.Handle("GET "+HelloPath, "", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, hello())
	}))
}

// Hello asks the named peer who it is.
func (c *Client) Hello(ctx context.Context, name string) (Hello, error) {
	var h Hello
	err := c.GetJSON(ctx, name, "", HelloPath, &h)
	return h, err
}
