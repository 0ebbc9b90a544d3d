// Command outpost is the Outpost node binary: serve, keygen, id, bench,
// version and help. Each subcommand lives in its own file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"up", "start a demo fleet on loopback: a master, a node, two farms of two edges", runUp},
		{"serve", "run a node: outpost serve --data DIR --schema FILE", runServe},
		{"status", "show a node's peers, cursors, lag and refusals", runStatus},
		{"keygen", "create this node's key and identity in --data DIR", runKeygen},
		{"init-fleet", "lay out the demo fleet for containers: keys, trust list (host = lower-case name), schema", runInitFleet},
		{"init-k8s", "write the Kubernetes Secret (identities) and ConfigMap (trust list, schema) for deploy/k8s", runInitK8s},
		{"id", "print this node's public identity line for peers' trust lists", runID},
		{"bench", "benchmark a running node's API and the data disk's fsync rate", runBench},
		{"shell", "an SQL prompt on a node's API (history, .tables, .schema, .mode); or run SQL from a pipe", runShellCmd},
		{"backup", "download a consistent backup of a running node: outpost backup --target URL --to FILE", runBackup},
		{"restore", "install a backup in a stopped node's data dir (it takes a new incarnation): outpost restore --data DIR --from FILE", runRestore},
		{"probe", "GET a URL and fail unless it answers 200 (container health checks)", runProbe},
		{"version", "print the version", runVersion},
		{"help", "show help for a command", nil},
	}
}

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// errUsage marks an error already reported with usage text.
var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			return run(ctx, []string{args[1], "-h"}, stdout, stderr)
		}
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] && c.run != nil {
			err := c.run(ctx, args[1:], stdout, stderr)
			switch {
			case err == nil, errors.Is(err, flag.ErrHelp):
				return 0
			case errors.Is(err, errUsage):
				return 2
			default:
				fmt.Fprintf(stderr, "outpost %s: %v\n", c.name, err)
				return 1
			}
		}
	}
	fmt.Fprintf(stderr, "outpost: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Outpost: a node of a decentralised edge data platform.")
	fmt.Fprintln(w, "\nUsage: outpost <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nEvery flag can also be set as OUTPOST_<FLAG> in the environment (e.g. --api-token as OUTPOST_API_TOKEN).")
	fmt.Fprintln(w, "Run 'outpost help <command>' for its flags.")
}

// newFlagSet returns a FlagSet whose usage goes to stderr.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("outpost "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args, then fills every flag not given on the command line
// from OUTPOST_<NAME> (upper case, '-' as '_').
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
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
	return err
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})), nil
}
