package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/outpost-edge/outpost/api"
)

// sameJSON reports whether two JSON values decoded with UseNumber are the
// same SQL value: numbers must be of the same kind (an integer has no
// fraction or exponent, a real has one) and equal bit for bit.
func sameJSON(got, want any) bool {
	switch w := want.(type) {
	case json.Number:
		g, ok := got.(json.Number)
		if !ok || isReal(g) != isReal(w) {
			return false
		}
		if !isReal(w) {
			gi, err1 := strconv.ParseInt(string(g), 10, 64)
			wi, err2 := strconv.ParseInt(string(w), 10, 64)
			return err1 == nil && err2 == nil && gi == wi
		}
		gf, err1 := strconv.ParseFloat(string(g), 64)
		wf, err2 := strconv.ParseFloat(string(w), 64)
		return err1 == nil && err2 == nil && math.Float64bits(gf) == math.Float64bits(wf)
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok || !sameJSON(gv, wv) {
				return false
			}
		}
		return true
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for i := range w {
			if !sameJSON(g[i], w[i]) {
				return false
			}
		}
		return true
	}
	return got == want
}

func isReal(n json.Number) bool { return strings.ContainsAny(string(n), ".eE") }

func decodeNumbers(tb testing.TB, s string) any {
	tb.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		tb.Fatalf("decode %s: %v", s, err)
	}
	return v
}

