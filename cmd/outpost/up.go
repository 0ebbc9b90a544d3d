package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/outpost-edge/outpost/fleet"
	"github.com/outpost-edge/outpost/store"
)

func runUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("up", stderr)
	dir := fs.String("dir", "", "directory for the fleet's keys, trust list, schema and data; empty = a new temp dir")
	base := fs.Int("base-port", 7700, "member i listens on base+2i (API), base+2i+1 (peer) and base+2i+1000 (public HTTP: the demo site); 0 = free ports")
	logLevel := fs.String("log-level", "warn", "debug, info, warn or error (JSON on stderr)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	temp := *dir == ""
	if temp {
		if *dir, err = os.MkdirTemp("", "outpost-fleet-*"); err != nil {
			return err
		}
		// A fleet in a temp dir of our own is gone when up ends (after the
		// lock below is released: defers run last-in first-out).
		defer os.RemoveAll(*dir)
	}
	// One fleet per directory: a second `up --dir` would start the same
	// nodes on the same data.
	lock, err := lockFleetDir(*dir)
	if err != nil {
		return err
	}
	defer lock.Close()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	f, err := fleet.Start(ctx, *dir, fleet.Demo(*base), fleet.Options{Logger: log, Site: "demo"})
	if err != nil {
		return err
	}
	if err := f.WriteJSON(); err != nil {
		f.Close(context.Background())
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tFARM\tAPI\tPEER\tHTTP")
	for _, e := range f.Entries() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, e.Role, e.Farm, e.API, e.Peer, e.HTTP)
	}
	tw.Flush()
	note := ""
	if temp {
		note = "; removed when up ends, use --dir to keep it"
	}
	fmt.Fprintf(stdout, "\nfleet directory: %s (fleet.json, fleet.trust, schema.sql, one data dir per node%s)\n", *dir, note)
	fmt.Fprintf(stdout, "try: curl -s %s/v1/exec -d '{\"statements\":[{\"sql\":\"INSERT INTO pages (id, slug, title) VALUES (outpost_id(), outpost_slug(?), ?)\",\"args\":[\"Hello\",\"Hello\"]}]}'\n", f.Entries()[2].API)
	fmt.Fprintf(stdout, "     curl -s %s/v1/query -d '{\"sql\":\"SELECT * FROM pages\"}'\n", f.Entries()[5].API)
	fmt.Fprintf(stdout, "     open %s/ (the demo site, rendered at EDGE04 from its own SQLite; site in %s)\n", f.Entries()[5].HTTP, filepath.Join(*dir, "site"))
	fmt.Fprintln(stdout, "Ctrl-C stops the fleet.")
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return f.Close(sctx)
}

// lockFleetDir creates dir if needed and takes its lock (one `up` per
// fleet directory).
func lockFleetDir(dir string) (*store.DirLock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("fleet directory: %w", err)
	}
	lock, err := store.LockDir(dir)
	if err != nil {
		return nil, fmt.Errorf("fleet directory: %w", err)
	}
	return lock, nil
}
