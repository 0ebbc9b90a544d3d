package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
)

// cancelOn cancels when text has been written to it.
type cancelOn struct {
	buf    bytes.Buffer
	text   string
	cancel func()
}

func (w *cancelOn) Write(p []byte) (int, error) {
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.text) {
		w.cancel()
	}
	return len(p), nil
}

// TestUp_RemovesItsTempDir: up without --dir leaves no temp dir behind.
func TestUp_RemovesItsTempDir(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a fleet")
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &cancelOn{text: "Ctrl-C", cancel: cancel}
	var errb bytes.Buffer
	if err := runUp(ctx, []string{"--base-port", "0"}, out, &errb); err != nil {
		t.Fatalf("up: %v\n%s", err, errb.String())
	}
	if !strings.Contains(out.buf.String(), "fleet directory") {
		t.Fatalf("up did not start: %s", out.buf.String())
	}
	// Every node serves the demo site on a public listener, printed too.
	if !strings.Contains(out.buf.String(), "HTTP") || strings.Count(out.buf.String(), "  http://127.0.0.1:") < 12 {
		t.Fatalf("up printed no public listeners: %s", out.buf.String())
	}
	left, _ := os.ReadDir(tmp)
	if len(left) != 0 {
		t.Fatalf("up left %d entries in TMPDIR (%s)", len(left), left[0].Name())
	}
}
