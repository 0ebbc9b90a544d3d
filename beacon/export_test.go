package beacon_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/outpost-edge/outpost/beacon"
	"github.com/parquet-go/parquet-go"
)

// TestAggregator_ExportParquet: every received beacon lands in exactly one
// Parquet file, readable back; duplicates add nothing; a pass with nothing
// new writes no file, and files survive a reopen without being rewritten.
func TestAggregator_ExportParquet(t *testing.T) {
	dir, out := t.TempDir(), t.TempDir()
	open := func() (*beacon.Aggregator, func()) {
		st := openStore(t, dir)
		a, err := beacon.OpenAggregator(context.Background(), beacon.AggregatorConfig{Self: "MASTER01", Store: st, CheckInterval: -1, ExportDir: out})
		if err != nil {
			t.Fatal(err)
		}
		return a, func() { st.Close() }
	}
	a, closeStore := open()
	ctx := context.Background()
	if _, err := a.Apply(ctx, "EDGE01/x", beacons(1, 100, 1_767_312_000_000), 100); err != nil {
		t.Fatal(err)
	}
	fs1, err := a.Export(ctx)
	if err != nil || len(fs1) != 1 {
		t.Fatalf("export: %q %v", fs1, err)
	}
	f1 := fs1[0]
	if f, err := a.Export(ctx); err != nil || len(f) != 0 {
		t.Fatalf("nothing new: %q %v", f, err)
	}
	// Duplicates and new beacons, then a reopen.
	if _, err := a.Apply(ctx, "EDGE01/x", beacons(50, 130, 1_767_312_060_000), 130); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Apply(ctx, "EDGE02/y", beacons(1, 5, 1_767_312_060_000), 5); err != nil {
		t.Fatal(err)
	}
	closeStore()
	a, _ = open()
	fs2, err := a.Export(ctx)
	if err != nil || len(fs2) != 1 || fs2[0] == f1 {
		t.Fatalf("second export: %q %v", fs2, err)
	}
	f2 := fs2[0]
	seen := map[string]int{}
	for _, f := range []string{f1, f2} {
		rows, err := parquet.ReadFile[beacon.ExportRow](f)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			seen[fmt.Sprintf("%s/%d", r.Edge, r.Seq)]++
			if r.WindowMS != r.RecvMS-r.RecvMS%60_000 || r.Body == "" {
				t.Fatalf("row %+v", r)
			}
		}
	}
	if len(seen) != 135 {
		t.Fatalf("%d distinct beacons in the files, want 135", len(seen))
	}
	for k, n := range seen {
		if n != 1 {
			t.Fatalf("%s in %d files", k, n)
		}
	}
	ents, _ := os.ReadDir(out)
	for _, e := range ents {
		if filepath.Ext(e.Name()) != ".parquet" {
			t.Fatalf("left behind: %s", e.Name())
		}
	}
	if len(ents) != 2 {
		t.Fatalf("%d files", len(ents))
	}
}
