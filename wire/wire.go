// Package wire encodes the node-to-node replication stream of DESIGN.md
// section 6: a sequence of frames, each a 4-byte big-endian length followed
// by that many bytes of CBOR, decoded with limits.
//
// The encoding is type-preserving for the SQLite value types: every primary
// key element and every Change.Val is exactly one of int64, float64, string,
// []byte or nil, and comes back from a round trip as the same Go type with
// the same value (float64 bit for bit, including -0.0 and ±Inf; text as
// text even when it is not valid UTF-8; an empty blob as an empty, non-nil
// []byte). A nil []byte is sent as NULL and comes back as nil, the same way
// the SQLite driver (modernc.org/sqlite) binds it. NaN is refused: SQLite
// cannot store it.
//
// A Writer and a Reader are not safe for concurrent use.
package wire

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"

	"github.com/fxamacker/cbor/v2"

	"github.com/outpost-edge/outpost"
)

// Sentinel errors. Every error this package returns for a bad frame wraps
// exactly one of them; test with errors.Is. Either one means the peer (or
// the caller, when writing) broke the protocol, and the stream should be
// dropped.
var (
	// ErrMalformed reports a frame that is not valid CBOR, does not have the
	// shape of a Frame, carries a value that is not a SQLite value, or breaks
	// a rule checked by Frame.Validate.
	ErrMalformed = errors.New("malformed frame")
	// ErrTooLarge reports a frame, group or value over a Limits bound.
	ErrTooLarge = errors.New("frame too large")
)

// FrameType says what a Frame carries.
type FrameType uint8

// The frame types. The zero value is not a valid type.
const (
	// FrameGroup carries one committed group in Frame.Group.
	FrameGroup FrameType = 1
	// FrameHeartbeat carries the sender's current db_version in Frame.DBV:
	// the stream is alive and the receiver has been sent everything up to it.
	FrameHeartbeat FrameType = 2
	// FrameProgress carries a db_version in Frame.DBV: every group up to it
	// has been sent, some were empty after filtering, so the receiver may
	// advance its cursor to it.
	FrameProgress FrameType = 3
	// FrameError carries a message in Frame.Message; the sender ends the
	// stream after it.
	FrameError FrameType = 4
	// FrameEntries carries origin log entries in Frame.Entries (protocol
	// 2): in each origin's order, a chain of entries (More) never split
	// across frames.
	FrameEntries FrameType = 5
	// FrameKnown carries a node's knowledge (per origin, the last log
	// sequence it holds) in Frame.Known: it opens and closes a snapshot
	// stream (protocol 2).
	FrameKnown FrameType = 6
)

// String names the frame type, e.g. "group".
func (t FrameType) String() string {
	switch t {
	case FrameGroup:
		return "group"
	case FrameHeartbeat:
		return "heartbeat"
	case FrameProgress:
		return "progress"
	case FrameError:
		return "error"
	case FrameEntries:
		return "entries"
	case FrameKnown:
		return "known"
	}
	return fmt.Sprintf("FrameType(%d)", uint8(t))
}

// Frame is one unit of the replication stream. Exactly the field its Type
// names is set: Group for FrameGroup, DBV for FrameHeartbeat and
// FrameProgress, Message for FrameError.
//
// On the wire it is a CBOR map with small integer keys; keys a reader does
// not know are ignored, so later versions may add fields.
//
// A group too large for one frame travels as parts: group frames of the
// same db_version, each with More set but the last, which a Reader joins
// into one group (at most Limits.MaxGroupBytes of frames) before returning
// it, so a receiver applies a group whole or not at all. Only a peer that
// said it joins parts is sent them.
type Frame struct {
	Type    FrameType        `cbor:"1,keyasint"`
	Group   *outpost.Group   `cbor:"2,keyasint,omitempty"`
	DBV     int64            `cbor:"3,keyasint,omitempty"`
	Message string           `cbor:"4,keyasint,omitempty"`
	More    bool             `cbor:"5,keyasint,omitempty"` // group frames: more parts of this group follow
	Entries []outpost.Entry  `cbor:"6,keyasint,omitempty"` // entries frames (protocol 2)
	Known   map[string]int64 `cbor:"7,keyasint,omitempty"` // known frames (protocol 2)
}

// GroupFrame returns a FrameGroup frame carrying g.
func GroupFrame(g *outpost.Group) Frame { return Frame{Type: FrameGroup, Group: g} }

// HeartbeatFrame returns a FrameHeartbeat frame carrying the sender's
// current db_version.
func HeartbeatFrame(dbv int64) Frame { return Frame{Type: FrameHeartbeat, DBV: dbv} }

