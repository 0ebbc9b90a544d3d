package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/outpost-edge/outpost/store"
)

// Response headers of GET /v1/backup: what the snapshot holds.
const (
	// BackupDBVersionHeader is the db_version of the last commit the
	// backup holds.
	BackupDBVersionHeader = "Outpost-DB-Version"
	// BackupIncarnationHeader is the incarnation of the database it was
	// taken from.
	BackupIncarnationHeader = "Outpost-Incarnation"
	// BackupContentType is the media type of a backup: a SQLite database.
	BackupContentType = "application/vnd.sqlite3"
)

// backupChunkTimeout is how long one chunk of a backup may take to reach
// the client: the write deadline moves on after every chunk, so a large
// backup is not cut off by the listener's write timeout, and a stalled
// client is.
const backupChunkTimeout = 60 * time.Second

// backup serves GET /v1/backup: an online, consistent snapshot of the
// node's database (store.Backup), streamed as a SQLite file. One backup at
// a time: another request meanwhile gets 409 backup_in_progress.
func (s *Server) backup(w http.ResponseWriter, r *http.Request) {
	// Making the snapshot of a large database may take longer than the
	// listener's write timeout: nothing is written meanwhile, so lift it
	// (it is set again chunk by chunk below).
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{})
	b, err := s.store.Backup(r.Context())
	if errors.Is(err, store.ErrBackupInProgress) {
		w.Header().Set("Retry-After", "10")
		writeError(w, http.StatusConflict, "backup_in_progress", "another backup of this node is being made or downloaded; retry when it is done", -1)
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer b.Close()
	h := w.Header()
	h.Set("Content-Type", BackupContentType)
	h.Set("Content-Length", strconv.FormatInt(b.Info.Size, 10))
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="outpost-%s-%d.db"`, s.store.Identity().Name, b.Info.DBVersion))
	h.Set(BackupDBVersionHeader, strconv.FormatInt(b.Info.DBVersion, 10))
	h.Set(BackupIncarnationHeader, b.Info.Incarnation)
	h.Set("Cache-Control", "no-store")
	_ = rc.SetWriteDeadline(time.Now().Add(backupChunkTimeout))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	buf := make([]byte, 1<<20)
	var sent int64
	for {
		n, rerr := b.File.Read(buf)
		if n > 0 {
			_ = rc.SetWriteDeadline(time.Now().Add(backupChunkTimeout))
			if _, err := w.Write(buf[:n]); err != nil {
				s.log.Warn("api: backup not delivered", "sent", sent, "size", b.Info.Size, "err", err)
				return
			}
			sent += int64(n)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			// The headers are out: all that is left is to cut the body
			// short, which the client sees against Content-Length.
			s.log.Error("api: backup read failed", "sent", sent, "err", rerr)
			return
		}
	}
	s.log.Info("api: backup sent", "db_version", b.Info.DBVersion, "incarnation", b.Info.Incarnation, "bytes", sent)
}