func allBytes() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func TestValues_RoundTrip(t *testing.T) {
	ts := newTestServer(t)
	all := mustJSON(t, map[string]any{"$blob": allBytes()}) // []byte marshals as standard base64
	long := mustJSON(t, strings.Repeat("ü→", 500))

	tests := []struct {
		name     string
		arg      string // the JSON arg
		want     string // the JSON value read back; "" means arg
		wantType string // SQLite's typeof()
	}{
		{name: "int64 max", arg: "9223372036854775807", wantType: "integer"},
		{name: "int64 min", arg: "-9223372036854775808", wantType: "integer"},
		{name: "int zero", arg: "0", wantType: "integer"},
		{name: "int minus one", arg: "-1", wantType: "integer"},
		{name: "int 2^53+1", arg: "9007199254740993", wantType: "integer"},
		{name: "int -(2^63-1)", arg: "-9223372036854775807", wantType: "integer"},
		{name: "real 1.0", arg: "1.0", wantType: "real"},
		{name: "real 100.0", arg: "100.0", wantType: "real"},
		{name: "real -0.5", arg: "-0.5", wantType: "real"},
		{name: "real 0.1", arg: "0.1", wantType: "real"},
		{name: "real 1e300", arg: "1e300", wantType: "real"},
		{name: "real 1E+300", arg: "1E+300", want: "1e300", wantType: "real"},
		{name: "real 5e-324", arg: "5e-324", wantType: "real"},
		{name: "real max", arg: "1.7976931348623157e308", wantType: "real"},
		{name: "real -1e-7", arg: "-1e-7", wantType: "real"},
		{name: "real 1e21", arg: "1e21", wantType: "real"},
		{name: "real 123456789.0", arg: "123456789.0", wantType: "real"},
		{name: "real 2^63 as real", arg: "9223372036854775808.0", wantType: "real"},
		{name: "real negative zero", arg: "-0.0", wantType: "real"},
		{name: "real Infinity", arg: `{"$real":"Infinity"}`, wantType: "real"},
		{name: "real -Infinity", arg: `{"$real":"-Infinity"}`, wantType: "real"},
		{name: "text ascii", arg: `"hello"`, wantType: "text"},
		{name: "text unicode", arg: `"héllo wörld ✓ 日本語 Ελληνικά"`, wantType: "text"},
		{name: "text astral", arg: `"🚀👍🏽 \ud83d\ude80"`, want: `"🚀👍🏽 🚀"`, wantType: "text"},
		{name: "text quotes and backslashes", arg: `"say \"hi\" it's a \\ back\\slash / slash"`, wantType: "text"},
		{name: "text control chars", arg: `"\u0000\u0001\u0008\t\n\u000b\f\r\u001b\u001f\u007f end"`, wantType: "text"},
		{name: "text NUL inside", arg: `"a\u0000b"`, wantType: "text"},
		{name: "text line and paragraph separators", arg: `"a\u2028b\u2029c"`, wantType: "text"},
		{name: "text replacement char and noncharacters", arg: `"\ufffd \ufffe \uffff"`, wantType: "text"},
		{name: "text html", arg: `"<script>&amp;</script>"`, wantType: "text"},
		{name: "text empty", arg: `""`, wantType: "text"},
		{name: "text spaces", arg: `"  padded  "`, wantType: "text"},
		{name: "text that looks like null", arg: `"null"`, wantType: "text"},
		{name: "text that looks like an integer", arg: `"123"`, wantType: "text"},
		{name: "text that looks like a real", arg: `"1.0"`, wantType: "text"},
		{name: "text that looks like a blob", arg: `"{\"$blob\":\"AA==\"}"`, wantType: "text"},
		{name: "text long", arg: long, wantType: "text"},
		{name: "null", arg: `null`, wantType: "null"},
		{name: "true", arg: `true`, want: `1`, wantType: "integer"},
		{name: "false", arg: `false`, want: `0`, wantType: "integer"},
		{name: "blob", arg: `{"$blob":"AAEC/w=="}`, wantType: "blob"},
		{name: "blob empty", arg: `{"$blob":""}`, wantType: "blob"},
		{name: "blob of text", arg: `{"$blob":"aGVsbG8="}`, wantType: "blob"},
		{name: "blob of every byte", arg: all, wantType: "blob"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.want
			if want == "" {
				want = tt.arg
			}
			wantV := decodeNumbers(t, want)

			// Write, reading the value back through RETURNING.
			body := fmt.Sprintf(`{"statements":[{"sql":"INSERT INTO kv (k, n, v) VALUES ('roundtrip', ?, ?) RETURNING v, typeof(v)","args":[%d,%s]}]}`, i, tt.arg)
			res := ts.ok(t, "POST", "/v1/exec", body)
			var er struct {
				Results []struct {
					Rows [][]json.RawMessage
				}
			}
			if err := json.Unmarshal(res, &er); err != nil || len(er.Results) != 1 || len(er.Results[0].Rows) != 1 || len(er.Results[0].Rows[0]) != 2 {
				t.Fatalf("exec answer %s: want one RETURNING row of two values (%v)", res, err)
			}
			row := er.Results[0].Rows[0]
			if got := decodeNumbers(t, string(row[0])); !sameJSON(got, wantV) {
				t.Errorf("RETURNING v = %s, want %s", row[0], want)
			}
			if got, want := string(row[1]), strconv.Quote(tt.wantType); got != want {
				t.Errorf("RETURNING typeof(v) = %s, want %s", got, want)
			}

			// Read it back through /v1/query.
			q := ts.query(t, "SELECT v, typeof(v) FROM kv WHERE k = 'roundtrip' AND n = ?", i)
			var qr struct {
				Columns []string
				Rows    [][]json.RawMessage
			}
			if err := json.Unmarshal([]byte(q), &qr); err != nil || len(qr.Rows) != 1 || len(qr.Rows[0]) != 2 {
				t.Fatalf("query answer %s: want one row of two values (%v)", q, err)
			}
			if got := decodeNumbers(t, string(qr.Rows[0][0])); !sameJSON(got, wantV) {
				t.Errorf("query v = %s, want %s", qr.Rows[0][0], want)
			}
			if got, want := string(qr.Rows[0][1]), strconv.Quote(tt.wantType); got != want {
				t.Errorf("query typeof(v) = %s, want %s", got, want)
			}
			// The same value as a query arg comes back unchanged too.
			q = ts.query(t, "SELECT ?", decodeNumbers(t, tt.arg))
			if err := json.Unmarshal([]byte(q), &qr); err != nil || len(qr.Rows) != 1 || len(qr.Rows[0]) != 1 {
				t.Fatalf("query answer %s: want one value (%v)", q, err)
			}
			if got := decodeNumbers(t, string(qr.Rows[0][0])); !sameJSON(got, wantV) {
				t.Errorf("SELECT ? = %s, want %s", qr.Rows[0][0], want)
			}
		})
	}

	t.Run("integer column", func(t *testing.T) {
		keys := []int64{math.MaxInt64, math.MinInt64, 0, -1, 1 << 53, 1<<53 + 1}
		for _, n := range keys {
			ts.exec(t, stmt{SQL: "INSERT INTO kv (k, n, v) VALUES ('keys', ?, ?)", Args: []any{n, n}})
		}
		got := ts.query(t, "SELECT n, v FROM kv WHERE k = 'keys' ORDER BY n")
		want := `{"columns":["n","v"],"rows":[[-9223372036854775808,-9223372036854775808],[-1,-1],[0,0],[9007199254740992,9007199254740992],[9007199254740993,9007199254740993],[9223372036854775807,9223372036854775807]]}`
		if got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	})

	t.Run("real in an INTEGER column becomes an integer", func(t *testing.T) {
		// Column affinity, documented in docs/API.md.
		if got, want := ts.query(t, "SELECT CAST(? AS INTEGER), CAST(? AS REAL)", decodeNumbers(t, "1.0"), decodeNumbers(t, "1")), `{"columns":["CAST(? AS INTEGER)","CAST(? AS REAL)"],"rows":[[1,1.0]]}`; got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	})

	t.Run("NaN is refused", func(t *testing.T) {
		// SQLite has no NaN: binding one stores NULL. The API refuses it rather
		// than silently storing NULL.
		before := digest(t, ts.st)
		for _, tc := range []struct{ path, body string }{
			{"/v1/exec", `{"statements":[{"sql":"INSERT INTO kv (k, n, v) VALUES ('nan', 1, ?)","args":[{"$real":"NaN"}]}]}`},
			{"/v1/query", `{"sql":"SELECT ?","args":[{"$real":"NaN"}]}`},
		} {
			res := ts.do(t, "POST", tc.path, nil, tc.body)
			if res.status != 400 {
				t.Errorf("%s: status %d, want 400; body %s", tc.path, res.status, res.body)
			}
			if e := decodeError(t, res.body); e.Code != "invalid_arg" {
				t.Errorf("%s: code %q, want invalid_arg", tc.path, e.Code)
			}
		}
		if after := digest(t, ts.st); after != before {
			t.Errorf("the database changed:\n%s\n%s", before, after)
		}
	})

	t.Run("SQLite yields no NaN", func(t *testing.T) {
		got := ts.query(t, "SELECT 0.0/0, 9e999 - 9e999, 9e999, -9e999")
		want := `{"columns":["0.0/0","9e999 - 9e999","9e999","-9e999"],"rows":[[null,null,{"$real":"Infinity"},{"$real":"-Infinity"}]]}`
		if got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	})

	t.Run("invalid UTF-8 text", func(t *testing.T) {
		got := ts.query(t, "SELECT CAST(x'61ff62e282' AS TEXT) AS t, typeof(CAST(x'ff' AS TEXT)) AS ty")
		want := `{"columns":["t","ty"],"rows":[["a\ufffdb\ufffd\ufffd","text"]]}`
		if got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	})
}

