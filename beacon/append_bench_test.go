package beacon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/outpost-edge/outpost/beacon"
)

// BenchmarkLog_Append100: durable appends of 100-beacon batches from 16
// goroutines (go test -run XXX -bench Append100 ./beacon/).
func BenchmarkLog_Append100(b *testing.B) {
	l := openLog(b, beacon.LogConfig{Budget: 1 << 40})
	batch := make([]json.RawMessage, 100)
	for i := range batch {
		batch[i] = json.RawMessage(fmt.Sprintf(`{"event":"lcp","path":"/products/%d","lcp":%d,"ts":1767312000000,"ua":"Mozilla/5.0 (X11; Linux x86_64)","sid":"s%d"}`, i%50, 800+i, i))
	}
	b.SetParallelism(8) // 16 on 2 CPUs
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := l.Append(context.Background(), batch); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "beacons/s")
}

// BenchmarkParseOne: the intake's check of one typical beacon.
func BenchmarkParseOne(b *testing.B) {
	body := []byte(`{"event":"lcp","path":"/products/12","lcp":1234,"ts":1767312000000,"ua":"Mozilla/5.0 (X11; Linux x86_64)","sid":"s1abc"}`)
	for b.Loop() {
		if _, err := beacon.ParseOne(body, 1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAggregator_Apply1000: an aggregator storing 1,000-beacon pull
// answers (new beacons, default rollup), one transaction each.
func BenchmarkAggregator_Apply1000(b *testing.B) {
	a, _ := openAgg(b, b.TempDir(), nil)
	var seq int64
	b.ResetTimer()
	for b.Loop() {
		bs := make([]beacon.Beacon, 1000)
		for i := range bs {
			seq++
			bs[i] = beacon.Beacon{Seq: seq, RecvMS: 1_767_312_000_000 + seq, Body: json.RawMessage(fmt.Sprintf(`{"event":"lcp","path":"/products/%d","lcp":%d,"ts":1767312000000,"ua":"Mozilla/5.0 (X11; Linux x86_64)","sid":"s%d"}`, seq%50, 800+seq%2000, seq))}
		}
		if _, err := a.Apply(context.Background(), "EDGE01/x", bs, seq); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "beacons/s")
}
