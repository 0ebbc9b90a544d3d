package client

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// appendArg appends the API's JSON form of a Go value (docs/API.md,
// "Values"): nil; integers of every width, exact over 64 bits; float32 and
// float64 (always with a fraction or exponent, so they stay REAL; infinities
// as {"$real":"Infinity"}); string; []byte as {"$blob":"<base64>"}; bool as
// 1 or 0; time.Time as an RFC 3339 string with nanoseconds; json.Number as
// is. NaN and unsigned integers over 2^63-1 are refused.
func appendArg(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	case int:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int32:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int16:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int8:
		return strconv.AppendInt(b, int64(x), 10), nil
	case uint, uint64, uint32, uint16, uint8, uintptr:
		u := reflect.ValueOf(x).Uint()
		if u > math.MaxInt64 {
			return nil, fmt.Errorf("unsigned integer %d does not fit in SQLite's signed 64-bit INTEGER", u)
		}
		return strconv.AppendUint(b, u, 10), nil
	case float64:
		return appendFloat(b, x)
	case float32:
		return appendFloat(b, float64(x))
	case string:
		return appendString(b, x), nil
	case []byte:
		if x == nil {
			return append(b, "null"...), nil
		}
		b = append(b, `{"$blob":"`...)
		b = base64.StdEncoding.AppendEncode(b, x)
		return append(b, `"}`...), nil
	case bool:
		if x {
			return append(b, '1'), nil
		}
		return append(b, '0'), nil
	case time.Time:
		return appendString(b, x.Format(time.RFC3339Nano)), nil
	case json.Number:
		if _, err := strconv.ParseFloat(string(x), 64); err != nil {
			return nil, fmt.Errorf("json.Number %q is not a number", string(x))
		}
		return append(b, x...), nil
	}
	// Named types of the kinds above (type ID int64, type Blob []byte).
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return appendArg(b, rv.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return appendArg(b, rv.Uint())
	case reflect.Float32, reflect.Float64:
		return appendArg(b, rv.Float())
	case reflect.String:
		return appendArg(b, rv.String())
	case reflect.Bool:
		return appendArg(b, rv.Bool())
	case reflect.Slice:
		if rv.Type().Elem().Kind() == reflect.Uint8 {
			return appendArg(b, rv.Bytes())
		}
	case reflect.Pointer:
		if rv.IsNil() {
			return append(b, "null"...), nil
		}
		return appendArg(b, rv.Elem().Interface())
	}
	return nil, fmt.Errorf("a %T is not an SQL value (use nil, an integer, a float, a string, []byte, bool or time.Time)", v)
}

func appendFloat(b []byte, f float64) ([]byte, error) {
	switch {
	case math.IsNaN(f):
		return nil, errors.New("SQLite cannot store NaN (it would become NULL); pass nil if NULL is meant")
	case math.IsInf(f, 1):
		return append(b, `{"$real":"Infinity"}`...), nil
	case math.IsInf(f, -1):
		return append(b, `{"$real":"-Infinity"}`...), nil
	}
	start := len(b)
	b = strconv.AppendFloat(b, f, 'g', -1, 64)
	if !strings.ContainsAny(string(b[start:]), ".eE") {
		b = append(b, ".0"...)
	}
	return b, nil
}

func appendString(b []byte, s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
}

// decodeValue turns a JSON value decoded with UseNumber into the Go form of
// an SQLite value: nil, int64, float64, string or []byte.
func decodeValue(v any) (any, error) {
	switch x := v.(type) {
	case nil, string:
		return x, nil
	case json.Number:
		s := string(x)
		if !strings.ContainsAny(s, ".eE") {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("integer %s out of 64-bit range", s)
			}
			return n, nil
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("real %s: %w", s, err)
		}
		return f, nil
	case bool:
		if x {
			return int64(1), nil
		}
		return int64(0), nil
	case map[string]any:
		if len(x) == 1 {
			if s, ok := x["$blob"].(string); ok {
				b, err := base64.StdEncoding.DecodeString(s)
				if err != nil {
					return nil, fmt.Errorf("$blob: %w", err)
				}
				return b, nil
			}
			if s, ok := x["$real"].(string); ok {
				switch s {
				case "Infinity":
					return math.Inf(1), nil
				case "-Infinity":
					return math.Inf(-1), nil
				case "NaN":
					return math.NaN(), nil
				}
			}
		}
	}
	return nil, fmt.Errorf("unexpected JSON value %v in a result", v)
}

// decodeRows converts the rows of a result.
func decodeRows(raw [][]any) ([][]any, error) {
	rows := make([][]any, len(raw))
	for i, r := range raw {
		row := make([]any, len(r))
		for k, v := range r {
			d, err := decodeValue(v)
			if err != nil {
				return nil, fmt.Errorf("row %d, column %d: %w", i, k, err)
			}
			row[k] = d
		}
		rows[i] = row
	}
	return rows, nil
}
