package peer_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/identity"
	"github.com/outpost-edge/outpost/peer"
	"github.com/outpost-edge/outpost/policy"
	"github.com/outpost-edge/outpost/trust"
)

// fleet is a set of peers on loopback, each with a real key, trust store,
// server and client, sharing one trust list file.
type fleet struct {
	dir   string
	nodes map[string]*member
	order []string
}

type member struct {
	id      outpost.Identity
	key     *identity.Key
	store   *trust.Store
	server  *peer.Server
	client  *peer.Client
	lenient *peer.Client // a client whose own policy allows everything
}

var fleetSpec = []outpost.Identity{
	{Name: "M1", Location: "LON", Role: outpost.RoleMaster, Code: "10ma"},
	{Name: "M2", Location: "NYC", Role: outpost.RoleMaster, Code: "11mb"},
	{Name: "N1", Location: "LHR", Role: outpost.RoleNode, Code: "20na"},
	{Name: "N2", Location: "CDG", Role: outpost.RoleNode, Code: "21nb"},
	{Name: "E1", Location: "LHR", Farm: "lhr", Role: outpost.RoleEdge, Code: "30ea"},
	{Name: "E2", Location: "LHR", Farm: "lhr", Role: outpost.RoleEdge, Code: "31eb"},
	{Name: "E3", Location: "CDG", Farm: "cdg", Role: outpost.RoleEdge, Code: "32ec"},
}

func allowAll() *policy.Matrix {
	var cells []policy.Cell
	for _, from := range []outpost.Role{outpost.RoleMaster, outpost.RoleNode, outpost.RoleEdge} {
		for _, to := range []outpost.Role{outpost.RoleMaster, outpost.RoleNode, outpost.RoleEdge} {
			cells = append(cells, policy.Cell{From: from, To: to, Farm: "any", Pull: true, Push: true})
		}
	}
	return policy.NewMatrix(cells)
}

func writeTrust(tb testing.TB, path string, f *fleet, skip string) {
	tb.Helper()
	var b strings.Builder
	b.WriteString("# test fleet\n")
	for _, name := range f.order {
		if name == skip {
			continue
		}
		m := f.nodes[name]
		addr := ""
		if m.server != nil {
			addr = m.server.Addr()
		}
		b.WriteString(identity.Line(m.id, m.key.Public(), addr) + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		tb.Fatal(err)
	}
}

func newFleet(tb testing.TB) *fleet {
	tb.Helper()
	f := &fleet{dir: tb.TempDir(), nodes: map[string]*member{}}
	for _, id := range fleetSpec {
		k, err := identity.Generate()
		if err != nil {
			tb.Fatal(err)
		}
		f.nodes[id.Name] = &member{id: id, key: k}
		f.order = append(f.order, id.Name)
	}
	path := filepath.Join(f.dir, "trust.txt")
	writeTrust(tb, path, f, "")
	for _, name := range f.order {
		m := f.nodes[name]
		st, err := trust.NewStore(path, m.id, m.key.Public())
		if err != nil {
			tb.Fatal(err)
		}
		m.store = st
		cfg := peer.Config{Self: identity.Peer{Identity: m.id, Key: m.key.Public()}, Key: m.key, Trust: st, Policy: policy.Default()}
		if m.server, err = peer.NewServer(cfg); err != nil {
			tb.Fatal(err)
		}
		for _, a := range []policy.Action{policy.Pull, policy.Push} {
			m.server.Handle("/test/"+string(a), a, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				p, _ := peer.From(r.Context())
				fmt.Fprintf(w, "%s ok for %s", r.URL.Path, p.Name)
			}))
		}
		m.server.Handle("/test/stream", policy.Pull, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
		if err := m.server.Listen("127.0.0.1:0"); err != nil {
			tb.Fatal(err)
		}
		m.server.Serve()
		if m.client, err = peer.NewClient(cfg); err != nil {
			tb.Fatal(err)
		}
		lc := cfg
		lc.Policy = allowAll()
		if m.lenient, err = peer.NewClient(lc); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() {
			m.client.Close()
			m.lenient.Close()
			m.server.Close(context.Background())
		})
	}
	// Now that every server has an address, publish them.
	writeTrust(tb, path, f, "")
	for _, name := range f.order {
		if _, err := f.nodes[name].store.Reload(); err != nil {
			tb.Fatal(err)
		}
	}
	return f
}

