package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/capture"
	"github.com/outpost-edge/outpost/search"
)

// searchDDL is the local (not replicated) table of the search indexes this
// database holds: each index's definition and the incarnation it was built
// under. An index whose definition changed is built again; so is one built
// under another incarnation (a restored database: a backup made with VACUUM
// INTO may renumber the rowids the index refers to).
const searchDDL = `CREATE TABLE IF NOT EXISTS outpost_search (name TEXT PRIMARY KEY NOT NULL, definition TEXT NOT NULL, incarnation TEXT NOT NULL)`

// ensureSearch creates, rebuilds or drops the schema's search indexes (see
// package search) so that the database holds exactly the declared ones,
// each complete and kept current by its triggers. It runs in the schema
// transaction at Open.
func (s *Store) ensureSearch(ctx context.Context) error {
	if _, err := s.conn.ExecContext(ctx, searchDDL); err != nil {
		return fmt.Errorf("search indexes: %w", err)
	}
	type built struct{ definition, incarnation string }
	have := map[string]built{}
	rows, err := s.conn.QueryContext(ctx, `SELECT name, definition, incarnation FROM outpost_search`)
	if err != nil {
		return fmt.Errorf("search indexes: %w", err)
	}
	for rows.Next() {
		var name string
		var b built
		if err := rows.Scan(&name, &b.definition, &b.incarnation); err != nil {
			rows.Close()
			return fmt.Errorf("search indexes: %w", err)
		}
		have[name] = b
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("search indexes: %w", err)
	}
	declared := map[string]bool{}
	for _, ix := range s.schema.Search {
		declared[ix.Name] = true
		b, ours := have[ix.Name]
		exists, err := s.objectExists(ctx, ix.Name)
		if err != nil {
			return err
		}
		var why string
		switch {
		case exists && !ours:
			return fmt.Errorf("search index %q: the database already has a table of that name that is not a search index (from an earlier schema?); give the index another name", ix.Name)
		case !exists:
			why = "new"
		case b.definition != ix.Create():
			why = "definition changed"
		case b.incarnation != s.incarnation:
			why = "database restored or re-created"
		}
		if why == "" {
			// Up to date: only the triggers are made again, in case
			// this build writes them differently.
			if err := s.execAll(ctx, ix.Triggers()); err != nil {
				return fmt.Errorf("search index %q: %w", ix.Name, err)
			}
			continue
		}
		start := time.Now()
		stmts := append(append(append(ix.Drop(), ix.Create()), ix.Triggers()...), ix.Rebuild())
		if err := s.execAll(ctx, stmts); err != nil {
			return fmt.Errorf("search index %q: build: %w", ix.Name, err)
		}
		if _, err := s.conn.ExecContext(ctx, `INSERT INTO outpost_search (name, definition, incarnation) VALUES (?, ?, ?)
ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, incarnation = excluded.incarnation`, ix.Name, ix.Create(), s.incarnation); err != nil {
			return fmt.Errorf("search index %q: %w", ix.Name, err)
		}
		s.log.Info("search index built", "index", ix.Name, "table", ix.Table, "reason", why, "took", time.Since(start).String())
	}
	for name := range have {
		if declared[name] {
			continue
		}
		if err := s.execAll(ctx, search.Index{Name: name}.Drop()); err != nil {
			return fmt.Errorf("search index %q: drop: %w", name, err)
		}
		if _, err := s.conn.ExecContext(ctx, `DELETE FROM outpost_search WHERE name = ?`, name); err != nil {
			return fmt.Errorf("search index %q: drop: %w", name, err)
		}
		s.log.Info("search index dropped (no longer in the schema file)", "index", name)
	}
	return nil
}

func (s *Store) objectExists(ctx context.Context, name string) (bool, error) {
	var n string
	err := s.conn.QueryRowContext(ctx, `SELECT name FROM sqlite_schema WHERE name = ? COLLATE NOCASE`, name).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("search index %q: %w", name, err)
	}
	return true, nil
}

func (s *Store) execAll(ctx context.Context, stmts []string) error {
	for _, stmt := range stmts {
		if _, err := s.conn.ExecContext(ctx, stmt); err != nil {
			return err
		}
	}
	return nil
}

// searchWriteRefusal says why a client statement may not write table, if
// it is a search index or one of FTS5's tables for it: the node keeps
// those itself, from the indexed table.
func (s *Store) searchWriteRefusal(table string) string {
	if s.schema == nil || strings.HasPrefix(strings.ToLower(table), capture.Prefix) {
		return ""
	}
	for _, ix := range s.schema.Search {
		if ix.Owns(table) {
			return fmt.Sprintf("%q is the local search index %q, which the node keeps current itself; write table %q instead", table, ix.Name, ix.Table)
		}
	}
	return ""
}
