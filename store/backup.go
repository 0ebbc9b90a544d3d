package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/outpost-edge/outpost"
	"modernc.org/sqlite"
)

// backupDirPrefix names the temporary directories a backup is made in,
// inside the data directory (so its disk is the database's own, and a
// backup left behind by a crash is found and removed by the next one).
const backupDirPrefix = ".backup-"

// ErrBackupInProgress is returned (wrapped) by Store.Backup while another
// backup of the same store is being made or read: one at a time, so the
// temporary disk a backup takes is at most one copy of the database.
var ErrBackupInProgress = errors.New("a backup is already in progress")

// BackupInfo says what a backup holds.
type BackupInfo struct {
	// DBVersion is the db_version of the last local commit it holds: the
	// backup is the database exactly as that commit left it.
	DBVersion int64
	// Incarnation is the incarnation of the database it was taken from
	// (empty in a file already prepared by MarkRestored).
	Incarnation string
	// SchemaVersion is the schema version the database was at.
	SchemaVersion string
	// Size is the file's size in bytes.
	Size int64
}

// Backup is a consistent snapshot of a store's database, in a temporary
// file of the data directory. Read it from File; Close removes it and lets
// the next backup start.
type Backup struct {
	File *os.File // open for reading, at offset 0
	Info BackupInfo

	s    *Store
	dir  string
	once sync.Once
	err  error
}

// Backup takes an online, consistent snapshot of the database while writes
// go on: SQLite's VACUUM INTO, run on a connection of its own in a read
// transaction (WAL: it does not block the writer), writes the database as
// of one commit to a temporary file, which is then made a self-contained
// rollback-journal database (no -wal file) and opened for reading.
//
// Only one backup runs at a time; a second one fails at once with
// ErrBackupInProgress. The caller must Close the Backup.
func (s *Store) Backup(ctx context.Context) (*Backup, error) {
	if s.closed.Load() {
		return nil, &Error{Code: CodeUnavailable, Statement: -1, Message: "the store is closed", Err: outpost.ErrClosed}
	}
	if !s.backupBusy.CompareAndSwap(false, true) {
		return nil, fmt.Errorf("backup: %w", ErrBackupInProgress)
	}
	b := &Backup{s: s}
	ok := false
	defer func() {
		if !ok {
			b.Close()
		}
	}()
	// This process holds the directory and no other backup runs: whatever
	// backup directory is there was left by a crash.
	if old, _ := filepath.Glob(filepath.Join(s.opts.Dir, backupDirPrefix+"*")); len(old) > 0 {
		for _, d := range old {
			_ = os.RemoveAll(d)
		}
	}
	dir, err := os.MkdirTemp(s.opts.Dir, backupDirPrefix)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	b.dir = dir
	dst := filepath.Join(dir, DBFile)
	src, err := openPlain(filepath.Join(s.opts.Dir, DBFile), "busy_timeout(10000)")
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	_, err = src.ExecContext(ctx, `VACUUM INTO ?`, dst)
	if cerr := src.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("backup: vacuum into %s: %w", dst, err)
	}
	if b.Info, err = finishFile(ctx, dst, false); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if b.File, err = os.Open(dst); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	st, err := b.File.Stat()
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	b.Info.Size = st.Size()
	ok = true
	return b, nil
}

// Close removes the backup's temporary file and lets the next backup start.
func (b *Backup) Close() error {
	b.once.Do(func() {
		if b.File != nil {
			b.err = b.File.Close()
		}
		if b.dir != "" {
			if err := os.RemoveAll(b.dir); err != nil && b.err == nil {
				b.err = err
			}
		}
		b.s.backupBusy.Store(false)
	})
	return b.err
}