// ProgressFrame returns a FrameProgress frame: every group up to dbv has
// been sent.
func ProgressFrame(dbv int64) Frame { return Frame{Type: FrameProgress, DBV: dbv} }

// ErrorFrame returns a FrameError frame carrying msg.
func ErrorFrame(msg string) Frame { return Frame{Type: FrameError, Message: msg} }

// Limits bound what a Reader accepts and a Writer sends. A field that is
// zero or negative means the DefaultLimits value.
type Limits struct {
	// MaxFrameBytes bounds the CBOR bytes of one frame (the length prefix
	// not included). At most 1<<32-1, the largest length the prefix holds.
	MaxFrameBytes int
	// MaxChanges bounds the changes in one group, and also the elements of
	// any CBOR array in a frame (e.g. a primary key).
	MaxChanges int
	// MaxValueBytes bounds one string or blob: a value, a primary key
	// element, a table, column or origin name, an error message.
	MaxValueBytes int
	// MaxGroupBytes bounds the frames of one group sent as parts, together.
	MaxGroupBytes int
}

// DefaultLimits are the limits of a node: 32 MiB per frame, 1,000,000
// changes per group, 16 MiB per value and 256 MiB per group in parts.
var DefaultLimits = Limits{
	MaxFrameBytes: 32 << 20,
	MaxChanges:    1_000_000,
	MaxValueBytes: 16 << 20,
	MaxGroupBytes: 256 << 20,
}

// withDefaults fills unset fields from DefaultLimits and clamps the frame
// size to what the length prefix can express.
func (l Limits) withDefaults() Limits {
	if l.MaxFrameBytes <= 0 {
		l.MaxFrameBytes = DefaultLimits.MaxFrameBytes
	}
	if uint64(l.MaxFrameBytes) > math.MaxUint32 {
		l.MaxFrameBytes = math.MaxUint32
	}
	if l.MaxChanges <= 0 {
		l.MaxChanges = DefaultLimits.MaxChanges
	}
	if l.MaxValueBytes <= 0 {
		l.MaxValueBytes = DefaultLimits.MaxValueBytes
	}
	if l.MaxGroupBytes <= 0 {
		l.MaxGroupBytes = DefaultLimits.MaxGroupBytes
	}
	return l
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("wire: %w: "+format, append([]any{ErrMalformed}, args...)...)
}

func tooLarge(format string, args ...any) error {
	return fmt.Errorf("wire: %w: "+format, append([]any{ErrTooLarge}, args...)...)
}

// Validate checks f against the rules of its type and the limits lim (zero
// fields meaning DefaultLimits): the type is known; a group frame carries a
// group and nothing else, with db_version >= 1, at most lim.MaxChanges
// changes, and in each change a non-empty table, a non-empty primary key,
// CL >= 1, a non-empty origin, and primary key elements and a value that are
// each one of int64, float64 (not NaN), string, []byte or nil; a heartbeat
// carries a db_version >= 0, a progress frame one >= 1, an error frame a
// non-empty message, and nothing else. Errors wrap ErrMalformed or
// ErrTooLarge and name the offending field.
//
// A Reader validates every frame it decodes and a Writer every frame it
// writes, so a frame one accepts the other accepts too.
func (f Frame) Validate(lim Limits) error {
	lim = lim.withDefaults()
	if f.Type == FrameEntries {
		return validateEntriesFrame(f, lim)
	}
	if f.Type == FrameKnown {
		return validateKnownFrame(f, lim)
	}
	if len(f.Entries) > 0 || len(f.Known) > 0 {
		return malformed("%s frame also carries log entries or knowledge", f.Type)
	}
	switch f.Type {
	case FrameGroup:
		if f.Group == nil {
			return malformed("group frame carries no group")
		}
		if f.DBV != 0 || f.Message != "" {
			return malformed("group frame also carries a db_version (%d) or message (%q)", f.DBV, f.Message)
		}
		return validateGroup(f.Group, lim)
	}
	if f.More {
		return malformed("%s frame says more parts follow; only a group frame has parts", f.Type)
	}
	switch f.Type {
	case FrameHeartbeat, FrameProgress:
		if f.Group != nil || f.Message != "" {
			return malformed("%s frame also carries a group or message", f.Type)
		}
		minDBV := int64(0)
		if f.Type == FrameProgress {
			minDBV = 1
		}
		if f.DBV < minDBV {
			return malformed("%s frame db_version %d must be >= %d", f.Type, f.DBV, minDBV)
		}
		return nil
	case FrameError:
		if f.Group != nil || f.DBV != 0 {
			return malformed("error frame also carries a group or db_version")
		}
		if f.Message == "" {
			return malformed("error frame carries no message")
		}
		if len(f.Message) > lim.MaxValueBytes {
			return tooLarge("error frame message of %d bytes is over the limit of %d", len(f.Message), lim.MaxValueBytes)
		}
		return nil
	}
	return malformed("unknown frame type %d", uint8(f.Type))
}

