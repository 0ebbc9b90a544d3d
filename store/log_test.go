package store_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/store"
)

// testKeys signs as one node and verifies with a fixed key per name.
type testKeys struct {
	self string
	keys map[string]ed25519.PrivateKey
}

func (k testKeys) Sign(msg []byte) []byte { return ed25519.Sign(k.keys[k.self], msg) }

func (k testKeys) Verify(name string, msg, sig []byte) error {
	priv, ok := k.keys[name]
	if !ok {
		return fmt.Errorf("no key for %s", name)
	}
	if !ed25519.Verify(priv.Public().(ed25519.PublicKey), msg, sig) {
		return errors.New("bad signature")
	}
	return nil
}

func keyring(names ...string) map[string]ed25519.PrivateKey {
	m := map[string]ed25519.PrivateKey{}
	for i, n := range names {
		seed := make([]byte, ed25519.SeedSize)
		seed[0] = byte(i + 1)
		m[n] = ed25519.NewKeyFromSeed(seed)
	}
	return m
}

// pullEntries moves what src has and dst lacks (one pull of entries).
func pullEntries(tb testing.TB, src, dst *store.Store, f store.EntryFilter) store.EntryResult {
	tb.Helper()
	ctx := context.Background()
	have, err := dst.Knowledge(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	f.ExceptOrigin = dst.Origin()
	es, err := src.EntriesFor(ctx, have, f)
	if err != nil {
		tb.Fatal(err)
	}
	res, err := dst.ApplyEntries(ctx, src.Identity().Name, es)
	if err != nil {
		tb.Fatal(err)
	}
	return res
}

func TestLog_RelayedSupersededSigned(t *testing.T) {
	ring := keyring("EDGE01", "MASTER01", "EDGE02")
	open := func(name, code string) *store.Store {
		return testutil.OpenStore(t, "", store.Options{Identity: testutil.Identity(name, code), Keys: testKeys{name, ring}})
	}
	a, m, b := open("EDGE01", "43ax"), open("MASTER01", "44bx"), open("EDGE02", "45cx")
	execV(t, a, `INSERT INTO pages (id, title) VALUES ('p1', 'one'), ('p2', 'two')`)
	execV(t, a, `UPDATE pages SET title = 'uno' WHERE id = 'p1'`)
	// m pulls a; then m overwrites p2 (a's version of p2 is superseded at m).
	if r := pullEntries(t, a, m, store.EntryFilter{}); r.Entries != 2 || r.Duplicates != 0 {
		t.Fatalf("m from a: %+v", r)
	}
	execV(t, m, `UPDATE pages SET title = 'dos' WHERE id = 'p2'`)
	execV(t, a, `DELETE FROM pages WHERE id = 'p1'`)
	// b pulls everything from m only: a's entries arrive relayed, as a signed them.
	r := pullEntries(t, m, b, store.EntryFilter{})
	if r.Entries != 3 || r.Bad != 0 {
		t.Fatalf("b from m: %+v", r)
	}
	// Again: nothing new.
	if r := pullEntries(t, m, b, store.EntryFilter{}); r.Entries != 0 {
		t.Fatalf("second pull: %+v", r)
	}
	pullEntries(t, a, b, store.EntryFilter{Only: []string{"EDGE01"}})
	pullEntries(t, a, m, store.EntryFilter{})
	pullEntries(t, m, a, store.EntryFilter{})
	for _, s := range []*store.Store{a, m} {
		if got, want := dump(t, s), dump(t, b); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s differs:\n %v\n %v", s.Identity().Name, got, want)
		}
	}
	k, _ := b.Knowledge(context.Background())
	if k[a.Origin()] != 3 || k[m.Origin()] != 1 {
		t.Fatalf("b's knowledge %v", k)
	}
}

