package api

import (
	"bytes"
	"encoding/json"
	"math/rand"
	"reflect"
	"strings"
	"testing"
)

// strictDecode is what Server.decode does without the fast path: true if
// the body is accepted.
func strictDecode(body []byte, dst any, sh shape) bool {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(dst); err != nil {
		return false
	}
	if _, err := dec.Token(); err == nil {
		return false
	}
	code, _ := checkMembers(body, sh)
	return code == ""
}

// TestFastDecode: whatever the fast path accepts, the strict decoder
// accepts too, with the same result; the common forms take the fast path.
func TestFastDecode(t *testing.T) {
	fast := []string{
		`{"statements":[{"sql":"INSERT INTO t VALUES (?, ?, ?)","args":["a", 1, 2.5]}]}`,
		` { "statements" : [ { "args" : [ null , true , false , -0 , 1e5 , -1.25E-3 ] , "sql" : "x" } , {"sql":"y"} ] } `,
		`{"statements":[]}`,
		`{"statements":[{"sql":"é ü","args":[]}]}`,
		`{"statements":[{"sql":"SELECT 1","args":["日本"]}]}`,
		`{"sql":"SELECT id FROM t WHERE id = ?","args":["p1"]}`,
		`{"args":[12345678901234567890],"sql":"q"}`,
		`{"sql":"q"}`,
	}
	slow := []string{
		`{"statements":[{"sql":"a\"b"}]}`,
		`{"statements":[{"sql":"\u00e9"}]}`,
		`{"statements":[{"sql":"x","args":[{"$blob":"AA=="}]}]}`,
		`{"statements":[{"sql":"x","args":[[1]]}]}`,
		`{"statements":[{"sql":"x"}],"wait_for":{"seq":1}}`,
		`{"statements":null}`,
		`{"statements":[{"SQL":"x"}]}`,
		`{"Statements":[{"sql":"x"}]}`,
		`{"statements":[{"sql":"x","sql":"y"}]}`,
		`{"statements":[{"sql":"x"}],"statements":[]}`,
		`{"statements":[{"args":[]}]}`,
		`{"statements":[{"sql":null}]}`,
		`{"statements":[{"sql":"x","args":null}]}`,
		`{"statements":[{"sql":"x","args":[01]}]}`,
		`{"statements":[{"sql":"x","args":[1.]}]}`,
		`{"statements":[{"sql":"x","args":[.5]}]}`,
		`{"statements":[{"sql":"x","args":[+1]}]}`,
		`{"statements":[{"sql":"x","args":[1,]}]}`,
		`{"statements":[{"sql":"x"},]}`,
		`{"statements":[{"sql":"x"}]} {}`,
		`{"statements":[{"sql":"x"}]`,
		`{"statements":[{"sql":"x","args":[tru]}]}`,
		`{"statements":[{"sql":"x","args":[nulls]}]}`,
		"{\"statements\":[{\"sql\":\"a\x01\"}]}",
		"{\"statements\":[{\"sql\":\"\xff\"}]}",
		`{"sql":"q","timeout_ms":5}`,
		`{"sql":"q","min_version":{}}`,
		`{}`,
		``,
		`null`,
		`[]`,
	}
	for _, b := range fast {
		var e execRequest
		var q queryRequest
		if !fastDecode([]byte(b), &e) && !fastDecode([]byte(b), &q) {
			t.Errorf("not decoded by the fast path: %s", b)
		}
	}
	for _, b := range slow {
		var e execRequest
		var q queryRequest
		if fastDecode([]byte(b), &e) || fastDecode([]byte(b), &q) {
			t.Errorf("decoded by the fast path: %q", b)
		}
	}
	// Differential: random bodies built from fragments of the above.
	rng := rand.New(rand.NewSource(1))
	pieces := []string{`{`, `}`, `[`, `]`, `,`, `:`, ` `, `"statements"`, `"sql"`, `"args"`, `"x"`, `"SQL"`, `1`, `-0.5e3`, `01`, `true`, `null`, `"a\"b"`, `{"sql":"s","args":[1,"a",null]}`, `"wait_for"`}
	corpus := append(append([]string{}, fast...), slow...)
	for i := 0; i < 20000; i++ {
		var b string
		if i%2 == 0 {
			var sb strings.Builder
			for k := rng.Intn(24); k >= 0; k-- {
				sb.WriteString(pieces[rng.Intn(len(pieces))])
			}
			b = sb.String()
		} else {
			c := []byte(corpus[rng.Intn(len(corpus))])
			for k := rng.Intn(3); k >= 0 && len(c) > 0; k-- {
				j := rng.Intn(len(c))
				c = append(c[:j:j], append([]byte(pieces[rng.Intn(len(pieces))]), c[j:]...)...)
			}
			b = string(c)
		}
		check(t, b)
	}
	for _, b := range append(fast, slow...) {
		check(t, b)
	}
}

func check(t *testing.T, b string) {
	t.Helper()
	var fe, se execRequest
	if fastDecode([]byte(b), &fe) {
		if !strictDecode([]byte(b), &se, execShape) || !reflect.DeepEqual(fe, se) {
			t.Fatalf("exec %q: fast %#v, strict %#v", b, fe, se)
		}
	}
	var fq, sq queryRequest
	if fastDecode([]byte(b), &fq) {
		if !strictDecode([]byte(b), &sq, queryShape) || !reflect.DeepEqual(fq, sq) {
			t.Fatalf("query %q: fast %#v, strict %#v", b, fq, sq)
		}
	}
}

// BenchmarkDecodeExec100 decodes a 100-statement /v1/exec body (the bench's
// transaction) with the fast path and with the strict decoder.
func BenchmarkDecodeExec100(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"statements":[`)
	for k := 0; k < 100; k++ {
		if k > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(`{"sql":"INSERT INTO bench_rows (id, n, body) VALUES (?, ?, ?)","args":["run-tx-1-` + strings.Repeat("7", k%3+1) + `",` + "42" + `,"hello, edge"]}`)
	}
	sb.WriteString(`]}`)
	body := []byte(sb.String())
	b.Run("fast", func(b *testing.B) {
		for b.Loop() {
			var req execRequest
			if !fastDecode(body, &req) {
				b.Fatal("not fast")
			}
		}
	})
	b.Run("strict", func(b *testing.B) {
		for b.Loop() {
			var req execRequest
			if !strictDecode(body, &req, execShape) {
				b.Fatal("refused")
			}
		}
	})
}
