package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/outpost-edge/outpost/capture"
	"github.com/outpost-edge/outpost/schema"
	"modernc.org/sqlite"
)

// internalSchema holds Outpost's own replicated tables.
//
// outpost_slugs is the registry of slugs each node has issued. Only the node
// named in a row writes it (its slugs end in its code), and because it is
// replicated, a node rebuilt from an empty disk gets its registry back.
//
// outpost_limit_blocks holds the rate limiter's blocked keys (PutLimitBlock):
// replicated, so a block reaches every node durably; the last write of a key
// wins.
const internalSchema = `
CREATE TABLE outpost_slugs (
	slug   TEXT PRIMARY KEY NOT NULL,
	node   TEXT NOT NULL DEFAULT '',
	title  TEXT NOT NULL DEFAULT '',
	issued INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE outpost_limit_blocks (
	key   TEXT PRIMARY KEY NOT NULL,
	until INTEGER NOT NULL DEFAULT 0,
	node  TEXT NOT NULL DEFAULT ''
);
CREATE TABLE outpost_floors (
	tbl   TEXT NOT NULL,
	node  TEXT NOT NULL,
	floor INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (tbl, node)
);`

type meta struct {
	incarnation string
	created     bool // incarnation created now
	boot        int64
	dbVersion   int64
	hlc         int64
}

func (s *Store) registerAuthorizer() error {
	return s.conn.Raw(func(dc any) error {
		ar, ok := dc.(sqlite.AuthorizerRegisterer)
		if !ok {
			return errors.New("sqlite driver does not support authorizers")
		}
		return ar.RegisterAuthorizer(s.appAuthorizer)
	})
}

// inTx runs fn in an immediate transaction on the writer connection. It is
// only for use before the writer goroutine starts.
func (s *Store) inTx(ctx context.Context, fn func() error) (err error) {
	if _, err := s.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			_, _ = s.conn.ExecContext(context.Background(), "ROLLBACK")
		}
	}()
	if err := fn(); err != nil {
		return err
	}
	if _, err := s.conn.ExecContext(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// bootstrap creates the meta table, the incarnation on first open, and
// counts this boot.
func (s *Store) bootstrap(ctx context.Context) (meta, error) {
	var m meta
	err := s.inTx(ctx, func() error {
		if _, err := s.conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS outpost_meta (key TEXT PRIMARY KEY NOT NULL, value) WITHOUT ROWID`); err != nil {
			return fmt.Errorf("create meta: %w", err)
		}
		get := func(key string) (sql.NullString, error) {
			var v sql.NullString
			err := s.conn.QueryRowContext(ctx, `SELECT value FROM outpost_meta WHERE key = ?`, key).Scan(&v)
			if errors.Is(err, sql.ErrNoRows) {
				return v, nil
			}
			return v, err
		}
		inc, err := get("incarnation")
		if err != nil {
			return fmt.Errorf("read incarnation: %w", err)
		}
		m.incarnation = inc.String
		if !inc.Valid {
			m.incarnation, m.created = newIncarnation(), true
			if err := s.setMeta(ctx, "incarnation", m.incarnation); err != nil {
				return err
			}
		}
		for key, dst := range map[string]*int64{"boot": &m.boot, "db_version": &m.dbVersion, "hlc": &m.hlc} {
			if err := s.conn.QueryRowContext(ctx, `SELECT coalesce((SELECT value FROM outpost_meta WHERE key = ?), 0)`, key).Scan(dst); err != nil {
				return fmt.Errorf("read %s: %w", key, err)
			}
		}
		m.boot++
		return s.setMeta(ctx, "boot", m.boot)
	})
	return m, err
}

func (s *Store) setMeta(ctx context.Context, key string, value any) error {
	if _, err := s.conn.ExecContext(ctx, `INSERT INTO outpost_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value); err != nil {
		return fmt.Errorf("write meta %s: %w", key, err)
	}
	return nil
}

// applySchema brings the database to the schema: creates missing tables,
// adds appended columns (a rolling upgrade), creates indexes, views and
// triggers, and (re)creates the capture triggers, all in one transaction.
func (s *Store) applySchema(ctx context.Context) error {
	internal, err := schema.ParseInternal(ctx, internalSchema+purgesSchema+relaySchema)
	if err != nil {
		return fmt.Errorf("internal schema: %w", err)
	}
	tables := append(append([]schema.Table{}, internal.Tables...), s.schema.Tables...)
	s.tables = map[string]*replTable{}
	for _, t := range tables {
		rt := newReplTable(t)
		s.tables[strings.ToLower(t.Name)] = rt
		s.tableOrder = append(s.tableOrder, rt)
	}
	s.emitAll, s.emitPK = emitAllSQL(s.tableOrder)
	for _, o := range s.schema.Objects {
		if rt := s.tables[strings.ToLower(o.Table)]; o.Type == "trigger" && rt != nil {
			rt.guarded = true // a user trigger may RAISE on a remote value
		}
	}
	return s.inTx(ctx, func() error {
		for _, stmt := range append(append(append(append([]string{}, replicationDDL...), heldDDL...), idempotencyDDL...), logDDL...) {
			if _, err := s.conn.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("apply schema: %w", err)
			}
		}
		if err := s.migrateHeld(ctx); err != nil {
			return err
		}
		if err := s.migratePeers(ctx); err != nil {
			return err
		}
		if err := s.addColumns(ctx, "outpost_known", knownColumns); err != nil {
			return err
		}
		for _, t := range tables {
			if err := s.ensureTable(ctx, t); err != nil {
				return fmt.Errorf("apply schema: %w", err)
			}
		}
		for _, o := range append(append([]schema.Object{}, internal.Objects...), s.schema.Objects...) {
			if err := s.ensureObject(ctx, o); err != nil {
				return fmt.Errorf("apply schema: %w", err)
			}
		}
		for _, t := range tables {
			for _, stmt := range capture.DDL(t.Capture()) {
				if _, err := s.conn.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("apply schema: capture for table %q: %w", t.Name, err)
				}
			}
		}
		if err := s.ensureSearch(ctx); err != nil { // search.go
			return err
		}
		return s.setMeta(ctx, "schema_version", s.schema.Version)
	})
}

