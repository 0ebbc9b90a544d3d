// Package search is Outpost's local full-text search: FTS5 indexes over a
// replicated table, declared in the schema file with a directive,
//
//	-- outpost: search pages_fts on pages (title, body)
//	-- outpost: search pages_fts on pages (title, body) tokenize 'porter unicode61 remove_diacritics 2'
//
// and built and kept current by each node on its own. An index is derived
// data and is never replicated: every node indexes the rows it holds, and
// triggers on the base table keep the index current on every write to it,
// a client's write and a change applied from a peer alike.
//
// The index is an FTS5 external-content table (content=TABLE,
// content_rowid=rowid): it stores only the index, and reads the columns
// from the base table. Its columns are the directive's, in order (the
// column numbers of snippet() and highlight()), then the table's primary
// key columns UNINDEXED, so a query can return the key:
//
//	SELECT id, snippet(pages_fts, 1, '<b>', '</b>', '…', 12) FROM pages_fts
//	WHERE pages_fts MATCH ? ORDER BY bm25(pages_fts) LIMIT 20
package search

import (
	"fmt"
	"strings"

	"github.com/outpost-edge/outpost/capture"
)

// DefaultTokenize is the FTS5 tokenizer of an index whose directive names
// none: Unicode word breaking, case folding, diacritics removed (so
// "creme" finds "crème").
const DefaultTokenize = "unicode61 remove_diacritics 2"

// Index is one search index, as its directive declares it.
type Index struct {
	Name     string   // the FTS5 table
	Table    string   // the replicated table it indexes (a rowid table)
	Columns  []string // indexed columns, in order
	Keys     []string // the table's primary key columns, added UNINDEXED (filled in by the schema check)
	Tokenize string   // FTS5 tokenizer; "" = DefaultTokenize
	Line     int      // line of the directive in the schema file
}

// Prefix starts the name of every object the node creates for an index
// besides the FTS5 table itself (its stash table and triggers).
const Prefix = capture.Prefix + "search_"

// Stash is the name of the index's stash table: the row an INSERT is about
// to replace (INSERT OR REPLACE deletes it without firing delete triggers),
// kept from the BEFORE INSERT trigger to the AFTER INSERT one.
func (ix Index) Stash() string { return Prefix + "stash__" + ix.Name }

func (ix Index) trigger(kind string) string { return Prefix + kind + "__" + ix.Name }

// ShadowSuffixes are the suffixes of the tables FTS5 keeps an index in.
var ShadowSuffixes = []string{"_data", "_idx", "_docsize", "_config", "_content"}

// Owns reports whether table is the index or one of FTS5's tables for it
// (matched case-insensitively, as SQLite does).
func (ix Index) Owns(table string) bool {
	t, n := strings.ToLower(table), strings.ToLower(ix.Name)
	if t == n {
		return true
	}
	for _, s := range ShadowSuffixes {
		if t == n+s {
			return true
		}
	}
	return false
}

func (ix Index) tokenize() string {
	if ix.Tokenize == "" {
		return DefaultTokenize
	}
	return ix.Tokenize
}

