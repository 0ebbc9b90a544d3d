package fleet_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/fleet"
	"github.com/outpost-edge/outpost/node"
)

func startSiteFleet(tb testing.TB) *fleet.Fleet {
	tb.Helper()
	f, err := fleet.Start(context.Background(), tb.TempDir(), fleet.Demo(0), fleet.Options{Site: "demo"})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close(context.Background()) })
	return f
}

func page(tb testing.TB, url string) (int, string, string) {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("X-Cache")
}

// waitPage polls url until ok says the page is as wanted.
func waitPage(tb testing.TB, url, what string, ok func(status int, body, xcache string) bool) {
	tb.Helper()
	// Generous: replication under -race on a loaded two-core machine.
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, body, xc := page(tb, url)
		if ok(st, body, xc) {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: %s: still %d %s %.200q", url, what, st, xc, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFleet_SiteEndToEnd: a page created at EDGE01 is rendered at EDGE04
// from EDGE04's own SQLite; an edit at MASTER01 changes EDGE04's page with
// no purge call; purges by key and URL issued at one node reach every edge;
// an edge stopped during a purge serves nothing stale after its restart.
func TestFleet_SiteEndToEnd(t *testing.T) {
	f := startSiteFleet(t)
	var out struct {
		Results []struct {
			Rows [][]string `json:"rows"`
		} `json:"results"`
	}
	postJSON(t, f.Node("EDGE01").APIURL()+"/v1/exec", `{"statements":[{"sql":"INSERT INTO pages (id, slug, title, body) VALUES (outpost_id(), outpost_slug(?), ?, ?) RETURNING id, slug","args":["Edge page","Edge page","from EDGE01"]}]}`, &out)
	id, slug := out.Results[0].Rows[0][0], out.Results[0].Rows[0][1]
	edges := []string{"EDGE01", "EDGE02", "EDGE03", "EDGE04"}
	url := func(n string) string { return f.Node(n).HTTPURL() + "/pages/" + slug }

	// Rendered at EDGE04 from its own copy, then cached there.
	waitPage(t, url("EDGE04"), "created at EDGE01", func(st int, body, _ string) bool {
		return st == 200 && strings.Contains(body, "Edge page") && strings.Contains(body, "Rendered by EDGE04")
	})
	waitPage(t, url("EDGE04"), "cached", func(_ int, _, xc string) bool { return xc == "HIT" })

	// Edited at MASTER01: EDGE04 serves the new version once the change
	// arrives, without anyone calling purge.
	postJSON(t, f.Node("MASTER01").APIURL()+"/v1/exec", `{"statements":[{"sql":"UPDATE pages SET title = 'Edited at the master' WHERE id = ?","args":["`+id+`"]}]}`, nil)
	waitPage(t, url("EDGE04"), "edit at MASTER01", func(_ int, body, _ string) bool { return strings.Contains(body, "Edited at the master") })

	cachedEverywhere := func() {
		for _, e := range edges {
			waitPage(t, url(e), "cached at "+e, func(_ int, body, xc string) bool {
				return xc == "HIT" && strings.Contains(body, "Edited at the master")
			})
		}
	}
	purgedEverywhere := func(how string) {
		for _, e := range edges {
			_, _, xc := page(t, url(e))
			if xc == "HIT" {
				waitPage(t, url(e), how+" at "+e, func(_ int, _, xc string) bool { return xc != "HIT" })
			}
		}
	}
	// Purge by key, issued at MASTER01.
	cachedEverywhere()
	var pr struct {
		ID string `json:"id"`
	}
	if st := postJSON(t, f.Node("MASTER01").APIURL()+"/v1/purge", `{"keys":["pages/`+id+`"]}`, &pr); st != 200 {
		t.Fatalf("purge: %d", st)
	}
	purgedEverywhere("purge by key")
	// Every node reports it applied; MASTER01 learns of the edges' acks
	// by pulling them.
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(f.Node("MASTER01").APIURL() + "/v1/purge/" + pr.ID)
		if err != nil {
			t.Fatal(err)
		}
		var st struct {
			Applied []struct{ Node string } `json:"applied"`
			Pending []string                `json:"pending"`
		}
		json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if len(st.Pending) == 0 && len(st.Applied) == 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("purge status at MASTER01: pending %v", st.Pending)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Purge by URL, issued at NODE01.
	cachedEverywhere()
	postJSON(t, f.Node("NODE01").APIURL()+"/v1/purge", `{"urls":["/pages/`+slug+`"]}`, nil)
	purgedEverywhere("purge by URL")

	// EDGE03 is stopped while a purge is issued; after its restart it
	// serves nothing from before the purge, and applies it.
	cachedEverywhere()
	var missed string
	if _, err := f.Restart(context.Background(), "EDGE03", func(*node.Config) {
		var pr struct {
			ID string `json:"id"`
		}
		postJSON(t, f.Node("MASTER01").APIURL()+"/v1/purge", `{"all":true}`, &pr)
		missed = pr.ID
	}); err != nil {
		t.Fatal(err)
	}
	if _, _, xc := page(t, url("EDGE03")); xc == "HIT" {
		t.Fatal("EDGE03 served a cached page from before the purge")
	}
	deadline = time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(f.Node("EDGE03").APIURL() + "/v1/purge/" + missed)
		if err != nil {
			t.Fatal(err)
		}
		var st struct {
			Applied []struct{ Node string } `json:"applied"`
		}
		json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if slices.ContainsFunc(st.Applied, func(a struct{ Node string }) bool { return a.Node == "EDGE03" }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("EDGE03 never applied the purge it missed: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
