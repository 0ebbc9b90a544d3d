package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/wire"
)

// logDDL keeps the origin logs of protocol 2 (docs/PROTOCOL2.md): every
// entry this node originated or received, as signed by its origin, until
// collected; and per origin the knowledge: the contiguous prefix of its
// entries this node holds (through) and how far they were collected
// (floor: entries at or below it are gone from outpost_log), with the
// timestamp of the entry at through (hlc; 0 when unknown, e.g. knowledge
// adopted from a snapshot), which tombstone collection cuts by.
var logDDL = []string{
	`CREATE TABLE IF NOT EXISTS outpost_log (origin TEXT NOT NULL, seq INTEGER NOT NULL, hlc INTEGER NOT NULL, more INTEGER NOT NULL DEFAULT 0, body BLOB NOT NULL, sig BLOB NOT NULL, PRIMARY KEY (origin, seq)) WITHOUT ROWID`,
	`CREATE TABLE IF NOT EXISTS outpost_known (origin TEXT PRIMARY KEY NOT NULL, through INTEGER NOT NULL DEFAULT 0, floor INTEGER NOT NULL DEFAULT 0, hlc INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID`,
}

// Bounds of one log entry this node writes: a commit group with more
// changes or bytes becomes a chain of entries.
const (
	entryMaxChanges = 5000
	entryMaxBytes   = 4 << 20
)

// Rules of refused log entries (besides the gate's and the store's).
const (
	RuleSignature = "signature_invalid" // refused: the origin's signature does not verify
	RuleBody      = "entry_malformed"   // refused: the body does not decode or names another origin
)

// LogKeys signs this node's log entries and verifies other origins'.
type LogKeys interface {
	// Sign returns this node's signature of msg.
	Sign(msg []byte) []byte
	// Verify checks sig over msg against the key of the node named
	// originName (from the trust list); an unknown name is an error.
	Verify(originName string, msg, sig []byte) error
}

// Knowledge is, per origin (NAME/incarnation), the last sequence of the
// contiguous prefix of its log a node holds.
type Knowledge map[string]int64

// EntryResult says what an ApplyEntries did.
type EntryResult struct {
	ApplyResult
	Entries    int // entries appended to the log
	Duplicates int // entries already held
	Gaps       int // entries not following what is held (skipped; ask again)
	Bad        int // entries refused: bad signature or body
}

// logLocal writes the local transactions of the commit group being built
// (db_versions in dbvs, all in (lo, hi]) to this node's log as signed
// entries, in the group's transaction.
func (s *Store) logLocal(ctx context.Context, lo, hi int64, dbvs map[int64]bool) error {
	chs, vs, err := s.readWindow(ctx, s.writerQuery, lo, hi)
	if err != nil {
		return fmt.Errorf("log local group: %w", err)
	}
	byOrigin := map[string][]outpost.Change{}
	var order []string
	for i := range chs {
		if !dbvs[vs[i]] {
			continue
		}
		o := chs[i].Origin
		if _, ok := byOrigin[o]; !ok {
			order = append(order, o)
		}
		byOrigin[o] = append(byOrigin[o], chs[i])
	}
	last := map[string]int64{}
	for _, o := range order {
		seq, err := s.appendOwn(ctx, o, byOrigin[o])
		if err != nil {
			return err
		}
		last[o] = seq
	}
	// Where each local transaction is: the entry of its origin (a
	// transaction that changed nothing is covered by the latest).
	own := s.Origin()
	if _, ok := last[own]; !ok {
		seq, _, err := s.knownOf(ctx, own)
		if err != nil {
			return err
		}
		last[own] = seq
	}
	s.groupPos = s.groupPos[:0]
	for dbv := range dbvs {
		s.groupPos = append(s.groupPos, dbvPos{dbv, logPos{own, last[own]}})
	}
	return nil
}

type dbvPos struct {
	dbv int64
	pos logPos
}

