package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/outpost-edge/outpost/fleet"
)

func runInitFleet(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("init-fleet", stderr)
	dir := fs.String("dir", "", "directory to lay the demo fleet out in (keys, identities, fleet.trust, schema.sql); required")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("--dir is required")
	}
	members := fleet.Demo(0)
	if err := fleet.Init(*dir, members, "", fleet.ContainerAddr); err != nil {
		return err
	}
	for _, m := range members {
		fmt.Fprintf(stdout, "%s\t%s\t%s\t%s\n", m.Name, m.Role, m.Farm, fleet.ContainerAddr(m))
	}
	fmt.Fprintf(stdout, "wrote %s/fleet.trust, %s/schema.sql and one data directory per node\n", *dir, *dir)
	return nil
}
