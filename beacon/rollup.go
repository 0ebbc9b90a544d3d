package beacon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/DataDog/sketches-go/ddsketch/store"
	"github.com/fxamacker/cbor/v2"
)

// Rollup is an aggregation declared in config: per window of the edges'
// receive time and per combination of the By fields, the count of beacons,
// the sums of the Sum fields and the quantiles of the Quantile fields (a
// mergeable DDSketch, 1% relative accuracy). Fields are top-level fields of
// the beacon; a missing or non-numeric value is left out of a sum or
// sketch, and a missing By field is null.
type Rollup struct {
	Name     string        `json:"name"`
	Window   time.Duration `json:"-"`
	By       []string      `json:"by"`
	Sum      []string      `json:"sum,omitempty"`
	Quantile []string      `json:"quantile,omitempty"`
}

// DefaultRollup counts beacons by event per minute.
var DefaultRollup = Rollup{Name: "events", Window: time.Minute, By: []string{"event"}}

// SketchAccuracy is the relative accuracy of the quantile sketches.
const SketchAccuracy = 0.01

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// ParseRollup reads a rollup spec: NAME:by=F1,F2;window=1m;sum=F3;quantile=F4,F5
// (every part but the name optional; window defaults to 1m, and must divide
// a day).
func ParseRollup(spec string) (Rollup, error) {
	name, rest, _ := strings.Cut(strings.TrimSpace(spec), ":")
	r := Rollup{Name: name, Window: time.Minute}
	if !nameRE.MatchString(name) {
		return r, fmt.Errorf("rollup %q: the name must be lower-case letters, digits and _, starting with a letter (e.g. events:by=event)", spec)
	}
	for _, part := range strings.Split(rest, ";") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return r, fmt.Errorf("rollup %s: %q is not key=value (keys: by, window, sum, quantile)", name, part)
		}
		var fields []string
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				fields = append(fields, f)
			}
		}
		switch strings.TrimSpace(k) {
		case "by":
			r.By = fields
		case "sum":
			r.Sum = fields
		case "quantile":
			r.Quantile = fields
		case "window":
			d, err := time.ParseDuration(strings.TrimSpace(v))
			if err != nil || d < time.Second || d > 24*time.Hour || (24*time.Hour)%d != 0 || d%time.Second != 0 {
				return r, fmt.Errorf("rollup %s: window %q: want whole seconds from 1s to 24h that divide a day (1m, 5m, 1h)", name, v)
			}
			r.Window = d
		default:
			return r, fmt.Errorf("rollup %s: unknown key %q (keys: by, window, sum, quantile)", name, k)
		}
	}
	return r, nil
}

// String returns the spec ParseRollup reads.
func (r Rollup) String() string {
	s := r.Name + ":window=" + shortDuration(r.Window)
	if len(r.By) > 0 {
		s += ";by=" + strings.Join(r.By, ",")
	}
	if len(r.Sum) > 0 {
		s += ";sum=" + strings.Join(r.Sum, ",")
	}
	if len(r.Quantile) > 0 {
		s += ";quantile=" + strings.Join(r.Quantile, ",")
	}
	return s
}

// rollKey identifies one rollup row.
type rollKey struct {
	rollup string
	window int64 // window start, Unix ms
	dims   string
}

// agg is one rollup row being built: count, sums and sketches.
type agg struct {
	count    int64
	sums     map[string]float64
	sketches map[string]*ddsketch.DDSketch
}

func newSketch() *ddsketch.DDSketch {
	s, err := ddsketch.NewDefaultDDSketch(SketchAccuracy)
	if err != nil {
		panic(err) // only for an accuracy outside (0, 1)
	}
	return s
}

// contribution is what one beacon adds to one rollup row.
type contribution struct {
	key    rollKey
	sums   map[string]float64
	values map[string]float64
}

// contributions parses a beacon body once and returns what it adds to each
// rollup.
func contributions(rollups []Rollup, recvMS int64, body []byte) []contribution {
	if len(rollups) == 0 {
		return nil
	}
	obj := topFields(body)
	out := make([]contribution, 0, len(rollups))
	for _, r := range rollups {
		w := r.Window.Milliseconds()
		c := contribution{key: rollKey{rollup: r.Name, window: recvMS - mod(recvMS, w), dims: dimsOf(r.By, obj)}}
		for _, f := range r.Sum {
			if v, ok := number(obj[f]); ok {
				if c.sums == nil {
					c.sums = map[string]float64{}
				}
				c.sums[f] = v
			}
		}
		for _, f := range r.Quantile {
			if v, ok := number(obj[f]); ok {
				if c.values == nil {
					c.values = map[string]float64{}
				}
				c.values[f] = v
			}
		}
		out = append(out, c)
	}
	return out
}

func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

