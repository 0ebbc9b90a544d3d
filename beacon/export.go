package beacon

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/store"
	"github.com/parquet-go/parquet-go"
)

// Defaults of the Parquet export.
const (
	// DefaultExportInterval is how often an aggregator with an export
	// directory looks for closed windows to write.
	DefaultExportInterval = time.Minute
	// DefaultExportLateness is how long after its end a window stays open
	// for beacons still on their way (on the aggregator's clock and in
	// every edge's log).
	DefaultExportLateness = time.Minute
	// DefaultExportMaxWait is how long after its end a window is closed
	// anyway, however far behind an edge is (its late beacons then go to a
	// late file of the window).
	DefaultExportMaxWait = time.Hour
	// exportWindow is the window of the export: files hold one minute of
	// receive time (the edges' clocks), as window_ms says.
	exportWindow = 60_000
)

// ExportRow is one row of an exported Parquet file: a beacon as this
// aggregator received it. window_ms is the start of its minute of receive
// time (the edge's clock), for engines that group by window.
type ExportRow struct {
	Edge     string `parquet:"edge,dict"` // NAME/LOGID
	Seq      int64  `parquet:"seq"`
	RecvMS   int64  `parquet:"recv_ms"`
	WindowMS int64  `parquet:"window_ms"`
	Body     string `parquet:"body"` // the beacon's JSON
}

// exportState is how far the export is, in outpost_beacon_export: every
// beacon of a window up to Window (a window start, Unix ms) that arrived
// (arrival number) up to Mark is in a file, and so is every beacon that
// arrived up to Legacy (written by the arrival-ordered export of earlier
// versions). PendingWindow and PendingMark, ahead of them, are the run
// being written (PendingMark > Mark after a crash mid-run).
type exportState struct {
	Window, Mark, Legacy       int64
	PendingWindow, PendingMark int64
	hasWindow                  bool
	// oldDone, oldPending: the state of the arrival-ordered export, not
	// migrated yet.
	oldDone, oldPending int64
	hasOld              bool
}

// exported is the SQL condition (on outpost_beacon_recv) of the beacons
// that are in a file, given the state's ?1 = Legacy, ?2 = Window, ?3 = Mark.
const exportedSQL = `(arrival <= ?1 OR (recv_ms < ?2 + 60000 AND arrival <= ?3))`

func (a *Aggregator) exportState(ctx context.Context) (exportState, error) {
	var s exportState
	err := a.cfg.Store.ReadLocal(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT key, value FROM outpost_beacon_export`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var k string
			var v int64
			if err := rows.Scan(&k, &v); err != nil {
				return err
			}
			switch k {
			case "window":
				s.Window, s.hasWindow = v, true
			case "mark":
				s.Mark = v
			case "legacy_done":
				s.Legacy = v
			case "pending_window":
				s.PendingWindow = v
			case "pending_mark":
				s.PendingMark = v
			case "done":
				s.oldDone, s.hasOld = v, true
			case "pending":
				s.oldPending, s.hasOld = v, true
			}
		}
		return rows.Err()
	})
	if !s.hasWindow {
		s.Window = minWindow
	}
	return s, err
}

// minWindow is the Window of an export that wrote no window yet.
const minWindow = -1 << 50

func (a *Aggregator) setExport(ctx context.Context, kv map[string]int64) error {
	return a.cfg.Store.WriteLocal(ctx, func(tx *store.LocalTx) error {
		for k, v := range kv {
			if _, err := tx.Exec(`INSERT INTO outpost_beacon_export (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, k, v); err != nil {
				return err
			}
		}
		return nil
	})
}

// ExportFileName is the name of the file holding the beacons of the window
// (a minute of receive time) starting at windowMS.
func ExportFileName(windowMS int64) string {
	return "beacons-" + windowStamp(windowMS) + ".parquet"
}

// ExportLateFileName is the name of the file holding the beacons of an
// already exported window that arrived at this aggregator afterwards,
// with arrival numbers lo..hi.
func ExportLateFileName(windowMS, lo, hi int64) string {
	return fmt.Sprintf("beacons-%s-late-%016d-%016d.parquet", windowStamp(windowMS), lo, hi)
}

func windowStamp(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("20060102T1504Z")
}

// legacyFileName is the name the arrival-ordered export gave a file.
func legacyFileName(lo, hi int64) string {
	return fmt.Sprintf("beacons-%016d-%016d.parquet", lo, hi)
}

