package store

import (
	"context"
	"fmt"

	"github.com/outpost-edge/outpost/capture"
)

// Tombstones counts deleted rows whose tombstone (sentinel with an even
// causal length) is kept, over every replicated table.
func (s *Store) Tombstones(ctx context.Context) (int64, error) {
	var total int64
	for _, rt := range s.tableOrder {
		var n int64
		q := fmt.Sprintf(`SELECT count(*) FROM %s WHERE col = '' AND cl %% 2 = 0`, capture.Quote(capture.ClockTable(rt.name)))
		if err := s.rdb.QueryRowContext(ctx, q).Scan(&n); err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}