// appendOwn appends changes of this node's origin o as one chain of
// entries, signed, after the last entry of o.
func (s *Store) appendOwn(ctx context.Context, o string, chs []outpost.Change) (int64, error) {
	seq, _, err := s.knownOf(ctx, o)
	if err != nil {
		return 0, err
	}
	for len(chs) > 0 {
		n, size := 0, 0
		for n < len(chs) && (n == 0 || (n < entryMaxChanges && size+ChangeBytes(&chs[n]) <= entryMaxBytes)) {
			size += ChangeBytes(&chs[n])
			n++
		}
		var hl uint64
		for i := range chs[:n] {
			hl = max(hl, chs[i].HLC)
		}
		body, err := wire.EncodeBody(chs[:n], wire.Limits{})
		if err != nil {
			return 0, fmt.Errorf("log local group: %w", err)
		}
		seq++
		e := outpost.Entry{Origin: o, Seq: seq, HLC: hl, More: n < len(chs), Body: body}
		if s.opts.Keys != nil {
			e.Sig = s.opts.Keys.Sign(e.SignedMessage())
		}
		if err := s.insertEntry(ctx, &e); err != nil {
			return 0, err
		}
		chs = chs[n:]
	}
	return seq, nil
}

// knownOf reads what this node holds of origin o's log, in the writer.
func (s *Store) knownOf(ctx context.Context, o string) (through, floor int64, err error) {
	st, err := s.stmts.get(ctx, `SELECT through, floor FROM outpost_known WHERE origin = ?`)
	if err != nil {
		return 0, 0, err
	}
	err = st.QueryRowContext(ctx, o).Scan(&through, &floor)
	if errors.Is(err, sql.ErrNoRows) {
		err = nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("read knowledge of %s: %w", o, err)
	}
	return through, floor, nil
}

