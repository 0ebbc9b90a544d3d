package fleet_test

import (
	"context"
	"github.com/outpost-edge/outpost/internal/testutil"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestFleet_SiteInBrowser opens the demo site at EDGE04 in a real headless
// Chromium: the list shows a page created at EDGE01, a click opens it,
// rendered by EDGE04, in the browser's language.
func TestFleet_SiteInBrowser(t *testing.T) {
	bin := testutil.Chromium()
	if bin == "" {
		t.Skip("no chromium found on PATH (apt-get install chromium; .ci/run installs it): browser test skipped")
	}
	f := startSiteFleet(t)
	var out struct {
		Results []struct {
			Rows [][]string `json:"rows"`
		} `json:"results"`
	}
	postJSON(t, f.Node("EDGE01").APIURL()+"/v1/exec", `{"statements":[{"sql":"INSERT INTO pages (id, slug, title, body) VALUES (outpost_id(), outpost_slug(?), ?, ?) RETURNING slug","args":["Seen in a browser","Seen in a browser","Hello <from> EDGE01"]}]}`, &out)
	slug := out.Results[0].Rows[0][0]
	waitPage(t, f.Node("EDGE04").HTTPURL()+"/pages/"+slug, "replicated to EDGE04", func(st int, _, _ string) bool { return st == 200 })

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU,
		chromedp.Flag("accept-lang", "fr-FR,fr"), chromedp.Flag("lang", "fr-FR"), chromedp.Env("LANGUAGE=fr"))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(f.Node("EDGE04").HTTPURL()+"/"), chromedp.WaitVisible("#pages")); err != nil {
		t.Fatal(err)
	}
	list, err := chromedp.Run(ctx, chromedp.Text("#pages"))
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Click(`a[href="/pages/`+slug+`"]`), chromedp.WaitVisible("#title")); err != nil {
		t.Fatal(err)
	}
	text := func(sel string) string {
		v, err := chromedp.Run(ctx, chromedp.Text(sel))
		if err != nil {
			t.Fatalf("%s: %v", sel, err)
		}
		return v
	}
	title, body, servedBy := text("#title"), text("#body"), text("#served-by")
	attr, err := chromedp.Run(ctx, chromedp.AttributeValue("html", "lang"))
	if err != nil {
		t.Fatal(err)
	}
	lang := attr.Value
	if !strings.Contains(list, "Seen in a browser") || title != "Seen in a browser" || body != "Hello <from> EDGE01" {
		t.Fatalf("list %q, title %q, body %q", list, title, body)
	}
	if !strings.Contains(servedBy, "EDGE04") || lang != "fr" || !strings.HasPrefix(servedBy, "Rendu par") {
		t.Fatalf("served by %q, lang %q", servedBy, lang)
	}
}
