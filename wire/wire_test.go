package wire_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/wire"
)

func change(val any, pk ...any) outpost.Change {
	return outpost.Change{Table: "orders", PK: pk, Col: "qty", Val: val, CL: 1, HLC: 1<<63 + 5, Origin: "EDGE01/3f2a"}
}

func groupOf(dbv int64, changes ...outpost.Change) *outpost.Group {
	return &outpost.Group{DBV: dbv, Changes: changes}
}

// encode writes frames with a default Writer and returns the stream.
func encode(t testing.TB, frames ...wire.Frame) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := wire.NewWriter(&buf)
	for _, f := range frames {
		if err := w.Write(f); err != nil {
			t.Fatalf("Write(%+v): %v", f, err)
		}
	}
	return buf.Bytes()
}

// roundTrip writes f and reads it back, checking the stream then ends cleanly.
func roundTrip(t *testing.T, f wire.Frame) wire.Frame {
	t.Helper()
	r := wire.NewReader(bytes.NewReader(encode(t, f)), wire.DefaultLimits)
	got, err := r.Read()
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if _, err := r.Read(); err != io.EOF {
		t.Fatalf("second Read: got %v, want io.EOF", err)
	}
	return got
}

// raw frames the CBOR encoding of v (made without the package's checks)
// with a length prefix.
func raw(t testing.TB, v any) []byte {
	t.Helper()
	b, err := cbor.Marshal(v)
	if err != nil {
		t.Fatalf("cbor.Marshal: %v", err)
	}
	return prefix(b)
}

func prefix(body []byte) []byte {
	out := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	return append(out, body...)
}

// The shapes of a frame with any values anywhere, to hand-craft bad frames.
type looseChange struct {
	Table  any `cbor:"1,keyasint"`
	PK     any `cbor:"2,keyasint"`
	Col    any `cbor:"3,keyasint"`
	Val    any `cbor:"4,keyasint"`
	CL     any `cbor:"5,keyasint"`
	HLC    any `cbor:"6,keyasint"`
	Origin any `cbor:"7,keyasint"`
}

type looseGroup struct {
	DBV     any           `cbor:"1,keyasint"`
	Changes []looseChange `cbor:"2,keyasint"`
}

type looseFrame struct {
	Type  any         `cbor:"1,keyasint"`
	Group *looseGroup `cbor:"2,keyasint,omitempty"`
}

func looseChangeOf(val any, pk ...any) looseChange {
	return looseChange{Table: "orders", PK: pk, Col: "qty", Val: val, CL: 1, HLC: 7, Origin: "EDGE01/3f2a"}
}

func looseGroupFrame(c looseChange) looseFrame {
	return looseFrame{Type: 1, Group: &looseGroup{DBV: 1, Changes: []looseChange{c}}}
}

func readErr(t *testing.T, stream []byte, lim wire.Limits) error {
	t.Helper()
	f, err := wire.NewReader(bytes.NewReader(stream), lim).Read()
	if err == nil {
		t.Fatalf("Read succeeded with %+v, want an error", f)
	}
	return err
}

