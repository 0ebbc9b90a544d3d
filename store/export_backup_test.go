package store

// DataDir returns the store's data directory (backup tests).
func DataDir(s *Store) string { return s.opts.Dir }
