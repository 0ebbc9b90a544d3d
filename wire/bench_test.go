package wire_test

import (
	"fmt"
	"io"
	"testing"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/wire"
)

// benchGroup is a group of 100 changes with a mix of value types.
func benchGroup() *outpost.Group {
	g := &outpost.Group{DBV: 123456}
	for i := range 100 {
		var v any
		switch i % 5 {
		case 0:
			v = int64(i) * 1000003
		case 1:
			v = float64(i) / 7
		case 2:
			v = fmt.Sprintf("a text value number %d", i)
		case 3:
			v = []byte(fmt.Sprintf("blob-%d", i))
		case 4:
			v = nil
		}
		g.Changes = append(g.Changes, outpost.Change{
			Table: "orders", PK: []any{fmt.Sprintf("01J9Z%08d", i/4)}, Col: fmt.Sprintf("col%d", i%4),
			Val: v, CL: 1, HLC: uint64(1_700_000_000_000) << 16, Origin: "EDGE01/4f1c2a9e",
		})
	}
	return g
}

func BenchmarkWriter(b *testing.B) {
	f := wire.GroupFrame(benchGroup())
	w := wire.NewWriter(io.Discard)
	b.SetBytes(int64(len(encode(b, f))))
	b.ReportAllocs()
	for b.Loop() {
		if err := w.Write(f); err != nil {
			b.Fatal(err)
		}
	}
}

// loopReader repeats one frame forever.
type loopReader struct {
	b   []byte
	off int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p, l.b[l.off:])
	l.off = (l.off + n) % len(l.b)
	return n, nil
}

func BenchmarkReader(b *testing.B) {
	frame := encode(b, wire.GroupFrame(benchGroup()))
	r := wire.NewReader(&loopReader{b: frame}, wire.DefaultLimits)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		f, err := r.Read()
		if err != nil || len(f.Group.Changes) != 100 {
			b.Fatal(err)
		}
	}
}
