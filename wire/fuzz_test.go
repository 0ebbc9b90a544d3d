package wire_test

import (
	"bytes"
	"math"
	"reflect"
	"testing"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/wire"
)

// FuzzReader feeds arbitrary bytes to a Reader, both as a stream and as the
// body of a single frame, and checks that it never panics and that every
// frame it accepts re-encodes and decodes to an equal frame.
func FuzzReader(f *testing.F) {
	seeds := [][]byte{
		{},
		{0, 0, 0},
		encode(f, wire.HeartbeatFrame(0), wire.ProgressFrame(7), wire.ErrorFrame("bye")),
		encode(f, wire.GroupFrame(groupOf(1,
			change(int64(math.MinInt64), int64(1), "a", 2.5, []byte{1}, nil),
			change(math.Copysign(0, -1), "k"),
			change(math.Inf(-1), "k"),
			change([]byte{}, "\xff"),
			change("日本", []byte(nil)),
		))),
		encode(f, wire.GroupFrame(&outpost.Group{DBV: 2, Changes: []outpost.Change{}})),
		{0xa2, 0x01, 0x02, 0x03, 0xf9, 0x3c, 0x00},
		{0xa1, 0x01, 0x03, 0xff},
	}
	for _, s := range seeds {
		f.Add(s)
	}
	lim := wire.Limits{MaxFrameBytes: 1 << 16, MaxChanges: 64, MaxValueBytes: 1 << 10}
	// Re-encoding may take more bytes than the input (a float16 comes back as
	// a float64), so the writer gets room for that.
	wlim := wire.Limits{MaxFrameBytes: 1 << 24, MaxChanges: lim.MaxChanges, MaxValueBytes: lim.MaxValueBytes}
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(stream []byte) {
			r := wire.NewReader(bytes.NewReader(stream), lim)
			for range 64 {
				fr, err := r.Read()
				if err != nil {
					return
				}
				var buf bytes.Buffer
				if err := wire.NewWriterLimits(&buf, wlim).Write(fr); err != nil {
					t.Fatalf("a decoded frame does not re-encode: %v\n%#v", err, fr)
				}
				again, err := wire.NewReader(&buf, wlim).Read()
				if err != nil {
					t.Fatalf("a re-encoded frame does not decode: %v\n%#v", err, fr)
				}
				if !reflect.DeepEqual(fr, again) {
					t.Fatalf("round trip changed the frame:\n%#v\n%#v", fr, again)
				}
				if fr.Group != nil {
					for i, c := range fr.Group.Changes {
						sameFloatBits(t, i, c.Val, again.Group.Changes[i].Val)
						for j := range c.PK {
							sameFloatBits(t, i, c.PK[j], again.Group.Changes[i].PK[j])
						}
					}
				}
			}
		}
		check(data)
		check(prefix(data))
	})
}

// sameFloatBits checks what reflect.DeepEqual does not: -0.0 stays -0.0.
func sameFloatBits(t *testing.T, i int, a, b any) {
	if x, ok := a.(float64); ok && math.Float64bits(x) != math.Float64bits(b.(float64)) {
		t.Fatalf("change %d: float %v came back as %v", i, a, b)
	}
}
