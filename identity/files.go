package identity

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/outpost-edge/outpost"
)

// File names inside a node's data directory.
const (
	IdentityFile = "identity.json" // the outpost.Identity as JSON, mode 0644
	KeyFile      = "node.key"      // PKCS#8 PEM ed25519 private key, mode 0600
)

// pemType is the PEM block type of a PKCS#8 private key.
const pemType = "PRIVATE KEY"

// maxFileSize bounds what Load reads from either file.
const maxFileSize = 64 << 10

var (
	// ErrExists reports that Write would replace an existing key file.
	ErrExists = errors.New("identity already exists")
	// ErrNoIdentity reports a data directory without identity.json or node.key.
	ErrNoIdentity = errors.New("no identity")
	// ErrInsecureKeyFile reports a key file readable by group or others.
	ErrInsecureKeyFile = errors.New("insecure key file")
)

// Write stores id and key in dir as identity.json (0644) and node.key
// (0600), each written atomically. It validates id first, creates dir with
// mode 0700 if it is missing, and refuses to replace an existing node.key
// unless force is set (the error then wraps ErrExists).
func Write(dir string, id outpost.Identity, key *Key, force bool) error {
	if err := id.Validate(); err != nil {
		return fmt.Errorf("write identity: %w", err)
	}
	if key == nil || len(key.priv) != ed25519.PrivateKeySize {
		return fmt.Errorf("write identity: %w: no ed25519 key", ErrInvalidKey)
	}
	keyPath := filepath.Join(dir, KeyFile)
	if !force {
		_, err := os.Lstat(keyPath)
		if err == nil {
			return fmt.Errorf("write identity: %w: %s already holds a key; use --force to replace it", ErrExists, keyPath)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("write identity: %w", err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write identity: %w", err)
	}

	js, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return fmt.Errorf("write identity: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key.priv)
	if err != nil {
		return fmt.Errorf("write identity: encode key: %w", err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: pemType, Bytes: der})

	// The key first: an identity.json without its key is caught by Load.
	if err := writeAtomic(dir, KeyFile, pemBytes, 0o600); err != nil {
		return fmt.Errorf("write identity: %w", err)
	}
	if err := writeAtomic(dir, IdentityFile, append(js, '\n'), 0o644); err != nil {
		return fmt.Errorf("write identity: %w", err)
	}
	return nil
}

// Load reads the identity and key that Write stored in dir. Errors wrap
// ErrNoIdentity when either file is missing, outpost.ErrInvalidIdentity when
// identity.json does not validate, ErrInsecureKeyFile when node.key is
// readable by group or others, and ErrInvalidKey when node.key is not a
// PKCS#8 PEM ed25519 private key.
func Load(dir string) (outpost.Identity, *Key, error) {
	return load(dir, 0o077)
}

// LoadProvisioned is Load for identities provisioned by an orchestrator (a
// mounted Kubernetes Secret), whose key file the kubelet makes readable by
// the pod's group (fsGroup): group read is accepted, others still refused.
// The node copies such an identity into its data directory with mode 0600.
func LoadProvisioned(dir string) (outpost.Identity, *Key, error) {
	return load(dir, 0o007)
}

func load(dir string, forbidden fs.FileMode) (outpost.Identity, *Key, error) {
	id, err := loadIdentity(dir)
	if err != nil {
		return outpost.Identity{}, nil, fmt.Errorf("load identity: %w", err)
	}
	key, err := loadKey(dir, forbidden)
	if err != nil {
		return outpost.Identity{}, nil, fmt.Errorf("load identity: %w", err)
	}
	return id, key, nil
}

// noIdentity is the error for a missing file in dir.
func noIdentity(dir, file string) error {
	return fmt.Errorf("%w in %s; run `outpost keygen --data %s ...` first (%s is missing)",
		ErrNoIdentity, dir, dir, file)
}

func loadIdentity(dir string) (outpost.Identity, error) {
	path := filepath.Join(dir, IdentityFile)
	b, err := readLimited(path)
	if errors.Is(err, fs.ErrNotExist) {
		return outpost.Identity{}, noIdentity(dir, IdentityFile)
	}
	if err != nil {
		return outpost.Identity{}, err
	}
	var id outpost.Identity
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&id); err != nil {
		return outpost.Identity{}, fmt.Errorf("%s: %w", path, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return outpost.Identity{}, fmt.Errorf("%s: unexpected data after the JSON object", path)
	}
	if err := id.Validate(); err != nil {
		return outpost.Identity{}, fmt.Errorf("%s: %w", path, err)
	}
	return id, nil
}

func loadKey(dir string, forbidden fs.FileMode) (*Key, error) {
	path := filepath.Join(dir, KeyFile)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, noIdentity(dir, KeyFile)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrInvalidKey, path)
	}
	if perm := fi.Mode().Perm(); perm&forbidden != 0 && runtime.GOOS != "windows" {
		who := "its owner only"
		if forbidden == 0o007 {
			who = "its owner and group only"
		}
		return nil, fmt.Errorf("%w: %s has mode %04o but must be readable by %s; run `chmod 600 %s`",
			ErrInsecureKeyFile, path, perm, who, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrInvalidKey, path, maxFileSize)
	}
	priv, err := parseKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &Key{priv: priv}, nil
}

// parseKeyPEM decodes a single PKCS#8 PEM block holding an ed25519 key.
func parseKeyPEM(b []byte) (ed25519.PrivateKey, error) {
	block, rest := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block found", ErrInvalidKey)
	}
	if block.Type != pemType {
		return nil, fmt.Errorf("%w: PEM block is %q, want %q (PKCS#8)", ErrInvalidKey, block.Type, pemType)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: unexpected data after the PEM block", ErrInvalidKey)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: not a PKCS#8 private key: %v", ErrInvalidKey, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: key is %T, want ed25519", ErrInvalidKey, k)
	}
	return priv, nil
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxFileSize)
	}
	return b, nil
}

// writeAtomic replaces dir/name with data: it writes a temporary file in
// dir, sets perm, fsyncs it, renames it over name and fsyncs dir.
func writeAtomic(dir, name string, data []byte, perm fs.FileMode) (err error) {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	return syncDir(dir)
}

// syncDir makes a rename in dir durable. Windows cannot fsync a directory.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
