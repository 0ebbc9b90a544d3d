package relay

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// testKeys signs as one node and knows the keys of a few.
type testKeys struct {
	self string
	priv ed25519.PrivateKey
	pubs map[string]ed25519.PublicKey
}

func newTestKeys(t testing.TB, self string, others ...string) *testKeys {
	t.Helper()
	k := &testKeys{self: self, pubs: map[string]ed25519.PublicKey{}}
	for _, name := range append([]string{self}, others...) {
		pub, priv, err := ed25519.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		k.pubs[name] = pub
		if name == self {
			k.priv = priv
		}
	}
	return k
}

func (k *testKeys) Sign(msg []byte) []byte { return ed25519.Sign(k.priv, msg) }

func (k *testKeys) Verify(node string, msg, sig []byte) error {
	pub, ok := k.pubs[node]
	if !ok {
		return errors.New("unknown node")
	}
	if !ed25519.Verify(pub, msg, sig) {
		return errors.New("bad signature")
	}
	return nil
}

func TestRelay_Tokens(t *testing.T) {
	keys := newTestKeys(t, "EDGE01", "EDGE04")
	r := New(Config{Self: "EDGE01", Keys: keys})
	tok, exp, err := r.IssueToken("alice", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if time.Until(exp) > time.Minute || time.Until(exp) < 58*time.Second {
		t.Errorf("expires %v", exp)
	}
	if got, err := r.VerifyToken(tok); err != nil || got != "alice" {
		t.Fatalf("VerifyToken = %q, %v", got, err)
	}
	// Another node of the fleet verifies it with the issuer's public key.
	other := New(Config{Self: "EDGE04", Keys: &testKeys{self: "EDGE04", pubs: keys.pubs}})
	if got, err := other.VerifyToken(tok); err != nil || got != "alice" {
		t.Fatalf("at EDGE04: %q, %v", got, err)
	}
	stranger := New(Config{Self: "X", Keys: newTestKeys(t, "X")})
	for name, bad := range map[string]string{
		"tampered":   tok[:len(tok)-3] + "abc",
		"not ours":   mustToken(t, stranger, "alice"),
		"garbage":    "hello",
		"no sig":     strings.SplitN(tok, ".", 3)[0] + "." + strings.SplitN(tok, ".", 3)[1],
		"too long":   tokenPrefix + strings.Repeat("a", maxTokenLen),
		"bad base64": tokenPrefix + "!!!.???",
	} {
		if _, err := r.VerifyToken(bad); err == nil {
			t.Errorf("%s: verified", name)
		} else if e := (*Error)(nil); !errors.As(err, &e) || e.Status != http.StatusUnauthorized {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, _, err := r.IssueToken("", 0); err == nil {
		t.Error("empty user: token issued")
	}
	if _, _, err := r.IssueToken("a\nb", 0); err == nil {
		t.Error("control character: token issued")
	}
	if _, _, err := r.IssueToken("a", 8*24*time.Hour); err == nil {
		t.Error("8 days: token issued")
	}
}

func mustToken(t *testing.T, r *Relay, user string) string {
	t.Helper()
	tok, _, err := r.IssueToken(user, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestRelay_MessageSignature(t *testing.T) {
	keys := newTestKeys(t, "EDGE01")
	r := New(Config{Self: "EDGE01", Keys: keys})
	m := &Message{ID: "id1", CID: "c1", From: "alice", To: "bob", Body: json.RawMessage(`{"text":"hi"}`), Node: "EDGE01", HLC: 42, Created: 7}
	m.Sig = keys.Sign(m.signed())
	if err := r.verify(m); err != nil {
		t.Fatal(err)
	}
	for name, change := range map[string]func(*Message){
		"body": func(m *Message) { m.Body = json.RawMessage(`{"text":"ho"}`) },
		"to":   func(m *Message) { m.To = "eve" },
		"from": func(m *Message) { m.From = "mallory" },
		"node": func(m *Message) { m.Node = "EDGE02" },
		"hlc":  func(m *Message) { m.HLC++ },
		// Field boundaries are length-prefixed: moving bytes between
		// fields changes the signed bytes.
		"shift": func(m *Message) { m.From, m.To = "aliceb", "ob" },
	} {
		c := *m
		change(&c)
		if err := r.verify(&c); !errors.Is(err, ErrForged) {
			t.Errorf("%s changed: %v", name, err)
		}
	}
}

func TestConn_DedupeAndSlowConsumer(t *testing.T) {
	var st Stats
	killed := make(chan bool, 1)
	c := newConn("bob", "d", 2, func(slow bool) { killed <- slow })
	c.replaying = false
	if !c.offer("m1", msgRef{from: "a"}, []byte("1"), &st) {
		t.Fatal("first offer refused")
	}
	if c.offer("m1", msgRef{from: "a"}, []byte("1"), &st) {
		t.Fatal("repeat offered again")
	}
	if st.Redeliveries.Load() != 1 {
		t.Errorf("redeliveries = %d", st.Redeliveries.Load())
	}
	c.offer("m2", msgRef{}, []byte("2"), &st)
	if c.offer("m3", msgRef{}, []byte("3"), &st) {
		t.Fatal("a full queue took a frame")
	}
	if slow := <-killed; !slow {
		t.Error("not closed as a slow consumer")
	}
	if st.SlowConsumers.Load() != 1 {
		t.Errorf("slow consumers = %d", st.SlowConsumers.Load())
	}
	if ref, ok := c.delivered("m1"); !ok || ref.from != "a" {
		t.Errorf("delivered(m1) = %v, %v", ref, ok)
	}
}

func TestRelay_CheckSend(t *testing.T) {
	r := New(Config{Self: "E", Keys: newTestKeys(t, "E"), MaxMessage: 16})
	for _, c := range []struct {
		in   SendRequest
		code string
	}{
		{SendRequest{To: "b", ID: "1", Body: json.RawMessage(`1`)}, ""},
		{SendRequest{Room: "r", ID: "1", Body: json.RawMessage(`"x"`)}, ""},
		{SendRequest{ID: "1", Body: json.RawMessage(`1`)}, "bad_recipient"},
		{SendRequest{To: "b", Room: "r", ID: "1", Body: json.RawMessage(`1`)}, "bad_recipient"},
		{SendRequest{To: "b", Body: json.RawMessage(`1`)}, "bad_id"},
		{SendRequest{To: "b", ID: "1"}, "bad_body"},
		{SendRequest{To: "b", ID: "1", Body: json.RawMessage(`"0123456789abcdef"`)}, "message_too_large"},
		{SendRequest{To: strings.Repeat("b", 200), ID: "1", Body: json.RawMessage(`1`)}, "bad_to"},
	} {
		err := r.checkSend(&c.in)
		var e *Error
		switch {
		case c.code == "" && err != nil:
			t.Errorf("%+v: %v", c.in, err)
		case c.code != "" && (!errors.As(err, &e) || e.Code != c.code):
			t.Errorf("%+v: %v, want %s", c.in, err, c.code)
		}
	}
}
