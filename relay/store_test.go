package relay

import (
	"context"
	"encoding/json"
	"errors"
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

// TestRelay_SendBatch: sends committed together keep their order (strictly
// increasing hlc, also against the next transaction), a retry inside the
// batch is the first message, and one refused send does not fail the rest.
func TestRelay_SendBatch(t *testing.T) {
	ctx := context.Background()
	r, _ := storeRelay(t, "EDGE01", "43ax")
	body := json.RawMessage(`{"text":"hi"}`)
	ins := []SendRequest{
		{To: "bob", ID: "b-1", Body: body},
		{To: "bob", ID: "b-2", Body: body},
		{To: "bob", ID: "b-1", Body: body},                       // a retry
		{To: "bob", ID: "b-2", Body: json.RawMessage(`"other"`)}, // id reused
		{To: "bob", ID: "", Body: body},                          // bad id
		{To: "bob", ID: "b-3", Body: body},
	}
	sent, errs := r.SendBatch(ctx, "alice", ins)
	for i, want := range []string{"", "", "", "id_reused", "bad_id", ""} {
		var e *Error
		switch {
		case want == "" && errs[i] != nil:
			t.Errorf("send %d: %v", i, errs[i])
		case want != "" && (!errorsAs(errs[i], &e) || e.Code != want):
			t.Errorf("send %d: %v, want %s", i, errs[i], want)
		}
	}
	if !sent[2].Duplicate || sent[2].MsgID != sent[0].MsgID || sent[2].HLC != sent[0].HLC {
		t.Errorf("retry in the batch: %+v, first %+v", sent[2], sent[0])
	}
	if !(sent[0].HLC < sent[1].HLC && sent[1].HLC < sent[5].HLC) {
		t.Errorf("hlc not increasing in send order: %d %d %d", sent[0].HLC, sent[1].HLC, sent[5].HLC)
	}
	next, err := r.Send(ctx, "alice", SendRequest{To: "bob", ID: "b-4", Body: body})
	if err != nil || next.HLC <= sent[5].HLC {
		t.Errorf("next transaction: %+v, %v (last of the batch %d)", next, err, sent[5].HLC)
	}
}

func errorsAs(err error, e **Error) bool { return errors.As(err, e) }