// VerifyBackup checks that the file at path is a whole SQLite database
// (PRAGMA integrity_check) of Outpost (its meta table with an incarnation)
// and says what it holds. It writes nothing to the file.
func VerifyBackup(ctx context.Context, path string) (BackupInfo, error) {
	if _, err := os.Stat(path); err != nil {
		return BackupInfo{}, fmt.Errorf("verify backup: %w", err)
	}
	db, err := openPlain(path, "query_only(1)")
	if err != nil {
		return BackupInfo{}, fmt.Errorf("verify backup %s: %w", path, err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `PRAGMA integrity_check`)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("verify backup %s: not a readable SQLite database: %w", path, err)
	}
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			rows.Close()
			return BackupInfo{}, fmt.Errorf("verify backup %s: %w", path, err)
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	if err := rows.Err(); err != nil {
		rows.Close()
		return BackupInfo{}, fmt.Errorf("verify backup %s: not a readable SQLite database: %w", path, err)
	}
	rows.Close()
	if len(problems) > 0 {
		if len(problems) > 5 {
			problems = append(problems[:5], "...")
		}
		return BackupInfo{}, fmt.Errorf("verify backup %s: integrity check failed: %s", path, strings.Join(problems, "; "))
	}
	info, err := readBackupMeta(ctx, db)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("verify backup %s: %w", path, err)
	}
	if info.Incarnation == "" {
		return BackupInfo{}, fmt.Errorf("verify backup %s: it has no incarnation (not a backup as GET /v1/backup makes it)", path)
	}
	st, err := os.Stat(path)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("verify backup: %w", err)
	}
	info.Size = st.Size()
	return info, nil
}

// MarkRestored prepares the database file at path (a backup about to be
// installed as a data directory's outpost.db) for its new life: it removes
// the incarnation from its meta, so the next Open takes a new one (and
// treats it as a new incarnation: slugs wait until a pull has caught up),
// and drops the pull cursors, so the node pulls from every peer again from
// 0 under its new origin and gets back the writes it made after the backup
// (which peers no longer leave out as its echo). Without this, peers whose
// cursors for the old incarnation are past the backup's db_version would
// skip every db_version the restored node issues again.
//
// It returns what the backup held, before the change.
func MarkRestored(ctx context.Context, path string) (BackupInfo, error) {
	info, err := finishFile(ctx, path, true)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("prepare restored database %s: %w", path, err)
	}
	return info, nil
}

// ErrHasDatabase is returned (wrapped) by Restore when the data directory
// already holds a database and force is not set.
var ErrHasDatabase = errors.New("the data directory already holds a database")

// Restore installs the backup at from as the database of the data
// directory dir, for a node to start on: it verifies the backup
// (VerifyBackup), takes the directory's lock (so it fails with ErrLocked
// while a node runs on dir), refuses a directory that already holds a
// database unless force, copies the backup next to it, prepares the copy
// (MarkRestored: a new incarnation at the next start, pull cursors
// dropped) and renames it to dir/outpost.db, after removing the old
// database's -wal and -shm files, so nothing of the old database is
// applied to the new one. The identity files in dir are left as they are.
//
// It returns what the backup holds.
func Restore(ctx context.Context, dir, from string, force bool) (BackupInfo, error) {
	info, err := VerifyBackup(ctx, from)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("restore: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return BackupInfo{}, fmt.Errorf("restore: %w", err)
	}
	lock, err := LockDir(dir)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("restore: %w", err)
	}
	defer lock.Close()
	dst := filepath.Join(dir, DBFile)
	if _, err := os.Stat(dst); err == nil && !force {
		return BackupInfo{}, fmt.Errorf("restore: %w: %s (restore with --force to replace it; what it holds that the backup lacks is lost here, and comes back only from peers)", ErrHasDatabase, dst)
	} else if err != nil && !os.IsNotExist(err) {
		return BackupInfo{}, fmt.Errorf("restore: %w", err)
	}
	tmp := dst + ".restore"
	ok := false
	defer func() {
		if !ok {
			removeDBFiles(tmp)
		}
	}()
	removeDBFiles(tmp)
	if err := copyFileSync(from, tmp); err != nil {
		return BackupInfo{}, fmt.Errorf("restore: %w", err)
	}
	if _, err := MarkRestored(ctx, tmp); err != nil {
		return BackupInfo{}, fmt.Errorf("restore: %w", err)
	}
	if err := syncFile(tmp); err != nil {
		return BackupInfo{}, fmt.Errorf("restore: %w", err)
	}
	// The old database's WAL must not be replayed onto the new file.
	for _, suffix := range []string{"-wal", "-shm", "-journal"} {
		if err := os.Remove(dst + suffix); err != nil && !os.IsNotExist(err) {
			return BackupInfo{}, fmt.Errorf("restore: remove the old database's %s: %w", suffix, err)
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		return BackupInfo{}, fmt.Errorf("restore: %w", err)
	}
	ok = true
	if err := syncFile(dir); err != nil {
		return BackupInfo{}, fmt.Errorf("restore: %w", err)
	}
	return info, nil
}