func TestDecodeArg(t *testing.T) {
	tests := []struct {
		name string
		in   any
		want any
	}{
		{"nil", nil, nil},
		{"string", "x", "x"},
		{"empty string", "", ""},
		{"true", true, int64(1)},
		{"false", false, int64(0)},
		{"integer", json.Number("42"), int64(42)},
		{"negative zero integer", json.Number("-0"), int64(0)},
		{"int64 max", json.Number("9223372036854775807"), int64(math.MaxInt64)},
		{"int64 min", json.Number("-9223372036854775808"), int64(math.MinInt64)},
		{"real with fraction", json.Number("1.0"), 1.0},
		{"real with exponent", json.Number("1e3"), 1000.0},
		{"real with upper-case exponent", json.Number("25E-1"), 2.5},
		{"real negative zero", json.Number("-0.0"), math.Copysign(0, -1)},
		{"real smallest", json.Number("5e-324"), 5e-324},
		{"real 2^63", json.Number("9223372036854775808.0"), 9223372036854775808.0},
		{"blob", map[string]any{"$blob": "AAE="}, []byte{0, 1}},
		{"blob empty", map[string]any{"$blob": ""}, []byte{}},
		// encoding/base64 skips \r and \n, so wrapped base64 is accepted.
		{"blob with line breaks", map[string]any{"$blob": "AAEC\r\n/w==\n"}, []byte{0, 1, 2, 255}},
		{"Infinity", map[string]any{"$real": "Infinity"}, math.Inf(1)},
		{"-Infinity", map[string]any{"$real": "-Infinity"}, math.Inf(-1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := api.DecodeArg(tt.in)
			if err != nil {
				t.Fatalf("DecodeArg(%#v): %v", tt.in, err)
			}
			if !sameValue(got, tt.want) {
				t.Errorf("DecodeArg(%#v) = %#v (%T), want %#v (%T)", tt.in, got, got, tt.want, tt.want)
			}
		})
	}

	t.Run("empty blob is not nil", func(t *testing.T) {
		// The driver binds a nil []byte as NULL.
		got, err := api.DecodeArg(map[string]any{"$blob": ""})
		if b, ok := got.([]byte); err != nil || !ok || b == nil {
			t.Errorf("DecodeArg(empty blob) = %#v, %v; want a non-nil empty []byte", got, err)
		}
	})

	bad := []struct {
		name string
		in   any
	}{
		{"integer over 64 bits", json.Number("9223372036854775808")},
		{"integer under 64 bits", json.Number("-9223372036854775809")},
		{"huge integer", json.Number("123456789012345678901234567890")},
		{"real out of range", json.Number("1e400")},
		{"negative real out of range", json.Number("-1.5e309")},
		{"NaN", map[string]any{"$real": "NaN"}},
		{"lower-case infinity", map[string]any{"$real": "infinity"}},
		{"Inf", map[string]any{"$real": "Inf"}},
		{"finite $real", map[string]any{"$real": "1.5"}},
		{"$real number", map[string]any{"$real": json.Number("1.5")}},
		{"bad base64", map[string]any{"$blob": "!!!!"}},
		{"unpadded base64", map[string]any{"$blob": "AAE"}},
		{"URL base64", map[string]any{"$blob": "-_-_"}},
		{"$blob not a string", map[string]any{"$blob": json.Number("1")}},
		{"$blob null", map[string]any{"$blob": nil}},
		{"$blob and more", map[string]any{"$blob": "AA==", "x": "y"}},
		{"$blob and $real", map[string]any{"$blob": "AA==", "$real": "Infinity"}},
		{"empty object", map[string]any{}},
		{"object", map[string]any{"a": json.Number("1")}},
		{"array", []any{json.Number("1")}},
		{"empty array", []any{}},
		{"float64 (not decoded with UseNumber)", 1.5},
		{"int", 1},
	}
	for _, tt := range bad {
		t.Run("refuses "+tt.name, func(t *testing.T) {
			got, err := api.DecodeArg(tt.in)
			if err == nil {
				t.Fatalf("DecodeArg(%#v) = %#v, want an error", tt.in, got)
			}
			if err.Error() == "" {
				t.Errorf("DecodeArg(%#v): empty error message", tt.in)
			}
		})
	}
}

