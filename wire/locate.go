package wire

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/big"

	"github.com/fxamacker/cbor/v2"
)

// The strict decoder refuses a tag, undefined, NaN or an integer outside
// int64 wherever it appears, without saying which field held it. When it
// does, locate takes the frame apart again, leniently and down to the raw
// bytes of each value, to name the primary key element or value at fault.
// It runs only for frames already refused.

var looseDecMode = func() cbor.DecMode {
	dm, err := cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:  maxNestedLevels,
		MaxArrayElements: math.MaxInt32,
		MaxMapPairs:      maxMapPairs,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsAllowed,
		UTF8:             cbor.UTF8DecodeInvalid,
	}.DecMode()
	if err != nil {
		panic("wire: cbor decoding options: " + err.Error())
	}
	return dm
}()

type rawMap = map[int64]cbor.RawMessage

// locate returns a description of the first primary key element or value
// in the frame body that is not a SQLite value, or "" if it finds none.
func locate(body []byte) string {
	var frame, group rawMap
	var changes []cbor.RawMessage
	if looseDecMode.Unmarshal(body, &frame) != nil ||
		looseDecMode.Unmarshal(frame[2], &group) != nil ||
		looseDecMode.Unmarshal(group[2], &changes) != nil {
		return ""
	}
	var dbv int64
	_ = looseDecMode.Unmarshal(group[1], &dbv)
	for i, raw := range changes {
		var c rawMap
		if looseDecMode.Unmarshal(raw, &c) != nil {
			return ""
		}
		var table string
		_ = looseDecMode.Unmarshal(c[1], &table)
		var pk []cbor.RawMessage
		_ = looseDecMode.Unmarshal(c[2], &pk)
		for j, v := range pk {
			if what := badValue(v); what != "" {
				return fmt.Sprintf("group %d change %d (table %q): pk[%d]: %s is not a SQLite value", dbv, i, table, j, what)
			}
		}
		if v, ok := c[4]; ok {
			if what := badValue(v); what != "" {
				var col string
				_ = looseDecMode.Unmarshal(c[3], &col)
				return fmt.Sprintf("group %d change %d (table %q) column %q: val: %s is not a SQLite value", dbv, i, table, col, what)
			}
		}
	}
	return ""
}

// badValue names what the CBOR item raw is if it is not a SQLite value
// (integer in int64, float but not NaN, text, bytes, null), else "".
func badValue(raw []byte) string {
	if len(raw) == 0 {
		return ""
	}
	major, arg, ok := head(raw)
	switch major {
	case 0:
		if ok && arg > math.MaxInt64 {
			return fmt.Sprintf("integer %d (over int64)", arg)
		}
	case 1:
		if ok && arg > math.MaxInt64 {
			n := new(big.Int).SetUint64(arg)
			return fmt.Sprintf("integer -%s (under int64)", n.Add(n, big.NewInt(1)))
		}
	case 4:
		return "array"
	case 5:
		return "map"
	case 6:
		if ok {
			return fmt.Sprintf("tag %d", arg)
		}
		return "tag"
	case 7:
		switch raw[0] {
		case 0xf4, 0xf5:
			return "bool"
		case 0xf6:
			return ""
		case 0xf7:
			return "undefined"
		case 0xf9, 0xfa, 0xfb:
			var f float64
			if looseDecMode.Unmarshal(raw, &f) == nil && math.IsNaN(f) {
				return "NaN"
			}
			return ""
		}
		return fmt.Sprintf("simple value %d", arg)
	}
	return ""
}

// head decodes the major type and argument of the CBOR item at raw[0].
func head(raw []byte) (major byte, arg uint64, ok bool) {
	major, ai := raw[0]>>5, raw[0]&0x1f
	if ai < 24 {
		return major, uint64(ai), true
	}
	if ai > 27 {
		return major, 0, false
	}
	size := 1 << (ai - 24) // 24..27: 1, 2, 4 or 8 bytes
	if len(raw) < 1+size {
		return major, 0, false
	}
	var b [8]byte
	copy(b[8-size:], raw[1:1+size])
	return major, binary.BigEndian.Uint64(b[:]), true
}
