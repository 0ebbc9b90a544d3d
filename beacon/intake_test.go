package beacon_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/beacon"
)

func openLog(tb testing.TB, cfg beacon.LogConfig) *beacon.Log {
	tb.Helper()
	if cfg.Store == nil {
		cfg.Store = openStore(tb, tb.TempDir())
	}
	l, err := beacon.OpenLog(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(l.Close)
	return l
}

func bodies(n int) []json.RawMessage {
	out := make([]json.RawMessage, n)
	for i := range out {
		out[i] = json.RawMessage(fmt.Sprintf(`{"event":"e","i":%d}`, i))
	}
	return out
}

func TestLog_AppendGapless(t *testing.T) {
	l := openLog(t, beacon.LogConfig{})
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seen = map[int64]bool{}
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				first, last, err := l.Append(context.Background(), bodies(3))
				if err != nil || last != first+2 {
					t.Errorf("append: %d..%d %v", first, last, err)
					return
				}
				mu.Lock()
				for s := first; s <= last; s++ {
					if seen[s] {
						t.Errorf("seq %d issued twice", s)
					}
					seen[s] = true
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if got, want := l.Last(), int64(8*20*3); got != want || len(seen) != int(want) {
		t.Fatalf("last %d, %d seqs, want %d", got, len(seen), want)
	}
	bs, err := l.Read(context.Background(), 1, 0, 1000, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range bs {
		if b.Seq != int64(i+1) || (i > 0 && b.RecvMS < bs[i-1].RecvMS) {
			t.Fatalf("beacon %d: seq %d recv %d", i, b.Seq, b.RecvMS)
		}
	}
}

func TestLog_SurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	l := openLog(t, beacon.LogConfig{Store: st})
	if _, _, err := l.Append(context.Background(), bodies(10)); err != nil {
		t.Fatal(err)
	}
	if err := l.Ack(context.Background(), "MASTER01", 4); err != nil {
		t.Fatal(err)
	}
	if err := l.Ack(context.Background(), "NODE01", 6); err != nil {
		t.Fatal(err)
	}
	st.Close()
	l2 := openLog(t, beacon.LogConfig{Store: openStore(t, dir)})
	s := l2.Stats()
	if s.LastSeq != 10 || s.Floor != 4 || s.StoredBeacons != 6 || s.Acks["NODE01"] != 6 {
		t.Fatalf("after reopen: %+v", s)
	}
	first, _, err := l2.Append(context.Background(), bodies(1))
	if err != nil || first != 11 {
		t.Fatalf("next seq %d, %v", first, err)
	}
}

func TestLog_DeletesOnlyAfterEnoughAcks(t *testing.T) {
	l := openLog(t, beacon.LogConfig{Acks: 2})
	ctx := context.Background()
	if _, _, err := l.Append(ctx, bodies(100)); err != nil {
		t.Fatal(err)
	}
	if err := l.Ack(ctx, "MASTER01", 100); err != nil {
		t.Fatal(err)
	}
	if s := l.Stats(); s.StoredBeacons != 100 || s.Floor != 0 {
		t.Fatalf("one ack deleted: %+v", s)
	}
	if err := l.Ack(ctx, "NODE01", 60); err != nil {
		t.Fatal(err)
	}
	if s := l.Stats(); s.StoredBeacons != 40 || s.Floor != 60 {
		t.Fatalf("two acks: %+v", s)
	}
	// An ack never moves back, and an ack past the log is clamped.
	if err := l.Ack(ctx, "NODE01", 10); err != nil {
		t.Fatal(err)
	}
	if err := l.Ack(ctx, "NODE01", 1000); err != nil {
		t.Fatal(err)
	}
	if s := l.Stats(); s.StoredBeacons != 0 || s.Floor != 100 || s.StoredBytes != 0 || s.Acks["NODE01"] != 100 {
		t.Fatalf("all acked: %+v", s)
	}
}

func TestLog_DiskBudget(t *testing.T) {
	one := int64(len(`{"event":"e","i":0}`) + beacon.RowOverhead)
	l := openLog(t, beacon.LogConfig{Budget: 10 * one, Acks: 1})
	in := beacon.NewIntake(beacon.IntakeConfig{Log: l, PerIP: -1})
	srv := httptest.NewServer(in.Batch())
	defer srv.Close()
	ctx := context.Background()
	if _, _, err := l.Append(ctx, bodies(8)); err != nil {
		t.Fatal(err)
	}
	// Three more do not fit: refused whole, nothing stored.
	if _, _, err := l.Append(ctx, bodies(3)); !errors.Is(err, beacon.ErrFull) {
		t.Fatalf("over budget: %v", err)
	}
	resp, err := http.Post(srv.URL, "application/x-ndjson", strings.NewReader("{\"event\":\"e\",\"i\":0}\n{\"event\":\"e\",\"i\":1}\n{\"event\":\"e\",\"i\":2}\n"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(b), "beacon_budget_full") {
		t.Fatalf("full: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
	if s := l.Stats(); s.LastSeq != 8 || s.StoredBeacons != 8 || s.RefusedFull != 2 {
		t.Fatalf("after refusals: %+v", s)
	}
	// Once an aggregator collected them, there is room again.
	if err := l.Ack(ctx, "MASTER01", 8); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Append(ctx, bodies(10)); err != nil {
		t.Fatalf("after the ack: %v", err)
	}
}

func TestIntake_BadInput(t *testing.T) {
	l := openLog(t, beacon.LogConfig{})
	in := beacon.NewIntake(beacon.IntakeConfig{Log: l, PerIP: -1})
	batch := httptest.NewServer(in.Batch())
	defer batch.Close()
	public := httptest.NewServer(in.Public())
	defer public.Close()
	big := `{"event":"` + strings.Repeat("x", beacon.MaxBeaconBytes) + `"}`
	deep := `{"a":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`
	many := strings.Repeat(`{"event":"e"}`+"\n", beacon.MaxBatchBeacons+1)
	huge := strings.Repeat(`{"event":"`+strings.Repeat("y", 10000)+`"}`+"\n", 120)
	cases := []struct {
		name, url, ctype, body string
		status                 int
		code                   string
	}{
		{"malformed json", batch.URL, "", `{"event":`, 400, "beacon_malformed"},
		{"not an object", batch.URL, "", `[1,2]`, 400, "beacon_malformed"},
		{"two values on a line", batch.URL, "", `{"a":1}{"b":2}`, 400, "beacon_malformed"},
		{"invalid utf-8", batch.URL, "", "{\"event\":\"\xff\xfe\"}", 400, "beacon_malformed"},
		{"duplicate field", batch.URL, "", `{"event":"a","event":"b"}`, 400, "beacon_malformed"},
		{"too deep", batch.URL, "", deep, 400, "beacon_malformed"},
		{"empty body", batch.URL, "", "\n\n", 400, "beacon_malformed"},
		{"one bad line refuses the batch", batch.URL, "", "{\"event\":\"ok\"}\n{bad\n", 400, "beacon_malformed"},
		{"oversized beacon", batch.URL, "", big, 413, "beacon_too_large"},
		{"too many beacons", batch.URL, "", many, 413, "batch_too_large"},
		{"oversized batch", batch.URL, "", huge, 413, "body_too_large"},
		{"public form data", public.URL, "multipart/form-data; boundary=x", `{"event":"e"}`, 415, "unsupported_media_type"},
		{"public oversized", public.URL, "text/plain", strings.Repeat(`{"event":"e"}`+"\n", 10000), 413, "body_too_large"},
		{"public malformed", public.URL, "text/plain", `event=e`, 400, "beacon_malformed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", c.url, strings.NewReader(c.body))
			if c.ctype != "" {
				req.Header.Set("Content-Type", c.ctype)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			b, _ := io.ReadAll(resp.Body)
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatalf("body %q: %v", b, err)
			}
			if resp.StatusCode != c.status || e.Error.Code != c.code || e.Error.Message == "" {
				t.Fatalf("got %d %s, want %d %s", resp.StatusCode, b, c.status, c.code)
			}
			if got := l.Last(); got != 0 {
				t.Fatalf("something was stored: last seq %d", got)
			}
		})
	}
}

func TestIntake_PublicSendBeacon(t *testing.T) {
	l := openLog(t, beacon.LogConfig{})
	in := beacon.NewIntake(beacon.IntakeConfig{Log: l, Origins: []string{"https://shop.example"}, PerIP: 5})
	srv := httptest.NewServer(in.Public())
	defer srv.Close()
	post := func(origin, body string) *http.Response {
		req, _ := http.NewRequest("POST", srv.URL, strings.NewReader(body))
		req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	// A client clock far off is kept in the body; windows use receive time.
	resp := post("https://shop.example", `{"event":"lcp","ts":4102444800000,"lcp":1234}`)
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "https://shop.example" {
		t.Fatalf("sendBeacon: %d %v", resp.StatusCode, resp.Header)
	}
	if resp := post("https://evil.example", `{"event":"x"}`); resp.StatusCode != 403 {
		t.Fatalf("other origin: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("OPTIONS", srv.URL, nil)
	req.Header.Set("Origin", "https://shop.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	pre, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	pre.Body.Close()
	if pre.StatusCode != 204 || !strings.Contains(pre.Header.Get("Access-Control-Allow-Methods"), "POST") {
		t.Fatalf("preflight: %d %v", pre.StatusCode, pre.Header)
	}
	// A flood from one address: the burst (2 x 5) passes, then 429.
	var limited bool
	for range 20 {
		if r := post("", `{"event":"flood"}`); r.StatusCode == 429 {
			limited = r.Header.Get("Retry-After") != ""
			break
		}
	}
	if !limited {
		t.Fatal("no 429 with Retry-After for a flood from one address")
	}
	bs, err := l.Read(context.Background(), 1, 1, 1, 1<<20)
	if err != nil || len(bs) != 1 || !strings.Contains(string(bs[0].Body), `"ts":4102444800000`) {
		t.Fatalf("stored: %v %v", bs, err)
	}
}

// TestLog_BodiesKeptAsSent: a batch is stored in one statement (json_each);
// each body comes back byte for byte as compacted at intake.
func TestLog_BodiesKeptAsSent(t *testing.T) {
	l := openLog(t, beacon.LogConfig{})
	in := []string{`{"n":1.50,"e":1e3,"big":12345678901234567890,"neg":-0.0}`, `{"s":"\u00e9\n\"x\"","u":"é","nested":{"a":[1,{"b":null}]}}`, `{}`}
	var bs []json.RawMessage
	for i, s := range in {
		b, err := beacon.ParseOne([]byte(s), i+1)
		if err != nil {
			t.Fatal(err)
		}
		bs = append(bs, b)
	}
	first, last, err := l.Append(context.Background(), bs)
	if err != nil || first != 1 || last != 3 {
		t.Fatalf("append %d..%d %v", first, last, err)
	}
	got, err := l.Read(context.Background(), 1, 0, 10, 1<<20)
	if err != nil || len(got) != 3 {
		t.Fatalf("read %v %v", got, err)
	}
	for i := range got {
		if string(got[i].Body) != string(bs[i]) || got[i].Seq != int64(i+1) {
			t.Errorf("seq %d: stored %s, sent %s", got[i].Seq, got[i].Body, bs[i])
		}
	}
}

// TestLog_AcksOfRemovedAggregatorsDoNotCount: an aggregator taken off the
// trust list keeps its recorded acknowledgement, but it is no longer one of
// the --beacon-acks needed to delete: only acknowledgements of aggregators
// on the list (as it is at each acknowledgement) count.
func TestLog_AcksOfRemovedAggregatorsDoNotCount(t *testing.T) {
	var mu sync.Mutex
	trusted := []string{"MASTER01", "NODE01", "NODE02"}
	l := openLog(t, beacon.LogConfig{Acks: 2, Aggregators: func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), trusted...)
	}})
	ctx := context.Background()
	if _, _, err := l.Append(ctx, bodies(100)); err != nil {
		t.Fatal(err)
	}
	for _, a := range []struct {
		name    string
		through int64
	}{{"MASTER01", 10}, {"NODE01", 10}, {"NODE02", 80}, {"STRANGER", 90}} {
		if err := l.Ack(ctx, a.name, a.through); err != nil {
			t.Fatal(err)
		}
	}
	// STRANGER (never on the list) does not count: 2nd highest of 10, 10, 80.
	if s := l.Stats(); s.Floor != 10 {
		t.Fatalf("floor %d, want 10 (an unlisted aggregator's ack counted): %+v", s.Floor, s)
	}
	// NODE02 leaves the list: its 80 no longer counts with MASTER01's 90.
	mu.Lock()
	trusted = []string{"MASTER01", "NODE01"}
	mu.Unlock()
	if err := l.Ack(ctx, "MASTER01", 90); err != nil {
		t.Fatal(err)
	}
	s := l.Stats()
	if s.Floor != 10 || s.StoredBeacons != 90 {
		t.Fatalf("floor %d (%d stored), want 10: the removed NODE02's ack counted: %+v", s.Floor, s.StoredBeacons, s)
	}
	if s.Acks["NODE02"] != 80 || len(s.AcksIgnored) != 2 || s.AcksIgnored[0] != "NODE02" || s.AcksIgnored[1] != "STRANGER" {
		t.Fatalf("acks %v, ignored %v; want NODE02's kept and reported ignored", s.Acks, s.AcksIgnored)
	}
	if err := l.Ack(ctx, "NODE01", 50); err != nil {
		t.Fatal(err)
	}
	if s := l.Stats(); s.Floor != 50 {
		t.Fatalf("floor %d, want 50 (MASTER01 90, NODE01 50)", s.Floor)
	}
}

// TestLog_HandOff: once the hand-off began, intake refuses new beacons
// (503 draining, nothing stored), and HandOff returns only when --beacon-acks
// aggregators acknowledged every beacon taken in (or its context ends).
func TestLog_HandOff(t *testing.T) {
	l := openLog(t, beacon.LogConfig{Acks: 2})
	in := beacon.NewIntake(beacon.IntakeConfig{Log: l, PerIP: -1})
	ctx := context.Background()
	if _, _, err := l.Append(ctx, bodies(10)); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := l.HandOff(short); err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hand-off with nothing acknowledged: %v, want the deadline", err)
	}
	if !l.HandingOff() {
		t.Fatal("not handing off")
	}
	if _, _, err := l.Append(ctx, bodies(1)); !errors.Is(err, beacon.ErrHandingOff) {
		t.Fatalf("append during the hand-off: %v", err)
	}
	for _, h := range []http.Handler{in.Batch(), in.Public()} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/beacon", strings.NewReader(`{"event":"late"}`)))
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), `"draining"`) {
			t.Fatalf("post during the hand-off: %d %s", rec.Code, rec.Body)
		}
	}
	done := make(chan error, 1)
	go func() { done <- l.HandOff(ctx) }()
	if err := l.Ack(ctx, "MASTER01", 10); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("hand-off ended with one acknowledgement of two: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	if err := l.Ack(ctx, "NODE01", 10); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("hand-off did not end after two acknowledgements")
	}
	if s := l.Stats(); s.LastSeq != 10 || s.StoredBeacons != 0 {
		t.Fatalf("after the hand-off: %+v", s)
	}
}