func TestValueRoundTrip(t *testing.T) {
	negZero := math.Copysign(0, -1)
	cases := []struct {
		name string
		v    any
		want any // defaults to v
	}{
		{"int64 zero", int64(0), nil},
		{"int64 one", int64(1), nil},
		{"int64 minus one", int64(-1), nil},
		{"int64 max", int64(math.MaxInt64), nil},
		{"int64 min", int64(math.MinInt64), nil},
		{"int64 small negative", int64(-24), nil},
		{"int64 2^32", int64(1 << 32), nil},
		{"float zero", 0.0, nil},
		{"float negative zero", negZero, nil},
		{"float one", 1.0, nil},
		{"float minus one", -1.0, nil},
		{"float half", 0.5, nil},
		{"float tenth", 0.1, nil},
		{"float max", math.MaxFloat64, nil},
		{"float smallest", math.SmallestNonzeroFloat64, nil},
		{"float 2^53", float64(1 << 53), nil},
		{"float +Inf", math.Inf(1), nil},
		{"float -Inf", math.Inf(-1), nil},
		{"text empty", "", nil},
		{"text ascii", "hello", nil},
		{"text unicode", "Zürich 日本語 🚀", nil},
		{"text invalid UTF-8", "a\xff\xfe\xc3", nil},
		{"text NUL", "a\x00b", nil},
		{"blob empty", []byte{}, nil},
		{"blob bytes", []byte{0, 1, 0xff, 0x80}, nil},
		{"blob of text", []byte("hello"), nil},
		{"blob nil is NULL", []byte(nil), nilValue{}},
		{"null", nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want
			if want == nil {
				want = tc.v
			}
			if _, ok := want.(nilValue); ok {
				want = nil
			}
			g := roundTrip(t, wire.GroupFrame(groupOf(1, change(tc.v, tc.v, int64(7)))))
			c := g.Group.Changes[0]
			checkValue(t, "val", c.Val, want)
			checkValue(t, "pk[0]", c.PK[0], want)
			checkValue(t, "pk[1]", c.PK[1], int64(7))
		})
	}
}

type nilValue struct{}

func checkValue(t *testing.T, field string, got, want any) {
	t.Helper()
	if reflect.TypeOf(got) != reflect.TypeOf(want) {
		t.Fatalf("%s: got %T %#v, want %T %#v", field, got, got, want, want)
	}
	switch w := want.(type) {
	case float64:
		if math.Float64bits(got.(float64)) != math.Float64bits(w) {
			t.Fatalf("%s: got float bits %#x, want %#x", field, math.Float64bits(got.(float64)), math.Float64bits(w))
		}
	case []byte:
		if got.([]byte) == nil {
			t.Fatalf("%s: got a nil []byte, want the non-nil %#v", field, w)
		}
		if !bytes.Equal(got.([]byte), w) {
			t.Fatalf("%s: got %#v, want %#v", field, got, w)
		}
	default:
		if got != want {
			t.Fatalf("%s: got %#v, want %#v", field, got, want)
		}
	}
}

func TestChangeRoundTrip(t *testing.T) {
	g := &outpost.Group{DBV: math.MaxInt64, Changes: []outpost.Change{
		{Table: "orders", PK: []any{"o1"}, Col: "", Val: nil, CL: 3, HLC: math.MaxUint64, Origin: "MASTER/aa"},
		{Table: "orders", PK: []any{"o1"}, Col: "note", Val: "x", CL: math.MaxInt64, HLC: 0, Origin: "EDGE01/bb"},
		{Table: "lines", PK: []any{int64(1), "a", 2.5, []byte{9}, nil}, Col: "qty", Val: int64(3), CL: 1, HLC: 12345, Origin: "NODE_2/cc"},
	}}
	got := roundTrip(t, wire.GroupFrame(g))
	if !reflect.DeepEqual(got.Group, g) {
		t.Fatalf("got %#v\nwant %#v", got.Group, g)
	}
	// An empty group (all filtered) and a group with nil changes survive too.
	for _, changes := range [][]outpost.Change{nil, {}} {
		g := &outpost.Group{DBV: 4, Changes: changes}
		if got := roundTrip(t, wire.GroupFrame(g)); !reflect.DeepEqual(got.Group, g) {
			t.Fatalf("got %#v, want %#v", got.Group, g)
		}
	}
}

func TestFloatEncodedAsFloat64(t *testing.T) {
	stream := encode(t, wire.GroupFrame(groupOf(1, change(1.0, int64(1)))))
	// 0xfb then the IEEE 754 binary64 bits of 1.0.
	if !bytes.Contains(stream, []byte{0xfb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0}) {
		t.Fatalf("1.0 is not encoded as a CBOR float64: % x", stream)
	}
	if n := binary.BigEndian.Uint32(stream); int(n) != len(stream)-4 {
		t.Fatalf("length prefix %d, frame body is %d bytes", n, len(stream)-4)
	}
}

