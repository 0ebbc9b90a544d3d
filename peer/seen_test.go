package peer

import (
	"testing"
	"time"
)

func TestSeen(t *testing.T) {
	var nilSeen *Seen
	nilSeen.Touch("A") // a nil Seen records nothing and does not panic
	if got := nilSeen.Get("A"); !got.At.IsZero() {
		t.Fatalf("nil Seen: %+v", got)
	}
	var s Seen
	if got := s.Get("A"); !got.At.IsZero() || got.Hello != nil {
		t.Fatalf("never seen: %+v", got)
	}
	before := time.Now()
	s.Touch("A")
	s.hello("B", Hello{Name: "B", Version: "v1", DBVersion: 7})
	if a := s.Get("A"); a.At.Before(before) || a.Hello != nil {
		t.Fatalf("A: %+v", a)
	}
	b := s.Get("B")
	if b.At.Before(before) || b.Hello == nil || b.Hello.Version != "v1" || b.Hello.DBVersion != 7 || b.HelloAt != b.At {
		t.Fatalf("B: %+v", b)
	}
	s.Touch("B") // a later request keeps the last hello
	if b2 := s.Get("B"); b2.Hello == nil || b2.At.Before(b.At) {
		t.Fatalf("B after touch: %+v", b2)
	}
}
