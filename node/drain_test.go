package node

import (
	"testing"

	"github.com/outpost-edge/outpost/replication"
)

// TestRelayHas: only a master's or node's pull ack for this incarnation at
// or past the target lets a drain end; a farm sibling's does not.
func TestRelayHas(t *testing.T) {
	acks := []replication.PullAck{
		{Peer: "EDGE02", Role: "edge", Incarnation: "i1", Through: 100},
		{Peer: "MASTER01", Role: "master", Incarnation: "old", Through: 100},
		{Peer: "NODE01", Role: "node", Incarnation: "i1", Through: 40},
	}
	if _, ok := relayHas(acks, "i1", 50, 0); ok {
		t.Fatal("a sibling's ack, an old incarnation's, or a short one ended the drain")
	}
	if a, ok := relayHas(acks, "i1", 40, 0); !ok || a.Peer != "NODE01" {
		t.Fatalf("relayHas = %v %v, want NODE01", a, ok)
	}
}
