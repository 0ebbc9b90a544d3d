package fleet_test

import (
	"context"
	"github.com/outpost-edge/outpost/internal/testutil"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/outpost-edge/outpost/node"
)

// TestFleet_RelayBrowser opens the demo page /chat/ in a real headless
// browser on EDGE01 (farm lhr) and on EDGE04 (farm cdg) and chats both
// ways; the sender sees the read receipt.
func TestFleet_RelayBrowser(t *testing.T) {
	bin := testutil.Chromium()
	if bin == "" {
		t.Skip("SKIP: no Chromium on this machine (apt-get install -y chromium); the browser test of /chat/ did not run")
	}
	f := startRelayFleet(t, node.RelayConfig{})
	e1, e4 := f.Node("EDGE01"), f.Node("EDGE04")
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.Flag("headless", true), chromedp.Flag("disable-gpu", true))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	start := time.Now()
	ctx, cancel := context.WithTimeout(actx, 55*time.Second)
	defer cancel()
	alice, cancelA := chromedp.NewContext(ctx)
	defer cancelA()
	bob, cancelB := chromedp.NewContext(alice) // a second tab of the same browser
	defer cancelB()
	ready := chromedp.CSS(`body[data-ready="1"]`)
	if err := chromedp.Do(alice, chromedp.Navigate(e1.APIURL()+"/chat/?user=alice&to=bob&auto=1"), chromedp.WaitVisible(ready)); err != nil {
		t.Fatalf("alice's page on EDGE01: %v", err)
	}
	t.Logf("alice's page ready after %v", time.Since(start))
	if err := chromedp.Do(bob, chromedp.Navigate(e4.APIURL()+"/chat/?user=bob&to=alice&auto=1"), chromedp.WaitVisible(ready)); err != nil {
		t.Fatalf("bob's page on EDGE04: %v", err)
	}
	t.Logf("bob's page ready after %v", time.Since(start))
	say := func(tab context.Context, text string) {
		t.Helper()
		if err := chromedp.Do(tab, chromedp.SendKeys(chromedp.ID("text"), text), chromedp.Click(chromedp.ID("send"))); err != nil {
			t.Fatal(err)
		}
	}
	see := func(tab context.Context, xpath, what string) {
		t.Helper()
		if err := chromedp.Do(tab, chromedp.WaitVisible(chromedp.Search(xpath))); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	say(alice, "hello from alice")
	see(bob, `//div[contains(@class,"msg")]/span[@class="text" and text()="hello from alice"]`, "bob never saw alice's message")
	say(bob, "hi alice, bob here")
	see(alice, `//div[contains(@class,"msg")]/span[@class="text" and text()="hi alice, bob here"]`, "alice never saw bob's reply")
	see(alice, `//div[contains(@class,"mine")]/span[@class="meta" and contains(text(),"by bob")]`, "alice never saw a receipt from bob")
	n, err := chromedp.Run(bob, chromedp.Evaluate[int](`document.querySelectorAll(".msg:not(.mine)").length`))
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("bob's page shows %d messages from others, want 1", n)
	}
}