// sameValue compares SQL values, floats bit for bit.
func sameValue(got, want any) bool {
	switch w := want.(type) {
	case float64:
		g, ok := got.(float64)
		return ok && math.Float64bits(g) == math.Float64bits(w)
	case []byte:
		g, ok := got.([]byte)
		return ok && bytes.Equal(g, w)
	}
	return got == want
}

func TestAppendValue(t *testing.T) {
	tests := []struct {
		name string
		in   any
		want string
	}{
		{"nil", nil, `null`},
		{"int64", int64(42), `42`},
		{"int64 max", int64(math.MaxInt64), `9223372036854775807`},
		{"int64 min", int64(math.MinInt64), `-9223372036854775808`},
		{"real 1", 1.0, `1.0`},
		{"real 0", 0.0, `0.0`},
		{"real negative zero", math.Copysign(0, -1), `-0.0`},
		{"real -0.5", -0.5, `-0.5`},
		{"real 100", 100.0, `100.0`},
		{"real 1e5", 1e5, `100000.0`},
		{"real 1e6", 1e6, `1e+06`},
		{"real 1e20", 1e20, `1e+20`},
		{"real 1e21", 1e21, `1e+21`},
		{"real 1e300", 1e300, `1e+300`},
		{"real 5e-324", 5e-324, `5e-324`},
		{"real 1e-7", 1e-7, `1e-07`},
		{"real 2^63", 9223372036854775808.0, `9.223372036854776e+18`},
		{"NaN", math.NaN(), `{"$real":"NaN"}`},
		{"Infinity", math.Inf(1), `{"$real":"Infinity"}`},
		{"-Infinity", math.Inf(-1), `{"$real":"-Infinity"}`},
		{"text", "a\"b\\c\n", `"a\"b\\c\n"`},
		{"text empty", "", `""`},
		{"blob", []byte{0, 1, 2, 255}, `{"$blob":"AAEC/w=="}`},
		{"blob empty", []byte{}, `{"$blob":""}`},
		{"blob nil", []byte(nil), `{"$blob":""}`},
		{"time", time.Date(2024, 2, 29, 13, 4, 5, 600, time.UTC), `"2024-02-29T13:04:05.0000006Z"`},
		{"time with zone", time.Date(2024, 2, 29, 13, 4, 5, 0, time.FixedZone("", 3600)), `"2024-02-29T13:04:05+01:00"`},
		{"true", true, `1`},
		{"false", false, `0`},
		{"other type", int32(7), `"7"`},
		{"other type with quotes", struct{ S string }{`"x"`}, `"{\"x\"}"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(api.AppendValue([]byte("["), tt.in))
			if want := "[" + tt.want; got != want {
				t.Errorf("AppendValue(%#v) = %s, want %s", tt.in, got, want)
			}
			if !json.Valid([]byte(got + "]")) {
				t.Errorf("AppendValue(%#v) = %s: not valid JSON", tt.in, got)
			}
		})
	}

	t.Run("reals round trip", func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 2))
		vals := []float64{math.MaxFloat64, -math.MaxFloat64, math.SmallestNonzeroFloat64, 0.1, 1.0 / 3, 1 << 53, 1<<53 + 2, 1e15, 1e16, 123456789}
		for range 10000 {
			f := math.Float64frombits(r.Uint64())
			if math.IsNaN(f) || math.IsInf(f, 0) {
				continue
			}
			vals = append(vals, f, math.Trunc(f), float64(r.Int64()))
		}
		for _, f := range vals {
			b := api.AppendValue(nil, f)
			n := json.Number(b)
			if !json.Valid(b) || !isReal(n) {
				t.Fatalf("AppendValue(%v) = %s: want a JSON number with a fraction or exponent", f, b)
			}
			back, err := strconv.ParseFloat(string(b), 64)
			if err != nil || math.Float64bits(back) != math.Float64bits(f) {
				t.Fatalf("AppendValue(%v) = %s parses back as %v, %v", f, b, back, err)
			}
		}
	})
}

func TestAppendString(t *testing.T) {
	t.Run("every byte", func(t *testing.T) {
		for c := range 256 {
			s := string([]byte{byte(c)})
			got := api.AppendString(nil, s)
			if !json.Valid(got) {
				t.Errorf("byte %#02x: %s is not valid JSON", c, got)
				continue
			}
			var back string
			if err := json.Unmarshal(got, &back); err != nil {
				t.Errorf("byte %#02x: unmarshal %s: %v", c, got, err)
				continue
			}
			want := s
			if c >= utf8.RuneSelf {
				want = "\ufffd"
			}
			if back != want {
				t.Errorf("byte %#02x: %s unmarshals to %q, want %q", c, got, back, want)
			}
		}
	})

	t.Run("every byte in context", func(t *testing.T) {
		for c := range 256 {
			s := "a" + string([]byte{byte(c)}) + "é" + string([]byte{byte(c), byte(c)}) + "z"
			got := api.AppendString([]byte("x"), s)
			if got[0] != 'x' || !json.Valid(got[1:]) {
				t.Errorf("byte %#02x: %s is not valid JSON after the prefix", c, got)
			}
		}
	})

	t.Run("every pair of bytes", func(t *testing.T) {
		for c := range 1 << 16 {
			s := string([]byte{byte(c >> 8), byte(c)})
			if got := api.AppendString(nil, s); !json.Valid(got) {
				t.Fatalf("%q: %s is not valid JSON", s, got)
			}
		}
	})

	tests := []struct {
		name, in, want string
	}{
		{"empty", "", `""`},
		{"plain", "hello", `"hello"`},
		{"quote", `"`, `"\""`},
		{"backslash", `\`, `"\\"`},
		{"slash", `/`, `"/"`},
		{"newline", "\n", `"\n"`},
		{"carriage return", "\r", `"\r"`},
		{"tab", "\t", `"\t"`},
		{"NUL", "\x00", `"\u0000"`},
		{"backspace", "\b", `"\u0008"`},
		{"form feed", "\f", `"\u000c"`},
		{"unit separator", "\x1f", `"\u001f"`},
		{"DEL", "\x7f", "\"\x7f\""},
		{"html", "<&>", `"<&>"`},
		{"unicode", "é日🚀", `"é日🚀"`},
		{"line separator", "\u2028", `"\u2028"`},
		{"paragraph separator", "a\u2029b", `"a\u2029b"`},
		{"invalid byte", "a\xffb", `"a\ufffdb"`},
		{"truncated sequence", "\xe2\x82", `"\ufffd\ufffd"`},
		{"encoded surrogate", "\xed\xa0\x80", `"\ufffd\ufffd\ufffd"`},
		{"overlong", "\xc0\xaf", `"\ufffd\ufffd"`},
		{"beyond U+10FFFF", "\xf4\x90\x80\x80", `"\ufffd\ufffd\ufffd\ufffd"`},
		{"replacement char itself", "\ufffd", "\"\ufffd\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(api.AppendString([]byte("x"), tt.in)); got != "x"+tt.want {
				t.Errorf("AppendString(%q) = %s, want %s", tt.in, got[1:], tt.want)
			}
		})
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{
		"", "a", "\x00", "\"\\", "\n\r\t\b\f", "\x1f\x7f", "\u2028\u2029", "\xff", "a\xffb", "é", "🚀",
		"\xed\xa0\x80", "\xf4\x90\x80\x80", "\xc0\xaf", "\xe2\x82", "\ufffd", "<script>&</script>",
		string(allBytes()),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := api.AppendString([]byte("["), s)
		if !bytes.HasPrefix(got, []byte("[")) {
			t.Fatalf("AppendString(%q) changed the prefix: %s", s, got)
		}
		got = got[1:]
		if !json.Valid(got) {
			t.Fatalf("AppendString(%q) = %s: not valid JSON", s, got)
		}
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("AppendString(%q) = %s: %v", s, got, err)
		}
		if utf8.ValidString(s) {
			if back != s {
				t.Fatalf("AppendString(%q) = %s unmarshals to %q", s, got, back)
			}
		} else if want := replaceInvalid(s); back != want {
			// Every invalid byte becomes one U+FFFD, as in encoding/json.
			t.Fatalf("AppendString(%q) = %s unmarshals to %q, want %q", s, got, back, want)
		}
		// No raw control characters or separators that break JavaScript.
		for _, r := range string(got) {
			if r < 0x20 || r == '\u2028' || r == '\u2029' {
				t.Fatalf("AppendString(%q) = %s holds raw %U", s, got, r)
			}
		}
	})
}

// replaceInvalid replaces every byte of invalid UTF-8 in s with U+FFFD.
func replaceInvalid(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		b.WriteRune(r)
		i += n
	}
	return b.String()
}
