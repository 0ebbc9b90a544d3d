package purge_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/purge"
	"github.com/outpost-edge/outpost/store"
)

type recorder struct {
	mu   sync.Mutex
	tags [][]string
	all  int
}

func (r *recorder) PurgeTags(tags []string, soft bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tags = append(r.tags, slices.Clone(tags))
	return 0
}

func (r *recorder) PurgeAll(soft bool) int { r.mu.Lock(); defer r.mu.Unlock(); r.all++; return 0 }

func (r *recorder) has(tag string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ts := range r.tags {
		if slices.Contains(ts, tag) {
			return true
		}
	}
	return false
}

// TestWatcher: a committed change purges its table and row; a purge row
// is applied and acknowledged; WaitApplied returns once it is.
func TestWatcher(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{Dir: t.TempDir(), Schema: `CREATE TABLE Pages (id TEXT PRIMARY KEY NOT NULL, title TEXT);`,
		Identity: outpost.Identity{Name: "EDGE01", Location: "LHR", Farm: "lhr", Role: outpost.RoleEdge, Code: "43ax"}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rec := &recorder{}
	w := purge.NewWatcher(st, rec, nil)
	w.Start()
	defer w.Stop()
	_, dbv, err := st.Exec(ctx, []store.Statement{{SQL: `INSERT INTO Pages (id, title) VALUES ('p1', 'a')`}})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := w.WaitApplied(wctx, dbv); err != nil {
		t.Fatal(err)
	}
	if !rec.has("pages") || !rec.has("pages/p1") {
		t.Fatalf("tags %v", rec.tags)
	}
	dbv, err = st.PutPurge(ctx, store.Purge{ID: "x1", Body: `{"keys":["k1"],"urls":["/a?b=1"]}`})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WaitApplied(wctx, dbv); err != nil {
		t.Fatal(err)
	}
	if !rec.has("k1") || !rec.has("url:/a?b=1") {
		t.Fatalf("tags %v", rec.tags)
	}
	dbv, _ = st.PutPurge(ctx, store.Purge{ID: "x2", Body: `{"all":true}`})
	if err := w.WaitApplied(wctx, dbv); err != nil || rec.all != 1 {
		t.Fatalf("all: %v %d", err, rec.all)
	}
	for {
		_, acks, ok, err := st.GetPurge(ctx, "x1")
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		if len(acks) == 1 && acks[0].Node == "EDGE01" {
			break
		}
		if wctx.Err() != nil {
			t.Fatal("purge never acknowledged")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRequest_Validate(t *testing.T) {
	for _, tc := range []struct {
		r  purge.Request
		ok bool
	}{
		{purge.Request{Keys: []string{"a"}}, true},
		{purge.Request{All: true, Soft: true}, true},
		{purge.Request{URLs: []string{"https://x.test/p?q=1"}}, true},
		{purge.Request{}, false},
		{purge.Request{Keys: []string{"a b"}}, false},
		{purge.Request{URLs: []string{"relative"}}, false},
		{purge.Request{Keys: make([]string, 1001)}, false},
	} {
		err := tc.r.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%+v: %v", tc.r, err)
		}
	}
	r := purge.Request{URLs: []string{"https://x.test/p?q=1"}}
	_ = r.Validate()
	if r.URLs[0] != "/p?q=1" {
		t.Errorf("normalized %q", r.URLs[0])
	}
	if got := purge.RowTag("Pages", []any{"a", int64(7), []byte{1, 255}}); got != "pages/a/7/01ff" {
		t.Errorf("RowTag %q", got)
	}
}
