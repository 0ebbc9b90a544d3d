package beacon

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestTopFields agrees with encoding/json on the top-level fields.
func TestTopFields(t *testing.T) {
	for _, body := range []string{
		`{}`, `{"a":1}`, ` { "a" : "x,}y" , "b":[1,{"c":"]"}], "d":{"e":{"f":null}},"g":true,"h":-1.5e3 } `,
		`{"es\"c":"a\\\"b","u\u0061":"\u00e9","n":null}`, `{"nested":[[[]]],"s":""}`,
	} {
		var want map[string]json.RawMessage
		if err := json.Unmarshal([]byte(body), &want); err != nil {
			t.Fatal(err)
		}
		got := topFields([]byte(body))
		if len(got) != len(want) {
			t.Fatalf("%s: got %v want %v", body, got, want)
		}
		for k, v := range want {
			var a, b any
			_ = json.Unmarshal(v, &a)
			_ = json.Unmarshal(got[k], &b)
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("%s: field %q: got %s want %s", body, k, got[k], v)
			}
		}
	}
}
