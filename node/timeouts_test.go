package node_test

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/api"
	"github.com/outpost-edge/outpost/node"
)

// TestAPI_SlowClientClosed: a client that sends its request a byte at a
// time is disconnected once the configured read timeouts pass, headers
// and body alike.
func TestAPI_SlowClientClosed(t *testing.T) {
	n, err := node.Open(context.Background(), node.Config{
		DataDir: filepath.Join(t.TempDir(), "data"), APIAddr: "127.0.0.1:0",
		Identity:    outpost.Identity{Name: "X1", Location: "LHR", Role: outpost.RoleNode, Code: "12ab"},
		APITimeouts: api.Timeouts{ReadHeader: 300 * time.Millisecond, Read: 600 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	n.Serve()
	defer n.Close(context.Background())
	addr := strings.TrimPrefix(n.APIURL(), "http://")
	for name, head := range map[string]string{
		"headers": "POST /v1/exec HTTP/1.1\r\nHost: x\r\n",
		"body":    "POST /v1/exec HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, head); err != nil {
				t.Fatal(err)
			}
			closed := make(chan struct{})
			go func() {
				_, _ = io.Copy(io.Discard, c) // ends when the server closes
				close(closed)
			}()
			trickle := "X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
			if name == "body" {
				trickle = `{"statements":[{"sql":"SELECT 1"}]}` + strings.Repeat(" ", 1000)
			}
			deadline := time.After(30 * time.Second)
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-closed:
					return
				case <-deadline:
					t.Fatal("the server kept a trickling connection open for 30s")
				case <-tick.C:
					_, _ = c.Write([]byte{trickle[i%len(trickle)]})
				}
			}
		})
	}
}
