package api_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/api"
	"github.com/outpost-edge/outpost/limiter"
)

func limitServer(t *testing.T) (*httptest.Server, *limiter.Limiter) {
	t.Helper()
	l := limiter.New(limiter.Config{Self: "EDGE01", Transport: limiter.NewMemNetwork().Transport("EDGE01")})
	s := api.New(nil, api.Config{})
	s.HandleLimiter(l)
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return ts, l
}

func post(t *testing.T, url, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("%s: answer is not JSON: %v", body, err)
	}
	return resp.StatusCode, out
}

func TestLimit_Decide(t *testing.T) {
	ts, _ := limitServer(t)
	for i := 0; i < 3; i++ {
		status, out := post(t, ts.URL+"/v1/limit", `{"key":"ip:203.0.113.9","limit":2,"window":"60s"}`)
		if status != 200 {
			t.Fatalf("status %d: %v", status, out)
		}
		if want := i < 2; out["allowed"] != want || out["owner"] != "EDGE01" || out["reset_ms"].(float64) <= 0 {
			t.Fatalf("request %d: %v; want allowed=%v", i, out, want)
		}
	}
}

func TestLimit_BadInput(t *testing.T) {
	ts, _ := limitServer(t)
	for _, tc := range []struct{ body, code string }{
		{`{"key":"","limit":1,"window":"1s"}`, limiter.CodeBadKey},
		{`{"limit":1,"window":"1s"}`, limiter.CodeBadKey},
		{`{"key":"a b","limit":1,"window":"1s"}`, limiter.CodeBadKey},
		{`{"key":"k","limit":0,"window":"1s"}`, limiter.CodeBadLimit},
		{`{"key":"k","limit":-5,"window":"1s"}`, limiter.CodeBadLimit},
		{`{"key":"k","limit":1,"window":"0s"}`, limiter.CodeBadWindow},
		{`{"key":"k","limit":1,"window":"-1s"}`, limiter.CodeBadWindow},
		{`{"key":"k","limit":1,"window":"25h"}`, limiter.CodeBadWindow},
		{`{"key":"k","limit":1,"window":"soon"}`, limiter.CodeBadWindow},
		{`{"key":"k","limit":1}`, limiter.CodeBadWindow},
		{`{"key":"k","limit":2,"window":"1s","cost":3}`, limiter.CodeBadCost},
		{`{"key":"k","limit":1.5,"window":"1s"}`, "bad_request"},
		{`not json`, "invalid_json"},
		{``, "invalid_json"},
		{`{"key":"k","limit":1,"window":"1s","burst":2}`, "unknown_field"},
		{`{"key":"k","Key":"j","limit":1,"window":"1s"}`, "unknown_field"},
	} {
		status, out := post(t, ts.URL+"/v1/limit", tc.body)
		e, _ := out["error"].(map[string]any)
		if status != 400 || e == nil || e["code"] != tc.code {
			t.Errorf("%s: %d %v; want 400 %s", tc.body, status, out, tc.code)
		}
	}
	for _, tc := range []struct{ body, code string }{
		{`{"key":"k"}`, limiter.CodeBadUntil},
		{`{"key":"k","until":-1}`, limiter.CodeBadUntil},
		{`{"key":"","until":1}`, limiter.CodeBadKey},
		{`[]`, "invalid_json"},
	} {
		status, out := post(t, ts.URL+"/v1/limit/block", tc.body)
		e, _ := out["error"].(map[string]any)
		if status != 400 || e == nil || e["code"] != tc.code {
			t.Errorf("block %s: %d %v; want 400 %s", tc.body, status, out, tc.code)
		}
	}
	resp, err := http.Get(ts.URL + "/v1/limit")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /v1/limit: %d; want 405", resp.StatusCode)
	}
}

func TestLimit_Block(t *testing.T) {
	ts, _ := limitServer(t)
	status, out := post(t, ts.URL+"/v1/limit/block", `{"key":"ip:6","until":4102444800000}`)
	if status != 200 || out["key"] != "ip:6" {
		t.Fatalf("block: %d %v", status, out)
	}
	_, out = post(t, ts.URL+"/v1/limit", `{"key":"ip:6","limit":100,"window":"1m"}`)
	if out["allowed"] != false || out["path"] != "blocked" {
		t.Fatalf("blocked key: %v", out)
	}
}