func TestFrameTypes(t *testing.T) {
	frames := []wire.Frame{
		wire.HeartbeatFrame(0),
		wire.GroupFrame(groupOf(1, change("a", "k"))),
		wire.ProgressFrame(9),
		wire.HeartbeatFrame(9),
		wire.GroupFrame(groupOf(10, change(int64(1), "k"), change(nil, "k2"))),
		wire.ErrorFrame("upstream is shutting down"),
	}
	r := wire.NewReader(bytes.NewReader(encode(t, frames...)), wire.Limits{})
	for i, want := range frames {
		got, err := r.Read()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("frame %d: got %#v, want %#v", i, got, want)
		}
	}
	for range 2 { // clean EOF, and sticky
		if _, err := r.Read(); err != io.EOF {
			t.Fatalf("after the last frame: got %v, want io.EOF", err)
		}
	}
	for ft, name := range map[wire.FrameType]string{wire.FrameGroup: "group", wire.FrameHeartbeat: "heartbeat", wire.FrameProgress: "progress", wire.FrameError: "error", 0: "FrameType(0)", 200: "FrameType(200)"} {
		if ft.String() != name {
			t.Errorf("FrameType(%d).String() = %q, want %q", uint8(ft), ft.String(), name)
		}
	}
}

func TestCleanEOF(t *testing.T) {
	r := wire.NewReader(bytes.NewReader(nil), wire.DefaultLimits)
	if _, err := r.Read(); err != io.EOF {
		t.Fatalf("empty stream: got %v, want io.EOF", err)
	}
}

func TestTruncated(t *testing.T) {
	first := encode(t, wire.HeartbeatFrame(3))
	frame := encode(t, wire.GroupFrame(groupOf(1, change("value", "key"))))
	for cut := 1; cut < len(frame); cut++ {
		stream := append(append([]byte{}, first...), frame[:cut]...)
		r := wire.NewReader(bytes.NewReader(stream), wire.DefaultLimits)
		if _, err := r.Read(); err != nil {
			t.Fatalf("cut %d: first frame: %v", cut, err)
		}
		_, err := r.Read()
		if !errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF {
			t.Fatalf("cut %d of %d: got %v, want io.ErrUnexpectedEOF", cut, len(frame), err)
		}
		if _, again := r.Read(); again != err {
			t.Fatalf("cut %d: error is not sticky: %v then %v", cut, err, again)
		}
	}
}

// claimReader yields a length prefix and then endless zeros, counting what
// it hands out.
type claimReader struct {
	hdr  []byte
	read int
}

func (c *claimReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if c.read < len(c.hdr) {
			p[n] = c.hdr[c.read]
		} else {
			p[n] = 0
		}
		n++
		c.read++
	}
	return n, nil
}

