package bench

import (
	"bytes"
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
		// Built by hand: the load generator shares the CPUs with the node.
		body := make([]byte, 0, 160)
		body = append(body, `{"statements":[{"sql":"INSERT INTO bench_rows (id, n, body) VALUES (?, ?, ?)","args":["`...)
		body = append(body, id...)
		body = append(body, `",`...)
		body = strconv.AppendInt(body, i, 10)
		body = append(body, `,"hello, edge"]}]}`...)
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
		body := make([]byte, 0, 128)
		body = append(body, `{"sql":"SELECT id, n, body FROM bench_rows WHERE id = ?","args":["`...)
		body = append(body, id...)
		body = append(body, `"]}`...)
		var out rawBody
		if err := c.Post(ctx, "/v1/query", body, &out); err != nil {
			return err
		}
		// One row whose first column is the id asked for.
		if !bytes.Contains(out, []byte(`"rows":[["`+id+`",`)) || bytes.Count(out, []byte("],[")) != 0 {
			return fmt.Errorf("point read of %s: unexpected answer %s", id, out)
		}
		return nil
	})
}

// rawBody keeps a response body as it came.
type rawBody []byte

// UnmarshalJSON implements json.Unmarshaler by copying.
func (r *rawBody) UnmarshalJSON(b []byte) error {
	*r = append((*r)[:0], b...)
	return nil
}
