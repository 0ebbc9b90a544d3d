package store_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/store"
)

// BenchmarkLog_Apply measures applying another origin's log entries
// (100-row transactions, 400 changes each) at a receiver, with the
// origin's signatures verified and without keys (no verification): the
// cost of signatures on the apply path. Reported per change.
//
//	go test -run '^$' -bench BenchmarkLog_Apply -benchtime 20x ./store/
func BenchmarkLog_Apply(b *testing.B) {
	for _, signed := range []bool{false, true} {
		b.Run(fmt.Sprintf("signed=%v", signed), func(b *testing.B) {
			ring := keyring("EDGE01", "MASTER01")
			opts := func(name, code string) store.Options {
				o := store.Options{Identity: testutil.Identity(name, code)}
				if signed {
					o.Keys = testKeys{name, ring}
				}
				return o
			}
			src := testutil.OpenStore(b, "", opts("EDGE01", "43ax"))
			ctx := context.Background()
			stmts := make([]store.Statement, 100)
			const txs = 20
			for t := range txs {
				for i := range stmts {
					stmts[i] = store.Statement{SQL: `INSERT INTO pages (id, title, body) VALUES (?, 'title', 'body')`, Args: []any{fmt.Sprintf("p%d-%d", t, i)}}
				}
				if _, _, err := src.Exec(ctx, stmts); err != nil {
					b.Fatal(err)
				}
			}
			es, err := src.EntriesFor(ctx, store.Knowledge{}, store.EntryFilter{MaxBytes: 1 << 30})
			if err != nil {
				b.Fatal(err)
			}
			changes := 0
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				dst := testutil.OpenStore(b, "", opts("MASTER01", "01ma"))
				b.StartTimer()
				res, err := dst.ApplyEntries(ctx, "EDGE01", es)
				if err != nil || res.Entries != len(es) {
					b.Fatalf("%+v %v", res, err)
				}
				changes += res.Applied
			}
			b.ReportMetric(float64(changes)/b.Elapsed().Seconds(), "changes/s")
		})
	}
}