func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestOversizedLengthRefusedBeforeAllocating(t *testing.T) {
	src := &claimReader{hdr: binary.BigEndian.AppendUint32(nil, 1<<31)}
	var err error
	n := allocated(func() { _, err = wire.NewReader(src, wire.DefaultLimits).Read() })
	if !errors.Is(err, wire.ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
	if src.read != 4 {
		t.Fatalf("the reader consumed %d bytes, want only the 4-byte prefix", src.read)
	}
	if n > 1<<20 {
		t.Fatalf("refusing the frame allocated %d bytes", n)
	}
	t.Log(err)

	// Over a custom, small limit.
	stream := encode(t, wire.GroupFrame(groupOf(1, change(strings.Repeat("x", 200), "k"))))
	if err := readErr(t, stream, wire.Limits{MaxFrameBytes: 100}); !errors.Is(err, wire.ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
}

func TestClaimedFrameAllocatesAsBytesArrive(t *testing.T) {
	// Under a huge limit, a peer claims 1 GiB but sends 10 bytes: the reader
	// must not allocate the claim up front.
	stream := append(binary.BigEndian.AppendUint32(nil, 1<<30), make([]byte, 10)...)
	var err error
	n := allocated(func() {
		_, err = wire.NewReader(bytes.NewReader(stream), wire.Limits{MaxFrameBytes: math.MaxUint32}).Read()
	})
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("got %v, want io.ErrUnexpectedEOF", err)
	}
	if n > 1<<20 {
		t.Fatalf("reading a short frame allocated %d bytes", n)
	}
}

func TestWriterRefusesOversizedFrame(t *testing.T) {
	var buf bytes.Buffer
	w := wire.NewWriterLimits(&buf, wire.Limits{MaxFrameBytes: 64})
	err := w.Write(wire.GroupFrame(groupOf(1, change(strings.Repeat("x", 100), "k"))))
	if !errors.Is(err, wire.ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
	if buf.Len() != 0 {
		t.Fatalf("a refused frame wrote %d bytes", buf.Len())
	}
	if err := w.Write(wire.HeartbeatFrame(1)); err != nil {
		t.Fatalf("the writer is not usable after a refused frame: %v", err)
	}
	w = wire.NewWriterLimits(&buf, wire.Limits{MaxValueBytes: 8})
	if err := w.Write(wire.GroupFrame(groupOf(1, change([]byte("123456789"), "k")))); !errors.Is(err, wire.ErrTooLarge) {
		t.Fatalf("oversized blob: got %v, want ErrTooLarge", err)
	}
}

func TestTooManyChanges(t *testing.T) {
	many := func(n int) *outpost.Group {
		g := &outpost.Group{DBV: 1}
		for i := range n {
			g.Changes = append(g.Changes, change(int64(i), int64(i)))
		}
		return g
	}
	// 14 changes fit the decoder's array bound (16 at least) and are refused
	// by validation; 40 are refused by the decoder itself.
	for _, n := range []int{14, 40} {
		stream := encode(t, wire.GroupFrame(many(n)))
		err := readErr(t, stream, wire.Limits{MaxChanges: 12})
		if !errors.Is(err, wire.ErrTooLarge) {
			t.Fatalf("%d changes: got %v, want ErrTooLarge", n, err)
		}
		t.Log(err)
	}
	stream := encode(t, wire.GroupFrame(many(12)))
	if _, err := wire.NewReader(bytes.NewReader(stream), wire.Limits{MaxChanges: 12}).Read(); err != nil {
		t.Fatalf("12 changes at a limit of 12: %v", err)
	}
	w := wire.NewWriterLimits(io.Discard, wire.Limits{MaxChanges: 12})
	if err := w.Write(wire.GroupFrame(many(13))); !errors.Is(err, wire.ErrTooLarge) {
		t.Fatalf("writer: got %v, want ErrTooLarge", err)
	}
}

func TestTooDeep(t *testing.T) {
	var v any = int64(1)
	for range 20 {
		v = []any{v}
	}
	err := readErr(t, raw(t, looseGroupFrame(looseChangeOf(v, "k"))), wire.DefaultLimits)
	if !errors.Is(err, wire.ErrMalformed) || !strings.Contains(err.Error(), "nested") {
		t.Fatalf("got %v, want ErrMalformed about nesting", err)
	}
}

func TestDuplicateMapKeys(t *testing.T) {
	// {1: 2, 1: 2}: a heartbeat frame with its type key twice.
	err := readErr(t, prefix([]byte{0xa2, 0x01, 0x02, 0x01, 0x02}), wire.DefaultLimits)
	if !errors.Is(err, wire.ErrMalformed) || !strings.Contains(err.Error(), "duplicate") {
		t.Fatalf("frame: got %v, want ErrMalformed about a duplicate key", err)
	}
	// A change map with its value key twice: built from a valid frame by
	// appending "4: 1" to the change map and bumping its pair count.
	body := encode(t, wire.GroupFrame(groupOf(1, change(int64(5), "k"))))[4:]
	i := bytes.IndexByte(body, 0xa7) // the change: a map of 7 pairs
	if i < 0 {
		t.Fatalf("no 7-pair map in % x", body)
	}
	dup := append([]byte{}, body...)
	dup[i] = 0xa8
	dup = append(dup, 0x04, 0x01)
	err = readErr(t, prefix(dup), wire.DefaultLimits)
	if !errors.Is(err, wire.ErrMalformed) || !strings.Contains(err.Error(), "duplicate") {
		t.Fatalf("change: got %v, want ErrMalformed about a duplicate key", err)
	}
}

func TestMalformedCBOR(t *testing.T) {
	valid := encode(t, wire.HeartbeatFrame(1))[4:]
	cases := map[string][]byte{
		"empty frame":         {},
		"cut inside frame":    valid[:len(valid)-1],
		"trailing bytes":      append(append([]byte{}, valid...), 0x00),
		"not a map":           {0x01},
		"array frame":         {0x82, 0x02, 0x01},
		"indefinite map":      {0xbf, 0x01, 0x02, 0xff},
		"tagged frame":        append([]byte{0xd9, 0xd9, 0xf7}, valid...),
		"type overflows":      {0xa1, 0x01, 0x19, 0x01, 0x00},
		"reserved info":       {0xa1, 0x01, 0x1c},
		"text type":           {0xa1, 0x01, 0x61, 0x32},
		"unknown frame type":  {0xa1, 0x01, 0x09},
		"zero frame type":     {0xa1, 0x01, 0x00},
		"heartbeat undefined": {0xa2, 0x01, 0x02, 0x03, 0xf7},
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			err := readErr(t, prefix(body), wire.DefaultLimits)
			if !errors.Is(err, wire.ErrMalformed) || errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("got %v, want ErrMalformed (and not io.ErrUnexpectedEOF)", err)
			}
			t.Log(err)
		})
	}
}

