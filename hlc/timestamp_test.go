package hlc_test

import (
	"testing"
	"time"

	"github.com/outpost-edge/outpost/hlc"
)

func TestTimestamp_Parts(t *testing.T) {
	tests := []struct {
		name        string
		millis      int64
		counter     uint16
		wantMillis  int64
		wantCounter uint16
		wantString  string
	}{
		{"zero", 0, 0, 0, 0, "0.0000"},
		{"example", 1732250000123, 4, 1732250000123, 4, "1732250000123.0004"},
		{"max counter", 1732250000123, 0xffff, 1732250000123, 0xffff, "1732250000123.ffff"},
		{"negative millis clamp to zero", -5, 7, 0, 7, "0.0007"},
		{"max millis", 1<<48 - 1, 1, 1<<48 - 1, 1, "281474976710655.0001"},
		{"millis past 48 bits clamp", 1 << 50, 1, 1<<48 - 1, 1, "281474976710655.0001"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := hlc.FromParts(tt.millis, tt.counter)
			if got := ts.Millis(); got != tt.wantMillis {
				t.Errorf("Millis() = %d, want %d", got, tt.wantMillis)
			}
			if got := ts.Counter(); got != tt.wantCounter {
				t.Errorf("Counter() = %d, want %d", got, tt.wantCounter)
			}
			if got := ts.String(); got != tt.wantString {
				t.Errorf("String() = %q, want %q", got, tt.wantString)
			}
			if got, want := ts.Physical(), time.UnixMilli(tt.wantMillis).UTC(); !got.Equal(want) || got.Location() != time.UTC {
				t.Errorf("Physical() = %v, want %v in UTC", got, want)
			}
		})
	}
}

func TestTimestamp_Layout(t *testing.T) {
	got := hlc.FromParts(1732250000123, 4)
	want := hlc.Timestamp(1732250000123<<16 | 4)
	if got != want {
		t.Errorf("FromParts(1732250000123, 4) = %#x, want %#x", uint64(got), uint64(want))
	}
}

func TestTimestamp_Order(t *testing.T) {
	// A later millisecond beats any counter; within a millisecond the counter decides.
	a := hlc.FromParts(1000, 0xffff)
	b := hlc.FromParts(1001, 0)
	c := hlc.FromParts(1001, 1)
	if !(a < b && b < c) {
		t.Errorf("want %s < %s < %s", a, b, c)
	}
	if !(a.String() < b.String() && b.String() < c.String()) {
		t.Errorf("want strings ordered: %q < %q < %q", a, b, c)
	}
}
