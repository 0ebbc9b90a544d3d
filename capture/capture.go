// Package capture generates the clock tables and triggers that record, inside
// the same SQLite transaction as the data, each replicated row's causal length
// and each column's (hlc, origin) version and db_version.
//
// For a table T with primary key columns p0..pn the clock table is
//
//	outpost_clock__T(pk0..pkn, col, cl, hlc, origin, dbv) PRIMARY KEY (pk0..pkn, col)
//
// The row with col = ” is the row's sentinel: cl is the causal length (odd =
// alive, even = deleted) and (hlc, origin, dbv) the event that set it. Every
// other row is the version of one column in the row's current life; when a row
// changes life its column rows are removed, so a deleted row keeps only its
// sentinel (the tombstone).
//
// Collected tombstones (see FloorTable) raise the table's causal-length
// floor: a local insert of a key with no clock row takes the floor + 1, so
// it outranks every tombstone of that table that was collected here and may
// still be kept elsewhere.
//
// Triggers run only when outpost_capture() returns 1: the store's writer
// registers that function and returns 1 inside a local transaction, 0 while it
// applies remote changes (which maintain the clock themselves) and an error
// outside any Outpost transaction, so a write that bypasses Outpost aborts.
package capture

import (
	"fmt"
	"strings"
)

// Prefix starts the name of every object Outpost owns; user schemas may not use it.
const Prefix = "outpost_"

// Column names of a clock table besides the primary key columns pk0..pkN.
const (
	ColCol    = "col"
	ColCL     = "cl"
	ColHLC    = "hlc"
	ColOrigin = "origin"
	ColDBV    = "dbv"
)

// Table describes a replicated table for capture.
type Table struct {
	Name    string
	PK      []Column // primary key columns in key order
	Columns []Column // the other columns, in table order
}

// Column is a column name and its declared type.
type Column struct {
	Name string
	Type string
}

// Quote returns s as an SQLite identifier.
func Quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// Literal returns s as an SQLite string literal.
func Literal(s string) string { return `'` + strings.ReplaceAll(s, `'`, `''`) + `'` }

// ClockTable returns the name of t's clock table.
func ClockTable(table string) string { return Prefix + "clock__" + table }

// PKCol returns the name of the i-th primary key column in a clock table.
func PKCol(i int) string { return fmt.Sprintf("pk%d", i) }

// TombstoneWhere selects the tombstones of a clock table: sentinels of a
// deleted life (even causal length).
const TombstoneWhere = "col = '' AND cl % 2 = 0"

// FloorTable keeps, per replicated table, the largest causal length among
// the tombstones this node has collected (always even; 0 when none).
const FloorTable = Prefix + "clfloor"

// FloorDDL creates FloorTable.
const FloorDDL = `CREATE TABLE IF NOT EXISTS ` + FloorTable + ` (tbl TEXT PRIMARY KEY NOT NULL, floor INTEGER NOT NULL) WITHOUT ROWID`

// SharedFloorTable is the replicated table of every node's floors (tbl,
// node, floor): a node that bootstraps from a snapshot has neither the
// collected tombstones nor a floor of its own, and learns the others'
// floors with the rest of the state. Values from 2^32 on are ignored (a
// hostile floor could otherwise push new rows past the causal-length
// bound peers accept).
const SharedFloorTable = Prefix + "floors"

// floorExpr is the causal length of a new row of table: the highest floor
// this node or any node it heard of collected, + 1.
func floorExpr(table string) string {
	return fmt.Sprintf("max(coalesce((SELECT floor FROM %s WHERE tbl = %s), 0), coalesce((SELECT max(floor) FROM %s WHERE tbl = %s AND floor < 4294967296), 0)) + 1",
		FloorTable, Literal(table), SharedFloorTable, Literal(table))
}

func triggerName(kind, table string) string { return Prefix + kind + "__" + table }

