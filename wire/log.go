package wire

import (
	"crypto/ed25519"

	"github.com/outpost-edge/outpost"
)

// EntriesFrame returns a FrameEntries frame carrying entries.
func EntriesFrame(entries []outpost.Entry) Frame { return Frame{Type: FrameEntries, Entries: entries} }

// EncodeBody encodes the changes of a log entry (outpost.Entry.Body): the
// CBOR array of the changes, with the type-preserving value rules of this
// package. Every change must pass the rules of Frame.Validate.
func EncodeBody(changes []outpost.Change, lim Limits) ([]byte, error) {
	lim = lim.withDefaults()
	if err := validateGroup(&outpost.Group{DBV: 1, Changes: changes}, lim); err != nil {
		return nil, err
	}
	b, err := encMode.Marshal(changes)
	if err != nil {
		return nil, malformed("cannot encode entry body: %v", err)
	}
	return b, nil
}

// DecodeBody decodes an entry body written by EncodeBody, with the limits
// lim, and checks every change; each must carry origin (the entry's).
func DecodeBody(b []byte, origin string, lim Limits) ([]outpost.Change, error) {
	lim = lim.withDefaults()
	if len(b) > lim.MaxFrameBytes {
		return nil, tooLarge("entry body of %d bytes is over the limit of %d", len(b), lim.MaxFrameBytes)
	}
	var changes []outpost.Change
	if err := decModeFor(lim).Unmarshal(b, &changes); err != nil {
		return nil, malformed("entry body: %v", err)
	}
	if err := validateGroup(&outpost.Group{DBV: 1, Changes: changes}, lim); err != nil {
		return nil, err
	}
	for i := range changes {
		if changes[i].Origin != origin {
			return nil, malformed("entry of %s: change %d claims origin %q", origin, i, changes[i].Origin)
		}
	}
	return changes, nil
}

// validateEntriesFrame checks the shape of an entries frame: entries and
// nothing else; each with an origin, a sequence >= 1, a body and a
// signature of ed25519's size (or none: an unsigned test fleet); within
// one origin the sequences consecutive, and the last entry's chain closed.
func validateEntriesFrame(f Frame, lim Limits) error {
	if f.Group != nil || f.DBV != 0 || f.Message != "" || f.More {
		return malformed("entries frame also carries a group, db_version, message or parts flag")
	}
	if len(f.Entries) == 0 {
		return malformed("entries frame carries no entries")
	}
	if len(f.Entries) > lim.MaxChanges {
		return tooLarge("entries frame has %d entries, over the limit of %d", len(f.Entries), lim.MaxChanges)
	}
	last := map[string]int64{}
	for i := range f.Entries {
		e := &f.Entries[i]
		where := func() string { return "entry " + e.Origin }
		if e.Origin == "" {
			return malformed("entry %d: origin is empty", i)
		}
		if err := checkName(e.Origin, "origin", lim, where); err != nil {
			return err
		}
		if e.Seq < 1 {
			return malformed("entry %d of %s: seq %d must be >= 1", i, e.Origin, e.Seq)
		}
		if p, ok := last[e.Origin]; ok && e.Seq != p+1 {
			return malformed("entry %d of %s: seq %d does not follow %d", i, e.Origin, e.Seq, p)
		}
		last[e.Origin] = e.Seq
		if len(e.Body) == 0 {
			return malformed("entry %d of %s: body is empty", i, e.Origin)
		}
		if len(e.Sig) != 0 && len(e.Sig) != ed25519.SignatureSize {
			return malformed("entry %d of %s: signature of %d bytes, not %d", i, e.Origin, len(e.Sig), ed25519.SignatureSize)
		}
	}
	return nil
}

// KnownFrame returns a FrameKnown frame carrying k (which may be empty).
func KnownFrame(k map[string]int64) Frame { return Frame{Type: FrameKnown, Known: k} }

// validateKnownFrame checks a known frame: knowledge and nothing else, each
// origin named and each sequence >= 0.
func validateKnownFrame(f Frame, lim Limits) error {
	if f.Group != nil || f.DBV != 0 || f.Message != "" || f.More || len(f.Entries) > 0 {
		return malformed("known frame also carries a group, db_version, message, parts flag or entries")
	}
	if len(f.Known) > lim.MaxChanges {
		return tooLarge("known frame names %d origins, over the limit of %d", len(f.Known), lim.MaxChanges)
	}
	for o, t := range f.Known {
		if err := checkName(o, "origin", lim, func() string { return "known frame" }); err != nil {
			return err
		}
		if o == "" || t < 0 {
			return malformed("known frame: origin %q at %d", o, t)
		}
	}
	return nil
}
