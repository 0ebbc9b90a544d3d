package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost"
)

var (
	edgeID   = outpost.Identity{Name: "EDGE01", Location: "LHR", Farm: "lhr", Role: outpost.RoleEdge, Code: "43ax"}
	masterID = outpost.Identity{Name: "MASTER1", Location: "FRA", Role: outpost.RoleMaster, Code: "01mm"}
)

// mustWrite writes a fresh identity to a new data directory and returns it.
func mustWrite(t *testing.T, id outpost.Identity) (string, *Key) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	k := mustGenerate(t)
	if err := Write(dir, id, k, false); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return dir, k
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestWriteLoadRoundTrip(t *testing.T) {
	for _, id := range []outpost.Identity{edgeID, masterID,
		{Name: "NODE_7", Location: "AMS2", Role: outpost.RoleNode, Code: "99zz"}} {
		t.Run(id.Name, func(t *testing.T) {
			dir, k := mustWrite(t, id)
			gotID, gotKey, err := Load(dir)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if gotID != id {
				t.Errorf("identity = %+v, want %+v", gotID, id)
			}
			if !gotKey.Private().Equal(k.Private()) {
				t.Error("loaded key differs from written key")
			}
			if gotKey.Fingerprint() != k.Fingerprint() {
				t.Error("fingerprint changed")
			}
		})
	}
}

func TestWriteModes(t *testing.T) {
	dir, _ := mustWrite(t, edgeID)
	if m := mode(t, dir); m != 0o700 {
		t.Errorf("dir mode %04o, want 0700", m)
	}
	if m := mode(t, filepath.Join(dir, KeyFile)); m != 0o600 {
		t.Errorf("%s mode %04o, want 0600", KeyFile, m)
	}
	if m := mode(t, filepath.Join(dir, IdentityFile)); m != 0o644 {
		t.Errorf("%s mode %04o, want 0644", IdentityFile, m)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("data dir holds %v, want only the two files (no temp files left)", names)
	}
	b, err := os.ReadFile(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "-----BEGIN PRIVATE KEY-----\n") {
		t.Errorf("%s is not PKCS#8 PEM:\n%s", KeyFile, b)
	}
}

func TestWriteExistingDir(t *testing.T) {
	dir := t.TempDir() // exists already; Write must not fail or change its mode
	before := mode(t, dir)
	if err := Write(dir, edgeID, mustGenerate(t), false); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if after := mode(t, dir); after != before {
		t.Errorf("dir mode changed from %04o to %04o", before, after)
	}
}

func TestWriteOverwrite(t *testing.T) {
	dir, first := mustWrite(t, edgeID)
	second := mustGenerate(t)

	err := Write(dir, masterID, second, false)
	if !errors.Is(err, ErrExists) {
		t.Fatalf("Write over existing key: err = %v, want ErrExists", err)
	}
	if !strings.Contains(err.Error(), "use --force to replace it") {
		t.Errorf("error %q does not mention --force", err)
	}
	id, k, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if id != edgeID || !k.Private().Equal(first.Private()) {
		t.Fatal("refused Write still changed the files")
	}

	if err := Write(dir, masterID, second, true); err != nil {
		t.Fatalf("Write with force: %v", err)
	}
	id, k, err = Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if id != masterID || !k.Private().Equal(second.Private()) {
		t.Fatal("forced Write did not replace the identity and key")
	}
	if m := mode(t, filepath.Join(dir, KeyFile)); m != 0o600 {
		t.Errorf("replaced key mode %04o, want 0600", m)
	}
}

func TestWriteInvalid(t *testing.T) {
	k := mustGenerate(t)
	tests := []struct {
		name string
		id   outpost.Identity
		key  *Key
		is   error
		want string
	}{
		{"edge without farm", outpost.Identity{Name: "EDGE01", Location: "LHR", Role: outpost.RoleEdge, Code: "43ax"}, k, outpost.ErrInvalidIdentity, "farm"},
		{"bad code", outpost.Identity{Name: "EDGE01", Location: "LHR", Farm: "lhr", Role: outpost.RoleEdge, Code: "4a3x"}, k, outpost.ErrInvalidIdentity, "code"},
		{"bad role", outpost.Identity{Name: "EDGE01", Location: "LHR", Farm: "lhr", Role: "boss", Code: "43ax"}, k, outpost.ErrInvalidIdentity, "role"},
		{"nil key", edgeID, nil, ErrInvalidKey, "no ed25519 key"},
		{"zero key", edgeID, &Key{}, ErrInvalidKey, "no ed25519 key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			err := Write(dir, tt.id, tt.key, false)
			if !errors.Is(err, tt.is) {
				t.Fatalf("err = %v, want %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("failed Write created %s", dir)
			}
		})
	}
}

