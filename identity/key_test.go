package identity

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func mustGenerate(t *testing.T) *Key {
	t.Helper()
	k, err := Generate()
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return k
}

func TestGenerate(t *testing.T) {
	a, b := mustGenerate(t), mustGenerate(t)
	if len(a.Public()) != ed25519.PublicKeySize {
		t.Fatalf("public key is %d bytes", len(a.Public()))
	}
	if a.Public().Equal(b.Public()) {
		t.Fatal("two generated keys are equal")
	}
	msg := []byte("hello")
	if !ed25519.Verify(a.Public(), msg, ed25519.Sign(a.Private(), msg)) {
		t.Fatal("signature by Private does not verify with Public")
	}
}

func TestFingerprint(t *testing.T) {
	k := mustGenerate(t)
	fp := k.Fingerprint()
	if fp != Fingerprint(k.Public()) {
		t.Fatalf("method %q != func %q", fp, Fingerprint(k.Public()))
	}
	if !strings.HasPrefix(fp, "ed25519:") || len(fp) != len("ed25519:")+32 {
		t.Fatalf("fingerprint %q: want ed25519: + 32 hex digits", fp)
	}
	if fp == Fingerprint(mustGenerate(t).Public()) {
		t.Fatal("two keys share a fingerprint")
	}
	// A known vector: the all-zero key.
	zero := make(ed25519.PublicKey, ed25519.PublicKeySize)
	if got, want := Fingerprint(zero), "ed25519:66687aadf862bd776c8fc18b8e9f8e20"; got != want {
		t.Fatalf("Fingerprint(zero) = %q, want %q", got, want)
	}
}

func TestKeyPrintingHidesPrivate(t *testing.T) {
	k := mustGenerate(t)
	secret := base64.StdEncoding.EncodeToString(k.Private().Seed())
	for _, verb := range []string{"%v", "%+v", "%s", "%#v"} {
		out := fmt.Sprintf(verb, k)
		if !strings.Contains(out, k.Fingerprint()) {
			t.Errorf("%s printed %q, want the fingerprint", verb, out)
		}
		if strings.Contains(out, secret) || strings.Contains(out, fmt.Sprint([]byte(k.Private().Seed()))) {
			t.Errorf("%s leaks the private key: %q", verb, out)
		}
	}
}

func TestPublicKeyRoundTrip(t *testing.T) {
	for range 20 {
		pub := mustGenerate(t).Public()
		s := EncodePublicKey(pub)
		if !strings.HasPrefix(s, "ed25519:") || strings.ContainsAny(s, "=+/") {
			t.Fatalf("EncodePublicKey = %q", s)
		}
		got, err := DecodePublicKey(s)
		if err != nil {
			t.Fatalf("DecodePublicKey(%q): %v", s, err)
		}
		if !got.Equal(pub) {
			t.Fatalf("round trip changed the key")
		}
	}
}

func TestDecodePublicKeyErrors(t *testing.T) {
	good := EncodePublicKey(mustGenerate(t).Public())
	body := strings.TrimPrefix(good, "ed25519:")
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "must start with"},
		{"no prefix", body, "must start with"},
		{"wrong prefix", "rsa:" + body, "must start with"},
		{"upper prefix", "ED25519:" + body, "must start with"},
		{"padded", good + "=", "base64url"},
		{"std alphabet", "ed25519:" + base64.RawStdEncoding.EncodeToString(make([]byte, 31)) + "+/", "base64url"},
		{"bad char", "ed25519:" + body[:len(body)-1] + "!", "base64url"},
		{"space", "ed25519: " + body, "base64url"},
		{"empty body", "ed25519:", "0 bytes, want 32"},
		{"short", "ed25519:" + base64.RawURLEncoding.EncodeToString(make([]byte, 31)), "31 bytes, want 32"},
		{"long", "ed25519:" + base64.RawURLEncoding.EncodeToString(make([]byte, 33)), "33 bytes, want 32"},
		{"private length", "ed25519:" + base64.RawURLEncoding.EncodeToString(make([]byte, 64)), "64 bytes, want 32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodePublicKey(tt.in)
			if err == nil {
				t.Fatalf("DecodePublicKey(%q) succeeded", tt.in)
			}
			if !errors.Is(err, ErrInvalidKey) {
				t.Errorf("error %v does not wrap ErrInvalidKey", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}
