package limiter

import (
	"context"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// BenchmarkMemoryPerKey measures the heap held per key with 1,000,000
// distinct keys on one node (reported as bytes/key).
func BenchmarkMemoryPerKey(b *testing.B) {
	const keys = 1_000_000
	for i := 0; i < b.N; i++ {
		clk := newClock()
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		l := New(Config{Self: "E1", Members: []Member{{Name: "C1", Core: true}, {Name: "E1"}}, Transport: NewMemNetwork().Transport("E1"), Now: clk.Now, MaxKeys: 2 * keys})
		ctx := context.Background()
		for k := 0; k < keys; k++ {
			if _, err := l.Decide(ctx, Request{Key: "ip:10." + strconv.Itoa(k>>16) + "." + strconv.Itoa(k>>8&255) + "." + strconv.Itoa(k&255), Limit: 100, Window: time.Minute}); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		if l.Keys() != keys {
			b.Fatalf("%d keys", l.Keys())
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/keys, "bytes/key")
		runtime.KeepAlive(l)
	}
}
