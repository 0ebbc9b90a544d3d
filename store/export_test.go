package store

// Internals exported to the black-box tests in package store_test.

// WriterBusy reports whether a client transaction is running in the writer.
func WriterBusy(s *Store) bool { return s.busy.Load() }

// ReadersInUse returns how many client read connections are in use.
func ReadersInUse(s *Store) int { return s.rdb.Stats().InUse }