// dimsOf returns the By values as a JSON array: strings as strings, other
// JSON values as they are, a missing field as null.
func dimsOf(by []string, obj map[string]json.RawMessage) string {
	b := []byte{'['}
	for i, f := range by {
		if i > 0 {
			b = append(b, ',')
		}
		v, ok := obj[f]
		if !ok || len(v) == 0 {
			b = append(b, "null"...)
			continue
		}
		b = append(b, v...)
	}
	return string(append(b, ']'))
}

// number reads a JSON number (or a numeric string) as a finite float.
func number(v json.RawMessage) (float64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	s := string(v)
	if s[0] == '"' {
		var str string
		if json.Unmarshal(v, &str) != nil {
			return 0, false
		}
		s = str
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

// add merges a contribution into the row.
func (a *agg) add(c contribution) {
	a.count++
	for f, v := range c.sums {
		if a.sums == nil {
			a.sums = map[string]float64{}
		}
		a.sums[f] += v
	}
	for f, v := range c.values {
		if a.sketches == nil {
			a.sketches = map[string]*ddsketch.DDSketch{}
		}
		s := a.sketches[f]
		if s == nil {
			s = newSketch()
			a.sketches[f] = s
		}
		_ = s.Add(v) // the default sketch takes any finite value
	}
}

// merge adds a stored row into a.
func (a *agg) merge(count int64, sums string, sketches []byte) error {
	a.count += count
	if sums != "" && sums != "{}" {
		var m map[string]float64
		if err := json.Unmarshal([]byte(sums), &m); err != nil {
			return fmt.Errorf("rollup sums: %w", err)
		}
		for f, v := range m {
			if a.sums == nil {
				a.sums = map[string]float64{}
			}
			a.sums[f] += v
		}
	}
	if len(sketches) > 0 {
		sk, err := decodeSketches(sketches)
		if err != nil {
			return err
		}
		for f, s := range sk {
			if a.sketches == nil {
				a.sketches = map[string]*ddsketch.DDSketch{}
			}
			if cur := a.sketches[f]; cur != nil {
				if err := cur.MergeWith(s); err != nil {
					return fmt.Errorf("merge sketch %s: %w", f, err)
				}
			} else {
				a.sketches[f] = s
			}
		}
	}
	return nil
}

// encode returns the row's sums (JSON) and sketches (CBOR map of encoded
// DDSketches).
func (a *agg) encode() (string, []byte, error) {
	sums := "{}"
	if len(a.sums) > 0 {
		b, err := json.Marshal(a.sums)
		if err != nil {
			return "", nil, err
		}
		sums = string(b)
	}
	if len(a.sketches) == 0 {
		return sums, nil, nil
	}
	m := make(map[string][]byte, len(a.sketches))
	for f, s := range a.sketches {
		var b []byte
		s.Encode(&b, false)
		m[f] = b
	}
	b, err := cbor.Marshal(m)
	return sums, b, err
}

func decodeSketches(b []byte) (map[string]*ddsketch.DDSketch, error) {
	var m map[string][]byte
	if err := cbor.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("rollup sketches: %w", err)
	}
	out := make(map[string]*ddsketch.DDSketch, len(m))
	for f, enc := range m {
		s, err := ddsketch.DecodeDDSketch(enc, store.DefaultProvider, nil)
		if err != nil {
			return nil, fmt.Errorf("rollup sketch %s: %w", f, err)
		}
		out[f] = s
	}
	return out, nil
}

// shortDuration writes 1m rather than 1m0s.
func shortDuration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	}
	return strconv.FormatInt(int64(d/time.Second), 10) + "s"
}

// topFields returns the top-level fields of a JSON object (checked at
// intake) as raw values, in one pass over the bytes without decoding the
// values. A key with escapes is decoded; a body that is not an object
// gives no fields.
func topFields(b []byte) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, 8)
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return out
	}
	i++
	for {
		i = skipSpace(b, i)
		if i >= len(b) || b[i] != '"' {
			return out // '}' or malformed
		}
		end := stringEnd(b, i)
		key := string(b[i+1 : end])
		if strings.IndexByte(key, '\\') >= 0 {
			var k string
			if json.Unmarshal(b[i:end+1], &k) == nil {
				key = k
			}
		}
		i = skipSpace(b, end+1)
		if i >= len(b) || b[i] != ':' {
			return out
		}
		i = skipSpace(b, i+1)
		start := i
		depth := 0
	value:
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = stringEnd(b, i)
			case '{', '[':
				depth++
			case '}', ']':
				if depth == 0 {
					break value
				}
				depth--
			case ',':
				if depth == 0 {
					break value
				}
			}
		}
		out[key] = json.RawMessage(bytes.TrimSpace(b[start:i]))
		if i >= len(b) || b[i] == '}' {
			return out
		}
		i++ // ','
	}
}

// stringEnd returns the index of the quote that ends the string starting
// at b[i] (a quote).
func stringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j
		}
	}
	return len(b) - 1
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
