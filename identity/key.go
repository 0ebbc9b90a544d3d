// Package identity manages who a node is: its ed25519 key pair, the
// identity.json and node.key files in its data directory, and the one-line
// public identity a peer pastes into its trust list (DESIGN.md section 2).
package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// KeyPrefix starts the text form of a public key and of a fingerprint.
const KeyPrefix = "ed25519:"

// ErrInvalidKey reports a malformed public key text, or a key file that does
// not hold a PKCS#8 ed25519 private key.
var ErrInvalidKey = errors.New("invalid key")

// Key is a node's ed25519 key pair. The zero value is not usable; get one
// from Generate or Load.
type Key struct {
	priv ed25519.PrivateKey
}

// Generate returns a fresh key pair from crypto/rand.
func Generate() (*Key, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ed25519 key: %w", err)
	}
	return &Key{priv: priv}, nil
}

// Public returns the public half of the key pair.
func (k *Key) Public() ed25519.PublicKey {
	return k.priv.Public().(ed25519.PublicKey)
}

// Private returns the private key, e.g. to build the node's TLS certificate.
// It implements crypto.Signer. Callers must not modify it.
func (k *Key) Private() ed25519.PrivateKey {
	return k.priv
}

// Fingerprint returns the short, loggable fingerprint of the public key;
// see the package function Fingerprint.
func (k *Key) Fingerprint() string {
	return Fingerprint(k.Public())
}

// String returns the fingerprint, so that printing a Key never prints the
// private key.
func (k *Key) String() string {
	return k.Fingerprint()
}

// GoString is String for %#v, for the same reason.
func (k *Key) GoString() string {
	return "identity.Key(" + k.Fingerprint() + ")"
}

// Fingerprint returns "ed25519:" followed by the first 16 bytes of the
// SHA-256 of pub in lowercase hex: short enough for logs, long enough to
// tell keys apart. It is not the text form of the key (see EncodePublicKey).
func Fingerprint(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return KeyPrefix + hex.EncodeToString(sum[:16])
}

// EncodePublicKey returns the text form of pub used in trust lists:
// "ed25519:" followed by the 32 key bytes in unpadded base64url.
func EncodePublicKey(pub ed25519.PublicKey) string {
	return KeyPrefix + base64.RawURLEncoding.EncodeToString(pub)
}

// DecodePublicKey parses the text form written by EncodePublicKey. Errors
// wrap ErrInvalidKey and say whether the prefix, the base64 or the length is
// wrong.
func DecodePublicKey(s string) (ed25519.PublicKey, error) {
	rest, ok := strings.CutPrefix(s, KeyPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: public key %q must start with %q", ErrInvalidKey, s, KeyPrefix)
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("%w: public key %q is not unpadded base64url after %q: %v", ErrInvalidKey, s, KeyPrefix, err)
	}
	if len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: public key %q is %d bytes, want %d", ErrInvalidKey, s, len(b), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}
