package peer_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/identity"
	"github.com/outpost-edge/outpost/peer"
	"github.com/outpost-edge/outpost/policy"
	"github.com/outpost-edge/outpost/trust"
)

// TestServer_Timeouts (item 9): with small configured timeouts, a
// connection that sends nothing and one that never finishes its headers
// are closed by the server; a pull stream (long-lived, written by the
// server) outlives every timeout.
func TestServer_Timeouts(t *testing.T) {
	const timeout = 150 * time.Millisecond
	f := &fleet{dir: t.TempDir(), nodes: map[string]*member{}}
	for _, id := range []outpost.Identity{fleetSpec[0], fleetSpec[2]} { // M1, N1
		k, err := identity.Generate()
		if err != nil {
			t.Fatal(err)
		}
		f.nodes[id.Name] = &member{id: id, key: k}
		f.order = append(f.order, id.Name)
	}
	path := filepath.Join(f.dir, "trust.txt")
	writeTrust(t, path, f, "")
	cfgOf := func(m *member) peer.Config {
		st, err := trust.NewStore(path, m.id, m.key.Public())
		if err != nil {
			t.Fatal(err)
		}
		return peer.Config{Self: identity.Peer{Identity: m.id, Key: m.key.Public()}, Key: m.key, Trust: st, Policy: policy.Default(),
			ReadHeaderTimeout: timeout, ReadTimeout: timeout, IdleTimeout: timeout}
	}
	m1 := f.nodes["M1"]
	srv, err := peer.NewServer(cfgOf(m1))
	if err != nil {
		t.Fatal(err)
	}
	srv.Handle("/test/stream", policy.Pull, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for {
			if _, err := fmt.Fprintln(w, "tick"); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}))
	if err := srv.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	srv.Serve()
	t.Cleanup(func() { srv.Close(context.Background()) })
	m1.server = srv
	writeTrust(t, path, f, "")
	n1 := f.nodes["N1"]
	ncfg := cfgOf(n1)
	client, err := peer.NewClient(ncfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)

	closedByServer := func(c net.Conn) bool {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 1024)
		for {
			if _, err := c.Read(buf); err != nil {
				var ne net.Error
				return !(errorAs(err, &ne) && ne.Timeout())
			}
		}
	}
	t.Run("silent connection", func(t *testing.T) {
		c, err := net.Dial("tcp", srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if !closedByServer(c) {
			t.Fatal("a connection that sent nothing was not closed")
		}
	})
	t.Run("headers never finished", func(t *testing.T) {
		cert, err := peer.Certificate(n1.key, "N1")
		if err != nil {
			t.Fatal(err)
		}
		c, err := tls.Dial("tcp", srv.Addr(), &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("GET /sync/v1/hello HTTP/1.1\r\nHost: m1\r\n")); err != nil {
			t.Fatal(err)
		}
		if !closedByServer(c) {
			t.Fatal("a request whose headers never ended was not closed")
		}
	})
	t.Run("pull stream outlives the timeouts", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		resp, err := client.Do(ctx, "M1", policy.Pull, http.MethodGet, "/test/stream", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		start := time.Now()
		for time.Since(start) < 10*timeout {
			if !sc.Scan() {
				t.Fatalf("stream ended after %v: %v", time.Since(start), sc.Err())
			}
		}
	})
}

func errorAs(err error, target *net.Error) bool {
	ne, ok := err.(net.Error)
	if ok {
		*target = ne
	}
	return ok
}
