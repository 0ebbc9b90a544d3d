package node

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/replication"
)

// TestNewLink_LagUnknownWhileDown: a down link's lag is null (unknown), not
// the 0 computed from the last db_version heard of; an up link's is a number.
func TestNewLink_LagUnknownWhileDown(t *testing.T) {
	down, err := json.Marshal(newLink(replication.LinkStatus{Peer: "HUB", Direction: "pull", Cursor: 5, PeerDBVersion: 5}))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(down), `"lag_db_versions":null`) || !strings.Contains(string(down), `"lag_seconds":null`) {
		t.Errorf("down link: %s", down)
	}
	up, _ := json.Marshal(newLink(replication.LinkStatus{Peer: "HUB", Direction: "pull", Connected: true, Cursor: 3, PeerDBVersion: 5, LagChanges: 2, LagSeconds: 1.5}))
	if !strings.Contains(string(up), `"lag_db_versions":2`) || !strings.Contains(string(up), `"lag_seconds":1.5`) || strings.Count(string(up), "lag_db_versions") != 1 {
		t.Errorf("up link: %s", up)
	}
}
