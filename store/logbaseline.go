package store

import (
	"context"
	"fmt"

	"github.com/outpost-edge/outpost"
)

// baseline starts the log of a database written before logs existed
// (protocol 1): the surviving changes of this node's own origins (every
// incarnation of its name) become signed entries, so peers that speak
// protocol 2 receive them. Changes of other origins are theirs to log.
// It runs once, at the first Open of a build with logs.
func (s *Store) baseline(ctx context.Context) error {
	var done int64
	if err := s.conn.QueryRowContext(ctx, `SELECT count(*) FROM outpost_meta WHERE key = 'log'`).Scan(&done); err != nil {
		return fmt.Errorf("log baseline: %w", err)
	}
	if done > 0 {
		return nil
	}
	return s.inTx(ctx, func() error {
		if err := s.setMeta(ctx, "log", 1); err != nil {
			return err
		}
		entries := 0
		const window = 4096
		for lo := int64(0); lo < s.dbv; lo += window {
			chs, _, err := s.readWindow(ctx, s.writerQuery, lo, min(s.dbv, lo+window))
			if err != nil {
				return fmt.Errorf("log baseline: %w", err)
			}
			byOrigin := map[string][]outpost.Change{}
			var order []string
			for _, ch := range chs {
				if outpost.OriginName(ch.Origin) != s.opts.Identity.Name {
					continue
				}
				if _, ok := byOrigin[ch.Origin]; !ok {
					order = append(order, ch.Origin)
				}
				byOrigin[ch.Origin] = append(byOrigin[ch.Origin], ch)
			}
			for _, o := range order {
				if _, err := s.appendOwn(ctx, o, byOrigin[o]); err != nil {
					return fmt.Errorf("log baseline: %w", err)
				}
				entries++
			}
		}
		if entries > 0 {
			s.log.Info("store: started the log from this node's existing writes (protocol 2 upgrade)", "chains", entries)
		}
		return nil
	})
}
