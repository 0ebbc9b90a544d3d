package main

import (
	"context"
	"fmt"
	"io"
	"runtime"

	"github.com/outpost-edge/outpost"
)

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "outpost %s (protocol %d, %s, %s/%s)\n", outpost.Version, outpost.ProtocolVersion, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
