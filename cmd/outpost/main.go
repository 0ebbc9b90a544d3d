// Command outpost is the Outpost node binary: serve, keygen, id, bench,
// version and help. Each subcommand lives in its own file.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"
)

// command is one subcommand: its name, a one-line summary, an example shown
// by its help, and the function that runs it.
type command struct {
	name, summary, example string
	run                    func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"up", "start a demo fleet on loopback: a master, a node, two farms of two edges", "outpost up --dir ./fleet", runUp},
		{"serve", "run a node: outpost serve --data DIR --schema FILE", "outpost serve --data ./data --schema schema.sql --name EDGE01 --location LHR --farm lhr --role edge --code 43ax", runServe},
		{"status", "show a node's peers, cursors, lag and refusals; --fleet: every node it knows", "outpost status --target 127.0.0.1:7700 [--fleet]", runStatus},
		{"keygen", "create this node's key and identity in --data DIR", "outpost keygen --data ./data --name EDGE01 --location LHR --farm lhr --role edge --code 43ax", runKeygen},
		{"init-fleet", "lay out the demo fleet for containers: keys, trust list (host = lower-case name), schema", "outpost init-fleet --dir ./fleet", runInitFleet},
		{"init-k8s", "write the Kubernetes Secret (identities) and ConfigMap (trust list, schema) for deploy/k8s", "outpost init-k8s --dir deploy/k8s/generated --schema schema.sql", runInitK8s},
		{"id", "print this node's public identity line for peers' trust lists", "outpost id --data ./data --peer-addr 10.0.0.1:7701 >> fleet.trust", runID},
		{"bench", "benchmark a running node's API and the data disk's fsync rate", "outpost bench --suite api --duration 10s", runBench},
		{"shell", "an SQL prompt on a node's API (history, .tables, .schema, .mode); or run SQL from a pipe", "outpost shell --target http://127.0.0.1:7700   (or: outpost shell < seed.sql; .help at the prompt)", runShellCmd},
		{"backup", "download a consistent backup of a running node: outpost backup --target URL --to FILE", "outpost backup --target http://127.0.0.1:7700 --to edge01.db", runBackup},
		{"restore", "install a backup in a stopped node's data dir (it takes a new incarnation): outpost restore --data DIR --from FILE", "outpost restore --data ./data --from edge01.db", runRestore},
		{"probe", "GET a URL and fail unless it answers 200 (container health checks)", "outpost probe --url http://127.0.0.1:7700/readyz", runProbe},
		{"version", "print the version (also: outpost --version)", "outpost version", runVersion},
		{"help", "show help for a command", "outpost help serve", nil},
	}
}

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// errUsage marks an error already reported with usage text.
var errUsage = errors.New("usage")

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	switch arg {
	case "help", "-h", "--help", "-help":
		return true
	}
	return false
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stdout)
		return 0
	}
	if args[0] == "--version" || args[0] == "-version" {
		args = []string{"version"}
	}
	if isHelp(args[0]) {
		// "help", "help help", "-h -h": the command list. "help CMD": its help.
		// Never recurse into another help request.
		if len(args) == 1 || isHelp(args[1]) {
			usage(stdout)
			return 0
		}
		c, ok := findCommand(args[1])
		if !ok {
			fmt.Fprintf(stderr, "outpost help: unknown command %q\n\n", args[1])
			usage(stderr)
			return 2
		}
		args = []string{c.name, "-h"}
	}
	c, ok := findCommand(args[0])
	if !ok {
		fmt.Fprintf(stderr, "outpost: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	err := c.run(ctx, args[1:], stdout, stderr)
	var help *helpText
	switch {
	case err == nil:
		return 0
	case errors.As(err, &help):
		// Help asked for goes to stdout and is not an error.
		fmt.Fprint(stdout, help.text)
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintf(stderr, "outpost %s: %v\n", c.name, err)
		return 1
	}
}

// findCommand returns the runnable command called name.
func findCommand(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name && c.run != nil {
			return c, true
		}
	}
	return command{}, false
}

// helpText is returned by parseFlags for -h/--help: the command's help,
// which run prints to stdout.
type helpText struct{ text string }

func (h *helpText) Error() string { return "help requested" }

func (h *helpText) Unwrap() error { return flag.ErrHelp }

func usage(w io.Writer) {
	fmt.Fprintln(w, "Outpost: a node of a decentralised edge data platform.")
	fmt.Fprintln(w, "\nUsage: outpost <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nEvery flag can also be set as OUTPOST_<FLAG> in the environment (e.g. --api-token as OUTPOST_API_TOKEN).")
	fmt.Fprintln(w, "Run 'outpost help <command>' (or 'outpost <command> -h') for its flags; 'outpost --version' for the version.")
}

// newFlagSet returns a FlagSet for the subcommand name. Parse errors go to
// stderr; its usage (-h) starts with the command's summary and example.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("outpost "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { commandUsage(fs, name) }
	if flagSetHook != nil {
		flagSetHook(name, fs)
	}
	return fs
}

// flagSetHook, when set (by tests), sees every FlagSet a subcommand makes.
var flagSetHook func(name string, fs *flag.FlagSet)

// commandUsage writes the help of subcommand name: summary, example, flags.
func commandUsage(fs *flag.FlagSet, name string) {
	w := fs.Output()
	c, _ := findCommand(name)
	fmt.Fprintf(w, "outpost %s: %s\n\nUsage: outpost %s [flags]\n", name, c.summary, name)
	if c.example != "" {
		fmt.Fprintf(w, "\nExample:\n  %s\n", c.example)
	}
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintln(w, "\nFlags (each also settable as OUTPOST_<FLAG>, e.g. --api-token as OUTPOST_API_TOKEN):")
		fs.PrintDefaults()
	}
}

// parseFlags parses args, then fills every flag not given on the command line
// from OUTPOST_<NAME> (upper case, '-' as '_').
//
// -h/--help returns a *helpText holding the command's help (run prints it to
// stdout); a parse error is reported with the usage on the flag set's output.
func parseFlags(fs *flag.FlagSet, args []string) error {
	out := fs.Output()
	var buf bytes.Buffer
	fs.SetOutput(&buf)
	perr := fs.Parse(args)
	fs.SetOutput(out)
	if err := perr; err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return &helpText{text: buf.String()}
		}
		out.Write(buf.Bytes()) //nolint:errcheck // best effort
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		env := "OUTPOST_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if serr := f.Value.Set(v); serr != nil {
				err = fmt.Errorf("%s=%q: %v", env, v, serr)
			}
		}
	})
	if err != nil {
		return err
	}
	return checkNonNegative(fs)
}

// checkNonNegative refuses a negative number or duration in any flag: sizes,
// limits, timeouts and counts are never negative (0 is each flag's "none" or
// "default" where it has one), and a negative one used to fall back to the
// default silently.
func checkNonNegative(fs *flag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		g, ok := f.Value.(flag.Getter)
		if !ok || err != nil {
			return
		}
		neg := false
		switch v := g.Get().(type) {
		case int:
			neg = v < 0
		case int64:
			neg = v < 0
		case time.Duration:
			neg = v < 0
		case float64:
			neg = v < 0
		}
		if neg {
			err = fmt.Errorf("--%s %s: must not be negative", f.Name, f.Value)
		}
	})
	return err
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l, ReplaceAttr: durationText})), nil
}

// durationText logs a duration as text ("1.5s"), not as a bare number of
// nanoseconds (retry_in used to read 1500000000).
func durationText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}
