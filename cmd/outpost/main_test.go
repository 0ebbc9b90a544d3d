package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/identity"
)

func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestRun_KeygenAndID(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	args := []string{"keygen", "--data", dir, "--name", "EDGE01", "--location", "LHR", "--farm", "lhr", "--role", "edge", "--code", "43ax"}
	if code, out, errs := runCmd(t, args...); code != 0 || !strings.Contains(out, "name=EDGE01") {
		t.Fatalf("keygen: %d %q %q", code, out, errs)
	}
	fi, err := os.Stat(filepath.Join(dir, identity.KeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v", err, fi.Mode())
	}
	_, key1, _ := identity.Load(dir)
	if code, _, errs := runCmd(t, args...); code != 1 || !strings.Contains(errs, "--force") {
		t.Fatalf("second keygen: exit %d %q, want a refusal naming --force", code, errs)
	}
	if code, _, errs := runCmd(t, append(args, "--force")...); code != 0 {
		t.Fatalf("keygen --force: %d %q", code, errs)
	}
	_, key2, _ := identity.Load(dir)
	if key1.Fingerprint() == key2.Fingerprint() {
		t.Fatal("--force did not replace the key")
	}
	code, out, _ := runCmd(t, "id", "--data", dir, "--peer-addr", "10.0.0.1:7701")
	p, err := identity.ParseLine(strings.TrimSpace(out))
	if code != 0 || err != nil || p.Name != "EDGE01" || !p.Key.Equal(key2.Public()) || p.Addr != "10.0.0.1:7701" {
		t.Fatalf("id: %d %q %v", code, out, err)
	}
}

func TestRun_Errors(t *testing.T) {
	if code, _, _ := runCmd(t, "nope"); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
	if code, _, errs := runCmd(t, "keygen", "--data", t.TempDir(), "--name", "E1", "--location", "LHR", "--role", "edge", "--code", "43ax"); code != 1 || !strings.Contains(errs, "farm") {
		t.Errorf("edge without farm: exit %d %q", code, errs)
	}
	if code, _, errs := runCmd(t, "keygen", "--data", t.TempDir(), "--name", "E1", "--location", "LHR", "--farm", "x", "--role", "edge", "--code", "4a3x"); code != 1 || !strings.Contains(errs, "NNLL") {
		t.Errorf("bad code: exit %d %q", code, errs)
	}
	if code, out, _ := runCmd(t, "version"); code != 0 || !strings.HasPrefix(out, "outpost ") {
		t.Errorf("version: %d %q", code, out)
	}
	if code, out, _ := runCmd(t, "help"); code != 0 || !strings.Contains(out, "serve") {
		t.Errorf("help: %d %q", code, out)
	}
}

// TestParseFlags_Env: every flag falls back to OUTPOST_<FLAG>; the command line wins.
func TestParseFlags_Env(t *testing.T) {
	t.Setenv("OUTPOST_API_TOKEN", "from-env")
	t.Setenv("OUTPOST_MAX_BODY", "123")
	fs := newFlagSet("t", os.Stderr)
	tok := fs.String("api-token", "", "")
	mb := fs.Int64("max-body", 0, "")
	if err := parseFlags(fs, []string{"--max-body", "7"}); err != nil {
		t.Fatal(err)
	}
	if *tok != "from-env" || *mb != 7 {
		t.Fatalf("api-token %q max-body %d, want from-env and 7", *tok, *mb)
	}
	t.Setenv("OUTPOST_MAX_BODY", "lots")
	fs = newFlagSet("t", os.Stderr)
	fs.Int64("max-body", 0, "")
	if err := parseFlags(fs, nil); err == nil || !strings.Contains(err.Error(), "OUTPOST_MAX_BODY") {
		t.Fatalf("bad env value: %v", err)
	}
}
