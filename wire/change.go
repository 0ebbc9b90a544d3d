package wire

import (
	"errors"

	"github.com/fxamacker/cbor/v2"

	"github.com/outpost-edge/outpost"
)

// EncodeChange encodes one change the way it travels inside a group frame,
// for a node that keeps a change on its own disk (held changes). It refuses
// what a Writer would refuse.
func EncodeChange(ch *outpost.Change) ([]byte, error) {
	if err := validateGroup(&outpost.Group{DBV: 1, Changes: []outpost.Change{*ch}}, DefaultLimits); err != nil {
		return nil, err
	}
	b, err := encMode.Marshal(ch)
	if err != nil {
		return nil, malformed("cannot encode change: %v", err)
	}
	return b, nil
}

// DecodeChange decodes a change written by EncodeChange with the same
// decoder and checks as a group frame (so text that is not valid UTF-8, which
// the wire allows, comes back unchanged).
func DecodeChange(b []byte) (outpost.Change, error) {
	var ch outpost.Change
	if err := defaultDecMode().Unmarshal(b, &ch); err != nil {
		var arr *cbor.MaxArrayElementsError
		var mp *cbor.MaxMapPairsError
		if errors.As(err, &arr) || errors.As(err, &mp) {
			return ch, tooLarge("change of %d bytes: %v", len(b), err)
		}
		return ch, malformed("change of %d bytes: %v", len(b), err)
	}
	if err := validateGroup(&outpost.Group{DBV: 1, Changes: []outpost.Change{ch}}, DefaultLimits); err != nil {
		return ch, err
	}
	return ch, nil
}
