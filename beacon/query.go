package beacon

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Quantiles reported for each sketch.
var Quantiles = []float64{0.5, 0.75, 0.9, 0.95, 0.99}

// RollupRow is one row of GET /v1/beacons/rollups.
type RollupRow struct {
	WindowMS  int64                         `json:"window_ms"`
	Window    string                        `json:"window"` // RFC 3339, UTC
	Dims      map[string]any                `json:"dims"`
	Count     int64                         `json:"count"`
	Sum       map[string]float64            `json:"sum,omitempty"`
	Quantiles map[string]map[string]float64 `json:"quantiles,omitempty"` // field -> p50, p75, p90, p95, p99, count
}

// MaxRollupRows bounds one answer of GET /v1/beacons/rollups.
const MaxRollupRows = 10_000

// Rollup returns the rows of the named rollup with windows starting in
// [from, to) (Unix ms), oldest first, at most limit.
func (a *Aggregator) Rollup(ctx context.Context, name string, from, to int64, limit int) ([]RollupRow, error) {
	var spec *Rollup
	for i := range a.cfg.Rollups {
		if a.cfg.Rollups[i].Name == name {
			spec = &a.cfg.Rollups[i]
		}
	}
	if spec == nil {
		return nil, fmt.Errorf("%w: %q", ErrNoRollup, name)
	}
	var out []RollupRow
	err := a.cfg.Store.ReadLocal(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT window_ms, dims, count, sums, sketches FROM outpost_beacon_rollups
			WHERE rollup = ? AND window_ms >= ? AND window_ms < ? ORDER BY window_ms, dims LIMIT ?`, name, from, to, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				r        RollupRow
				dims     string
				sums     string
				sketches []byte
			)
			if err := rows.Scan(&r.WindowMS, &dims, &r.Count, &sums, &sketches); err != nil {
				return err
			}
			r.Window = time.UnixMilli(r.WindowMS).UTC().Format(time.RFC3339)
			var vals []any
			_ = json.Unmarshal([]byte(dims), &vals)
			r.Dims = map[string]any{}
			for i, f := range spec.By {
				if i < len(vals) {
					r.Dims[f] = vals[i]
				}
			}
			if sums != "" && sums != "{}" {
				_ = json.Unmarshal([]byte(sums), &r.Sum)
			}
			if len(sketches) > 0 {
				sk, err := decodeSketches(sketches)
				if err != nil {
					return err
				}
				r.Quantiles = map[string]map[string]float64{}
				for f, s := range sk {
					q := map[string]float64{"count": s.GetCount()}
					vs, err := s.GetValuesAtQuantiles(Quantiles)
					if err == nil {
						for i, p := range Quantiles {
							q["p"+strconv.Itoa(int(p*100+0.5))] = vs[i]
						}
					}
					r.Quantiles[f] = q
				}
			}
			out = append(out, r)
		}
		return rows.Err()
	})
	return out, err
}

// ErrNoRollup reports a rollup name that is not declared.
var ErrNoRollup = errors.New("no such rollup")

// RollupsHandler serves GET /v1/beacons/rollups?rollup=NAME&from=&to=&limit=
// (from and to as Unix ms or RFC 3339; default the last hour).
func (a *Aggregator) RollupsHandler() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		name := q.Get("rollup")
		if name == "" {
			name = a.cfg.Rollups[0].Name
		}
		now := a.cfg.Now()
		from, err1 := parseTime(q.Get("from"), now.Add(-time.Hour))
		to, err2 := parseTime(q.Get("to"), now.Add(time.Minute))
		limit := MaxRollupRows
		var err3 error
		if s := q.Get("limit"); s != "" {
			limit, err3 = strconv.Atoi(s)
		}
		if err1 != nil || err2 != nil || err3 != nil || limit < 1 || limit > MaxRollupRows {
			writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("want rollup=NAME, from and to as Unix ms or RFC 3339, limit 1..%d", MaxRollupRows))
			return
		}
		rows, err := a.Rollup(r.Context(), name, from, to, limit)
		if err != nil {
			if errors.Is(err, ErrNoRollup) {
				var names []string
				for _, s := range a.cfg.Rollups {
					names = append(names, s.Name)
				}
				writeError(w, http.StatusNotFound, "no_such_rollup", fmt.Sprintf("no rollup %q; declared: %v (--beacon-rollup)", name, names))
				return
			}
			writeError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
			return
		}
		if rows == nil {
			rows = []RollupRow{}
		}
		var spec Rollup
		for _, s := range a.cfg.Rollups {
			if s.Name == name {
				spec = s
			}
		}
		ans := map[string]any{"rollup": spec.Name, "window_ms": spec.Window.Milliseconds(), "by": spec.By, "rows": rows}
		if len(spec.Sum) > 0 {
			ans["sum"] = spec.Sum
		}
		if len(spec.Quantile) > 0 {
			ans["quantile"] = spec.Quantile
		}
		b, _ := json.Marshal(ans)
		writeJSON(w, http.StatusOK, b)
	}
}

// CheckHandler serves GET /v1/beacons/check: the last cross-check's report;
// with run=1 it runs one first.
func (a *Aggregator) CheckHandler() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var rep CheckReport
		if r.URL.Query().Get("run") == "1" {
			ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
			rep = a.Check(ctx)
			cancel()
		} else {
			rep = a.Report()
		}
		b, _ := json.Marshal(rep)
		writeJSON(w, http.StatusOK, b)
	}
}

func parseTime(s string, def time.Time) (int64, error) {
	if s == "" {
		return def.UnixMilli(), nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return 0, err
	}
	return t.UnixMilli(), nil
}
