package relay

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/store"
)

// storeRelay is a relay on its own store, with no peers and no
// replication: what one edge does alone.
func storeRelay(t *testing.T, name, code string, others ...string) (*Relay, *store.Store) {
	t.Helper()
	st := testutil.OpenStore(t, "", store.Options{Identity: testutil.Identity(name, code)})
	r := New(Config{Self: name, DB: st, Keys: newTestKeys(t, name, others...)})
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r, st
}

// TestRelay_RetryAtAnotherEdgeSameID: a client's retry of one send at a
// second edge, before the first edge's row replicated there (here: never,
// the two stores are not connected), gets the same msg_id. The two rows
// share their key (sender, cid) and every column but the edge's own
// (node, hlc, created, sig), so replication merges them into one message
// and a client that drops repeats by ID shows it once.
func TestRelay_RetryAtAnotherEdgeSameID(t *testing.T) {
	ctx := context.Background()
	r1, _ := storeRelay(t, "EDGE01", "43ax")
	r2, _ := storeRelay(t, "EDGE02", "44bx")
	req := SendRequest{To: "bob", ID: "c-1", Body: json.RawMessage(`{"text":"hi"}`)}
	a, err := r1.Send(ctx, "alice", req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := r2.Send(ctx, "alice", req)
	if err != nil {
		t.Fatal(err)
	}
	if a.MsgID != b.MsgID || a.MsgID != MessageID("alice", "c-1") {
		t.Fatalf("the same send at two edges: msg_id %q and %q, want both %q", a.MsgID, b.MsgID, MessageID("alice", "c-1"))
	}
	if b.Duplicate {
		t.Error("EDGE02 had no row: not a duplicate there")
	}
	// A retry at the first edge is still answered from its row.
	again, err := r1.Send(ctx, "alice", req)
	if err != nil || !again.Duplicate || again.MsgID != a.MsgID || again.HLC != a.HLC {
		t.Fatalf("retry at EDGE01: %+v, %v", again, err)
	}
	// Different senders or client ids: different messages.
	for _, other := range [][2]string{{"alice", "c-2"}, {"bob", "c-1"}, {"alic", "ec-1"}, {"alice", "c-1 "}} {
		if MessageID(other[0], other[1]) == a.MsgID {
			t.Errorf("MessageID%q collides with (alice, c-1)", other)
		}
	}
	if id := MessageID("alice", "c-1"); len(id) != 27 || checkName("id", id) != nil {
		t.Errorf("MessageID = %q", id)
	}
}
