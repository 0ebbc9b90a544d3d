package beacon

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/store"
	"github.com/parquet-go/parquet-go"
)

// TestExport_RedoesPendingRange: a crash after the range was recorded as
// pending (and maybe after part of the file was written) writes exactly
// that range again under the same name, then goes on after it.
func TestExport_RedoesPendingRange(t *testing.T) {
	st, err := store.Open(context.Background(), store.Options{Dir: t.TempDir(), Identity: testutil.Identity("MASTER01", "01ma")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	out := t.TempDir()
	a, err := OpenAggregator(context.Background(), AggregatorConfig{Self: "MASTER01", Store: st, CheckInterval: -1, ExportDir: out})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var bs []Beacon
	for s := int64(1); s <= 20; s++ {
		bs = append(bs, Beacon{Seq: s, RecvMS: 1000, Body: json.RawMessage(fmt.Sprintf(`{"event":"e","i":%d}`, s))})
	}
	if _, err := a.Apply(ctx, "EDGE01/x", bs, 20); err != nil {
		t.Fatal(err)
	}
	// The crash: pending recorded for arrivals 1..8, no file renamed.
	if err := a.setExport(ctx, "pending", 8); err != nil {
		t.Fatal(err)
	}
	f1, err := a.Export(ctx)
	if err != nil || f1 != filepath.Join(out, ExportFileName(1, 8)) {
		t.Fatalf("redo: %q %v", f1, err)
	}
	f2, err := a.Export(ctx)
	if err != nil || f2 != filepath.Join(out, ExportFileName(9, 20)) {
		t.Fatalf("after the redo: %q %v", f2, err)
	}
	n := 0
	for _, f := range []string{f1, f2} {
		rows, err := parquet.ReadFile[ExportRow](f)
		if err != nil {
			t.Fatal(err)
		}
		n += len(rows)
	}
	if n != 20 {
		t.Fatalf("%d rows in the files, want 20", n)
	}
}
