package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"

	"github.com/fxamacker/cbor/v2"

	"github.com/outpost-edge/outpost"
)

// headerBytes is the size of a frame's length prefix.
const headerBytes = 4

// maxNestedLevels bounds CBOR nesting. A valid frame needs 5 levels
// (frame, group, changes, change, pk); a deeper item is never valid.
const maxNestedLevels = 8

// maxMapPairs is the smallest bound on a CBOR map (a known frame, which maps
// every origin, is bounded by Limits.MaxChanges instead). The largest struct map (a
// change) has 7 keys; 16 is the smallest bound the decoder accepts and
// leaves room for fields later versions add.
const maxMapPairs = 16

// keepBufferBytes is the largest buffer a Writer or Reader keeps between
// frames; a larger one is dropped after use so an idle stream holds little.
const keepBufferBytes = 1 << 20

// readChunkBytes is how much a Reader allocates ahead of the bytes that
// have arrived, so a peer that claims a large frame and sends little costs
// little.
const readChunkBytes = 64 << 10

var encMode = func() cbor.UserBufferEncMode {
	em, err := cbor.EncOptions{
		Sort:          cbor.SortNone, // struct fields go in declaration order
		ShortestFloat: cbor.ShortestFloatNone,
		NaNConvert:    cbor.NaNConvertReject,
		InfConvert:    cbor.InfConvertNone,
		IndefLength:   cbor.IndefLengthForbidden,
		TagsMd:        cbor.TagsForbidden,
		NilContainers: cbor.NilContainerAsNull,
		String:        cbor.StringToTextString,
	}.UserBufferEncMode()
	if err != nil {
		panic("wire: cbor encoding options: " + err.Error())
	}
	return em
}()

// simpleValues decodes false, true and null as usual and refuses undefined,
// which would otherwise decode as nil and pass for NULL.
var simpleValues = func() *cbor.SimpleValueRegistry {
	r, err := cbor.NewSimpleValueRegistryFromDefaults(cbor.WithRejectedSimpleValue(cbor.SimpleValue(23)))
	if err != nil {
		panic("wire: cbor simple values: " + err.Error())
	}
	return r
}()

func newDecMode(maxChanges int) cbor.DecMode {
	dm, err := cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:  maxNestedLevels,
		MaxArrayElements: min(max(maxChanges, 16), math.MaxInt32),
		MaxMapPairs:      min(max(maxChanges, maxMapPairs), math.MaxInt32), // a known frame maps every origin
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
		BignumTag:        cbor.BignumTagForbidden,
		IntDec:           cbor.IntDecConvertSignedOrFail,
		UTF8:             cbor.UTF8DecodeInvalid,
		NaN:              cbor.NaNDecodeForbidden,
		SimpleValues:     simpleValues,
	}.DecMode()
	if err != nil {
		panic("wire: cbor decoding options: " + err.Error())
	}
	return dm
}

var (
	defaultDecMode = sync.OnceValue(func() cbor.DecMode { return newDecMode(DefaultLimits.MaxChanges) })
	decModes       sync.Map // MaxChanges -> cbor.DecMode
)

func decModeFor(lim Limits) cbor.DecMode {
	if lim.MaxChanges == DefaultLimits.MaxChanges {
		return defaultDecMode()
	}
	if dm, ok := decModes.Load(lim.MaxChanges); ok {
		return dm.(cbor.DecMode)
	}
	dm, _ := decModes.LoadOrStore(lim.MaxChanges, newDecMode(lim.MaxChanges))
	return dm.(cbor.DecMode)
}

// appendFrame validates f and appends its length prefix and CBOR to buf.
func appendFrame(buf *bytes.Buffer, f Frame, lim Limits) error {
	if err := f.Validate(lim); err != nil {
		return err
	}
	start := buf.Len()
	buf.Write([]byte{0, 0, 0, 0})
	if err := encMode.MarshalToBuffer(f, buf); err != nil {
		buf.Truncate(start)
		return malformed("cannot encode %s frame: %v", f.Type, err)
	}
	n := buf.Len() - start - headerBytes
	if n > lim.MaxFrameBytes {
		buf.Truncate(start)
		return tooLarge("%s frame of %d bytes is over the limit of %d", f.Type, n, lim.MaxFrameBytes)
	}
	binary.BigEndian.PutUint32(buf.Bytes()[start:], uint32(n))
	return nil
}