// ClosedThrough returns the start of the last closed window (Unix ms; the
// windows before it are closed too), and why the next one is not closed.
// A window (a minute of the edges' receive time) is closed when
//
//   - its end plus the lateness (ExportLateness) has passed on this
//     aggregator's clock;
//   - this aggregator holds, of every edge it pulls, everything the edge
//     received until the window's end plus the lateness: it pulled the
//     edge's log in order to a beacon received after that, or to the end
//     of the log at an edge time after that (receive times never go back
//     along an edge's log, so nothing of the window can come later);
//   - the last cross-check ran after that and left no gap open or
//     unrepairable in the window or before it (with cross-checks on);
//
// or when its end plus ExportMaxWait has passed, whatever the above.
func (a *Aggregator) ClosedThrough(now time.Time) (int64, string) {
	lat := a.cfg.ExportLateness.Milliseconds()
	nowMS := now.UnixMilli()
	last := func(t int64) int64 { return minuteOf(t-lat) - exportWindow } // the last window closed by time t
	w, why := last(nowMS), "the lateness allowance"
	edges := a.cfg.Edges()
	a.mu.Lock()
	for _, e := range edges {
		key, ok := a.current[e]
		t := a.through[key]
		if !ok {
			t = 0
		}
		if c := last(t); c < w {
			w, why = c, "edge "+e+" not pulled far enough"
		}
	}
	a.mu.Unlock()
	if a.cfg.CheckInterval > 0 && a.cfg.Transport != nil {
		a.check.mu.Lock()
		if c := last(a.check.at.UnixMilli()); a.check.at.IsZero() || c < w {
			w, why = c, "no cross-check since"
			if a.check.at.IsZero() {
				w = minWindow
			}
		}
		for _, p := range a.check.problems {
			if p.Kind == "gap" && p.State != "repaired" && p.Minute-exportWindow < w {
				w, why = p.Minute-exportWindow, fmt.Sprintf("cross-check %s %s in %s..%s", p.State, p.Kind, p.Edge, windowStamp(p.Minute))
			}
		}
		a.check.mu.Unlock()
	}
	if forced := minuteOf(nowMS-a.cfg.ExportMaxWait.Milliseconds()) - exportWindow; forced > w {
		w, why = forced, ""
	}
	return w, why
}

