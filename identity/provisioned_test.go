package identity_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/identity"
)

// TestLoadProvisioned: a key mounted from a Secret with fsGroup is 0440;
// LoadProvisioned accepts group read but not world read, Load neither.
func TestLoadProvisioned(t *testing.T) {
	dir := t.TempDir()
	k, _ := identity.Generate()
	id := outpost.Identity{Name: "EDGE_LHR_0", Location: "LHR", Farm: "lhr", Role: outpost.RoleEdge, Code: "43ax"}
	if err := identity.Write(dir, id, k, false); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, identity.KeyFile)
	for _, tc := range []struct {
		mode             os.FileMode
		load, provisions bool
	}{{0o600, true, true}, {0o400, true, true}, {0o440, false, true}, {0o444, false, false}, {0o640, false, true}, {0o604, false, false}} {
		if err := os.Chmod(key, tc.mode); err != nil {
			t.Fatal(err)
		}
		_, _, err := identity.Load(dir)
		if got := err == nil; got != tc.load || (err != nil && !errors.Is(err, identity.ErrInsecureKeyFile)) {
			t.Errorf("Load with mode %04o: err = %v, want ok=%v", tc.mode, err, tc.load)
		}
		got, gk, err := identity.LoadProvisioned(dir)
		if ok := err == nil; ok != tc.provisions {
			t.Errorf("LoadProvisioned with mode %04o: err = %v, want ok=%v", tc.mode, err, tc.provisions)
		}
		if err == nil && (got != id || gk.Fingerprint() != k.Fingerprint()) {
			t.Errorf("LoadProvisioned returned %v %s", got, gk.Fingerprint())
		}
	}
}
