package replication

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/policy"
	"github.com/outpost-edge/outpost/store"
	"github.com/outpost-edge/outpost/wire"
)

func copyDir(tb testing.TB, from, to string) {
	tb.Helper()
	if err := os.RemoveAll(to); err != nil {
		tb.Fatal(err)
	}
	if err := os.CopyFS(to, os.DirFS(from)); err != nil {
		tb.Fatal(err)
	}
}

func openAt(tb testing.TB, dir string, id outpost.Identity) *store.Store {
	tb.Helper()
	s, err := store.Open(context.Background(), store.Options{Dir: dir, Identity: id, Schema: testutil.PagesSchema})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// TestRestoredNode_NewIncarnation (item 13): A writes, B pulls; A's data
// directory is restored from an earlier copy (same incarnation, lower
// db_version) and A writes again. B's cursor for A is ahead, so A takes a
// new incarnation: B gets A's new writes, and A gets back the writes it
// lost (B no longer drops them as A's echo).
func TestRestoredNode_NewIncarnation(t *testing.T) {
	useProtocol(t, 1)
	ida, idb := ident("MASTER01", "01ma", outpost.RoleMaster), ident("NODE01", "02no", outpost.RoleNode)
	dirA, backup := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "backup")
	sa := openAt(t, dirA, ida.Identity)
	exec(t, sa, `INSERT INTO pages (id, title) VALUES ('w1', 'kept')`)
	sa.Close()
	copyDir(t, dirA, backup)
	sa = openAt(t, dirA, ida.Identity)
	inc := sa.Incarnation()

	b := newMember(t, idb, testutil.OpenStore(t, "", store.Options{Identity: idb.Identity}), nil)
	a := newMember(t, ida, sa, nil)
	connect(b, a)
	connect(a, b)
	runLoop(b.r, ida, "pull")
	runLoop(a.r, idb, "pull")
	exec(t, sa, `INSERT INTO pages (id, title) VALUES ('w2', 'lost')`)
	exec(t, sa, `INSERT INTO pages (id, title) VALUES ('w2b', 'lost')`)
	eventually(t, "B has w2", func() bool { return count(t, b.st, `SELECT count(*) FROM pages WHERE id = 'w2'`) == 1 })
	eventually(t, "B's cursor covers A", func() bool {
		c, _, _ := b.st.Cursor(context.Background(), "MASTER01", store.CursorPull)
		return c >= sa.DBVersion()
	})

	// A goes down and comes back from the copy.
	a.r.cancel()
	a.r.wg.Wait()
	sa.Close()
	copyDir(t, backup, dirA)
	sa2 := openAt(t, dirA, ida.Identity)
	t.Cleanup(func() { sa2.Close() })
	if sa2.Incarnation() != inc || count(t, sa2, `SELECT count(*) FROM pages WHERE id = 'w2'`) != 0 {
		t.Fatal("the restored copy is not the earlier state")
	}
	a2 := newMember(t, ida, sa2, nil)
	connect(b, a2)
	connect(a2, b)
	runLoop(a2.r, idb, "pull")
	// A writes again before anyone noticed: db_version 2, which B's
	// cursor (3) has passed. (Detection needs B's cursor to stay ahead
	// until B next says hello: see the protocol notes.)
	exec(t, sa2, `INSERT INTO pages (id, title) VALUES ('w3', 'after restore')`)

	eventually(t, "B has A's write after the restore", func() bool {
		return count(t, b.st, `SELECT count(*) FROM pages WHERE id = 'w3'`) == 1
	})
	eventually(t, "A has its lost writes back", func() bool {
		return count(t, sa2, `SELECT count(*) FROM pages WHERE id IN ('w2', 'w2b')`) == 2
	})
	if sa2.Incarnation() == inc {
		t.Fatal("the restored node kept its incarnation")
	}
	// Writes after the new incarnation reach B too.
	exec(t, sa2, `INSERT INTO pages (id, title) VALUES ('w4', 'new incarnation')`)
	eventually(t, "B has w4", func() bool { return count(t, b.st, `SELECT count(*) FROM pages WHERE id = 'w4'`) == 1 })
}