func TestLoadMissing(t *testing.T) {
	tests := []struct {
		name   string
		remove []string
		want   string
	}{
		{"empty dir", []string{IdentityFile, KeyFile}, IdentityFile},
		{"no identity.json", []string{IdentityFile}, IdentityFile},
		{"no node.key", []string{KeyFile}, KeyFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, _ := mustWrite(t, edgeID)
			for _, f := range tt.remove {
				if err := os.Remove(filepath.Join(dir, f)); err != nil {
					t.Fatal(err)
				}
			}
			_, _, err := Load(dir)
			if !errors.Is(err, ErrNoIdentity) {
				t.Fatalf("err = %v, want ErrNoIdentity", err)
			}
			wantMsg := "no identity in " + dir + "; run `outpost keygen --data " + dir + " ...` first"
			if !strings.Contains(err.Error(), wantMsg) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q and %q", err, wantMsg, tt.want)
			}
		})
	}
	t.Run("no dir", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "nope")
		if _, _, err := Load(dir); !errors.Is(err, ErrNoIdentity) {
			t.Fatalf("err = %v, want ErrNoIdentity", err)
		}
	})
}

func TestLoadKeyPerms(t *testing.T) {
	for _, m := range []os.FileMode{0o640, 0o604, 0o644, 0o660, 0o666, 0o700, 0o400, 0o600} {
		t.Run(m.String(), func(t *testing.T) {
			dir, _ := mustWrite(t, edgeID)
			path := filepath.Join(dir, KeyFile)
			if err := os.Chmod(path, m); err != nil {
				t.Fatal(err)
			}
			_, _, err := Load(dir)
			if m&0o077 == 0 {
				if err != nil {
					t.Fatalf("mode %04o: %v", m, err)
				}
				return
			}
			if !errors.Is(err, ErrInsecureKeyFile) {
				t.Fatalf("mode %04o: err = %v, want ErrInsecureKeyFile", m, err)
			}
			if !strings.Contains(err.Error(), "chmod 600 "+path) {
				t.Errorf("error %q does not say to chmod 600", err)
			}
		})
	}
}

// pkcs8PEM returns key marshalled as a PKCS#8 PEM block.
func pkcs8PEM(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func TestLoadBadKeyFile(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	good := pkcs8PEM(t, mustGenerate(t).Private())
	block, _ := pem.Decode(good)
	ecSEC1, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "no PEM block"},
		{"not PEM", []byte("hello\n"), "no PEM block"},
		{"truncated PEM", good[:len(good)/2], "no PEM block"},
		{"wrong block type", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecSEC1}), `"EC PRIVATE KEY"`},
		{"garbage DER", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("not der")}), "not a PKCS#8 private key"},
		{"trailing data", append(append([]byte{}, good...), "extra"...), "after the PEM block"},
		{"two blocks", append(append([]byte{}, good...), good...), "after the PEM block"},
		{"ecdsa", pkcs8PEM(t, ec), "want ed25519"},
		{"rsa", pkcs8PEM(t, rsaKey), "want ed25519"},
		{"corrupt body", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: block.Bytes[:len(block.Bytes)-3]}), "not a PKCS#8 private key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, _ := mustWrite(t, edgeID)
			if err := os.WriteFile(filepath.Join(dir, KeyFile), tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			_, k, err := Load(dir)
			if err == nil {
				t.Fatalf("Load accepted the key file (%v)", k)
			}
			if !errors.Is(err, ErrInvalidKey) {
				t.Errorf("err = %v, want ErrInvalidKey", err)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "load identity: ") {
				t.Errorf("error %q, want it to start with \"load identity: \" and contain %q", err, tt.want)
			}
		})
	}
}

func TestLoadKeyNotRegular(t *testing.T) {
	dir, _ := mustWrite(t, edgeID)
	path := filepath.Join(dir, KeyFile)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Load(dir); !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("err = %v, want not a regular file", err)
	}
}

func TestLoadBadIdentityFile(t *testing.T) {
	tests := []struct {
		name string
		json string
		is   error
		want string
	}{
		{"edge without farm", `{"name":"EDGE01","location":"LHR","farm":"","role":"edge","code":"43ax"}`, outpost.ErrInvalidIdentity, "farm"},
		{"bad code", `{"name":"EDGE01","location":"LHR","farm":"lhr","role":"edge","code":"4a3x"}`, outpost.ErrInvalidIdentity, "code"},
		{"upper role", `{"name":"EDGE01","location":"LHR","farm":"lhr","role":"EDGE","code":"43ax"}`, outpost.ErrInvalidIdentity, "role"},
		{"unknown field", `{"name":"EDGE01","location":"LHR","farm":"lhr","role":"edge","code":"43ax","colour":"red"}`, nil, "colour"},
		{"not JSON", `name=EDGE01`, nil, "invalid character"},
		{"trailing data", `{"name":"EDGE01","location":"LHR","farm":"lhr","role":"edge","code":"43ax"} {}`, nil, "after the JSON object"},
		{"empty", ``, nil, "EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, _ := mustWrite(t, edgeID)
			path := filepath.Join(dir, IdentityFile)
			if err := os.WriteFile(path, []byte(tt.json), 0o644); err != nil {
				t.Fatal(err)
			}
			_, _, err := Load(dir)
			if err == nil {
				t.Fatal("Load accepted the identity file")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("err = %v, want %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q, want it to name %s and contain %q", err, path, tt.want)
			}
		})
	}
}
