package store

import (
	"context"

	"github.com/outpost-edge/outpost"
)

// Internals exported to the black-box tests in package store_test.

// WriterBusy reports whether a client transaction is running in the writer.
func WriterBusy(s *Store) bool { return s.busy.Load() }

// ReadersInUse returns how many client read connections are in use.
func ReadersInUse(s *Store) int { return s.rdb.Stats().InUse }

// ChangesPerTable reads (lo, hi] with one statement per table, the way
// readWindow did before it read all tables in one statement.
func ChangesPerTable(s *Store, lo, hi int64) ([]outpost.Change, []int64, error) {
	return s.readWindowPerTable(context.Background(), s.replDB.QueryContext, lo, hi)
}

// ChangesAllTables is readWindow, all tables in one statement.
func ChangesAllTables(s *Store, lo, hi int64) ([]outpost.Change, []int64, error) {
	return s.readWindow(context.Background(), s.replDB.QueryContext, lo, hi)
}
