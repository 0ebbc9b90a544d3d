package sim

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Suite runs `outpost bench --suite fleet`: Run at the given size (writes
// <= 0: the default), with progress on stderr, the report on stdout as a
// table or JSON. Ctrl-C or SIGTERM ends the run and still removes the
// stores.
func Suite(ctx context.Context, farms, edges, writes int, asJSON bool, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := Options{Farms: farms, Edges: edges, Writes: writes}
	if !asJSON {
		opts.Log = stderr
	}
	rep, err := Run(ctx, opts)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return rep.WriteMarkdown(stdout)
}
