package wire_test

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/wire"
)

// bigGroup is a group of n changes with values of size bytes each.
func bigGroup(dbv int64, n, size int) *outpost.Group {
	g := &outpost.Group{DBV: dbv}
	for i := 0; i < n; i++ {
		g.Changes = append(g.Changes, change(strings.Repeat("v", size), int64(i)))
	}
	return g
}

// TestGroupInParts: a group over the frame limit goes as parts within the
// limit and comes back from a Reader as the one group, between whole
// frames; without split it is refused and nothing is written.
func TestGroupInParts(t *testing.T) {
	lim := wire.Limits{MaxFrameBytes: 64 << 10, MaxValueBytes: 8 << 10}
	g := bigGroup(7, 40, 4<<10) // 160 KiB: 40 "1 MiB" rows, scaled down
	var buf bytes.Buffer
	w := wire.NewWriterLimits(&buf, lim)
	if err := w.WriteGroup(g, false); !errors.Is(err, wire.ErrTooLarge) || buf.Len() != 0 {
		t.Fatalf("unsplit WriteGroup = %v with %d bytes written; want ErrTooLarge, nothing", err, buf.Len())
	}
	small := groupOf(8, change(int64(1), "k"))
	for _, err := range []error{w.Write(wire.ProgressFrame(6)), w.WriteGroup(g, true), w.WriteGroup(small, true), w.Write(wire.ProgressFrame(8))} {
		if err != nil {
			t.Fatal(err)
		}
	}
	r := wire.NewReader(bytes.NewReader(buf.Bytes()), lim)
	var got []wire.Frame
	for {
		f, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if f.Type == wire.FrameGroup && f.Group.DBV == 7 && r.LastFrameBytes() <= lim.MaxFrameBytes {
			t.Fatalf("group in parts reported as %d frame bytes", r.LastFrameBytes())
		}
		got = append(got, f)
	}
	if len(got) != 4 || got[1].Type != wire.FrameGroup || got[1].More || !reflect.DeepEqual(got[1].Group, g) || got[2].Group.DBV != 8 {
		t.Fatalf("read %d frames; want progress, the joined group, the small group, progress", len(got))
	}
}

// TestGroupInPartsLimits: a Reader refuses parts over MaxGroupBytes, and
// parts interrupted by another frame; SplitGroup refuses a group over the
// bound before writing anything.
func TestGroupInPartsLimits(t *testing.T) {
	lim := wire.Limits{MaxFrameBytes: 16 << 10, MaxValueBytes: 8 << 10, MaxGroupBytes: 64 << 10}
	g := bigGroup(3, 40, 4<<10)
	if _, err := wire.SplitGroup(g, lim); !errors.Is(err, wire.ErrTooLarge) {
		t.Fatalf("SplitGroup over MaxGroupBytes = %v, want ErrTooLarge", err)
	}
	parts, err := wire.SplitGroup(g, wire.Limits{MaxFrameBytes: 16 << 10, MaxValueBytes: 8 << 10})
	if err != nil {
		t.Fatal(err)
	}
	stream := encode(t, parts...)
	_, err = wire.NewReader(bytes.NewReader(stream), lim).Read()
	if !errors.Is(err, wire.ErrTooLarge) {
		t.Fatalf("reading parts over MaxGroupBytes = %v, want ErrTooLarge", err)
	}
	cut := encode(t, parts[0], wire.HeartbeatFrame(1), parts[1])
	_, err = wire.NewReader(bytes.NewReader(cut), wire.Limits{MaxFrameBytes: 16 << 10}).Read()
	if !errors.Is(err, wire.ErrMalformed) {
		t.Fatalf("parts interrupted by a heartbeat = %v, want ErrMalformed", err)
	}
	if err := (wire.Frame{Type: wire.FrameHeartbeat, More: true}).Validate(wire.Limits{}); !errors.Is(err, wire.ErrMalformed) {
		t.Fatalf("heartbeat with More = %v, want ErrMalformed", err)
	}
	// A push body with a group in parts decodes as the one group.
	body, err := wire.EncodeGroupsSplit([]outpost.Group{*groupOf(1, change(int64(1), "a")), *g}, wire.Limits{MaxFrameBytes: 16 << 10}, true)
	if err != nil {
		t.Fatal(err)
	}
	gs, err := wire.DecodeGroups(body, wire.Limits{MaxFrameBytes: 16 << 10})
	if err != nil || len(gs) != 2 || len(gs[1].Changes) != 40 {
		t.Fatalf("DecodeGroups = %d groups, %v", len(gs), err)
	}
}
