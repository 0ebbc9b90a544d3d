package store

import (
	"fmt"
	"strings"
	"sync"

	"github.com/outpost-edge/outpost/capture"
	"github.com/outpost-edge/outpost/schema"
	"github.com/outpost-edge/outpost/sqltext"
)

// replicationDDL creates the tables replication keeps besides the clocks.
var replicationDDL = []string{
	// Per peer and direction, the peer's db_version this node has durably
	// reached, and the peer incarnation it belongs to (a new incarnation
	// resets it). kind: pull = we pulled up to dbv (their numbering);
	// push = we pushed up to dbv (our numbering); recv = we received pushes
	// up to dbv (their numbering).
	`CREATE TABLE IF NOT EXISTS outpost_peers (name TEXT NOT NULL, kind TEXT NOT NULL, incarnation TEXT NOT NULL DEFAULT '', dbv INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (name, kind)) WITHOUT ROWID`,
}

// replTable is a replicated table with the SQL replication runs on it.
type replTable struct {
	name    string
	pk      []string
	cols    []string
	colSet  map[string]bool
	colFold map[string]string         // lower-cased column name -> as declared (SQLite names are case-insensitive)
	notNull map[string]bool           // columns a remote value could violate by being NULL
	guarded bool                      // CHECK constraints or triggers: every applied change runs under a savepoint
	emit    string                    // clock rows with dbv in (?, ?] and their values
	emitArm func(idx, pks int) string // emit as an arm of emitAllSQL
	keysArm func(idx, pks int) string // the same without versions or value (ChangeFilter.KeysOnly)
	sent    string                    // the row's sentinel
	colVer  string                    // one column's version
	upSent  string                    // upsert sentinel: pk..., cl, hlc, origin, dbv
	bumpSen string                    // hlc, origin, dbv, pk...
	dropCol string                    // delete the row's column versions
	delRow  string                    // delete the data row
	insRow  string                    // insert the data row with defaults
	setCol  map[string]string         // update one data column: val, pk...
	anyClk  string                    // any clock row of the key (applyrow.go)

	mu       sync.Mutex        // guards the statement texts built on demand:
	insCols  map[string]string // data row INSERT by column set (applyrow.go)
	insClock map[int]string    // n clock rows INSERT (applyrow.go)
}