// Writer writes frames to a stream.
type Writer struct {
	w   io.Writer
	lim Limits
	buf bytes.Buffer
	err error
}

// NewWriter returns a Writer that writes frames to w within DefaultLimits.
func NewWriter(w io.Writer) *Writer { return NewWriterLimits(w, DefaultLimits) }

// NewWriterLimits returns a Writer that writes frames to w and refuses any
// frame over lim (zero fields meaning DefaultLimits).
func NewWriterLimits(w io.Writer, lim Limits) *Writer {
	return &Writer{w: w, lim: lim.withDefaults()}
}

// Write validates f (see Frame.Validate), encodes it and writes its length
// prefix and CBOR bytes to the stream in one Write call. A frame that is
// invalid or over the limits is refused (ErrMalformed, ErrTooLarge) and
// nothing is written; the Writer stays usable. An error from the
// underlying writer is returned, and again by every later Write, since the
// stream may hold part of a frame.
func (w *Writer) Write(f Frame) error {
	if w.err != nil {
		return w.err
	}
	w.buf.Reset()
	if err := appendFrame(&w.buf, f, w.lim); err != nil {
		if w.buf.Cap() > keepBufferBytes {
			w.buf = bytes.Buffer{}
		}
		return err
	}
	_, err := w.w.Write(w.buf.Bytes())
	if w.buf.Cap() > keepBufferBytes {
		w.buf = bytes.Buffer{}
	}
	if err != nil {
		w.err = fmt.Errorf("wire: write %s frame: %w", f.Type, err)
		return w.err
	}
	return nil
}

// Reader reads frames from a stream.
type Reader struct {
	r     io.Reader
	lim   Limits
	dm    cbor.DecMode
	hdr   [headerBytes]byte
	buf   []byte
	err   error
	bytes int // frame bytes of the last frame (or group in parts) returned
}

// NewReader returns a Reader that reads frames from r and refuses any frame
// over lim (zero fields meaning DefaultLimits).
func NewReader(r io.Reader, lim Limits) *Reader {
	lim = lim.withDefaults()
	return &Reader{r: r, lim: lim, dm: decModeFor(lim)}
}

// Read reads, decodes and validates the next frame. A group sent in parts
// comes back as one group frame (see Frame), once all its parts are read.
//
// It returns io.EOF, unwrapped, only when the stream ends cleanly between
// frames; a stream that ends inside a frame gives an error wrapping
// io.ErrUnexpectedEOF. A length prefix over MaxFrameBytes is refused with
// ErrTooLarge before anything is allocated for the frame, and the bytes of a
// frame are allocated as they arrive. A frame that is not valid CBOR, is
// over a limit, or breaks a rule of Frame.Validate gives an error wrapping
// ErrMalformed or ErrTooLarge. Every error is sticky: the Reader returns it
// again from every later Read.
func (r *Reader) Read() (Frame, error) {
	if r.err != nil {
		return Frame{}, r.err
	}
	f, n, err := r.read()
	if err == nil && f.More {
		f, n, err = r.joinParts(f, n)
	}
	if err != nil {
		r.err = err
	}
	r.bytes = n
	return f, err
}

// LastFrameBytes returns the bytes the last frame Read returned took on the
// stream (all parts of a group in parts), length prefixes included.
func (r *Reader) LastFrameBytes() int { return r.bytes }

func (r *Reader) read() (Frame, int, error) {
	f, err := r.readOne()
	return f, int(binary.BigEndian.Uint32(r.hdr[:])) + headerBytes, err
}

