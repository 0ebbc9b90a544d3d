package beacon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Limits of the intake. A batch beyond them is refused whole.
const (
	// MaxBeaconBytes is the largest beacon (one JSON object).
	MaxBeaconBytes = 16 << 10
	// MaxBatchBeacons is the most beacons in one POST /v1/beacons.
	MaxBatchBeacons = 1000
	// MaxBatchBytes is the largest POST /v1/beacons body.
	MaxBatchBytes = 1 << 20
	// MaxDepth is how deeply a beacon's JSON may nest.
	MaxDepth = 16
)

// Beacon is one stored beacon: the edge that received it, its sequence
// number there, the edge's receive time (Unix ms, never decreasing with
// seq), and the beacon's JSON object as the client sent it (compacted).
type Beacon struct {
	Edge   string          `json:"edge,omitempty"`
	Seq    int64           `json:"seq"`
	RecvMS int64           `json:"recv_ms"`
	Body   json.RawMessage `json:"body"`
}

// InputError is a refused beacon or batch: the client must fix it.
type InputError struct {
	Code    string // stable code, e.g. beacon_malformed
	Message string // what to fix
	Line    int    // 1-based line of the batch it is about; 0 = the whole body
}

func (e *InputError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s", e.Line, e.Message)
	}
	return e.Message
}

func inputErr(line int, code, format string, args ...any) *InputError {
	return &InputError{Code: code, Message: fmt.Sprintf(format, args...), Line: line}
}

// ParseOne checks one beacon: a JSON object in valid UTF-8, at most
// MaxBeaconBytes, nested at most MaxDepth deep, with no duplicate keys at
// the top level. It returns the object compacted.
func ParseOne(b []byte, line int) (json.RawMessage, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, inputErr(line, "beacon_malformed", "empty beacon: send one JSON object")
	}
	if len(b) > MaxBeaconBytes {
		return nil, inputErr(line, "beacon_too_large", "beacon of %d bytes; the limit is %d bytes", len(b), MaxBeaconBytes)
	}
	if !utf8.Valid(b) {
		return nil, inputErr(line, "beacon_malformed", "beacon is not valid UTF-8")
	}
	if b[0] != '{' {
		return nil, inputErr(line, "beacon_malformed", "a beacon is one JSON object ({...})")
	}
	if err := checkJSON(b); err != nil {
		return nil, inputErr(line, "beacon_malformed", "beacon is not valid JSON: %v", err)
	}
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return nil, inputErr(line, "beacon_malformed", "beacon is not valid JSON: %v", err)
	}
	return out.Bytes(), nil
}

// checkJSON checks b is exactly one JSON object, nested at most MaxDepth
// deep, with no duplicate keys at the top level (they would make the
// fields rollups read ambiguous). json.Valid checks the syntax; one pass
// over the bytes then measures depth and collects the top-level keys.
func checkJSON(b []byte) error {
	if !json.Valid(b) {
		var v any
		err := json.Unmarshal(b, &v) // for the message
		if err == nil {
			err = errors.New("invalid JSON")
		}
		return err
	}
	depth := 0
	keys := make(map[string]bool, 8)
	expectKey := false // at depth 1, the next string is a key
	for i := 0; i < len(b); i++ {
		switch c := b[i]; c {
		case '{', '[':
			depth++
			if depth > MaxDepth {
				return fmt.Errorf("nested more than %d deep", MaxDepth)
			}
			expectKey = depth == 1 && c == '{'
		case '}', ']':
			depth--
		case ',':
			expectKey = depth == 1
		case '"':
			j := i + 1
			escaped := false
			for ; j < len(b) && b[j] != '"'; j++ {
				if b[j] == '\\' {
					escaped = true
					j++
				}
			}
			if expectKey {
				k := string(b[i+1 : j])
				if escaped {
					var u string
					if err := json.Unmarshal(b[i:j+1], &u); err == nil {
						k = u
					}
				}
				if keys[k] {
					return fmt.Errorf("duplicate field %q", k)
				}
				keys[k] = true
				expectKey = false
			}
			i = j
		}
	}
	return nil
}
