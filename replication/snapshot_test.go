package replication

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/store"
)

// TestProtocol2_SnapshotAfterCollection: a hub whose log was collected
// bootstraps a new puller from a snapshot (its state and its knowledge),
// after which the puller follows the hub's new entries; a relayed origin's
// entries keep flowing too.
func TestProtocol2_SnapshotAfterCollection(t *testing.T) {
	ctx := context.Background()
	ida, idb, idc := ident("MASTER01", "01ma", outpost.RoleMaster), ident("NODE01", "02no", outpost.RoleNode), ident("NODE02", "03np", outpost.RoleNode)
	a := newMember(t, ida, testutil.OpenStore(t, "", store.Options{Identity: ida.Identity}), nil)
	b := newMember(t, idb, testutil.OpenStore(t, "", store.Options{Identity: idb.Identity}), nil)
	connect(a, b)
	for i := range 50 {
		exec(t, a.st, `INSERT INTO pages (id, title) VALUES (?, 'a')`, fmt.Sprintf("a%02d", i))
		exec(t, b.st, `INSERT INTO pages (id, title) VALUES (?, 'b')`, fmt.Sprintf("b%02d", i))
	}
	exec(t, a.st, `DELETE FROM pages WHERE id = 'a00'`)
	runLoop(a.r, idb, "pull")
	eventually(t, "A has B's rows", func() bool { return count(t, a.st, `SELECT count(*) FROM pages`) == 99 })
	// A collects its whole log: a new puller cannot replay it.
	k, err := a.st.Knowledge(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := a.st.CollectLog(ctx, k); err != nil || n == 0 {
		t.Fatalf("collected %d, %v", n, err)
	}
	if st, _ := a.st.LogStats(ctx); st.Entries != 0 {
		t.Fatalf("log still holds %d entries", st.Entries)
	}
	c := newMember(t, idc, testutil.OpenStore(t, "", store.Options{Identity: idc.Identity}), nil)
	connect(c, a)
	runLoop(c.r, ida, "pull")
	eventually(t, "C bootstrapped from A's snapshot", func() bool { return count(t, c.st, `SELECT count(*) FROM pages`) == 99 })
	eventually(t, "C adopted A's knowledge", func() bool {
		kc, _ := c.st.Knowledge(ctx)
		return kc[a.st.Origin()] == k[a.st.Origin()] && kc[b.st.Origin()] == k[b.st.Origin()]
	})
	// New entries of both origins reach C by the log again.
	exec(t, a.st, `INSERT INTO pages (id, title) VALUES ('after-a', 'a')`)
	exec(t, b.st, `INSERT INTO pages (id, title) VALUES ('after-b', 'b')`)
	eventually(t, "C has the writes after the snapshot", func() bool { return count(t, c.st, `SELECT count(*) FROM pages`) == 101 })
	if n := count(t, c.st, `SELECT count(*) FROM pages WHERE id = 'a00'`); n != 0 {
		t.Fatal("the deleted row came back")
	}
}

// TestProtocol2_CollectByAcks: a puller's acknowledgements let the server
// collect what the puller holds, and no more.
func TestProtocol2_CollectByAcks(t *testing.T) {
	ctx := context.Background()
	ida, idb := ident("MASTER01", "01ma", outpost.RoleMaster), ident("NODE01", "02no", outpost.RoleNode)
	a := newMember(t, ida, testutil.OpenStore(t, "", store.Options{Identity: ida.Identity}), nil)
	b := newMember(t, idb, testutil.OpenStore(t, "", store.Options{Identity: idb.Identity}), nil)
	connect(b, a)
	for i := range 20 {
		exec(t, a.st, `INSERT INTO pages (id, title) VALUES (?, 'a')`, fmt.Sprintf("a%02d", i))
	}
	l := runLoop(b.r, ida, "pull")
	eventually(t, "B has A's rows", func() bool { return count(t, b.st, `SELECT count(*) FROM pages`) == 20 })
	eventually(t, "A's log collected by B's ack", func() bool {
		// No trust list here: B is A's only known puller.
		a.r.deps.mu.Lock()
		dep := a.r.deps.m["NODE01"]
		acked := int64(0)
		if dep != nil {
			acked = dep.acked[a.st.Origin()]
		}
		a.r.deps.mu.Unlock()
		return acked == 20
	})
	l.cancel() // B goes away; A writes on
	for i := range 5 {
		exec(t, a.st, `INSERT INTO pages (id, title) VALUES (?, 'late')`, fmt.Sprintf("late%d", i))
	}
	if err := a.r.CollectOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := a.st.LogStats(ctx); st.Entries != 5 {
		t.Fatalf("log holds %d entries, want the 5 B has not acknowledged", st.Entries)
	}
}

// TestDecodePullRequest_Bounds: a pull request that is not CBOR, names a
// negative sequence, or lists more names than the bound is refused.
func TestDecodePullRequest_Bounds(t *testing.T) {
	many := make([]string, maxFilterNames+1)
	for i := range many {
		many[i] = fmt.Sprintf("EDGE%05d", i)
	}
	for name, pr := range map[string]PullRequest{
		"negative": {Origin: "A/1", Known: store.Knowledge{"B/2": -1}},
		"only":     {Origin: "A/1", Only: many},
		"except":   {Origin: "A/1", Except: many},
	} {
		b, err := cbor.Marshal(pr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decodePullRequest(bytes.NewReader(b)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := decodePullRequest(strings.NewReader("not cbor")); err == nil {
		t.Error("garbage accepted")
	}
	ok, _ := cbor.Marshal(PullRequest{Origin: "A/1", Known: store.Knowledge{"B/2": 3}, Except: many[:10]})
	if pr, err := decodePullRequest(bytes.NewReader(ok)); err != nil || pr.Known["B/2"] != 3 {
		t.Fatalf("a good request: %+v %v", pr, err)
	}
}
