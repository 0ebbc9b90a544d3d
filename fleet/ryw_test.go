package fleet_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
)

func postJSONv(tb testing.TB, url string, body any) (int, map[string]any) {
	tb.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		tb.Fatalf("%s: %s", url, raw)
	}
	return resp.StatusCode, out
}

// TestFleet_ReadYourWrites: a write's answer says where it is in its
// origin's log; waiting for the master to hold it answers who did; a read
// at another edge with that min_version sees the write; one asking for
// more than exists gets 503 not_caught_up after its timeout.
func TestFleet_ReadYourWrites(t *testing.T) {
	f := startDemo(t)
	e1, e4 := f.Node("EDGE01").APIURL(), f.Node("EDGE04").APIURL()
	code, w := postJSONv(t, e1+"/v1/exec", map[string]any{
		"statements": []any{map[string]any{"sql": "INSERT INTO pages (id, title) VALUES ('ryw', 'mine')"}},
		"wait_for":   map[string]any{"peers": []string{"master"}, "timeout_ms": 10000},
	})
	if code != 200 {
		t.Fatalf("exec: %d %v", code, w)
	}
	origin, _ := w["origin"].(string)
	seq, _ := w["seq"].(float64)
	if origin != f.Node("EDGE01").Store.Origin() || seq < 1 {
		t.Fatalf("exec answer has no log position: %v", w)
	}
	wf, _ := w["wait_for"].(map[string]any)
	holders, _ := wf["holders"].([]any)
	if wf["reached"] != true || !slices.Contains(holders, any("MASTER01")) {
		t.Fatalf("wait_for: %v", wf)
	}
	code, q := postJSONv(t, e4+"/v1/query", map[string]any{
		"sql": "SELECT title FROM pages WHERE id = 'ryw'", "min_version": map[string]any{origin: seq}, "timeout_ms": 10000,
	})
	if code != 200 || fmt.Sprint(q["rows"]) != "[[mine]]" {
		t.Fatalf("read at EDGE04 with min_version: %d %v", code, q)
	}
	code, q = postJSONv(t, e4+"/v1/query", map[string]any{
		"sql": "SELECT 1", "min_version": map[string]any{origin: seq + 1000}, "timeout_ms": 200,
	})
	if e, _ := q["error"].(map[string]any); code != 503 || e["code"] != "not_caught_up" {
		t.Fatalf("unreachable min_version: %d %v", code, q)
	}
	for _, bad := range []map[string]any{
		{"sql": "SELECT 1", "min_version": map[string]any{"EDGE01": 1}},
		{"sql": "SELECT 1", "min_version": map[string]any{origin: -1}},
		{"sql": "SELECT 1", "min_version": map[string]any{origin: 1}, "timeout_ms": 600000},
	} {
		if code, q := postJSONv(t, e4+"/v1/query", bad); code != 400 {
			t.Fatalf("%v: %d %v", bad, code, q)
		}
	}
	// Waiting for a peer that does not exist says so, and the write stands.
	code, w = postJSONv(t, e1+"/v1/exec", map[string]any{
		"statements": []any{map[string]any{"sql": "INSERT INTO pages (id, title) VALUES ('ryw2', 'x')"}},
		"wait_for":   map[string]any{"peers": []string{"NOBODY"}, "timeout_ms": 100},
	})
	if wf, _ := w["wait_for"].(map[string]any); code != 200 || wf["reached"] != false {
		t.Fatalf("wait_for an unknown peer: %d %v", code, w)
	}
}
