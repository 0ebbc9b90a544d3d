// Package hlc is the hybrid logical clock of DESIGN.md section 4.
//
// A Timestamp packs 48 bits of Unix milliseconds and a 16-bit counter into
// one uint64, so timestamps compare as plain integers. A Clock hands out
// strictly increasing timestamps for local events, advances past the
// timestamps of remote changes it receives, and refuses those that are too
// far ahead of the local physical clock.
package hlc

import (
	"fmt"
	"time"
)

// counterBits is the width of the logical counter in the low bits of a Timestamp.
const counterBits = 16

// maxMillis is the largest Unix millisecond value a Timestamp can hold (48 bits).
const maxMillis = 1<<48 - 1

// Timestamp is a hybrid logical clock reading: Unix milliseconds in the high
// 48 bits and a logical counter in the low 16 bits. The zero Timestamp is
// earlier than every reading of a Clock.
type Timestamp uint64

// FromParts builds a Timestamp from Unix milliseconds and a counter. Millis
// outside [0, 2^48) are clamped into that range.
func FromParts(millis int64, counter uint16) Timestamp {
	return Timestamp(uint64(clampMillis(millis))<<counterBits | uint64(counter))
}

// Millis returns the physical part of ts in Unix milliseconds.
func (ts Timestamp) Millis() int64 {
	return int64(ts >> counterBits)
}

// Physical returns the physical part of ts as a UTC time.
func (ts Timestamp) Physical() time.Time {
	return time.UnixMilli(ts.Millis()).UTC()
}

// Counter returns the logical part of ts.
func (ts Timestamp) Counter() uint16 {
	return uint16(ts)
}

// String formats ts as "<unix millis>.<counter as 4 hex digits>", e.g.
// "1732250000123.0004". The fixed-width counter keeps the text of two
// readings from the same era in the same order as the readings.
func (ts Timestamp) String() string {
	return fmt.Sprintf("%d.%04x", ts.Millis(), ts.Counter())
}

// clampMillis brings a Unix millisecond value into the 48 bits a Timestamp holds.
func clampMillis(ms int64) int64 {
	return min(max(ms, 0), maxMillis)
}
