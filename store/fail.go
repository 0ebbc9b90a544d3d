package store

import (
	"errors"
	"fmt"
)

// ErrFailed is wrapped by Store.Err once the store has failed.
var ErrFailed = errors.New("store failed")

// fail marks the store failed: after a COMMIT error (a failed fsync above
// all) SQLite's page cache and the file may disagree, so nothing more may be
// written through this process; the node must restart from what is durable.
func (s *Store) fail(err error) {
	s.failOnce.Do(func() {
		s.failErr = fmt.Errorf("%w: commit: %w", ErrFailed, err)
		s.log.Error("store failed: no more writes; restart the node to recover from the durable state", "err", err)
		close(s.failed)
	})
}

// Err returns why the store failed (wrapping ErrFailed), or nil while it
// works. A failed store refuses every write; the process should exit and be
// restarted.
func (s *Store) Err() error {
	select {
	case <-s.failed:
		return s.failErr
	default:
		return nil
	}
}

// Failed returns a channel that is closed when the store fails (see Err).
func (s *Store) Failed() <-chan struct{} { return s.failed }

func (s *Store) failedError() *Error {
	return &Error{Code: CodeStoreFailed, Statement: -1, Err: s.Err(),
		Message: "this node's database failed to commit (disk error) and takes no more writes until it restarts; send the write to another node or retry after the restart"}
}
