package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/outpost-edge/outpost/identity"
)

func runKeygen(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("keygen", stderr)
	data := fs.String("data", "", "data directory to write identity.json and node.key into (required)")
	force := fs.Bool("force", false, "replace an existing key")
	var idf identityFlags
	idf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *data == "" {
		return errors.New("--data is required")
	}
	id, err := idf.identity()
	if err != nil {
		return err
	}
	key, err := identity.Generate()
	if err != nil {
		return err
	}
	if err := identity.Write(*data, id, key, *force); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s/%s and %s/%s (key %s)\n", *data, identity.IdentityFile, *data, identity.KeyFile, key.Fingerprint())
	fmt.Fprintln(stdout, identity.Line(id, key.Public(), ""))
	return nil
}

func runID(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("id", stderr)
	data := fs.String("data", "", "data directory holding the identity (required)")
	addr := fs.String("peer-addr", "", "address peers reach this node's peer listener on (host:port), added to the line")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *data == "" {
		return errors.New("--data is required")
	}
	id, key, err := identity.Load(*data)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, identity.Line(id, key.Public(), *addr))
	return nil
}