func (s *Store) ensureTable(ctx context.Context, t schema.Table) error {
	rows, err := s.conn.QueryContext(ctx, `SELECT name, type, pk FROM pragma_table_info(?)`, t.Name)
	if err != nil {
		return fmt.Errorf("table %q: %w", t.Name, err)
	}
	type col struct {
		name, typ string
		pk        int
	}
	var have []col
	for rows.Next() {
		var c col
		if err := rows.Scan(&c.name, &c.typ, &c.pk); err != nil {
			rows.Close()
			return fmt.Errorf("table %q: %w", t.Name, err)
		}
		have = append(have, c)
	}
	rows.Close()
	if len(have) == 0 {
		if _, err := s.conn.ExecContext(ctx, t.SQL); err != nil {
			return fmt.Errorf("create table %q: %w", t.Name, err)
		}
		return nil
	}
	if len(have) > len(t.Columns) {
		return fmt.Errorf("table %q: the database has %d columns but the schema file declares %d; Outpost only adds columns (dropping one would lose replicated data); restore the missing columns in the schema file", t.Name, len(have), len(t.Columns))
	}
	for i, h := range have {
		w := t.Columns[i]
		if !strings.EqualFold(h.name, w.Name) || !strings.EqualFold(h.typ, w.Type) || h.pk != w.PK {
			return fmt.Errorf("table %q: column %d is %q %s in the database but %q %s in the schema file; Outpost can only append new columns at the end of a table", t.Name, i+1, h.name, h.typ, w.Name, w.Type)
		}
	}
	for _, c := range t.Columns[len(have):] {
		if c.PK > 0 {
			return fmt.Errorf("table %q: new column %q is part of the primary key; a key cannot change on a live table", t.Name, c.Name)
		}
		if _, err := s.conn.ExecContext(ctx, fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s", capture.Quote(t.Name), c.Definition())); err != nil {
			return fmt.Errorf("table %q: add column %q: %w (a new column must be nullable or have a constant DEFAULT)", t.Name, c.Name, err)
		}
		s.log.Info("schema: added column", "table", t.Name, "column", c.Name)
	}
	return nil
}

func (s *Store) ensureObject(ctx context.Context, o schema.Object) error {
	var have string
	err := s.conn.QueryRowContext(ctx, `SELECT coalesce(sql, '') FROM sqlite_schema WHERE type = ? AND name = ?`, o.Type, o.Name).Scan(&have)
	switch {
	case err == nil && have == o.SQL:
		return nil
	case err == nil:
		if _, err := s.conn.ExecContext(ctx, fmt.Sprintf("DROP %s %s", strings.ToUpper(o.Type), capture.Quote(o.Name))); err != nil {
			return fmt.Errorf("replace %s %q: %w", o.Type, o.Name, err)
		}
	case !errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%s %q: %w", o.Type, o.Name, err)
	}
	if _, err := s.conn.ExecContext(ctx, o.SQL); err != nil {
		return fmt.Errorf("create %s %q: %w", o.Type, o.Name, err)
	}
	return nil
}

func (s *Store) loadSlugs(ctx context.Context) ([]string, error) {
	rows, err := s.conn.QueryContext(ctx, `SELECT slug FROM outpost_slugs WHERE node = ?`, s.opts.Identity.Name)
	if err != nil {
		return nil, fmt.Errorf("load slug registry: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var slug string
		if err := rows.Scan(&slug); err != nil {
			return nil, fmt.Errorf("load slug registry: %w", err)
		}
		out = append(out, slug)
	}
	return out, rows.Err()
}
