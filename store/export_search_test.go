package store

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/outpost-edge/outpost/capture"
)

// SearchIntegrity runs FTS5's integrity-check of the search index name
// against its table, on a connection of its own (clients may not write the
// index, and the check is written as an INSERT).
func SearchIntegrity(ctx context.Context, s *Store, name string) error {
	db, err := openPlain(filepath.Join(s.opts.Dir, DBFile), "busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer db.Close()
	q := capture.Quote(name)
	if _, err := db.ExecContext(ctx, fmt.Sprintf(`INSERT INTO %s (%s, rank) VALUES ('integrity-check', 1)`, q, q)); err != nil {
		return fmt.Errorf("integrity-check %s: %w", name, err)
	}
	return nil
}