// TestRestoredNode_MoreWritesThanLost: A writes, B pulls (cursor 3); A is
// restored from a copy taken at db_version 1 and, before B reconnects,
// writes three groups, more than the two it lost: its db_version (4) is past
// B's cursor again, so the numbers alone show nothing. B's pull ack carries
// the fingerprint of A's group 3 as B received it; A has another
// transaction at db_version 3 now, so it takes a new incarnation: B gets
// everything A wrote after the restore, and A gets back what it lost.
func TestRestoredNode_MoreWritesThanLost(t *testing.T) {
	useProtocol(t, 1)
	ida, idb := ident("MASTER01", "01ma", outpost.RoleMaster), ident("NODE01", "02no", outpost.RoleNode)
	dirA, backup := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "backup")
	sa := openAt(t, dirA, ida.Identity)
	exec(t, sa, `INSERT INTO pages (id, title) VALUES ('w1', 'kept')`)
	sa.Close()
	copyDir(t, dirA, backup)
	sa = openAt(t, dirA, ida.Identity)
	inc := sa.Incarnation()

	sb := testutil.OpenStore(t, "", store.Options{Identity: idb.Identity})
	b := newMember(t, idb, sb, nil)
	a := newMember(t, ida, sa, nil)
	connect(b, a)
	connect(a, b)
	runLoop(b.r, ida, "pull")
	runLoop(a.r, idb, "pull")
	exec(t, sa, `INSERT INTO pages (id, title) VALUES ('w2', 'lost')`)
	exec(t, sa, `INSERT INTO pages (id, title) VALUES ('w2b', 'lost')`)
	lost := sa.DBVersion()
	eventually(t, "B's cursor covers A", func() bool {
		c, _, _ := sb.Cursor(context.Background(), "MASTER01", store.CursorPull)
		return c >= lost
	})
	if fp, err := sb.CursorFingerprint(context.Background(), "MASTER01", store.CursorPull); err != nil || fp.DBV != lost {
		t.Fatalf("B's fingerprint for A = %+v, %v; want one of db_version %d", fp, err, lost)
	}

	// Both stop; A comes back from the copy and writes more than it lost
	// while nobody is connected.
	b.r.cancel()
	b.r.wg.Wait()
	a.r.cancel()
	a.r.wg.Wait()
	sa.Close()
	copyDir(t, backup, dirA)
	sa2 := openAt(t, dirA, ida.Identity)
	t.Cleanup(func() { sa2.Close() })
	if sa2.Incarnation() != inc || sa2.DBVersion() >= lost {
		t.Fatal("the restored copy is not the earlier state")
	}
	for _, id := range []string{"w3", "w4", "w5"} {
		exec(t, sa2, `INSERT INTO pages (id, title) VALUES (?, 'after restore')`, id)
	}
	if sa2.DBVersion() <= lost {
		t.Fatalf("A is at %d, not past B's cursor %d", sa2.DBVersion(), lost)
	}

	a2 := newMember(t, ida, sa2, nil)
	b2 := newMember(t, idb, sb, nil)
	connect(b2, a2)
	connect(a2, b2)
	runLoop(a2.r, idb, "pull")
	runLoop(b2.r, ida, "pull")
	eventually(t, "A took a new incarnation", func() bool { return sa2.Incarnation() != inc })
	eventually(t, "B has all of A's writes after the restore", func() bool {
		return count(t, sb, `SELECT count(*) FROM pages WHERE id IN ('w3', 'w4', 'w5')`) == 3
	})
	eventually(t, "A has its lost writes back", func() bool {
		return count(t, sa2, `SELECT count(*) FROM pages WHERE id IN ('w2', 'w2b')`) == 2
	})
	exec(t, sa2, `INSERT INTO pages (id, title) VALUES ('w6', 'new incarnation')`)
	eventually(t, "B has w6", func() bool { return count(t, sb, `SELECT count(*) FROM pages WHERE id = 'w6'`) == 1 })
	if n := count(t, sb, `SELECT count(*) FROM pages`); n != 7 {
		t.Fatalf("B has %d pages, want 7 (w1, w2, w2b, w3..w6)", n)
	}
}