func newReplTable(t schema.Table) *replTable {
	ct := t.Capture()
	rt := &replTable{name: t.Name, colSet: map[string]bool{}, colFold: map[string]string{}, notNull: map[string]bool{}, setCol: map[string]string{}}
	rt.guarded, _ = sqltext.HasKeyword(t.SQL, "CHECK")
	for _, c := range t.Columns {
		if c.NotNull && c.PK == 0 {
			rt.notNull[c.Name] = true
		}
	}
	clock := capture.Quote(capture.ClockTable(t.Name))
	tbl := capture.Quote(t.Name)
	var pkc, pkMatchClock, pkMatchData, join, ph []string
	for i, c := range ct.PK {
		rt.pk = append(rt.pk, c.Name)
		pkc = append(pkc, capture.PKCol(i))
		pkMatchClock = append(pkMatchClock, capture.PKCol(i)+" = ?")
		pkMatchData = append(pkMatchData, capture.Quote(c.Name)+" = ?")
		join = append(join, fmt.Sprintf("t.%s = c.%s", capture.Quote(c.Name), capture.PKCol(i)))
		ph = append(ph, "?")
	}
	var cases []string
	for _, c := range ct.Columns {
		rt.cols = append(rt.cols, c.Name)
		rt.colSet[c.Name] = true
		rt.colFold[strings.ToLower(c.Name)] = c.Name
		cases = append(cases, fmt.Sprintf("WHEN %s THEN t.%s", capture.Literal(c.Name), capture.Quote(c.Name)))
		rt.setCol[c.Name] = fmt.Sprintf("UPDATE %s SET %s = ? WHERE %s", tbl, capture.Quote(c.Name), strings.Join(pkMatchData, " AND "))
	}
	val := "NULL"
	if len(cases) > 0 {
		val = "CASE c.col " + strings.Join(cases, " ") + " END"
	}
	rt.emit = fmt.Sprintf("SELECT %s, c.col, c.cl, c.hlc, c.origin, c.dbv, %s FROM %s AS c LEFT JOIN %s AS t ON %s WHERE c.dbv > ? AND c.dbv <= ? ORDER BY c.dbv",
		prefixed("c.", pkc), val, clock, tbl, strings.Join(join, " AND "))
	rt.emitArm = func(idx, pks int) string {
		cols := prefixed("c.", pkc)
		for range pks - len(pkc) {
			cols += ", NULL"
		}
		return fmt.Sprintf("SELECT %d, %s, c.col, c.cl, c.hlc, c.origin, c.dbv, %s FROM %s AS c LEFT JOIN %s AS t ON %s WHERE c.dbv > ?1 AND c.dbv <= ?2",
			idx, cols, val, clock, tbl, strings.Join(join, " AND "))
	}
	// Key, col and dbv are all in the dbv index: this arm reads nothing else.
	rt.keysArm = func(idx, pks int) string {
		cols := prefixed("c.", pkc)
		for range pks - len(pkc) {
			cols += ", NULL"
		}
		return fmt.Sprintf("SELECT %d, %s, c.col, 0, 0, '', c.dbv, NULL FROM %s AS c WHERE c.dbv > ?1 AND c.dbv <= ?2",
			idx, cols, clock)
	}
	rt.sent = fmt.Sprintf("SELECT cl, hlc, origin FROM %s WHERE %s AND col = ''", clock, strings.Join(pkMatchClock, " AND "))
	rt.anyClk = fmt.Sprintf("SELECT cl FROM %s WHERE %s LIMIT 1", clock, strings.Join(pkMatchClock, " AND "))
	rt.colVer = fmt.Sprintf("SELECT col, cl, hlc, origin FROM %s WHERE %s AND col IN ('', ?)", clock, strings.Join(pkMatchClock, " AND "))
	rt.upSent = fmt.Sprintf("INSERT INTO %s (%s, col, cl, hlc, origin, dbv) VALUES (%s, ?, ?, ?, ?, ?) ON CONFLICT (%s, col) DO UPDATE SET cl = excluded.cl, hlc = excluded.hlc, origin = excluded.origin, dbv = excluded.dbv",
		clock, strings.Join(pkc, ", "), strings.Join(ph, ", "), strings.Join(pkc, ", "))
	rt.bumpSen = fmt.Sprintf("UPDATE %s SET hlc = ?, origin = ?, dbv = ? WHERE %s AND col = ''", clock, strings.Join(pkMatchClock, " AND "))
	rt.dropCol = fmt.Sprintf("DELETE FROM %s WHERE %s AND col <> ''", clock, strings.Join(pkMatchClock, " AND "))
	rt.delRow = fmt.Sprintf("DELETE FROM %s WHERE %s", tbl, strings.Join(pkMatchData, " AND "))
	var pkq []string
	for _, c := range rt.pk {
		pkq = append(pkq, capture.Quote(c))
	}
	rt.insRow = fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", tbl, strings.Join(pkq, ", "), strings.Join(ph, ", "))
	return rt
}

func prefixed(p string, names []string) string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = p + n
	}
	return strings.Join(out, ", ")
}

// maxEmitArms bounds the tables emitAllSQL puts in one statement (SQLite
// allows 500 arms in a compound SELECT); with more, each table is read with
// its own statement.
const maxEmitArms = 400

// emitAllSQL returns one statement that reads every table's clock rows with
// dbv in (?1, ?2] and their values: a UNION ALL of the tables' emits, each
// row led by the table's index in tables and its key padded with NULLs to
// pks columns. Each arm reads its table's dbv index, so a window costs one
// statement instead of one per table (most of which find nothing).
func emitAllSQL(tables []*replTable) (query string, pks int) {
	return emitSQL(tables, nil)
}

// emitSQL is emitAllSQL; with keysOnly set, only the tables in withValues
// (lower-case names) are read whole, the others' rows carry only their key,
// col and dbv.
func emitSQL(tables []*replTable, withValues map[string]bool) (query string, pks int) {
	if len(tables) == 0 || len(tables) > maxEmitArms {
		return "", 0
	}
	for _, rt := range tables {
		pks = max(pks, len(rt.pk))
	}
	arms := make([]string, len(tables))
	for i, rt := range tables {
		if withValues == nil || withValues[strings.ToLower(rt.name)] {
			arms[i] = rt.emitArm(i, pks)
		} else {
			arms[i] = rt.keysArm(i, pks)
		}
	}
	return strings.Join(arms, " UNION ALL "), pks
}
