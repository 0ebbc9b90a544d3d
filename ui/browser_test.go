package ui_test

import (
	"context"
	"github.com/outpost-edge/outpost/internal/testutil"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/outpost-edge/outpost/fleet"
	"github.com/outpost-edge/outpost/node"
	"github.com/outpost-edge/outpost/store"
)

// chromium returns the path of a Chromium (or Chrome) binary, or skips the
// test with the way to install one.
func chromium(t *testing.T) string {
	t.Helper()
	if p := testutil.Chromium(); p != "" {
		return p
	}
	t.Skip("browser test skipped: no chromium on PATH; install it with `apt-get install -y chromium` (.ci/run does)")
	return ""
}

// TestUI_FleetPage loads MASTER01's /ui in a real headless Chromium: the
// picture shows every node of the demo fleet in the core and its two farms,
// the master's links, and the table; it refreshes by itself (a write shows
// up as a new db_version, a stopped edge turns down).
func TestUI_FleetPage(t *testing.T) {
	bin := chromium(t)
	f, err := fleet.Start(context.Background(), t.TempDir(), fleet.Demo(0), fleet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close(context.Background()) })

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin),
		chromedp.NoSandbox, chromedp.DisableGPU, chromedp.Flag("headless", true))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 45*time.Second)
	defer cancel()

	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	count := func(css string) int {
		t.Helper()
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll(`+"`"+css+"`"+`).length`))
		if err != nil {
			t.Fatalf("count %s: %v", css, err)
		}
		return n
	}
	run("load /ui", chromedp.Navigate(f.Node("MASTER01").APIURL()+"/ui"),
		chromedp.WaitVisible(chromedp.CSS(`g.node[data-name="EDGE04"][data-state="up"]`)),
		chromedp.WaitVisible(chromedp.CSS(`g.node[data-name="EDGE01"][data-state="up"]`)))
	title, err := chromedp.Run(ctx, chromedp.Title())
	if err != nil {
		t.Fatal(err)
	}
	nodes, farms, links, rows := count("g.node"), count("g.farm"), count("line.link"), count("#nodes tbody tr")
	if title != "Outpost fleet" || nodes != len(f.Nodes) || farms != 2 || rows != len(f.Nodes) || links != len(f.Nodes)-1 {
		t.Fatalf("page: title %q, %d nodes, %d farms, %d links, %d rows", title, nodes, farms, links, rows)
	}

	// A write at EDGE01 reaches the master: the page shows its new
	// db_version without a reload.
	if _, _, err := f.Node("EDGE01").Store.Exec(context.Background(), []store.Statement{{SQL: `INSERT INTO pages (id, title) VALUES ('p1', 'hello')`}}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`(() => { const td = document.querySelector('#nodes tr[data-name="EDGE01"] td:nth-child(5)'); return td && td.textContent === "1"; })()`)); err != nil {
		t.Fatalf("EDGE01's db_version on the page did not become 1: %v", err)
	}

	// EDGE04 stops: its box turns red (down) and its link too.
	if err := f.Node("EDGE04").Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	run("EDGE04 down on the page", chromedp.WaitVisible(chromedp.CSS(`g.node[data-name="EDGE04"][data-state="down"]`)))
	fill, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(`g.node[data-name="EDGE04"] rect`), "fill"))
	if err != nil {
		t.Fatal(err)
	}
	link, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(`line.link[data-peer="EDGE04"]`), "data-state"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(fill.Value, "--down") || link.Value != "down" {
		t.Fatalf("EDGE04 stopped: fill %q, link %q", fill.Value, link.Value)
	}
}

// TestUI_Token: on a node with an API token the page asks for it (the page
// itself is public, /v1/fleet is not), then draws the fleet with it.
func TestUI_Token(t *testing.T) {
	bin := chromium(t)
	f, err := fleet.Start(context.Background(), t.TempDir(), fleet.Demo(0)[:1], fleet.Options{
		Configure: func(_ fleet.Member, c *node.Config) { c.APIToken = "s3cret" }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close(context.Background()) })
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.DisableGPU)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = chromedp.Do(ctx,
		chromedp.Navigate(f.Nodes[0].APIURL()+"/ui"),
		chromedp.WaitVisible(chromedp.CSS(`#auth`)),
		chromedp.SendKeys(chromedp.CSS(`#token`), "s3cret"),
		chromedp.Click(chromedp.CSS(`#save`)),
		chromedp.WaitVisible(chromedp.CSS(`g.node[data-name="MASTER01"][data-state="self"]`)),
		chromedp.WaitNotVisible(chromedp.CSS(`#auth`)),
	)
	if err != nil {
		t.Fatalf("token prompt: %v", err)
	}
}