// TestRestoredNode_FingerprintNoFalseAlarm: a node that was not restored
// keeps its incarnation although later writes overwrote or deleted every
// row of the group a puller's fingerprint names, and a peer that sends no
// fingerprint gets the numbers-only check.
func TestRestoredNode_FingerprintNoFalseAlarm(t *testing.T) {
	useProtocol(t, 1)
	ida, idb := ident("MASTER01", "01ma", outpost.RoleMaster), ident("NODE01", "02no", outpost.RoleNode)
	sa := testutil.OpenStore(t, "", store.Options{Identity: ida.Identity})
	sb := testutil.OpenStore(t, "", store.Options{Identity: idb.Identity})
	a, b := newMember(t, ida, sa, nil), newMember(t, idb, sb, nil)
	connect(b, a)
	inc := sa.Incarnation()
	exec(t, sa, `INSERT INTO pages (id, title, body) VALUES ('p1', 'one', 'x'), ('p2', 'two', 'y')`)
	l := runLoop(b.r, ida, "pull")
	eventually(t, "B has A's group", func() bool { return count(t, sb, `SELECT count(*) FROM pages`) == 2 })
	fp, err := sb.CursorFingerprint(context.Background(), "MASTER01", store.CursorPull)
	if err != nil || fp.DBV != 1 {
		t.Fatalf("fingerprint %+v, %v", fp, err)
	}
	ctx := context.Background()
	if m, _ := sa.MatchFingerprint(ctx, inc, fp); m != store.FingerprintMatches {
		t.Fatalf("match = %v, want FingerprintMatches", m)
	}
	// Part of group 1 overwritten: what is left still matches.
	exec(t, sa, `UPDATE pages SET title = 'uno' WHERE id = 'p1'`)
	if m, _ := sa.MatchFingerprint(ctx, inc, fp); m != store.FingerprintMatches {
		t.Fatalf("after a partial overwrite: match = %v, want FingerprintMatches", m)
	}
	// All of it gone from db_version 1: unknown, not a restore.
	exec(t, sa, `DELETE FROM pages`)
	if m, _ := sa.MatchFingerprint(ctx, inc, fp); m != store.FingerprintUnknown {
		t.Fatalf("after overwriting the group: match = %v, want FingerprintUnknown", m)
	}
	if m, _ := sa.MatchFingerprint(ctx, inc, store.Fingerprint{DBV: 1, HLC: fp.HLC + 1}); m != store.FingerprintUnknown {
		t.Fatalf("group 1 has no rows left: match = %v, want FingerprintUnknown", m)
	}
	// The DELETE (db_version 3) left its tombstones: a fingerprint of
	// another transaction there (group 1's HLC) is what a restored node
	// that issued db_version 3 again would be told; it differs.
	if m, _ := sa.MatchFingerprint(ctx, inc, store.Fingerprint{DBV: 3, HLC: fp.HLC}); m != store.FingerprintDiffers {
		t.Fatalf("another transaction's HLC at db_version 3: match = %v, want FingerprintDiffers", m)
	}
	// The puller keeps acking and reconnecting with its fingerprint.
	l.reconnect()
	exec(t, sa, `INSERT INTO pages (id, title) VALUES ('p3', 'three')`)
	eventually(t, "B has p3", func() bool { return count(t, sb, `SELECT count(*) FROM pages WHERE id = 'p3'`) == 1 })
	// A peer of this build without fingerprints: numbers only.
	a.r.observeHello(idb, url.Values{"pulled": {"1"}, "incarnation": {inc}})
	a.r.observeHello(idb, url.Values{"pulled": {"2"}, "incarnation": {inc}, "fp": {"garbage"}})
	if sa.Incarnation() != inc {
		t.Fatal("a node that was not restored took a new incarnation")
	}
}