func validateGroup(g *outpost.Group, lim Limits) error {
	if g.DBV < 1 {
		return malformed("group db_version %d must be >= 1", g.DBV)
	}
	if len(g.Changes) > lim.MaxChanges {
		return tooLarge("group %d has %d changes, over the limit of %d", g.DBV, len(g.Changes), lim.MaxChanges)
	}
	for i := range g.Changes {
		c := &g.Changes[i]
		where := func() string {
			return fmt.Sprintf("group %d change %d (table %q)", g.DBV, i, c.Table)
		}
		if c.Table == "" {
			return malformed("group %d change %d: table is empty", g.DBV, i)
		}
		if err := checkName(c.Table, "table", lim, where); err != nil {
			return err
		}
		if len(c.PK) == 0 {
			return malformed("%s: pk is empty", where())
		}
		for j, v := range c.PK {
			if err := checkValue(v, lim); err != nil {
				return fmt.Errorf("%w: %s: pk[%d]: %s", err, where(), j, describeValueErr(v, lim))
			}
		}
		if err := checkName(c.Col, "col", lim, where); err != nil {
			return err
		}
		if err := checkValue(c.Val, lim); err != nil {
			return fmt.Errorf("%w: %s column %q: val: %s", err, where(), c.Col, describeValueErr(c.Val, lim))
		}
		if c.CL < 1 {
			return malformed("%s: cl %d must be >= 1", where(), c.CL)
		}
		if c.Origin == "" {
			return malformed("%s: origin is empty", where())
		}
		if err := checkName(c.Origin, "origin", lim, where); err != nil {
			return err
		}
	}
	return nil
}

func checkName(s, field string, lim Limits, where func() string) error {
	if len(s) > lim.MaxValueBytes {
		return tooLarge("%s: %s of %d bytes is over the limit of %d", where(), field, len(s), lim.MaxValueBytes)
	}
	return nil
}

// wrapped sentinels for checkValue; the caller adds the field.
var (
	errValueMalformed = fmt.Errorf("wire: %w", ErrMalformed)
	errValueTooLarge  = fmt.Errorf("wire: %w", ErrTooLarge)
)

// checkValue reports whether v is a SQLite value within the limits.
func checkValue(v any, lim Limits) error {
	switch x := v.(type) {
	case nil, int64:
		return nil
	case float64:
		if math.IsNaN(x) {
			return errValueMalformed
		}
		return nil
	case string:
		if len(x) > lim.MaxValueBytes {
			return errValueTooLarge
		}
		return nil
	case []byte:
		if len(x) > lim.MaxValueBytes {
			return errValueTooLarge
		}
		return nil
	}
	return errValueMalformed
}

// describeValueErr says what is wrong with a value checkValue refused.
func describeValueErr(v any, lim Limits) string {
	switch x := v.(type) {
	case float64:
		return "NaN is not a SQLite value"
	case string:
		return fmt.Sprintf("text of %d bytes is over the limit of %d", len(x), lim.MaxValueBytes)
	case []byte:
		return fmt.Sprintf("blob of %d bytes is over the limit of %d", len(x), lim.MaxValueBytes)
	}
	return typeName(v) + " is not a SQLite value (want int64, float64, string, []byte or nil)"
}

// typeName names the type of a refused value, in CBOR terms for what a
// decoder produces.
func typeName(v any) string {
	switch v.(type) {
	case bool:
		return "bool"
	case []any:
		return "array"
	case map[any]any:
		return "map"
	case cbor.Tag, cbor.RawTag:
		return "tag"
	case cbor.SimpleValue:
		return fmt.Sprintf("simple value %d", v)
	case big.Int, *big.Int:
		return "big integer"
	}
	if t := reflect.TypeOf(v); t != nil {
		switch t.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
			return t.String() + " (convert to int64)"
		case reflect.Float32:
			return "float32 (convert to float64)"
		}
		return t.String()
	}
	return "nil"
}

// WithDefaults returns l with every unset field filled from DefaultLimits.
func (l Limits) WithDefaults() Limits { return l.withDefaults() }
