package node

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/peer"
	"github.com/outpost-edge/outpost/replication"
	"github.com/outpost-edge/outpost/store"
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

// TestStatus_SnakeCase: every field of /v1/status is snake_case (it mixed
// Go names such as Applied and CommitTime, in unlabelled nanoseconds, with
// snake_case).
func TestStatus_SnakeCase(t *testing.T) {
	b, err := json.Marshal(Status{Links: []Link{newLink(replication.LinkStatus{Connected: true})}, Held: map[string]int64{"drift": 1},
		Refused: []store.Refusal{{Sender: "X"}}, Refusals: []peer.Refusal{{Kind: "k"}}})
	if err != nil {
		t.Fatal(err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if k != strings.ToLower(k) {
					t.Errorf("field %q is not snake_case", k)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	var m any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	walk(m)
	for _, want := range []string{`"commit_time_ms"`, `"commit_groups"`, `"applied"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("no %s in %s", want, b)
		}
	}
}
