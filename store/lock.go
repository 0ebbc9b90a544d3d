package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// LockFile is the name of the lock file in a data directory. The process
// that holds an exclusive lock on it owns the directory.
const LockFile = "outpost.lock"

// ErrLocked is returned (wrapped) when a directory is already locked by
// another process or another open Store of this process.
var ErrLocked = errors.New("directory is locked")

// DirLock is an exclusive, advisory lock on a directory, held by an open
// file descriptor: the operating system releases it when the process ends,
// however it ends.
type DirLock struct {
	f *os.File
}

// LockDir takes the exclusive lock of dir (dir/outpost.lock) without
// waiting, and records this process's pid in the lock file. If another
// process (or another DirLock in this one) holds it, the error wraps
// ErrLocked and names the directory and, when known, the holder's pid.
func LockDir(dir string) (*DirLock, error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := flock(f); err != nil {
		f.Close()
		if errors.Is(err, errWouldBlock) {
			holder := ""
			if b, rerr := os.ReadFile(path); rerr == nil {
				if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
					holder = fmt.Sprintf(" (pid %d)", pid)
				}
			}
			return nil, fmt.Errorf("%w: %s is in use by another Outpost process%s; stop it or use another directory", ErrLocked, dir, holder)
		}
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &DirLock{f: f}, nil
}

// Close releases the lock. The lock file stays; a stale pid in it is
// harmless, since only the lock itself counts.
func (l *DirLock) Close() error {
	if l == nil || l.f == nil {
		return nil
	}
	_ = l.f.Truncate(0)
	err := l.f.Close() // closing the descriptor releases the flock
	l.f = nil
	return err
}
