package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// TestRun_Help: help never recurses (help help, -h -h, help --help used to
// overflow the stack or hang), goes to stdout with exit 0, and a command's
// help has its summary, an example and its flags.
func TestRun_Help(t *testing.T) {
	for _, args := range [][]string{{"help", "help"}, {"-h", "-h"}, {"help", "--help"}, {"--help", "help"}, {"help", "-h"}, {"-h"}} {
		done := make(chan struct{})
		var code int
		var out string
		go func() {
			defer close(done)
			code, out, _ = runCmd(t, args...)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%q: hangs", args)
		}
		if code != 0 || !strings.Contains(out, "Commands:") {
			t.Errorf("%q: exit %d, stdout %q", args, code, out)
		}
	}
	for _, c := range commands() {
		if c.run == nil {
			continue
		}
		for _, args := range [][]string{{"help", c.name}, {c.name, "-h"}, {c.name, "--help"}} {
			code, out, errs := runCmd(t, args...)
			if code != 0 || errs != "" {
				t.Errorf("%q: exit %d, stderr %q", args, code, errs)
			}
			if !strings.Contains(out, c.summary) || !strings.Contains(out, "Example") || c.example == "" || !strings.Contains(out, c.example) {
				t.Errorf("%q: want summary and example on stdout, got %q", args, out)
			}
		}
	}
	if code, _, errs := runCmd(t, "help", "nope"); code != 2 || !strings.Contains(errs, "nope") {
		t.Errorf("help nope: exit %d %q", code, errs)
	}
	if code, out, _ := runCmd(t, "--version"); code != 0 || !strings.HasPrefix(out, "outpost ") {
		t.Errorf("--version: exit %d %q", code, out)
	}
	// A backquoted word in a usage string becomes the flag's type name.
	if _, out, _ := runCmd(t, "help", "bench"); strings.Contains(out, "-suite up") {
		t.Errorf("help bench shows -suite up: %q", out)
	}
}

// TestRun_NegativeFlags: a negative size, count or duration is refused with
// a message naming the flag (serve --max-body -5 used to start with the
// default), from the command line and from the environment.
func TestRun_NegativeFlags(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--data", t.TempDir(), "--max-body", "-5"},
		{"serve", "--data", t.TempDir(), "--statement-timeout", "-1s"},
		{"probe", "--timeout", "-3s"},
	} {
		code, _, errs := runCmd(t, args...)
		if code != 1 || !strings.Contains(errs, "must not be negative") || !strings.Contains(errs, args[len(args)-2]) {
			t.Errorf("%q: exit %d %q", args, code, errs)
		}
	}
	t.Setenv("OUTPOST_MAX_BODY", "-5")
	if code, _, errs := runCmd(t, "serve", "--data", t.TempDir()); code != 1 || !strings.Contains(errs, "--max-body -5: must not be negative") {
		t.Errorf("OUTPOST_MAX_BODY=-5: exit %d %q", code, errs)
	}
}