// all returns the FTS5 columns: the indexed ones, then the keys not among them.
func (ix Index) all() []string {
	cols := append([]string{}, ix.Columns...)
	for _, k := range ix.Keys {
		if !containsFold(ix.Columns, k) {
			cols = append(cols, k)
		}
	}
	return cols
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// Create returns the CREATE VIRTUAL TABLE statement of the index. It is
// also the index's definition: a node rebuilds an index whose definition
// changed.
func (ix Index) Create() string {
	var defs []string
	for _, c := range ix.Columns {
		defs = append(defs, capture.Quote(c))
	}
	for _, c := range ix.all()[len(ix.Columns):] {
		defs = append(defs, capture.Quote(c)+" UNINDEXED")
	}
	return fmt.Sprintf("CREATE VIRTUAL TABLE %s USING fts5(%s, content=%s, content_rowid='rowid', tokenize=%s)",
		capture.Quote(ix.Name), strings.Join(defs, ", "), capture.Literal(ix.Table), capture.Literal(ix.tokenize()))
}

// Rebuild returns the statement that indexes every row of the table again.
func (ix Index) Rebuild() string {
	q := capture.Quote(ix.Name)
	return fmt.Sprintf("INSERT INTO %s (%s) VALUES ('rebuild')", q, q)
}

// Triggers returns the statements that create the stash table (if
// missing) and (re)create the triggers that keep the index current. They
// are idempotent.
func (ix Index) Triggers() []string {
	tbl, fts, stash := capture.Quote(ix.Table), capture.Quote(ix.Name), capture.Quote(ix.Stash())
	docsize := capture.Quote(ix.Name + "_docsize")
	cols := quoteAll(ix.Columns)
	prefixed := func(ref string) string {
		var out []string
		for _, c := range ix.Columns {
			out = append(out, ref+"."+capture.Quote(c))
		}
		return strings.Join(out, ", ")
	}
	var keyMatch, changed []string
	for _, k := range ix.Keys {
		keyMatch = append(keyMatch, fmt.Sprintf("%s = NEW.%s", capture.Quote(k), capture.Quote(k)))
	}
	changed = append(changed, "OLD.rowid IS NOT NEW.rowid")
	for _, c := range ix.Columns {
		changed = append(changed, fmt.Sprintf("OLD.%s IS NOT NEW.%s", capture.Quote(c), capture.Quote(c)))
	}
	// unindex removes ref's row from the index, given the values it was
	// indexed with, if the index holds it (FTS5 keeps one _docsize row
	// per indexed rowid; deleting with values it does not hold would
	// corrupt the index).
	unindex := func(rid, vals, from string) string {
		return fmt.Sprintf("INSERT INTO %s (%s, rowid, %s) SELECT 'delete', %s, %s%s WHERE EXISTS (SELECT 1 FROM %s WHERE id = %s);",
			fts, fts, cols, rid, vals, from, docsize, rid)
	}
	index := fmt.Sprintf("INSERT INTO %s (rowid, %s) VALUES (NEW.rowid, %s);", fts, cols, prefixed("NEW"))
	stmts := []string{
		fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (rid INTEGER, %s)", stash, cols),
	}
	for _, kind := range []string{"bi", "ai", "au", "ad"} {
		stmts = append(stmts, "DROP TRIGGER IF EXISTS "+capture.Quote(ix.trigger(kind)))
	}
	stmts = append(stmts,
		// An INSERT that replaces a row deletes it without delete triggers
		// (recursive_triggers is off): stash the row it may replace.
		fmt.Sprintf("CREATE TRIGGER %s BEFORE INSERT ON %s BEGIN DELETE FROM %s; INSERT INTO %s (rid, %s) SELECT rowid, %s FROM %s WHERE %s; END",
			capture.Quote(ix.trigger("bi")), tbl, stash, stash, cols, cols, tbl, strings.Join(keyMatch, " AND ")),
		// After the insert, a stashed row was replaced (an upsert's DO
		// UPDATE fires the update trigger instead, an ignored insert none).
		fmt.Sprintf("CREATE TRIGGER %s AFTER INSERT ON %s BEGIN %s DELETE FROM %s; %s END",
			capture.Quote(ix.trigger("ai")), tbl, unindex("s.rid", prefixed("s"), " FROM "+stash+" AS s"), stash, index),
		fmt.Sprintf("CREATE TRIGGER %s AFTER UPDATE ON %s WHEN %s BEGIN %s %s END",
			capture.Quote(ix.trigger("au")), tbl, strings.Join(changed, " OR "), unindex("OLD.rowid", prefixed("OLD"), ""), index),
		fmt.Sprintf("CREATE TRIGGER %s AFTER DELETE ON %s BEGIN %s END",
			capture.Quote(ix.trigger("ad")), tbl, unindex("OLD.rowid", prefixed("OLD"), "")),
	)
	return stmts
}

// Drop returns the statements that remove the index, its triggers and its
// stash table.
func (ix Index) Drop() []string {
	var stmts []string
	for _, kind := range []string{"bi", "ai", "au", "ad"} {
		stmts = append(stmts, "DROP TRIGGER IF EXISTS "+capture.Quote(ix.trigger(kind)))
	}
	return append(stmts, "DROP TABLE IF EXISTS "+capture.Quote(ix.Name), "DROP TABLE IF EXISTS "+capture.Quote(ix.Stash()))
}

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = capture.Quote(n)
	}
	return strings.Join(q, ", ")
}