// gated holds this node's pull streams until open is closed.
type gated struct {
	*inproc
	open chan struct{}
}

func (g *gated) Do(ctx context.Context, name string, a policy.Action, method, path string, body []byte) (*http.Response, error) {
	select {
	case <-g.open:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.inproc.Do(ctx, name, a, method, path, body)
}

// TestRestoredNode_SlugsWaitForCatchUp: a restored node may have issued, in
// the writes it lost, slugs it no longer knows; they come back only by
// replication. From its new incarnation on it refuses outpost_slug() until
// a pull under the new incarnation has caught up with an upstream peer (the
// caught-up signal fires again after a rotation); then the lost slug is
// known and not issued twice.
func TestRestoredNode_SlugsWaitForCatchUp(t *testing.T) {
	useProtocol(t, 1)
	ida, idb := ident("MASTER01", "01ma", outpost.RoleMaster), ident("NODE01", "02no", outpost.RoleNode)
	dirA, backup := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "backup")
	sa := openAt(t, dirA, ida.Identity)
	exec(t, sa, `INSERT INTO pages (id, title) VALUES ('w1', 'kept')`)
	sa.Close()
	copyDir(t, dirA, backup)
	sa = openAt(t, dirA, ida.Identity)
	inc := sa.Incarnation()
	slugOf := func(s *store.Store) (string, error) {
		res, _, err := s.Exec(context.Background(), []store.Statement{{SQL: `INSERT INTO pages (id, slug) VALUES (outpost_id(), outpost_slug('Hello')) RETURNING slug`}})
		if err != nil {
			return "", err
		}
		return res[0].Rows[0][0].(string), nil
	}
	lostSlug, err := slugOf(sa)
	if err != nil {
		t.Fatal(err)
	}

	sb := testutil.OpenStore(t, "", store.Options{Identity: idb.Identity})
	b := newMember(t, idb, sb, nil)
	a := newMember(t, ida, sa, nil)
	connect(b, a)
	runLoop(b.r, ida, "pull")
	eventually(t, "B has the lost slug", func() bool {
		return count(t, sb, `SELECT count(*) FROM outpost_slugs WHERE slug = ?`, lostSlug) == 1
	})
	eventually(t, "B's cursor covers A", func() bool {
		c, _, _ := sb.Cursor(context.Background(), "MASTER01", store.CursorPull)
		return c >= sa.DBVersion()
	})
	b.r.cancel()
	b.r.wg.Wait()
	a.r.cancel()
	a.r.wg.Wait()
	sa.Close()
	copyDir(t, backup, dirA)
	sa2 := openAt(t, dirA, ida.Identity)
	t.Cleanup(func() { sa2.Close() })

	var caught atomic.Int32
	a2 := newMember(t, ida, sa2, func(c *Config) {
		c.OnCaughtUp = func() {
			caught.Add(1)
			sa2.SetSlugsReady(true)
		}
	})
	gate := &gated{inproc: a2.tr, open: make(chan struct{})}
	a2.r.cfg.Client = gate
	b2 := newMember(t, idb, sb, nil)
	connect(b2, a2)
	connect(a2, b2)
	runLoop(a2.r, idb, "pull") // held at the gate
	runLoop(b2.r, ida, "pull")
	eventually(t, "A took a new incarnation", func() bool { return sa2.Incarnation() != inc })
	// Until A's pull from B has caught up under the new incarnation, it
	// issues no slug.
	for range 5 {
		if slug, err := slugOf(sa2); !errors.Is(err, outpost.ErrNotReady) {
			t.Fatalf("outpost_slug() on a rotated node that has not caught up: %q, %v; want ErrNotReady", slug, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if sa2.SlugsReady() || caught.Load() != 0 {
		t.Fatalf("slugs ready %v, caught up %d times before any pull under the new incarnation", sa2.SlugsReady(), caught.Load())
	}
	close(gate.open)
	eventually(t, "A caught up under its new incarnation", func() bool { return caught.Load() == 1 && sa2.SlugsReady() })
	if count(t, sa2, `SELECT count(*) FROM outpost_slugs WHERE slug = ?`, lostSlug) != 1 {
		t.Fatal("A caught up without its lost slug")
	}
	slug, err := slugOf(sa2)
	if err != nil {
		t.Fatal(err)
	}
	if slug == lostSlug {
		t.Fatalf("A issued %s again", slug)
	}
}

// TestCaughtUp_AgainAfterRotation: OnCaughtUp fires once, and again once
// after each new incarnation, for a pull started under it (from 0); a pull
// started before the rotation does not count. A node with no pull loop
// signals at once.
func TestCaughtUp_AgainAfterRotation(t *testing.T) {
	st := newFakeStore()
	tr := newScript(peerHello("p1", 2))
	var caught atomic.Int32
	r := testReplicator(t, selfID, st, tr, func(c *Config) {
		c.OnCaughtUp = func() { caught.Add(1) }
		c.Heartbeat = time.Hour // no watchdog or hellos in the way
	})
	runLoop(r, peer1, policy.Pull)
	s := tr.next(t)
	s.send(t, wire.GroupFrame(group(2, "a")), wire.ProgressFrame(2))
	eventually(t, "caught up", func() bool { return caught.Load() == 1 })
	s.send(t, wire.GroupFrame(group(3, "b")), wire.ProgressFrame(3))
	eventually(t, "applied", func() bool { return len(st.applied()) == 2 })
	if caught.Load() != 1 {
		t.Fatalf("caught up %d times without a rotation", caught.Load())
	}

	// A peer's cursor is past this node's db_version: a new incarnation.
	r.observeHello(peer1, url.Values{"pulled": {"9"}, "incarnation": {"s1"}})
	if st.Incarnation() == "s1" {
		t.Fatal("no new incarnation")
	}
	r.checkCaughtUp(0, 3, 2) // a pull of the old epoch
	if caught.Load() != 1 {
		t.Fatalf("caught up %d times: a pull started before the rotation counted", caught.Load())
	}
	s2 := tr.next(t)
	if q := tr.dials()[1]; q.Get("since") != "0" || q.Get("origin") != st.Origin() {
		t.Fatalf("dial after the rotation: since=%s origin=%s; want 0 under %s", q.Get("since"), q.Get("origin"), st.Origin())
	}
	if caught.Load() != 1 {
		t.Fatalf("caught up %d times before the new pull caught up", caught.Load())
	}
	s2.send(t, wire.GroupFrame(group(2, "a")), wire.ProgressFrame(2))
	eventually(t, "caught up again", func() bool { return caught.Load() == 2 })
	s2.send(t, wire.GroupFrame(group(3, "b")), wire.ProgressFrame(3))
	eventually(t, "applied", func() bool { return len(st.applied()) == 4 })
	if caught.Load() != 2 {
		t.Fatalf("caught up %d times, want 2", caught.Load())
	}

	// No pull loop: nothing to wait for.
	st2 := newFakeStore()
	var caught2 atomic.Int32
	r2 := testReplicator(t, selfID, st2, newScript(peerHello("p1", 2)), func(c *Config) {
		c.OnCaughtUp = func() { caught2.Add(1) }
	})
	r2.observeHello(peer1, url.Values{"pulled": {"9"}, "incarnation": {"s1"}})
	if st2.Incarnation() == "s1" || caught2.Load() != 1 {
		t.Fatalf("incarnation %s, caught up %d times; want a new one, signalled at once", st2.Incarnation(), caught2.Load())
	}
}