// insertEntry appends e to the log and moves the knowledge of its origin.
func (s *Store) insertEntry(ctx context.Context, e *outpost.Entry) error {
	st, err := s.stmts.get(ctx, `INSERT INTO outpost_log (origin, seq, hlc, more, body, sig) VALUES (?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	sig := e.Sig
	if sig == nil {
		sig = []byte{}
	}
	if _, err := st.ExecContext(ctx, e.Origin, e.Seq, int64(e.HLC), e.More, e.Body, sig); err != nil {
		return fmt.Errorf("append log entry %s:%d: %w", e.Origin, e.Seq, err)
	}
	st, err = s.stmts.get(ctx, `INSERT INTO outpost_known (origin, through, hlc) VALUES (?1, ?2, ?3) ON CONFLICT (origin) DO UPDATE SET hlc = CASE WHEN excluded.through >= through THEN excluded.hlc ELSE hlc END, through = max(through, excluded.through)`)
	if err != nil {
		return err
	}
	if _, err := st.ExecContext(ctx, e.Origin, e.Seq, int64(e.HLC)); err != nil {
		return fmt.Errorf("record knowledge of %s: %w", e.Origin, err)
	}
	s.groupLogged = true
	return nil
}

// decodedEntry is an entry whose signature and body were checked.
type decodedEntry struct {
	e       *outpost.Entry
	changes []outpost.Change
}

// ApplyEntries applies log entries received from sender: each is checked
// (the origin's signature, the body) outside the writer, then, in one
// local transaction, appended to the log and merged, in each origin's
// order. An entry already held is a duplicate; one that does not follow
// what is held is a gap (skipped: the caller asks again with its
// knowledge). A chain (More) is applied whole or not at all; entries must
// come in whole chains. Changes are judged by the gate as spoken by their
// proven origin, so table permissions are the origin's.
func (s *Store) ApplyEntries(ctx context.Context, sender string, entries []outpost.Entry) (EntryResult, error) {
	var res EntryResult
	dec := make([]decodedEntry, 0, len(entries))
	bad := map[string]bool{} // origins with a refused entry in this batch: the rest of theirs would be gaps
	for i := range entries {
		e := &entries[i]
		if bad[e.Origin] {
			res.Gaps++
			continue
		}
		if err := s.checkEntry(e); err != nil {
			bad[e.Origin] = true
			if errors.Is(err, ErrUnknownOrigin) {
				res.Gaps++
				continue
			}
			res.Bad++
			rule := RuleBody
			if errors.Is(err, errSignature) {
				rule = RuleSignature
			}
			s.refusals.add(sender, rule, e.Origin)
			s.refusals.logOnce(s, "replication: refused log entry", sender, &outpost.Change{Origin: e.Origin}, rule, err.Error())
			continue
		}
		chs, err := wire.DecodeBody(e.Body, e.Origin, wire.Limits{})
		if err != nil {
			bad[e.Origin] = true
			res.Bad++
			s.refusals.add(sender, RuleBody, e.Origin)
			s.refusals.logOnce(s, "replication: refused log entry", sender, &outpost.Change{Origin: e.Origin}, RuleBody, err.Error())
			continue
		}
		dec = append(dec, decodedEntry{e, chs})
	}
	_, err := s.submitRemote(ctx, false, func(tx *Tx) error {
		r := EntryResult{Bad: res.Bad, Gaps: res.Gaps}
		tx.budget = holdBudget{}
		known := map[string]int64{}
		for i := 0; i < len(dec); {
			// One chain: entries i..j-1.
			j := i + 1
			for j <= len(dec) && dec[j-1].e.More {
				j++
			}
			if j > len(dec) {
				return fmt.Errorf("apply entries of %s: the batch ends inside a chain", dec[i].e.Origin)
			}
			o := dec[i].e.Origin
			through, ok := known[o]
			if !ok {
				t, _, err := s.knownOf(tx.ctx, o)
				if err != nil {
					return err
				}
				through = t
			}
			switch first := dec[i].e.Seq; {
			case dec[j-1].e.Seq <= through:
				// Delivered again: its changes count as ignored, so
				// delivery counts stay honest.
				r.Duplicates += j - i
				for _, d := range dec[i:j] {
					r.Ignored += len(d.changes)
				}
			case first != through+1:
				r.Gaps += j - i
			default:
				for _, d := range dec[i:j] {
					g := outpost.Group{DBV: d.e.Seq, Changes: d.changes}
					if err := tx.applyGroup(outpost.OriginName(o), &g, &r.ApplyResult); err != nil {
						return fmt.Errorf("apply entry %s:%d: %w", o, d.e.Seq, err)
					}
					if err := s.insertEntry(tx.ctx, d.e); err != nil {
						return err
					}
					r.Entries++
				}
				through = dec[j-1].e.Seq
			}
			known[o] = through
			i = j
		}
		res = r
		return nil
	})
	if err != nil {
		return res, err
	}
	s.account(res.ApplyResult)
	return res, nil
}

var errSignature = errors.New("signature does not verify")

// ErrUnknownOrigin is what LogKeys.Verify wraps for an origin this node has
// no key for yet (not on its trust list): its entries are skipped, not
// refused, and come again once the trust list has it.
var ErrUnknownOrigin = errors.New("origin unknown")

// checkEntry verifies an entry's signature (when this node has keys).
func (s *Store) checkEntry(e *outpost.Entry) error {
	if s.opts.Keys == nil {
		return nil
	}
	if len(e.Sig) == 0 {
		return fmt.Errorf("entry %s:%d is not signed: %w", e.Origin, e.Seq, errSignature)
	}
	if err := s.opts.Keys.Verify(outpost.OriginName(e.Origin), e.SignedMessage(), e.Sig); err != nil {
		if errors.Is(err, ErrUnknownOrigin) {
			return fmt.Errorf("entry %s:%d: %w", e.Origin, e.Seq, err)
		}
		return fmt.Errorf("entry %s:%d: %v: %w", e.Origin, e.Seq, err, errSignature)
	}
	return nil
}

// Knowledge returns what this node holds of every origin's log.
func (s *Store) Knowledge(ctx context.Context) (Knowledge, error) {
	k := Knowledge{}
	rows, err := s.replDB.QueryContext(ctx, `SELECT origin, through FROM outpost_known`)
	if err != nil {
		return nil, fmt.Errorf("read knowledge: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var o string
		var t int64
		if err := rows.Scan(&o, &t); err != nil {
			return nil, fmt.Errorf("read knowledge: %w", err)
		}
		k[o] = t
	}
	return k, rows.Err()
}

// EntryFilter selects the origins EntriesFor serves.
type EntryFilter struct {
	// Only, if not empty, serves only origins of these node names.
	Only []string
	// Except leaves out origins of these node names.
	Except []string
	// ExceptOrigin leaves out this exact origin (the puller's current
	// incarnation: it has its own writes).
	ExceptOrigin string
	// MaxBytes bounds a batch (about; whole chains); 0 = DefaultMaxBatchBytes.
	MaxBytes int
}

// Wants reports whether the filter selects origin.
func (f *EntryFilter) Wants(origin string) bool {
	if origin == f.ExceptOrigin {
		return false
	}
	name := outpost.OriginName(origin)
	for _, n := range f.Except {
		if n == name {
			return false
		}
	}
	if len(f.Only) == 0 {
		return true
	}
	for _, n := range f.Only {
		if n == name {
			return true
		}
	}
	return false
}

// SnapshotNeededError reports that a puller lacks entries of an origin that
// this node has already collected: it must bootstrap from a snapshot.
type SnapshotNeededError struct {
	Origin      string
	Have, Floor int64
}

func (e *SnapshotNeededError) Error() string {
	return fmt.Sprintf("entries of %s after %d were collected here (through %d): a snapshot is needed", e.Origin, e.Have, e.Floor)
}

// EntriesFor returns, from one read snapshot, the entries of the origins
// f selects that a puller knowing have lacks: per origin in order, whole
// chains, about f.MaxBytes in all (at least one chain). It fails with a
// *SnapshotNeededError when an origin's missing entries were collected.
func (s *Store) EntriesFor(ctx context.Context, have Knowledge, f EntryFilter) ([]outpost.Entry, error) {
	if f.MaxBytes <= 0 {
		f.MaxBytes = DefaultMaxBatchBytes
	}
	if s.closed.Load() {
		return nil, &Error{Code: CodeUnavailable, Statement: -1, Message: "the store is closed", Err: outpost.ErrClosed}
	}
	conn, err := s.replDB.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("read entries: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
		return nil, fmt.Errorf("read entries: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "COMMIT") //nolint:errcheck // read-only
	type lag struct {
		origin        string
		from, through int64
	}
	var lags []lag
	rows, err := conn.QueryContext(ctx, `SELECT origin, through, floor FROM outpost_known`)
	if err != nil {
		return nil, fmt.Errorf("read entries: %w", err)
	}
	for rows.Next() {
		var o string
		var through, floor int64
		if err := rows.Scan(&o, &through, &floor); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read entries: %w", err)
		}
		h := have[o]
		if through <= h || !f.Wants(o) {
			continue
		}
		if h < floor {
			rows.Close()
			return nil, &SnapshotNeededError{Origin: o, Have: h, Floor: floor}
		}
		lags = append(lags, lag{o, h, through})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read entries: %w", err)
	}
	var out []outpost.Entry
	size := 0
	for _, l := range lags {
		if size >= f.MaxBytes {
			break
		}
		q, err := conn.QueryContext(ctx, `SELECT seq, hlc, more, body, sig FROM outpost_log WHERE origin = ? AND seq > ? ORDER BY seq`, l.origin, l.from)
		if err != nil {
			return nil, fmt.Errorf("read entries of %s: %w", l.origin, err)
		}
		for q.Next() {
			e := outpost.Entry{Origin: l.origin}
			var h int64
			if err := q.Scan(&e.Seq, &h, &e.More, &e.Body, &e.Sig); err != nil {
				q.Close()
				return nil, fmt.Errorf("read entries of %s: %w", l.origin, err)
			}
			e.HLC = uint64(h)
			if len(e.Sig) == 0 {
				e.Sig = nil
			}
			out = append(out, e)
			size += len(e.Body) + len(e.Sig) + len(e.Origin) + 32
			if size >= f.MaxBytes && !e.More {
				break
			}
		}
		err = q.Err()
		q.Close()
		if err != nil {
			return nil, fmt.Errorf("read entries of %s: %w", l.origin, err)
		}
	}
	return out, nil
}