func TestNonSQLiteValuesRefused(t *testing.T) {
	cases := []struct {
		name string
		v    any
		want string // in the error, besides the field
	}{
		{"bool", true, "bool"},
		{"array", []any{int64(1)}, "array"},
		{"map", map[int]any{1: "x"}, "map"},
		{"simple value", cbor.SimpleValue(16), "simple value"},
		{"undefined", cbor.SimpleValue(23), "undefined"},
		{"tag", cbor.Tag{Number: 1000, Content: "x"}, "tag 1000"},
		{"bignum", cbor.Tag{Number: 2, Content: []byte{1, 0, 0, 0, 0, 0, 0, 0, 0}}, "tag 2"},
		{"uint64 over int64", uint64(math.MaxInt64) + 1, "integer 9223372036854775808 (over int64)"},
		{"negative under int64", cbor.RawMessage{0x3b, 0x80, 0, 0, 0, 0, 0, 0, 0}, "integer -9223372036854775809 (under int64)"},
		{"NaN float64", cbor.RawMessage{0xfb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 1}, "NaN"},
		{"NaN float16", cbor.RawMessage{0xf9, 0x7e, 0x00}, "NaN"},
		{"time tag", cbor.Tag{Number: 1, Content: 0}, "tag 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, pos := range []string{"val", "pk[1]"} {
				c := looseChangeOf(int64(1), "k", int64(2))
				if pos == "val" {
					c.Val = tc.v
				} else {
					c.PK = []any{"k", tc.v}
				}
				err := readErr(t, raw(t, looseGroupFrame(c)), wire.DefaultLimits)
				if !errors.Is(err, wire.ErrMalformed) {
					t.Fatalf("%s: got %v, want ErrMalformed", pos, err)
				}
				if !strings.Contains(err.Error(), pos+": "+tc.want) {
					t.Fatalf("%s: error %q does not name the field and %q", pos, err, tc.want)
				}
				t.Logf("%s: %v", pos, err)
			}
		})
	}
}

