package replication

import (
	"cmp"
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/identity"
	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/peer"
	"github.com/outpost-edge/outpost/policy"
	"github.com/outpost-edge/outpost/store"
)

// pair is two real stores whose replicators reach each other in process.
type member struct {
	id identity.Peer
	st *store.Store
	r  *Replicator
	tr *inproc
	// proto is the protocol it announces; 0 = this build's. Tests of
	// protocol 1's cursors (and of a fleet mixing versions) set 1.
	proto int
}

func ident(name, code string, role outpost.Role) identity.Peer {
	id := outpost.Identity{Name: name, Location: "FRA", Role: role, Code: code}
	if role == outpost.RoleEdge {
		id.Farm = "lhr"
	}
	return identity.Peer{Identity: id}
}

func helloOf(m *member) func() peer.Hello {
	return func() peer.Hello {
		return peer.Hello{Name: m.id.Name, Role: string(m.id.Role), Protocol: cmp.Or(m.proto, testProto, outpost.ProtocolVersion),
			MinProtocol: outpost.MinProtocolVersion, Incarnation: m.st.Incarnation(), DBVersion: m.st.DBVersion(),
			Features: Features()}
	}
}

// testProto, if set, is the protocol every member announces (useProtocol).
var testProto int

// useProtocol makes the members of this test announce protocol v (tests of
// protocol 1's cursors, still spoken with peers that have not upgraded).
func useProtocol(t *testing.T, v int) {
	testProto = v
	t.Cleanup(func() { testProto = 0 })
}

// newMember opens a replicator on st for id; wire it with connect.
func newMember(t *testing.T, id identity.Peer, st *store.Store, mod func(*Config)) *member {
	t.Helper()
	m := &member{id: id, st: st, tr: newInproc(id)}
	t.Cleanup(m.tr.wg.Wait)
	m.r = testReplicator(t, id.Identity, st, m.tr, mod)
	m.r.cfg.Hello = helloOf(m)
	return m
}

// connect lets from reach to (its requests are served by to's replicator).
func connect(from, to *member) { from.tr.add(to.id.Name, to.r, helloOf(to)) }

func exec(tb testing.TB, s *store.Store, sql string, args ...any) {
	tb.Helper()
	if _, _, err := s.Exec(context.Background(), []store.Statement{{SQL: sql, Args: args}}); err != nil {
		tb.Fatalf("exec %q: %v", sql, err)
	}
}

func count(tb testing.TB, s *store.Store, sql string, args ...any) int64 {
	tb.Helper()
	res, err := s.Query(context.Background(), store.Statement{SQL: sql, Args: args})
	if err != nil {
		tb.Fatalf("query %q: %v", sql, err)
	}
	n, _ := res.Rows[0][0].(int64)
	return n
}

// TestPull_DuplicatesIgnored: changes delivered again (a cursor set back)
// are ignored by the merge, not applied twice.
func TestPull_DuplicatesIgnored(t *testing.T) {
	useProtocol(t, 1)
	a := newMember(t, ident("MASTER01", "01ma", outpost.RoleMaster), testutil.OpenStore(t, "", store.Options{Identity: ident("MASTER01", "01ma", outpost.RoleMaster).Identity}), nil)
	b := newMember(t, ident("NODE01", "02no", outpost.RoleNode), testutil.OpenStore(t, "", store.Options{Identity: ident("NODE01", "02no", outpost.RoleNode).Identity}), nil)
	connect(b, a)
	exec(t, a.st, `INSERT INTO pages (id, title) VALUES ('p1', 'one'), ('p2', 'two')`)
	l := runLoop(b.r, a.id, "pull")
	eventually(t, "B has A's rows", func() bool { return count(t, b.st, `SELECT count(*) FROM pages`) == 2 })
	// The counters move just after the commit that made the rows visible:
	// 2 rows of 5 changes (sentinel + 4 columns).
	eventually(t, "B counted A's changes", func() bool { return b.st.ReplStats().Applied == 10 })
	applied := b.st.ReplStats().Applied
	if err := b.st.SetCursor(context.Background(), "MASTER01", store.CursorPull, a.st.Incarnation(), 0); err != nil {
		t.Fatal(err)
	}
	l.reconnect()
	eventually(t, "duplicates ignored", func() bool { return b.st.ReplStats().Ignored >= 2 })
	if got := b.st.ReplStats().Applied; got != applied {
		t.Fatalf("applied %d after the duplicates, want %d", got, applied)
	}
}

// TestPull_LargeGroupInParts (item 7): a group over the frame limit reaches
// a puller that joins parts, whole; a puller that does not is skipped past
// it with a refusal counted, and later groups still arrive.
func TestPull_LargeGroupInParts(t *testing.T) {
	useProtocol(t, 1) // protocol 2 bounds a log entry (4 MiB) below the frame limit instead
	small := func(c *Config) {
		c.Limits.MaxFrameBytes = 64 << 10
		c.Refusals = peer.NewRefusals()
	}
	a := newMember(t, ident("MASTER01", "01ma", outpost.RoleMaster), testutil.OpenStore(t, "", store.Options{Identity: ident("MASTER01", "01ma", outpost.RoleMaster).Identity}), small)
	b := newMember(t, ident("NODE01", "02no", outpost.RoleNode), testutil.OpenStore(t, "", store.Options{Identity: ident("NODE01", "02no", outpost.RoleNode).Identity}), small)
	connect(b, a)
	// 40 rows of 4 KiB in one transaction: 160 KiB, over the 64 KiB frame.
	stmts := make([]store.Statement, 40)
	for i := range stmts {
		stmts[i] = store.Statement{SQL: `INSERT INTO pages (id, body) VALUES (?, ?)`, Args: []any{"big" + string(rune('A'+i)), strings.Repeat("x", 4<<10)}}
	}
	if _, _, err := a.st.Exec(context.Background(), stmts); err != nil {
		t.Fatal(err)
	}
	exec(t, a.st, `INSERT INTO pages (id) VALUES ('after')`)
	runLoop(b.r, a.id, "pull")
	eventually(t, "B has the large group and the next", func() bool {
		return count(t, b.st, `SELECT count(*) FROM pages`) == 41
	})

	// A puller that does not join parts (protocol 1) is not wedged.
	c := newMember(t, ident("NODE02", "03np", outpost.RoleNode), testutil.OpenStore(t, "", store.Options{Identity: ident("NODE02", "03np", outpost.RoleNode).Identity}), small)
	connect(c, a)
	old := &oldPuller{inproc: c.tr}
	c.r.cfg.Client = old
	runLoop(c.r, a.id, "pull")
	eventually(t, "C skipped the large group and got the next", func() bool {
		return count(t, c.st, `SELECT count(*) FROM pages WHERE id = 'after'`) == 1
	})
	if n := count(t, c.st, `SELECT count(*) FROM pages`); n != 1 {
		t.Fatalf("C has %d rows, want only the one after the skipped group", n)
	}
	if a.r.cfg.Refusals.Total("group_not_sent") == 0 {
		t.Fatal("the skipped group was not counted")
	}
}

// oldPuller dials without parts=1, like a protocol 1 node.
type oldPuller struct{ *inproc }

func (o *oldPuller) Do(ctx context.Context, name string, a policy.Action, method, path string, body []byte) (*http.Response, error) {
	return o.inproc.Do(ctx, name, a, method, strings.Replace(path, "parts=1", "parts=0", 1), body)
}
