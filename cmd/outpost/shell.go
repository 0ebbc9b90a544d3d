package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/chzyer/readline"

	"github.com/outpost-edge/outpost/client"
)

// historyFile is the shell's history, in the user's home directory.
const historyFile = ".outpost_history"

// historyLimit bounds the history file (entries).
const historyLimit = 1000

// runShellCmd runs "outpost shell": an SQL prompt on a node's app API. On a
// terminal it has line editing and history (~/.outpost_history); from a
// pipe or file it runs the statements in order with no prompt and fails on
// the first error (or, with --continue, after all of them).
func runShellCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("shell", stderr)
	target := fs.String("target", "http://127.0.0.1:7700", "API URL of the node")
	token := fs.String("api-token", "", "bearer token of the node")
	keepGoing := fs.Bool("continue", false, "from a pipe or file: report a failed statement and go on (exit 1 at the end) instead of stopping")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	c, err := client.Open(*target, client.Options{Token: *token})
	if err != nil {
		return err
	}
	if !readline.IsTerminal(int(os.Stdin.Fd())) {
		return runShell(ctx, c, *token, *keepGoing, os.Stdin, stdout, stderr)
	}
	return runInteractive(ctx, c, *token, stdout, stderr)
}

// runInteractive is the terminal shell: readline for editing and history,
// Ctrl-C to drop the line or stop the running request, Ctrl-D to leave.
func runInteractive(ctx context.Context, c *client.Client, token string, stdout, stderr io.Writer) error {
	cfg := &readline.Config{
		Prompt:                 promptMain,
		HistoryLimit:           historyLimit,
		DisableAutoSaveHistory: true,
		HistorySearchFold:      true,
		InterruptPrompt:        "^C",
		Stdout:                 stdout,
		Stderr:                 stderr,
	}
	if home, err := os.UserHomeDir(); err == nil {
		cfg.HistoryFile = filepath.Join(home, historyFile)
		// readline would create it world-readable; statements may hold
		// secrets.
		if f, err := os.OpenFile(cfg.HistoryFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600); err == nil {
			f.Close()
		}
	}
	rl, err := readline.NewEx(cfg)
	if err != nil {
		return err
	}
	defer rl.Close()

	s := &shell{c: c, target: c.URL(), token: token, hc: http.DefaultClient, out: stdout, errw: stderr, mode: modeTable, interactive: true}
	s.requestContext = func(ctx context.Context) (context.Context, context.CancelFunc) {
		return signal.NotifyContext(ctx, os.Interrupt)
	}
	fmt.Fprintf(stdout, "outpost shell on %s; .help for help, Ctrl-D to leave\n", c.URL())
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	if err := c.Ping(pctx); err != nil {
		fmt.Fprintf(stderr, "warning: %s does not answer: %s\n", c.URL(), errorText(err))
	}
	cancel()
	return s.loop(ctx, termSource{rl})
}

// termSource reads lines from the terminal through readline.
type termSource struct{ rl *readline.Instance }

func (t termSource) ReadLine(prompt string) (string, error) {
	t.rl.SetPrompt(prompt)
	line, err := t.rl.Readline()
	if errors.Is(err, readline.ErrInterrupt) {
		return "", errInterrupted
	}
	return line, err
}

func (t termSource) SaveHistory(entry string) { _ = t.rl.SaveHistory(entry) }