// wantAllowed is DESIGN.md section 2's matrix, written out independently of
// package policy.
func wantAllowed(from, to outpost.Identity, a policy.Action) bool {
	switch from.Role {
	case outpost.RoleMaster, outpost.RoleNode:
		return true
	}
	switch to.Role {
	case outpost.RoleMaster, outpost.RoleNode:
		return a == policy.Pull
	}
	return from.Farm == to.Farm
}

func get(ctx context.Context, c *peer.Client, to string, a policy.Action) (string, error) {
	resp, err := c.Do(ctx, to, a, http.MethodGet, "/test/"+string(a), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.ProtoMajor != 2 {
		return "", fmt.Errorf("spoke %s, want HTTP/2", resp.Proto)
	}
	return string(b), err
}

// TestPolicy_EveryCellOverMutualTLS runs every initiator/target pair of a
// seven-node fleet (two masters, two nodes, edges in two farms) and both
// exchanges over real mutual TLS: the initiator's own check and, with a
// client whose policy allows everything, the receiver's enforcement.
func TestPolicy_EveryCellOverMutualTLS(t *testing.T) {
	f := newFleet(t)
	ctx := context.Background()
	cells := 0
	for _, from := range f.order {
		for _, to := range f.order {
			if from == to {
				continue
			}
			for _, a := range []policy.Action{policy.Pull, policy.Push} {
				mf, mt := f.nodes[from], f.nodes[to]
				want := wantAllowed(mf.id, mt.id, a)
				name := fmt.Sprintf("%s(%s %s)->%s(%s %s) %s", from, mf.id.Role, mf.id.Farm, to, mt.id.Role, mt.id.Farm, a)
				cells++
				t.Run(name, func(t *testing.T) {
					before := mt.server.Refusals.Total("")
					body, err := get(ctx, mf.client, to, a)
					if want {
						if err != nil || !strings.Contains(body, "ok for "+from) {
							t.Fatalf("allowed exchange failed: %q, %v", body, err)
						}
					} else {
						var pe *peer.PolicyError
						if !errors.As(err, &pe) || !errors.Is(err, peer.ErrPolicy) {
							t.Fatalf("initiator did not refuse before dialing: %q, %v", body, err)
						}
						if got := mt.server.Refusals.Total(""); got != before {
							t.Fatalf("refused exchange reached the target (%d refusals there)", got-before)
						}
					}
					// The receiver enforces the same cell on its own.
					body, err = get(ctx, mf.lenient, to, a)
					if want {
						if err != nil {
							t.Fatalf("receiver refused an allowed exchange: %v", err)
						}
						return
					}
					var se *peer.StatusError
					if !errors.As(err, &se) || se.Status != http.StatusForbidden || se.Code != "policy_refused" {
						t.Fatalf("receiver answered %q, %v; want 403 policy_refused", body, err)
					}
					verb := "pull from"
					if a == policy.Push {
						verb = "push to"
					}
					if !strings.Contains(se.Message, "may not "+verb+" "+string(mt.id.Role)) || se.Rule == "" {
						t.Fatalf("refusal %q (rule %q) does not name the rule", se.Message, se.Rule)
					}
					if got := mt.server.Refusals.Total("policy"); got != before+1 {
						t.Fatalf("policy refusals at target = %d, want %d", got, before+1)
					}
				})
			}
		}
	}
	if cells != 7*6*2 {
		t.Fatalf("ran %d cells", cells)
	}
}

// TestServer_Hello answers the node's identity over mutual TLS.
func TestServer_Hello(t *testing.T) {
	f := newFleet(t)
	f.nodes["E1"].server.HandleHello(func() peer.Hello { return peer.Hello{Name: "E1", Role: "edge", Protocol: outpost.ProtocolVersion} })
	h, err := f.nodes["E3"].client.Hello(context.Background(), "E1")
	if err != nil {
		t.Fatal(err)
	}
	if h.Name != "E1" || h.Protocol != outpost.ProtocolVersion {
		t.Fatalf("hello = %+v", h)
	}
}

// TestServer_UnknownKey: a key not on the trust list fails the handshake and
// is counted with its fingerprint; so does a trusted name with the wrong key.
func TestServer_UnknownKey(t *testing.T) {
	f := newFleet(t)
	target := f.nodes["M1"]
	for _, tc := range []struct{ name, claim string }{{"stranger", "X9"}, {"impostor with a trusted name", "E1"}} {
		t.Run(tc.name, func(t *testing.T) {
			k, _ := identity.Generate()
			id := outpost.Identity{Name: tc.claim, Location: "LHR", Farm: "lhr", Role: outpost.RoleEdge, Code: "99zz"}
			// The impostor's own trust list says what it likes; M1's does not list its key.
			path := filepath.Join(t.TempDir(), "trust.txt")
			line := identity.Line(id, k.Public(), "") + "\n" + identity.Line(target.id, target.key.Public(), target.server.Addr()) + "\n"
			os.WriteFile(path, []byte(line), 0o644)
			st, err := trust.NewStore(path, id, k.Public())
			if err != nil {
				t.Fatal(err)
			}
			c, _ := peer.NewClient(peer.Config{Self: identity.Peer{Identity: id, Key: k.Public()}, Key: k, Trust: st, Policy: allowAll()})
			defer c.Close()
			before := target.server.Refusals.Total("unknown_key")
			if _, err := c.Hello(context.Background(), "M1"); err == nil {
				t.Fatal("an unknown key got an answer")
			}
			if got := target.server.Refusals.Total("unknown_key"); got != before+1 {
				t.Fatalf("unknown_key refusals = %d, want %d", got, before+1)
			}
			found := false
			for _, r := range target.server.Refusals.Snapshot() {
				found = found || (r.Kind == "unknown_key" && r.Detail == identity.Fingerprint(k.Public()))
			}
			if !found {
				t.Fatalf("refusal not counted under the key's fingerprint: %+v", target.server.Refusals.Snapshot())
			}
		})
	}
	t.Run("server with the wrong key for its name", func(t *testing.T) {
		// E2's client is told M1 lives at E1's address: E1 presents its own
		// key, which is not the one pinned for M1.
		path := filepath.Join(t.TempDir(), "trust.txt")
		e2 := f.nodes["E2"]
		lines := identity.Line(e2.id, e2.key.Public(), "") + "\n" + identity.Line(target.id, target.key.Public(), f.nodes["E1"].server.Addr()) + "\n"
		os.WriteFile(path, []byte(lines), 0o644)
		st, err := trust.NewStore(path, e2.id, e2.key.Public())
		if err != nil {
			t.Fatal(err)
		}
		c, _ := peer.NewClient(peer.Config{Self: identity.Peer{Identity: e2.id, Key: e2.key.Public()}, Key: e2.key, Trust: st, Policy: policy.Default()})
		defer c.Close()
		_, err = c.Hello(context.Background(), "M1")
		if err == nil || !strings.Contains(err.Error(), "pins") {
			t.Fatalf("client accepted a server with the wrong key: %v", err)
		}
	})
}

// TestServer_RemovedKey: a key removed from the trust list by a reload loses
// access at once, its open stream included.
func TestServer_RemovedKey(t *testing.T) {
	f := newFleet(t)
	m1, e1 := f.nodes["M1"], f.nodes["E1"]
	resp, err := e1.client.Do(context.Background(), "M1", policy.Pull, http.MethodGet, "/test/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	if !lines.Scan() {
		t.Fatalf("stream did not start: %v", lines.Err())
	}
	// M1 reloads a trust list without E1.
	writeTrust(t, filepath.Join(f.dir, "trust.txt"), f, "E1")
	if _, err := m1.store.Reload(); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() {
		for lines.Scan() {
		}
		ended <- lines.Err()
	}()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the removed key's stream was still open 5s after the reload")
	}
	if _, err := get(context.Background(), e1.lenient, "M1", policy.Pull); err == nil {
		t.Fatal("the removed key could still connect")
	}
}
