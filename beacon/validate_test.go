package beacon

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
)

func answer(edge string, floor, last int64, seqs ...int64) *PullAnswer {
	a := &PullAnswer{Edge: edge, Floor: floor, Last: last}
	for _, s := range seqs {
		a.Beacons = append(a.Beacons, Beacon{Seq: s, RecvMS: 1000 + s, Body: json.RawMessage(`{"event":"e"}`)})
	}
	return a
}

// TestValidate_ForgedRanges: an aggregator refuses answers that are not the
// range it asked for.
func TestValidate_ForgedRanges(t *testing.T) {
	bad := answer("EDGE01", 0, 10, 5, 6)
	bad.Beacons[1].Body = json.RawMessage(`not json`)
	backwards := answer("EDGE01", 0, 10, 5, 6)
	backwards.Beacons[1].RecvMS = 0
	other := answer("EDGE01", 0, 10, 5)
	other.Beacons[0].Edge = "EDGE02"
	cases := []struct {
		name     string
		a        *PullAnswer
		from, to int64
		inOrder  bool
		want     string // "" = accepted
	}{
		{"in order", answer("EDGE01", 0, 10, 5, 6, 7), 5, 0, true, ""},
		{"after the floor", answer("EDGE01", 7, 10, 8, 9), 5, 0, true, ""},
		{"another edge", answer("EDGE02", 0, 10, 5), 5, 0, true, "names edge"},
		{"a beacon of another edge", other, 5, 0, true, "names edge"},
		{"gap", answer("EDGE01", 0, 10, 5, 7), 5, 0, true, "was due"},
		{"skips ahead", answer("EDGE01", 0, 10, 9), 5, 0, true, "was due"},
		{"before the range", answer("EDGE01", 0, 10, 3, 4, 5), 5, 0, true, "outside"},
		{"past the last seq", answer("EDGE01", 0, 5, 5, 6), 5, 0, true, "past the edge"},
		{"floor past last", answer("EDGE01", 20, 10), 5, 0, true, "claims floor"},
		{"huge last", answer("EDGE01", 0, 1<<60), 5, 0, true, "claims floor"},
		{"malformed body", bad, 5, 0, true, "malformed"},
		{"time goes back", backwards, 5, 0, true, "received before"},
		{"repair within range", answer("EDGE01", 0, 0, 5, 8, 9), 5, 9, false, ""},
		{"repair out of range", answer("EDGE01", 0, 0, 5, 10), 5, 9, false, "outside"},
		{"repair out of order", answer("EDGE01", 0, 0, 6, 5), 5, 9, false, "out of order"},
		{"repair duplicate", answer("EDGE01", 0, 0, 6, 6), 5, 9, false, "out of order"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := validate(c.a, "EDGE01", c.from, c.to, c.inOrder)
			if c.want == "" && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Fatalf("got %v, want an error with %q", err, c.want)
			}
		})
	}
}

// TestWriteAnswer_RoundTrip: the hand-built pull answer decodes to what
// was written.
func TestWriteAnswer_RoundTrip(t *testing.T) {
	want := PullAnswer{Edge: "EDGE01", Log: "k3\"x", Floor: 4, Last: 9, Now: 1_767_312_000_123, Beacons: []Beacon{
		{Seq: 5, RecvMS: 100, Body: json.RawMessage(`{"event":"a","u":"\\u00e9"}`)},
		{Seq: 6, RecvMS: 101, Body: json.RawMessage(`{}`)},
	}}
	rec := httptest.NewRecorder()
	writeAnswer(rec, want)
	var got PullAnswer
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("%s: %v", rec.Body.Bytes(), err)
	}
	if got.Edge != want.Edge || got.Log != want.Log || got.Floor != 4 || got.Last != 9 || got.Now != want.Now || len(got.Beacons) != 2 ||
		string(got.Beacons[0].Body) != string(want.Beacons[0].Body) || got.Beacons[1].Seq != 6 || got.Beacons[1].RecvMS != 101 {
		t.Fatalf("got %+v", got)
	}
	rec = httptest.NewRecorder()
	writeAnswer(rec, PullAnswer{Edge: "E"})
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got.Beacons == nil && !strings.Contains(rec.Body.String(), `"beacons":[]`) {
		t.Fatalf("empty: %s %v", rec.Body.Bytes(), err)
	}
}
