// Package peer is the authenticated node-to-node transport: HTTP/2 over
// mutual TLS with self-signed ed25519 certificates, each side pinning the
// other's key against the trust list (no CA, no plaintext fallback), and the
// push/pull policy enforced by the receiver on every request and checked by
// the initiator before it dials.
package peer

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/outpost-edge/outpost/identity"
)

// Certificate returns a self-signed TLS certificate for the node's key. Its
// subject names the node; what peers trust is the key, not the name.
func Certificate(key *identity.Key, name string) (tls.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name, Organization: []string{"outpost"}},
		NotBefore:    now.Add(-24 * time.Hour),
		NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{name},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key.Private())
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key.Private(), Leaf: leaf}, nil
}

// ErrNoKey reports a peer that presented no usable ed25519 certificate.
var ErrNoKey = errors.New("peer presented no ed25519 certificate")

// certKey returns the ed25519 key of the first certificate in raw.
func certKey(raw [][]byte) (ed25519.PublicKey, error) {
	if len(raw) == 0 {
		return nil, ErrNoKey
	}
	cert, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoKey, err)
	}
	pub, ok := cert.PublicKey.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: key is %T", ErrNoKey, cert.PublicKey)
	}
	// The certificate must be signed by its own key (self-signed), so the
	// peer proves it holds the private key in the handshake and the
	// certificate cannot be a copy of someone else's with a swapped key.
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		return nil, fmt.Errorf("%w: not self-signed by its key: %v", ErrNoKey, err)
	}
	return pub, nil
}

// PeerKey returns the key a TLS connection's peer authenticated with.
func PeerKey(cs *tls.ConnectionState) (ed25519.PublicKey, error) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return nil, ErrNoKey
	}
	pub, ok := cs.PeerCertificates[0].PublicKey.(ed25519.PublicKey)
	if !ok {
		return nil, ErrNoKey
	}
	return pub, nil
}