func TestLog_ForgedAndAlteredRefused(t *testing.T) {
	ring := keyring("EDGE01", "MASTER01", "EDGE02")
	a := testutil.OpenStore(t, "", store.Options{Identity: testutil.Identity("EDGE01", "43ax"), Keys: testKeys{"EDGE01", ring}})
	b := testutil.OpenStore(t, "", store.Options{Identity: testutil.Identity("EDGE02", "45cx"), Keys: testKeys{"EDGE02", ring}})
	execV(t, a, `INSERT INTO pages (id, title) VALUES ('p1', 'one')`)
	ctx := context.Background()
	es, err := a.EntriesFor(ctx, store.Knowledge{}, store.EntryFilter{})
	if err != nil || len(es) != 1 {
		t.Fatal(es, err)
	}
	// A relay alters the body: the signature no longer verifies.
	altered := es[0]
	altered.Body = append([]byte{}, es[0].Body...)
	altered.Body[len(altered.Body)-1] ^= 1
	// A relay signs a change of its own as EDGE01.
	forged := es[0]
	forged.Sig = ed25519.Sign(ring["MASTER01"], forged.SignedMessage())
	for _, e := range []outpost.Entry{altered, forged} {
		r, err := b.ApplyEntries(ctx, "MASTER01", []outpost.Entry{e})
		if err != nil || r.Bad != 1 || r.Entries != 0 {
			t.Fatalf("bad entry: %+v %v", r, err)
		}
	}
	if n := count(t, b, `SELECT count(*) FROM pages`); n != 0 {
		t.Fatalf("a refused entry was applied")
	}
	// The genuine one applies; a gap is skipped.
	gap := es[0]
	gap.Seq = 3
	gap.Sig = ed25519.Sign(ring["EDGE01"], gap.SignedMessage())
	if r, err := b.ApplyEntries(ctx, "MASTER01", []outpost.Entry{gap}); err != nil || r.Gaps != 1 {
		t.Fatalf("gap: %+v %v", r, err)
	}
	if r, err := b.ApplyEntries(ctx, "MASTER01", es); err != nil || r.Entries != 1 {
		t.Fatalf("genuine: %+v %v", r, err)
	}
	if n := count(t, b, `SELECT count(*) FROM pages`); n != 1 {
		t.Fatalf("genuine entry not applied")
	}
}

func TestLog_BigGroupIsAChain(t *testing.T) {
	a := testutil.OpenStore(t, "", store.Options{Identity: testutil.Identity("EDGE01", "43ax"), StatementTimeout: -1})
	b := testutil.OpenStore(t, "", store.Options{Identity: testutil.Identity("EDGE02", "45cx")})
	// 3,000 rows in one statement: a group of 9,000 changes, over one entry.
	execTx(t, a, `WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < 2999) INSERT INTO pages (id, title) SELECT 'p' || i, 't' FROM c`)
	es, err := a.EntriesFor(context.Background(), store.Knowledge{}, store.EntryFilter{MaxBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) < 2 || es[len(es)-1].More || !es[0].More {
		t.Fatalf("%d entries, want a chain", len(es))
	}
	// Half a chain is refused whole.
	if _, err := b.ApplyEntries(context.Background(), "EDGE01", es[:1]); err == nil {
		t.Fatal("half a chain applied")
	}
	pullEntries(t, a, b, store.EntryFilter{})
	if n := count(t, b, `SELECT count(*) FROM pages`); n != 3000 {
		t.Fatalf("b has %d rows", n)
	}
}

func execTx(tb testing.TB, s *store.Store, sqls ...string) {
	tb.Helper()
	st := make([]store.Statement, len(sqls))
	for i, q := range sqls {
		st[i] = store.Statement{SQL: q}
	}
	if _, _, err := s.Exec(context.Background(), st); err != nil {
		tb.Fatal(err)
	}
}

// TestLog_CollectShrinksTheFile: collected entries give their pages back.
func TestLog_CollectShrinksTheFile(t *testing.T) {
	dir := t.TempDir()
	a := testutil.OpenStore(t, dir, store.Options{Identity: testutil.Identity("EDGE01", "43ax")})
	big := make([]byte, 8<<10)
	for i := range 300 {
		if _, _, err := a.Exec(context.Background(), []store.Statement{{SQL: `INSERT INTO pages (id, body) VALUES (?, ?)`, Args: []any{fmt.Sprint(i), big}}}); err != nil {
			t.Fatal(err)
		}
	}
	execV(t, a, `DELETE FROM pages`)
	pages := func() int64 { return count(t, a, `SELECT page_count FROM pragma_page_count`) }
	before := pages()
	k, err := a.Knowledge(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.CollectLog(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	if after := pages(); after > before/3 {
		t.Fatalf("%d pages before collecting the log, %d after", before, after)
	}
}