// DDL returns the statements that create t's clock table and index (if
// missing) and (re)create its capture triggers. They are idempotent.
func DDL(t Table) []string {
	ct := Quote(ClockTable(t.Name))
	var pkDefs, pkNames []string
	for i, c := range t.PK {
		pkDefs = append(pkDefs, fmt.Sprintf("%s %s NOT NULL", PKCol(i), c.Type))
		pkNames = append(pkNames, PKCol(i))
	}
	stmts := []string{
		FloorDDL,
		fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (%s, col TEXT NOT NULL, cl INTEGER NOT NULL, hlc INTEGER NOT NULL, origin TEXT NOT NULL, dbv INTEGER NOT NULL, PRIMARY KEY (%s, col)) WITHOUT ROWID`,
			ct, strings.Join(pkDefs, ", "), strings.Join(pkNames, ", ")),
		fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s (dbv)`, Quote(ClockTable(t.Name)+"__dbv"), ct),
		// The tombstones, for counting and collecting them without a scan.
		fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s (origin, hlc) WHERE %s`, Quote(ClockTable(t.Name)+"__tomb"), ct, TombstoneWhere),
	}
	for _, kind := range []string{"ins", "upd", "updpk", "del"} {
		stmts = append(stmts, "DROP TRIGGER IF EXISTS "+Quote(triggerName(kind, t.Name)))
	}
	tbl := Quote(t.Name)
	stmts = append(stmts,
		fmt.Sprintf("CREATE TRIGGER %s AFTER INSERT ON %s WHEN outpost_capture() BEGIN %s END",
			Quote(triggerName("ins", t.Name)), tbl, insertBody(t, "NEW")),
		fmt.Sprintf("CREATE TRIGGER %s AFTER UPDATE ON %s WHEN outpost_capture() AND %s BEGIN %s END",
			Quote(triggerName("upd", t.Name)), tbl, pkSame(t), updateBody(t)),
		fmt.Sprintf("CREATE TRIGGER %s AFTER UPDATE ON %s WHEN outpost_capture() AND NOT (%s) BEGIN %s %s END",
			Quote(triggerName("updpk", t.Name)), tbl, pkSame(t), deleteBody(t, "OLD"), insertBody(t, "NEW")),
		fmt.Sprintf("CREATE TRIGGER %s AFTER DELETE ON %s WHEN outpost_capture() BEGIN %s END",
			Quote(triggerName("del", t.Name)), tbl, deleteBody(t, "OLD")),
	)
	return stmts
}

// pkSame is true when an UPDATE left the primary key unchanged.
func pkSame(t Table) string {
	var parts []string
	for _, c := range t.PK {
		parts = append(parts, fmt.Sprintf("NEW.%s IS OLD.%s", Quote(c.Name), Quote(c.Name)))
	}
	return strings.Join(parts, " AND ")
}

// pkMatch matches clock rows of the row whose key is in ref (NEW or OLD).
func pkMatch(t Table, ref string) string {
	var parts []string
	for i, c := range t.PK {
		parts = append(parts, fmt.Sprintf("%s = %s.%s", PKCol(i), ref, Quote(c.Name)))
	}
	return strings.Join(parts, " AND ")
}

func pkValues(t Table, ref string) string {
	var parts []string
	for _, c := range t.PK {
		parts = append(parts, ref+"."+Quote(c.Name))
	}
	return strings.Join(parts, ", ")
}

func pkCols(t Table) string {
	var parts []string
	for i := range t.PK {
		parts = append(parts, PKCol(i))
	}
	return strings.Join(parts, ", ")
}

const version = "outpost_hlc(), outpost_origin(), outpost_dbv()"

// insertBody: the row enters a new life if it was absent (the table's floor
// + 1, see FloorTable) or deleted (a REPLACE of a live row keeps its life),
// and every column gets a version.
func insertBody(t Table, ref string) string {
	ct := Quote(ClockTable(t.Name))
	var b strings.Builder
	fmt.Fprintf(&b, "INSERT INTO %s (%s, col, cl, hlc, origin, dbv) VALUES (%s, '', %s, %s) ON CONFLICT (%s, col) DO UPDATE SET cl = cl + (cl %% 2 = 0), hlc = excluded.hlc, origin = excluded.origin, dbv = excluded.dbv;",
		ct, pkCols(t), pkValues(t, ref), floorExpr(t.Name), version, pkCols(t))
	if len(t.Columns) > 0 {
		var names []string
		for _, c := range t.Columns {
			names = append(names, "SELECT "+Literal(c.Name)+" AS name")
		}
		fmt.Fprintf(&b, " INSERT INTO %s (%s, col, cl, hlc, origin, dbv) SELECT %s, c.name, s.cl, %s FROM (%s) AS c, (SELECT cl FROM %s WHERE %s AND col = '') AS s WHERE true ON CONFLICT (%s, col) DO UPDATE SET cl = excluded.cl, hlc = excluded.hlc, origin = excluded.origin, dbv = excluded.dbv;",
			ct, pkCols(t), pkValues(t, ref), version, strings.Join(names, " UNION ALL "), ct, pkMatch(t, ref), pkCols(t))
	}
	return b.String()
}

// updateBody gives every column whose value (or type) changed a new version.
func updateBody(t Table) string {
	ct := Quote(ClockTable(t.Name))
	if len(t.Columns) == 0 {
		return "SELECT 1;"
	}
	var names []string
	for _, c := range t.Columns {
		q := Quote(c.Name)
		names = append(names, fmt.Sprintf("SELECT %s AS name WHERE NEW.%s IS NOT OLD.%s OR typeof(NEW.%s) IS NOT typeof(OLD.%s)",
			Literal(c.Name), q, q, q, q))
	}
	return fmt.Sprintf("INSERT INTO %s (%s, col, cl, hlc, origin, dbv) SELECT %s, c.name, s.cl, %s FROM (%s) AS c, (SELECT cl FROM %s WHERE %s AND col = '') AS s WHERE true ON CONFLICT (%s, col) DO UPDATE SET cl = excluded.cl, hlc = excluded.hlc, origin = excluded.origin, dbv = excluded.dbv;",
		ct, pkCols(t), pkValues(t, "NEW"), version, strings.Join(names, " UNION ALL "), ct, pkMatch(t, "NEW"), pkCols(t))
}

// deleteBody moves the row to the next (even) life and drops its column
// versions; the sentinel stays as the tombstone.
func deleteBody(t Table, ref string) string {
	ct := Quote(ClockTable(t.Name))
	return fmt.Sprintf("INSERT INTO %s (%s, col, cl, hlc, origin, dbv) VALUES (%s, '', 2, %s) ON CONFLICT (%s, col) DO UPDATE SET cl = cl + (cl %% 2 = 1), hlc = excluded.hlc, origin = excluded.origin, dbv = excluded.dbv; DELETE FROM %s WHERE %s AND col <> '';",
		ct, pkCols(t), pkValues(t, ref), version, pkCols(t), ct, pkMatch(t, ref))
}