func TestValidation(t *testing.T) {
	ok := change("v", "k")
	with := func(f func(c *outpost.Change)) wire.Frame {
		c := ok
		c.PK = append([]any{}, ok.PK...)
		f(&c)
		return wire.GroupFrame(groupOf(1, c))
	}
	cases := []struct {
		name string
		f    wire.Frame
		want string
		// reader: the bad frame survives encoding, so a reader must refuse it too.
		reader bool
	}{
		{"zero type", wire.Frame{}, "unknown frame type 0", true},
		{"unknown type", wire.Frame{Type: 9, DBV: 1}, "unknown frame type 9", true},
		{"group without group", wire.Frame{Type: wire.FrameGroup}, "no group", true},
		{"group with message", wire.Frame{Type: wire.FrameGroup, Group: groupOf(1, ok), Message: "x"}, "also carries", true},
		{"group db_version 0", wire.GroupFrame(groupOf(0, ok)), "db_version 0", true},
		{"group db_version negative", wire.GroupFrame(groupOf(-3, ok)), "db_version -3", true},
		{"empty table", with(func(c *outpost.Change) { c.Table = "" }), "table is empty", true},
		{"empty pk", with(func(c *outpost.Change) { c.PK = nil }), "pk is empty", true},
		{"empty non-nil pk", with(func(c *outpost.Change) { c.PK = []any{} }), "pk is empty", true},
		{"cl 0", with(func(c *outpost.Change) { c.CL = 0 }), "cl 0", true},
		{"cl negative", with(func(c *outpost.Change) { c.CL = -1 }), "cl -1", true},
		{"empty origin", with(func(c *outpost.Change) { c.Origin = "" }), "origin is empty", true},
		{"heartbeat negative", wire.HeartbeatFrame(-1), "db_version -1", true},
		{"heartbeat with group", wire.Frame{Type: wire.FrameHeartbeat, Group: groupOf(1, ok)}, "also carries", true},
		{"progress 0", wire.ProgressFrame(0), "db_version 0", true},
		{"error without message", wire.ErrorFrame(""), "no message", true},
		{"error with db_version", wire.Frame{Type: wire.FrameError, Message: "x", DBV: 2}, "also carries", true},
		// Go types that are not SQLite values: refused by the writer.
		{"val int", with(func(c *outpost.Change) { c.Val = 5 }), "int (convert to int64)", false},
		{"val uint64", with(func(c *outpost.Change) { c.Val = uint64(5) }), "uint64", false},
		{"val float32", with(func(c *outpost.Change) { c.Val = float32(1) }), "float32", false},
		{"val bool", with(func(c *outpost.Change) { c.Val = false }), "bool", false},
		{"val NaN", with(func(c *outpost.Change) { c.Val = math.NaN() }), "NaN", false},
		{"pk int32", with(func(c *outpost.Change) { c.PK = []any{int32(1)} }), "pk[0]: int32", false},
		{"pk struct", with(func(c *outpost.Change) { c.PK = []any{struct{}{}} }), "pk[0]: struct {}", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.f.Validate(wire.DefaultLimits)
			if !errors.Is(err, wire.ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: got %v, want ErrMalformed mentioning %q", err, tc.want)
			}
			var buf bytes.Buffer
			if err := wire.NewWriter(&buf).Write(tc.f); !errors.Is(err, wire.ErrMalformed) {
				t.Fatalf("Write: got %v, want ErrMalformed", err)
			}
			if buf.Len() != 0 {
				t.Fatalf("a refused frame wrote %d bytes", buf.Len())
			}
			if tc.reader {
				err := readErr(t, raw(t, tc.f), wire.DefaultLimits)
				if !errors.Is(err, wire.ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("Read: got %v, want ErrMalformed mentioning %q", err, tc.want)
				}
			}
			t.Log(err)
		})
	}
}

type failWriter struct{ calls int }

func (w *failWriter) Write(p []byte) (int, error) {
	w.calls++
	return 1, errors.New("connection reset")
}

