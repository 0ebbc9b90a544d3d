package api

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// JSON forms of SQLite values (documented in docs/API.md):
//
//	NULL     null
//	INTEGER  a number without fraction or exponent, exact to 64 bits: 42
//	REAL     a number with a fraction or exponent: 42.0, 1e-7; non-finite reals
//	         as {"$real":"Infinity"|"-Infinity"}
//	TEXT     a string
//	BLOB     {"$blob":"<standard base64>"}
//
// On input, true and false are accepted as the integers 1 and 0.
//
// SQLite has no NaN: it stores a NaN as NULL (and the NaN result of an
// expression is NULL), so {"$real":"NaN"} is refused on input rather than
// silently stored as NULL. appendValue still writes a NaN as
// {"$real":"NaN"}, so the output is valid JSON whatever the driver returns.

// decodeArg turns a JSON value decoded with UseNumber into an SQLite value.
func decodeArg(v any) (any, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		return x, nil
	case bool:
		if x {
			return int64(1), nil
		}
		return int64(0), nil
	case json.Number:
		s := string(x)
		if !strings.ContainsAny(s, ".eE") {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("integer %s does not fit in 64 bits; send it as a string or a real (%s.0)", s, s)
			}
			return n, nil
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("number %s is out of range for a 64-bit real", s)
		}
		return f, nil
	case map[string]any:
		if len(x) == 1 {
			if b, ok := x["$blob"].(string); ok {
				raw, err := base64.StdEncoding.DecodeString(b)
				if err != nil {
					return nil, fmt.Errorf("$blob is not valid standard base64: %v", err)
				}
				return raw, nil
			}
			if r, ok := x["$real"].(string); ok {
				switch r {
				case "NaN":
					return nil, fmt.Errorf(`SQLite cannot store NaN (it would silently become NULL); send null if NULL is meant`)
				case "Infinity":
					return math.Inf(1), nil
				case "-Infinity":
					return math.Inf(-1), nil
				}
				return nil, fmt.Errorf(`$real must be "Infinity" or "-Infinity"; finite reals are plain numbers`)
			}
		}
		return nil, fmt.Errorf(`objects are not SQL values; a blob is {"$blob":"<base64>"}`)
	case []any:
		return nil, fmt.Errorf("arrays are not SQL values; pass one value per parameter")
	}
	return nil, fmt.Errorf("unsupported value of type %T", v)
}

// AppendValue appends the JSON form of an SQLite value, as the API answers
// it (docs/API.md, "Values").
func AppendValue(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...)
	case int64:
		return strconv.AppendInt(b, x, 10)
	case float64:
		switch {
		case math.IsNaN(x):
			return append(b, `{"$real":"NaN"}`...)
		case math.IsInf(x, 1):
			return append(b, `{"$real":"Infinity"}`...)
		case math.IsInf(x, -1):
			return append(b, `{"$real":"-Infinity"}`...)
		}
		start := len(b)
		b = strconv.AppendFloat(b, x, 'g', -1, 64)
		if !strings.ContainsAny(string(b[start:]), ".eEn") {
			b = append(b, ".0"...)
		}
		return b
	case string:
		return AppendString(b, x)
	case []byte:
		b = append(b, `{"$blob":"`...)
		b = base64.StdEncoding.AppendEncode(b, x)
		return append(b, `"}`...)
	case time.Time:
		return AppendString(b, x.Format(time.RFC3339Nano))
	case bool:
		if x {
			return append(b, '1')
		}
		return append(b, '0')
	}
	return AppendString(b, fmt.Sprint(v))
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD.
func AppendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, `\u202`...)
			b = append(b, hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