// removeDBFiles removes a database file and its side files, if there.
func removeDBFiles(path string) {
	for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
		_ = os.Remove(path + suffix)
	}
}

// copyFileSync copies src to a new file dst and fsyncs it.
func copyFileSync(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return fmt.Errorf("sync %s: %w", dst, err)
	}
	return out.Close()
}

// syncFile fsyncs a file or directory.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return nil
}

// finishFile makes the database at path a self-contained rollback-journal
// file and reads its meta; with restored, it also applies MarkRestored's
// changes, in one transaction.
func finishFile(ctx context.Context, path string, restored bool) (BackupInfo, error) {
	db, err := openPlain(path, "busy_timeout(10000)", "synchronous(FULL)")
	if err != nil {
		return BackupInfo{}, err
	}
	defer db.Close()
	var mode string
	if err := db.QueryRowContext(ctx, `PRAGMA journal_mode = DELETE`).Scan(&mode); err != nil {
		return BackupInfo{}, fmt.Errorf("journal mode: %w", err)
	}
	info, err := readBackupMeta(ctx, db)
	if err != nil || !restored {
		return info, err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return BackupInfo{}, err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit, a no-op
	if _, err := tx.ExecContext(ctx, `DELETE FROM outpost_meta WHERE key = 'incarnation'`); err != nil {
		return BackupInfo{}, fmt.Errorf("clear incarnation: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO outpost_meta (key, value) VALUES ('restored_from', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
		fmt.Sprintf("%s:%d", info.Incarnation, info.DBVersion)); err != nil {
		return BackupInfo{}, fmt.Errorf("record restore: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM outpost_peers WHERE kind = ?`, CursorPull); err != nil && !strings.Contains(err.Error(), "no such table") {
		return BackupInfo{}, fmt.Errorf("reset pull cursors: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return BackupInfo{}, fmt.Errorf("commit: %w", err)
	}
	return info, nil
}

// readBackupMeta reads a backup's outpost_meta.
func readBackupMeta(ctx context.Context, db *sql.DB) (BackupInfo, error) {
	var info BackupInfo
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'outpost_meta'`).Scan(&n); err != nil {
		return info, fmt.Errorf("not a readable SQLite database: %w", err)
	}
	if n == 0 {
		return info, errors.New("not an Outpost database (no outpost_meta table)")
	}
	var inc, schemaVersion sql.NullString
	err := db.QueryRowContext(ctx, `SELECT
		(SELECT value FROM outpost_meta WHERE key = 'incarnation'),
		coalesce((SELECT value FROM outpost_meta WHERE key = 'db_version'), 0),
		(SELECT value FROM outpost_meta WHERE key = 'schema_version')`).Scan(&inc, &info.DBVersion, &schemaVersion)
	if err != nil {
		return info, fmt.Errorf("read meta: %w", err)
	}
	info.Incarnation, info.SchemaVersion = inc.String, schemaVersion.String
	return info, nil
}

// openPlain opens one connection to the database at path through a driver
// with none of the store's SQL functions: for whole-file work (backup,
// verification) that runs no Outpost SQL.
func openPlain(path string, pragmas ...string) (*sql.DB, error) {
	db := sql.OpenDB(connector{drv: &sqlite.Driver{}, dsn: dsn(path, pragmas...)})
	db.SetMaxOpenConns(1)
	return db, nil
}
