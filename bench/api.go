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

// LimitDecisions measures rate-limit decisions (POST /v1/limit) over keys
// distinct keys far under their limit, so every decision takes the local
// path (no remote call).
func LimitDecisions(ctx context.Context, c *Client, conc, keys int, lim Limits) Result {
	return run(ctx, fmt.Sprintf("rate-limit decision (local path), c=%d", conc), conc, lim, func(ctx context.Context, w int, i int64) error {
		body := make([]byte, 0, 96)
		body = append(body, `{"key":"bench:`...)
		body = strconv.AppendInt(body, i%int64(keys), 10)
		body = append(body, `","limit":1000000000,"window":"60s","cost":1}`...)
		var out rawBody
		if err := c.Post(ctx, "/v1/limit", body, &out); err != nil {
			return err
		}
		if !bytes.Contains(out, []byte(`"allowed":true`)) {
			return fmt.Errorf("limit decision: unexpected answer %s", out)
		}
		return nil
	})
}
