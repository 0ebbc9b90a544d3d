package store

import (
	"context"
	"fmt"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/capture"
)

// RotateIncarnation gives the database a new incarnation: from now on this
// node's changes carry the origin NAME/new, and peers, seeing the new
// incarnation in its hello, reset their cursors for it and read its
// changes again from db_version 0.
//
// It is the cure for a database restored from a copy of its data directory:
// the copy has the old incarnation but a lower db_version, so peers whose
// cursors are past it would skip every db_version it issues again, and
// would echo-filter the writes it lost as its own. Under a new incarnation
// both come back. reason is logged.
//
// The writes the database lost may have issued slugs this node no longer
// knows it issued (they come back only by replication), so a rotated store
// refuses outpost_slug() from the transaction that takes the new
// incarnation on, until SetSlugsReady(true): the caller allows slugs again
// once a pull under the new incarnation has caught up with an upstream
// peer (package node does it on replication's OnCaughtUp).
func (s *Store) RotateIncarnation(ctx context.Context, reason string) (string, error) {
	inc := newIncarnation()
	old := s.Incarnation()
	ready := s.slugsReady.Load()
	_, err := s.submitRemote(ctx, true, func(tx *Tx) error {
		// On the writer: every transaction after this one sees it.
		s.slugsReady.Store(false)
		st, err := tx.s.stmts.get(tx.ctx, `INSERT INTO outpost_meta (key, value) VALUES ('incarnation', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`)
		if err != nil {
			return err
		}
		_, err = st.ExecContext(tx.ctx, inc)
		return err
	})
	if err != nil {
		s.slugsReady.Store(ready)
		return "", fmt.Errorf("rotate incarnation: %w", err)
	}
	// Durable now. A local write committed between that and the swap
	// below still carries the old origin; peers read it again anyway,
	// from 0 under the new incarnation.
	s.incMu.Lock()
	s.incarnation = inc
	s.origin = s.opts.Identity.Name + "/" + inc
	s.incMu.Unlock()
	s.log.Warn("store: new incarnation; slugs wait until a pull has caught up", "old", old, "new", inc, "reason", reason)
	s.broadcast()
	return inc, nil
}

// Fingerprint identifies one of a peer's commit groups as a puller received
// it, so the peer can tell whether its db_version DBV is still that commit
// or was issued again after its database was restored from an older copy
// (a db_version count alone cannot tell once the restored node has issued
// more db_versions than it lost).
//
// It is the timestamp of the peer's own local transaction that committed as
// DBV: a local transaction takes one db_version and one HLC, and every
// clock row it writes carries both, with the peer's origin. The puller
// keeps the fingerprint of the last group it received, at or before its
// cursor, that carried such changes (origin NAME/INC of the incarnation the
// cursor is for); groups of relayed changes only carry no fingerprint. A
// zero Fingerprint is unknown.
type Fingerprint struct {
	DBV int64  // the peer's db_version of the group
	HLC uint64 // the HLC of the peer's own changes in it
}

// IsZero reports whether the fingerprint is unknown.
func (f Fingerprint) IsZero() bool { return f.DBV <= 0 }

// String is the wire form, DBV:HLC (the fp query parameter).
func (f Fingerprint) String() string { return fmt.Sprintf("%d:%d", f.DBV, f.HLC) }

// ParseFingerprint reads the wire form; anything else is the zero
// (unknown) fingerprint.
func ParseFingerprint(s string) Fingerprint {
	var f Fingerprint
	if s == "" {
		return f
	}
	if n, err := fmt.Sscanf(s, "%d:%d", &f.DBV, &f.HLC); err != nil || n != 2 || f.DBV <= 0 || fmt.Sprintf("%d:%d", f.DBV, f.HLC) != s {
		return Fingerprint{}
	}
	return f
}

// GroupFingerprint is the fingerprint of the last of groups that carries
// changes of origin (the sending peer's own, of the incarnation the cursor
// is for), or the zero Fingerprint if none does. The changes of one local
// transaction share one HLC; the largest is taken, so the result does not
// depend on the order of the changes.
func GroupFingerprint(origin string, groups []outpost.Group) Fingerprint {
	for i := len(groups) - 1; i >= 0; i-- {
		var f Fingerprint
		for _, ch := range groups[i].Changes {
			if ch.Origin == origin && (f.DBV == 0 || ch.HLC > f.HLC) {
				f = Fingerprint{DBV: groups[i].DBV, HLC: ch.HLC}
			}
		}
		if f.DBV > 0 {
			return f
		}
	}
	return Fingerprint{}
}

// FingerprintMatch is what this database says of a fingerprint a puller
// reports for it.
type FingerprintMatch int

const (
	// FingerprintUnknown: nothing left to compare (the group's own rows
	// were all overwritten or deleted since, or the group is not here).
	FingerprintUnknown FingerprintMatch = iota
	// FingerprintMatches: a row of this node's own at that db_version has
	// the fingerprint's HLC.
	FingerprintMatches
	// FingerprintDiffers: a row of this node's own at that db_version has
	// another HLC: the db_version was issued again by another transaction,
	// so this database was restored from an older copy.
	FingerprintDiffers
)

// MatchFingerprint compares fp, reported by a puller for this node's
// incarnation inc, with the clock rows of this node's own transaction at
// db_version fp.DBV (origin NAME/inc). Rows only ever leave a db_version
// (a later write moves them to a later one, a delete drops column rows),
// and the rows of this node's origin at a db_version were all written by
// its one local transaction there, with one HLC; so in a database that was
// not restored, whatever is left agrees with fp, and one row that
// disagrees is proof. When nothing is left the answer is
// FingerprintUnknown, never a false alarm.
func (s *Store) MatchFingerprint(ctx context.Context, inc string, fp Fingerprint) (FingerprintMatch, error) {
	if fp.IsZero() || inc == "" {
		return FingerprintUnknown, nil
	}
	origin := s.opts.Identity.Name + "/" + inc
	res := FingerprintUnknown
	for _, rt := range s.tableOrder {
		clock := capture.Quote(capture.ClockTable(rt.name))
		q := fmt.Sprintf(`SELECT EXISTS (SELECT 1 FROM %[1]s WHERE dbv = ?1 AND origin = ?2 AND hlc <> ?3), EXISTS (SELECT 1 FROM %[1]s WHERE dbv = ?1 AND origin = ?2 AND hlc = ?3)`, clock)
		var differs, matches bool
		if err := s.replDB.QueryRowContext(ctx, q, fp.DBV, origin, int64(fp.HLC)).Scan(&differs, &matches); err != nil {
			return FingerprintUnknown, fmt.Errorf("match fingerprint %s: table %q: %w", fp, rt.name, err)
		}
		if differs {
			return FingerprintDiffers, nil
		}
		if matches {
			res = FingerprintMatches
		}
	}
	return res, nil
}