// Export writes the windows closed since the last export (ClosedThrough)
// into Parquet files in ExportDir, one per window (ExportFileName), with
// the beacons of that window received so far, and the beacons of windows
// exported before that arrived since into late files (ExportLateFileName,
// one per window); it returns their paths (none if there was nothing to
// write). Each beacon is in exactly one file: the run (the last window and
// the last arrival number it covers) is recorded as pending (durably)
// before the files are written, each file is written to a temporary name,
// synced and renamed, and only then is the run recorded as done; after a
// crash the pending run is written again, under the same names, with the
// same beacons.
func (a *Aggregator) Export(ctx context.Context) ([]string, error) {
	if a.cfg.ExportDir == "" {
		return nil, fmt.Errorf("no export directory")
	}
	a.exportMu.Lock()
	defer a.exportMu.Unlock()
	if err := os.MkdirAll(a.cfg.ExportDir, 0o755); err != nil {
		return nil, err
	}
	s, err := a.exportState(ctx)
	if err != nil {
		return nil, fmt.Errorf("export state: %w", err)
	}
	var files []string
	if s.hasOld {
		// Files of the arrival-ordered export: finish the one under way,
		// then never export those beacons again.
		if s.oldPending > s.oldDone {
			name := filepath.Join(a.cfg.ExportDir, legacyFileName(s.oldDone+1, s.oldPending))
			if err := a.writeParquet(ctx, name, `arrival > ? AND arrival <= ? ORDER BY arrival`, s.oldDone, s.oldPending); err != nil {
				return nil, err
			}
			files = append(files, name)
		}
		s.Legacy = max(s.oldDone, s.oldPending)
		if err := a.cfg.Store.WriteLocal(ctx, func(tx *store.LocalTx) error {
			if _, err := tx.Exec(`INSERT INTO outpost_beacon_export (key, value) VALUES ('legacy_done', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, s.Legacy); err != nil {
				return err
			}
			_, err := tx.Exec(`DELETE FROM outpost_beacon_export WHERE key IN ('done', 'pending')`)
			return err
		}); err != nil {
			return nil, err
		}
	}
	win, mark := s.PendingWindow, s.PendingMark
	if mark <= s.Mark {
		// A new run: what is closed now, with what arrived so far.
		closed, _ := a.ClosedThrough(a.cfg.Now())
		win = max(closed, s.Window)
		err := a.cfg.Store.ReadLocal(ctx, func(tx *sql.Tx) error {
			return tx.QueryRowContext(ctx, `SELECT coalesce(max(arrival), 0) FROM outpost_beacon_recv`).Scan(&mark)
		})
		if err != nil {
			return nil, err
		}
		mark = max(mark, s.Mark)
		if win == s.Window && mark == s.Mark {
			return files, nil
		}
		if err := a.setExport(ctx, map[string]int64{"pending_window": win, "pending_mark": mark}); err != nil {
			return nil, err
		}
	}
	// Windows closed by this run: all they hold (arrived through mark).
	from := max(s.Legacy, 0)
	fresh, err := a.exportWindows(ctx, `recv_ms >= ?1 AND recv_ms < ?2 AND arrival > ?3 AND arrival <= ?4`, s.Window+exportWindow, win+exportWindow, from, mark)
	if err != nil {
		return nil, err
	}
	for _, w := range fresh {
		name := filepath.Join(a.cfg.ExportDir, ExportFileName(w))
		if err := a.writeParquet(ctx, name, `recv_ms >= ? AND recv_ms < ? AND arrival > ? AND arrival <= ? ORDER BY edge, seq`, w, w+exportWindow, from, mark); err != nil {
			return nil, err
		}
		files = append(files, name)
	}
	// Windows closed before: what arrived for them since.
	lateFrom := max(s.Mark, from)
	late, err := a.exportWindows(ctx, `arrival > ?3 AND arrival <= ?4 AND recv_ms < ?2`, 0, s.Window+exportWindow, lateFrom, mark)
	if err != nil {
		return nil, err
	}
	for _, w := range late {
		name := filepath.Join(a.cfg.ExportDir, ExportLateFileName(w, lateFrom+1, mark))
		if err := a.writeParquet(ctx, name, `recv_ms >= ? AND recv_ms < ? AND arrival > ? AND arrival <= ? ORDER BY edge, seq`, w, w+exportWindow, lateFrom, mark); err != nil {
			return nil, err
		}
		files = append(files, name)
	}
	if len(late) > 0 {
		a.log.Info("beacon export: beacons arrived after their window was exported; written to late files", "windows", len(late), "files", strings.Join(files[len(files)-len(late):], ", "))
	}
	if err := a.setExport(ctx, map[string]int64{"window": win, "mark": mark}); err != nil {
		return nil, err
	}
	return files, nil
}

// exportWindows returns the distinct windows (minute starts, in order) of
// the received beacons matching where (?1..?4 are the arguments).
func (a *Aggregator) exportWindows(ctx context.Context, where string, args ...any) ([]int64, error) {
	var out []int64
	err := a.cfg.Store.ReadLocal(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT DISTINCT recv_ms - (((recv_ms % 60000) + 60000) % 60000) AS w FROM outpost_beacon_recv WHERE `+where+` ORDER BY w`, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var w int64
			if err := rows.Scan(&w); err != nil {
				return err
			}
			out = append(out, w)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("export: list windows: %w", err)
	}
	return out, nil
}

// writeParquet writes the received beacons matching where (with args) to
// name, atomically.
func (a *Aggregator) writeParquet(ctx context.Context, name, where string, args ...any) error {
	tmp := name + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	defer f.Close()
	w := parquet.NewGenericWriter[ExportRow](f, parquet.Compression(&parquet.Zstd))
	batch := make([]ExportRow, 0, 1024)
	err = a.cfg.Store.ReadLocal(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT edge, seq, recv_ms, body FROM outpost_beacon_recv WHERE `+where, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r ExportRow
			if err := rows.Scan(&r.Edge, &r.Seq, &r.RecvMS, &r.Body); err != nil {
				return err
			}
			r.WindowMS = minuteOf(r.RecvMS)
			if batch = append(batch, r); len(batch) == cap(batch) {
				if _, err := w.Write(batch); err != nil {
					return err
				}
				batch = batch[:0]
			}
		}
		return rows.Err()
	})
	if err != nil {
		return fmt.Errorf("export %s: %w", name, err)
	}
	if _, err := w.Write(batch); err != nil {
		return fmt.Errorf("export %s: %w", name, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("export %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return err
	}
	if err := os.Rename(tmp, name); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(name))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
