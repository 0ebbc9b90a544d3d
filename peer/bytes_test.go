package peer_test

import (
	"context"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/policy"
)

// TestBytes_CountedBothSides: a request over mutual TLS is counted by the
// client and the server, the same bytes in opposite directions, handshake
// included.
func TestBytes_CountedBothSides(t *testing.T) {
	f := newFleet(t)
	e1, m1 := f.nodes["E1"], f.nodes["M1"]
	if e1.client.Bytes.In()+e1.client.Bytes.Out()+m1.server.Bytes.In()+m1.server.Bytes.Out() != 0 {
		t.Fatal("counters not zero before any exchange")
	}
	body, err := get(context.Background(), e1.client, "M1", policy.Pull)
	if err != nil || body == "" {
		t.Fatalf("pull: %q %v", body, err)
	}
	// The handshake alone is more than a kilobyte each way (certificates).
	if out := e1.client.Bytes.Out(); out < 1000 {
		t.Fatalf("client wrote %d bytes, want > 1000", out)
	}
	if in := e1.client.Bytes.In(); in < 1000 {
		t.Fatalf("client read %d bytes, want > 1000", in)
	}
	e1.client.Close() // idle connection closed: the server has read everything the client wrote
	for range 100 {
		if m1.server.Bytes.In() == e1.client.Bytes.Out() {
			break
		}
		waitABit()
	}
	if got, want := m1.server.Bytes.In(), e1.client.Bytes.Out(); got != want {
		t.Fatalf("server read %d bytes, client wrote %d", got, want)
	}
	if got, want := m1.server.Bytes.Out(), e1.client.Bytes.In(); got < want {
		t.Fatalf("server wrote %d bytes, client read %d", got, want)
	}
	if e1.server.Bytes.In() != 0 || m1.client.Bytes.Out() != 0 {
		t.Fatal("an idle side counted bytes")
	}
}

func waitABit() { time.Sleep(10 * time.Millisecond) }
