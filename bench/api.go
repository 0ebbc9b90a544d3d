package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
)

type stmt struct {
	SQL  string `json:"sql"`
	Args []any  `json:"args"`
}

// Writes measures single-row durable writes (one INSERT per /v1/exec).
func Writes(ctx context.Context, c *Client, conc int, lim Limits, run0 string) (Result, []string) {
	var mu sync.Mutex
	var ids []string
	r := run(ctx, fmt.Sprintf("single-row durable write, c=%d", conc), conc, lim, func(ctx context.Context, w int, i int64) error {
		id := run0 + "-" + strconv.FormatInt(i, 10)
		body, _ := json.Marshal(map[string]any{"statements": []stmt{{SQL: "INSERT INTO bench_rows (id, n, body) VALUES (?, ?, ?)", Args: []any{id, i, "hello, edge"}}}})
		if err := c.Post(ctx, "/v1/exec", body, nil); err != nil {
			return err
		}
		mu.Lock()
		ids = append(ids, id)
		mu.Unlock()
		return nil
	})
	return r, ids
}

// Transactions measures transactions of rows INSERT statements each.
func Transactions(ctx context.Context, c *Client, conc, rows int, lim Limits, run0 string) Result {
	r := run(ctx, fmt.Sprintf("%d-row transaction, c=%d", rows, conc), conc, lim, func(ctx context.Context, w int, i int64) error {
		stmts := make([]stmt, rows)
		for k := range stmts {
			stmts[k] = stmt{SQL: "INSERT INTO bench_rows (id, n, body) VALUES (?, ?, ?)", Args: []any{run0 + "-tx-" + strconv.FormatInt(i, 10) + "-" + strconv.Itoa(k), k, "hello, edge"}}
		}
		body, _ := json.Marshal(map[string]any{"statements": stmts})
		return c.Post(ctx, "/v1/exec", body, nil)
	})
	r.Note = strings.TrimSpace(r.Note + fmt.Sprintf(" rows/s = %.0f", r.PerSecond*float64(rows)))
	return r
}

// Reads measures point reads by primary key over ids.
func Reads(ctx context.Context, c *Client, conc int, lim Limits, ids []string) Result {
	return run(ctx, fmt.Sprintf("point read, c=%d", conc), conc, lim, func(ctx context.Context, w int, i int64) error {
		id := ids[int(i)%len(ids)]
		body, _ := json.Marshal(stmt{SQL: "SELECT id, n, body FROM bench_rows WHERE id = ?", Args: []any{id}})
		var out struct {
			Rows [][]any `json:"rows"`
		}
		if err := c.Post(ctx, "/v1/query", body, &out); err != nil {
			return err
		}
		if len(out.Rows) != 1 {
			return fmt.Errorf("point read of %s: %d rows", id, len(out.Rows))
		}
		return nil
	})
}