func TestWriterErrorIsSticky(t *testing.T) {
	fw := &failWriter{}
	w := wire.NewWriter(fw)
	err := w.Write(wire.HeartbeatFrame(1))
	if err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("got %v, want the connection error", err)
	}
	if err2 := w.Write(wire.HeartbeatFrame(2)); err2 != err || fw.calls != 1 {
		t.Fatalf("second Write: got %v after %d calls, want the first error without writing", err2, fw.calls)
	}
}

func TestEncodeDecodeGroups(t *testing.T) {
	groups := []outpost.Group{
		*groupOf(3, change(int64(1), "a")),
		*groupOf(4, change(2.0, "b"), change([]byte{}, "c")),
		*groupOf(9, change(nil, int64(-1), "x")),
	}
	body, err := wire.EncodeGroups(groups)
	if err != nil {
		t.Fatal(err)
	}
	got, err := wire.DecodeGroups(body, wire.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, groups) {
		t.Fatalf("got %#v\nwant %#v", got, groups)
	}
	// The body is a sequence of group frames a Reader reads too.
	r := wire.NewReader(bytes.NewReader(body), wire.DefaultLimits)
	for i := range groups {
		if f, err := r.Read(); err != nil || f.Type != wire.FrameGroup || f.Group.DBV != groups[i].DBV {
			t.Fatalf("frame %d: %+v, %v", i, f, err)
		}
	}

	empty, err := wire.EncodeGroups(nil)
	if err != nil || len(empty) != 0 {
		t.Fatalf("EncodeGroups(nil) = % x, %v", empty, err)
	}
	if got, err := wire.DecodeGroups(nil, wire.DefaultLimits); err != nil || len(got) != 0 {
		t.Fatalf("DecodeGroups(empty) = %v, %v", got, err)
	}

	if _, err := wire.EncodeGroups([]outpost.Group{groups[1], groups[0]}); !errors.Is(err, wire.ErrMalformed) {
		t.Fatalf("out of order: got %v, want ErrMalformed", err)
	}
	if _, err := wire.EncodeGroups([]outpost.Group{groups[0], *groupOf(5, outpost.Change{})}); !errors.Is(err, wire.ErrMalformed) {
		t.Fatalf("invalid change: got %v, want ErrMalformed", err)
	}

	outOfOrder := append(encode(t, wire.GroupFrame(&groups[1])), encode(t, wire.GroupFrame(&groups[0]))...)
	if _, err := wire.DecodeGroups(outOfOrder, wire.DefaultLimits); !errors.Is(err, wire.ErrMalformed) {
		t.Fatalf("decode out of order: got %v, want ErrMalformed", err)
	}
	withHeartbeat := append(append([]byte{}, body...), encode(t, wire.HeartbeatFrame(9))...)
	if _, err := wire.DecodeGroups(withHeartbeat, wire.DefaultLimits); !errors.Is(err, wire.ErrMalformed) || !strings.Contains(err.Error(), "heartbeat") {
		t.Fatalf("heartbeat in a push: got %v, want ErrMalformed", err)
	}
	if _, err := wire.DecodeGroups(body[:len(body)-1], wire.DefaultLimits); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated push: got %v, want io.ErrUnexpectedEOF", err)
	}
	if _, err := wire.DecodeGroups(body, wire.Limits{MaxValueBytes: 0, MaxFrameBytes: 20}); !errors.Is(err, wire.ErrTooLarge) {
		t.Fatalf("push over limits: got %v, want ErrTooLarge", err)
	}
}

func TestUnknownFieldsIgnored(t *testing.T) {
	// A later version may add keys; this one ignores them.
	type future struct {
		Type  int    `cbor:"1,keyasint"`
		DBV   int64  `cbor:"3,keyasint"`
		Extra string `cbor:"9,keyasint"`
	}
	r := wire.NewReader(bytes.NewReader(raw(t, future{Type: 2, DBV: 5, Extra: "new"})), wire.DefaultLimits)
	f, err := r.Read()
	if err != nil || !reflect.DeepEqual(f, wire.HeartbeatFrame(5)) {
		t.Fatalf("got %+v, %v", f, err)
	}
}
