package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/outpost-edge/outpost/identity"
	"github.com/outpost-edge/outpost/store"
)

func runRestore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("restore", stderr)
	data := fs.String("data", "", "data directory of the (stopped) node to restore into; required")
	from := fs.String("from", "", "backup file made by 'outpost backup' or GET /v1/backup; required")
	force := fs.Bool("force", false, "replace the database the data directory already holds (what it has that the backup lacks comes back only from peers)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *data == "" || *from == "" {
		fmt.Fprintln(stderr, "--data DIR and --from FILE are required")
		fs.Usage()
		return errUsage
	}
	info, err := store.Restore(ctx, *data, *from, *force)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "restored %s into %s: db_version %d of incarnation %s; at its next start the node takes a new incarnation and pulls back from its peers what it lacks\n",
		*from, filepath.Join(*data, store.DBFile), info.DBVersion, info.Incarnation)
	if _, err := os.Stat(filepath.Join(*data, identity.IdentityFile)); os.IsNotExist(err) {
		fmt.Fprintf(stderr, "note: %s has no %s: copy %s and %s from the node the backup came from (or start it with --identity-from), so it keeps its name and the key its peers trust\n",
			*data, identity.IdentityFile, identity.IdentityFile, identity.KeyFile)
	}
	return nil
}
