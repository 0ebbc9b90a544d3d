package store_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/store"
)

// BenchmarkStore_Exec measures durable single-row inserts through the group
// committer at several concurrencies (b.SetParallelism goroutines per CPU).
func BenchmarkStore_Exec(b *testing.B) {
	for _, par := range []int{1, 8} {
		b.Run(fmt.Sprintf("parallelism=%d", par), func(b *testing.B) {
			s := testutil.OpenStore(b, "", store.Options{})
			var n atomic.Int64
			b.SetParallelism(par)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					_, _, err := s.Exec(context.Background(), []store.Statement{{SQL: `INSERT INTO pages (id, title) VALUES (?, ?)`, Args: []any{fmt.Sprint("p", i), "t"}}})
					if err != nil {
						b.Fatal(err)
					}
				}
			})
			st := s.Stats()
			b.ReportMetric(float64(st.Transactions)/float64(max(st.Groups, 1)), "tx/group")
		})
	}
}

// BenchmarkStore_Exec100 measures 100-statement transactions.
func BenchmarkStore_Exec100(b *testing.B) {
	s := testutil.OpenStore(b, "", store.Options{})
	stmts := make([]store.Statement, 100)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for k := range stmts {
			stmts[k] = store.Statement{SQL: `INSERT INTO pages (id, title) VALUES (?, ?)`, Args: []any{fmt.Sprint("p", i, "-", k), "t"}}
		}
		if _, _, err := s.Exec(context.Background(), stmts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStore_Query measures point reads by primary key.
func BenchmarkStore_Query(b *testing.B) {
	s := testutil.OpenStore(b, "", store.Options{})
	for i := 0; i < 1000; i++ {
		execV(b, s, `INSERT INTO pages (id, title) VALUES (?, ?)`, fmt.Sprint("p", i), "t")
	}
	var n atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1) % 1000
			rows, err := s.Query(context.Background(), store.Statement{SQL: `SELECT id, title FROM pages WHERE id = ?`, Args: []any{fmt.Sprint("p", i)}})
			if err != nil || len(rows.Rows) != 1 {
				b.Fatal(err)
			}
		}
	})
}
