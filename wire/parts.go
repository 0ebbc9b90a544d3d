package wire

import (
	"bytes"
	"errors"

	"github.com/outpost-edge/outpost"
)

// partOverhead is room left in a part frame for everything but its changes:
// the frame and group maps, keys, type, db_version and array header.
const partOverhead = 64

// WriteGroup writes g as one group frame or, when that is over
// MaxFrameBytes and split is set, as parts (see Frame) each within
// MaxFrameBytes; a group whose parts would take more than MaxGroupBytes
// is refused with ErrTooLarge and nothing is written. Without split, a
// group over MaxFrameBytes is refused with ErrTooLarge.
func (w *Writer) WriteGroup(g *outpost.Group, split bool) error {
	err := w.Write(GroupFrame(g))
	if err == nil || !split || !errors.Is(err, ErrTooLarge) || w.err != nil {
		return err
	}
	parts, err := SplitGroup(g, w.lim)
	if err != nil {
		return err
	}
	for i := range parts {
		if err := w.Write(parts[i]); err != nil {
			return err
		}
	}
	return nil
}

// SplitGroup cuts g into part frames each within lim.MaxFrameBytes, in
// order, the last without More. It refuses (ErrTooLarge) a group whose
// parts would take more than lim.MaxGroupBytes, and what Validate refuses.
func SplitGroup(g *outpost.Group, lim Limits) ([]Frame, error) {
	lim = lim.withDefaults()
	if err := validateGroup(g, lim); err != nil {
		return nil, err
	}
	budget := lim.MaxFrameBytes - partOverhead
	var parts []Frame
	total, size, start := 0, 0, 0
	var buf bytes.Buffer
	cut := func(end int) {
		parts = append(parts, Frame{Type: FrameGroup, More: true, Group: &outpost.Group{DBV: g.DBV, Changes: g.Changes[start:end:end]}})
		total += size + partOverhead
		start, size = end, 0
	}
	for i := range g.Changes {
		buf.Reset()
		if err := encMode.MarshalToBuffer(&g.Changes[i], &buf); err != nil {
			return nil, malformed("group %d change %d: cannot encode: %v", g.DBV, i, err)
		}
		n := buf.Len() + 9 // and its share of the array header
		if n > budget {
			return nil, tooLarge("group %d change %d of %d bytes does not fit a frame of %d", g.DBV, i, n, lim.MaxFrameBytes)
		}
		if size+n > budget {
			cut(i)
		}
		size += n
		if total+size > lim.MaxGroupBytes {
			return nil, tooLarge("group %d is over the limit of %d bytes for a group in parts", g.DBV, lim.MaxGroupBytes)
		}
	}
	cut(len(g.Changes))
	parts[len(parts)-1].More = false
	return parts, nil
}

// joinParts reads the parts following first until the last one and returns
// them joined as one group frame, within MaxGroupBytes and MaxChanges.
func (r *Reader) joinParts(first Frame, n int) (Frame, int, error) {
	g := &outpost.Group{DBV: first.Group.DBV, Changes: first.Group.Changes}
	for more := true; more; {
		f, m, err := r.read()
		if err != nil {
			return Frame{}, n, err
		}
		if f.Type != FrameGroup || f.Group.DBV != g.DBV {
			return Frame{}, n, malformed("group %d in parts: a %s frame came before its last part", g.DBV, f.Type)
		}
		if n += m; n > r.lim.MaxGroupBytes {
			return Frame{}, n, tooLarge("group %d in parts is over the limit of %d bytes", g.DBV, r.lim.MaxGroupBytes)
		}
		if len(g.Changes)+len(f.Group.Changes) > r.lim.MaxChanges {
			return Frame{}, n, tooLarge("group %d in parts has over %d changes", g.DBV, r.lim.MaxChanges)
		}
		g.Changes = append(g.Changes, f.Group.Changes...)
		more = f.More
	}
	return GroupFrame(g), n, nil
}

// EncodeGroupsSplit is EncodeGroups within lim, sending a group over
// lim.MaxFrameBytes in parts when split is set (only to a receiver that
// joins them).
func EncodeGroupsSplit(groups []outpost.Group, lim Limits, split bool) ([]byte, error) {
	var buf bytes.Buffer
	w := NewWriterLimits(&buf, lim)
	for i := range groups {
		if i > 0 && groups[i].DBV <= groups[i-1].DBV {
			return nil, malformed("push group %d has db_version %d, not above the previous group's %d", i, groups[i].DBV, groups[i-1].DBV)
		}
		if err := w.WriteGroup(&groups[i], split); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}
