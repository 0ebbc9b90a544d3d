package beacon

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/outpost-edge/outpost/store"
	"github.com/parquet-go/parquet-go"
)

// DefaultExportInterval is how often an aggregator with an export
// directory writes a Parquet file.
const DefaultExportInterval = time.Minute

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

// exportState returns how far the export is done and the range end it is
// writing (pending > done while a file is being written).
func (a *Aggregator) exportState(ctx context.Context) (done, pending int64, err error) {
	err = a.cfg.Store.ReadLocal(ctx, func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `SELECT coalesce((SELECT value FROM outpost_beacon_export WHERE key = 'done'), 0),
			coalesce((SELECT value FROM outpost_beacon_export WHERE key = 'pending'), 0)`).Scan(&done, &pending)
	})
	return done, pending, err
}

func (a *Aggregator) setExport(ctx context.Context, key string, v int64) error {
	return a.cfg.Store.WriteLocal(ctx, func(tx *store.LocalTx) error {
		_, err := tx.Exec(`INSERT INTO outpost_beacon_export (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, v)
		return err
	})
}

// ExportFileName is the name of the file holding the beacons of arrival
// numbers lo..hi at an aggregator.
func ExportFileName(lo, hi int64) string {
	return fmt.Sprintf("beacons-%016d-%016d.parquet", lo, hi)
}

// Export writes the beacons received since the last export into one
// Parquet file in ExportDir and returns its path ("" if there was nothing
// new). Each beacon is in exactly one file: the range is recorded as
// pending (durably) before the file is written, the file is written to a
// temporary name, synced and renamed, and only then is the range recorded
// as done; after a crash the pending range is written again under the same
// name, replacing whatever part of it was there.
func (a *Aggregator) Export(ctx context.Context) (string, error) {
	if a.cfg.ExportDir == "" {
		return "", fmt.Errorf("no export directory")
	}
	a.exportMu.Lock()
	defer a.exportMu.Unlock()
	done, pending, err := a.exportState(ctx)
	if err != nil {
		return "", fmt.Errorf("export state: %w", err)
	}
	hi := pending
	if pending <= done {
		err := a.cfg.Store.ReadLocal(ctx, func(tx *sql.Tx) error {
			return tx.QueryRowContext(ctx, `SELECT coalesce(max(arrival), 0) FROM outpost_beacon_recv`).Scan(&hi)
		})
		if err != nil {
			return "", err
		}
		if hi <= done {
			return "", nil
		}
		if err := a.setExport(ctx, "pending", hi); err != nil {
			return "", err
		}
	}
	if err := os.MkdirAll(a.cfg.ExportDir, 0o755); err != nil {
		return "", err
	}
	name := filepath.Join(a.cfg.ExportDir, ExportFileName(done+1, hi))
	if err := a.writeParquet(ctx, name, done, hi); err != nil {
		return "", err
	}
	if err := a.setExport(ctx, "done", hi); err != nil {
		return "", err
	}
	return name, nil
}

// writeParquet writes the beacons of arrival (lo, hi] to name, atomically.
func (a *Aggregator) writeParquet(ctx context.Context, name string, lo, hi int64) error {
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
		rows, err := tx.QueryContext(ctx, `SELECT edge, seq, recv_ms, body FROM outpost_beacon_recv WHERE arrival > ? AND arrival <= ? ORDER BY arrival`, lo, hi)
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
	if err := f.Close(); err != nil {
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