func (r *Reader) readOne() (Frame, error) {
	if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
		if err == io.EOF {
			return Frame{}, io.EOF
		}
		return Frame{}, fmt.Errorf("wire: read frame length: %w", err)
	}
	n := binary.BigEndian.Uint32(r.hdr[:])
	if uint64(n) > uint64(r.lim.MaxFrameBytes) {
		return Frame{}, tooLarge("frame of %d bytes is over the limit of %d", n, r.lim.MaxFrameBytes)
	}
	body, err := r.readBody(int(n))
	if err != nil {
		return Frame{}, err
	}
	var f Frame
	err = r.dm.Unmarshal(body, &f)
	if cap(r.buf) > keepBufferBytes {
		r.buf = nil
	}
	if err != nil {
		var arr *cbor.MaxArrayElementsError
		var mp *cbor.MaxMapPairsError
		if errors.As(err, &arr) || errors.As(err, &mp) {
			return Frame{}, tooLarge("frame of %d bytes: %v", n, err)
		}
		if loc := locate(body); loc != "" {
			return Frame{}, malformed("%s (want int64, float64, string, []byte or nil)", loc)
		}
		if n == 0 {
			return Frame{}, malformed("frame is empty")
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			// Not io.ErrUnexpectedEOF: the stream delivered the whole frame,
			// and it is the frame that is cut short.
			return Frame{}, malformed("frame of %d bytes holds an incomplete CBOR item", n)
		}
		return Frame{}, malformed("frame of %d bytes: %v", n, err)
	}
	if err := f.Validate(r.lim); err != nil {
		return Frame{}, err
	}
	return f, nil
}

// readBody reads exactly n bytes, growing the buffer only as bytes arrive.
// Decoded strings and blobs never alias the buffer (the decoder copies
// them), so it is reused for the next frame.
func (r *Reader) readBody(n int) ([]byte, error) {
	b := r.buf[:0]
	for len(b) < n {
		chunk := min(n-len(b), max(readChunkBytes, len(b)))
		if cap(b)-len(b) < chunk {
			nb := make([]byte, len(b), len(b)+chunk)
			copy(nb, b)
			b = nb
		}
		m, err := io.ReadFull(r.r, b[len(b):len(b)+chunk])
		b = b[:len(b)+m]
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("wire: read frame of %d bytes after %d: %w", n, len(b), err)
		}
	}
	r.buf = b
	return b, nil
}

// EncodeGroups encodes groups as the body of a push: one FrameGroup frame
// per group, concatenated, within DefaultLimits. The groups must be in
// strictly increasing db_version order, oldest first, as they are applied.
// An empty list gives an empty body.
func EncodeGroups(groups []outpost.Group) ([]byte, error) {
	var buf bytes.Buffer
	for i := range groups {
		if i > 0 && groups[i].DBV <= groups[i-1].DBV {
			return nil, malformed("push group %d has db_version %d, not above the previous group's %d", i, groups[i].DBV, groups[i-1].DBV)
		}
		if err := appendFrame(&buf, GroupFrame(&groups[i]), DefaultLimits); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}

// DecodeGroups decodes a push body written by EncodeGroups, with the limits
// lim applied to each frame. Every frame must be a FrameGroup and the
// db_versions must strictly increase; an empty body gives no groups.
func DecodeGroups(b []byte, lim Limits) ([]outpost.Group, error) {
	r := NewReader(bytes.NewReader(b), lim)
	var groups []outpost.Group
	for {
		f, err := r.Read()
		if err == io.EOF {
			return groups, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w (push frame %d)", err, len(groups))
		}
		if f.Type != FrameGroup {
			return nil, malformed("push frame %d is a %s frame; a push body holds only group frames", len(groups), f.Type)
		}
		if n := len(groups); n > 0 && f.Group.DBV <= groups[n-1].DBV {
			return nil, malformed("push frame %d has db_version %d, not above the previous group's %d", n, f.Group.DBV, groups[n-1].DBV)
		}
		groups = append(groups, *f.Group)
	}
}
