package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/store"
)

// holdWriter occupies the store's writer goroutine with a transaction that
// blocks until the returned release function is called, so that everything
// submitted meanwhile queues up and goes into the next commit group. The
// holding transaction fails, so it commits nothing and consumes no
// db_version. release waits until the holding transaction has returned.
func holdWriter(tb testing.TB, s *store.Store) (release func()) {
	tb.Helper()
	running := make(chan struct{})
	unblock := make(chan struct{})
	done := make(chan error, 1)
	errHold := errors.New("holding the writer")
	go func() {
		_, err := s.Write(context.Background(), func(*store.Tx) error {
			close(running)
			<-unblock
			return errHold
		})
		done <- err
	}()
	select {
	case <-running:
	case err := <-done:
		tb.Fatalf("holding transaction ended before it ran: %v", err)
	case <-time.After(10 * time.Second):
		tb.Fatal("holding transaction did not start within 10s")
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			close(unblock)
			if err := <-done; !errors.Is(err, errHold) {
				tb.Errorf("holding transaction: err = %v, want %v", err, errHold)
			}
		})
	}
	tb.Cleanup(release)
	return release
}

// count runs a SELECT count(*) ... and returns the count.
func count(tb testing.TB, s *store.Store, sql string, args ...any) int64 {
	tb.Helper()
	rows := query(tb, s, sql, args...)
	n, ok := rows[0][0].(int64)
	if !ok {
		tb.Fatalf("%s: count = %#v, want an int64", sql, rows[0][0])
	}
	return n
}

// TestStore_GroupCommitIsolation runs many concurrent transactions, a third of
// which fail on a constraint after a successful insert, and checks that each
// failure is rolled back alone while the others in its commit group commit.
//
// To make sure failing and succeeding transactions really share commit groups
// (and so that "group commit batched" is not left to scheduling luck), the
// writer is held by a blocking transaction while all goroutines are released
// at once by a barrier; they queue up behind it and the writer takes them as
// one or a few groups when it is let go. Groups < successful transactions is
// then certain unless every goroutine was descheduled for the whole hold.
func TestStore_GroupCommitIsolation(t *testing.T) {
	const n = 64
	s := testutil.OpenStore(t, "", store.Options{})
	ctx := context.Background()

	type outcome struct {
		fail    bool
		badStmt int // index of the statement that must fail
		res     []store.Result
		dbv     int64
		err     error
	}
	out := make([]outcome, n)
	stmtsFor := func(i int) ([]store.Statement, bool, int) {
		good := fmt.Sprintf("good-%02d", i)
		bad := fmt.Sprintf("bad-%02d", i)
		if i%3 != 0 {
			return []store.Statement{
				{SQL: `INSERT INTO pages (id, slug, title) VALUES (?, outpost_slug(?), ?) RETURNING slug`, Args: []any{good, "Group title", "Group title"}},
				{SQL: `INSERT INTO kv (k, n, v) VALUES (?, ?, ?)`, Args: []any{good, int64(i), "v"}},
			}, false, -1
		}
		first := []store.Statement{
			{SQL: `INSERT INTO pages (id, slug, title) VALUES (?, outpost_slug(?), ?) RETURNING slug`, Args: []any{bad, "Group title", "Group title"}},
			{SQL: `INSERT INTO kv (k, n, v) VALUES (?, ?, ?)`, Args: []any{bad, int64(i), "v"}},
		}
		if i%2 == 0 { // duplicate primary key within the request
			return append(first,
				store.Statement{SQL: `INSERT INTO pages (id, title) VALUES (?, 'dup')`, Args: []any{bad + "-dup"}},
				store.Statement{SQL: `INSERT INTO pages (id, title) VALUES (?, 'dup')`, Args: []any{bad + "-dup"}},
			), true, 3
		}
		// NOT NULL violation (title is NOT NULL; an explicit NULL is refused).
		return append(first,
			store.Statement{SQL: `INSERT INTO pages (id, title) VALUES (?, NULL)`, Args: []any{bad + "-null"}},
		), true, 2
	}

	release := holdWriter(t, s)
	start := make(chan struct{})
	var ready, wg sync.WaitGroup
	for i := range n {
		stmts, fail, badStmt := stmtsFor(i)
		out[i].fail, out[i].badStmt = fail, badStmt
		ready.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ready.Done()
			<-start
			out[i].res, out[i].dbv, out[i].err = s.Exec(ctx, stmts)
		}()
	}
	ready.Wait()
	close(start)
	// Give the goroutines time to queue behind the held writer. Correctness
	// does not depend on this; only how many groups the work takes does.
	time.Sleep(100 * time.Millisecond)
	release()
	wg.Wait()

	var dbvs []int64
	var slugs []string
	for i, o := range out {
		good := fmt.Sprintf("good-%02d", i)
		bad := fmt.Sprintf("bad-%02d", i)
		if o.fail {
			var e *store.Error
			if !errors.As(o.err, &e) {
				t.Errorf("tx %d: err = %v (%T), want a *store.Error", i, o.err, o.err)
				continue
			}
			if got, want := e.Code, store.CodeConstraint; got != want {
				t.Errorf("tx %d: code = %q (%v), want %q", i, got, e, want)
			}
			if got, want := e.Statement, o.badStmt; got != want {
				t.Errorf("tx %d: failing statement = %d, want %d", i, got, want)
			}
			if o.dbv != 0 {
				t.Errorf("tx %d: failed but db_version = %d, want 0", i, o.dbv)
			}
			if got := count(t, s, `SELECT count(*) FROM pages WHERE id LIKE ? || '%'`, bad); got != 0 {
				t.Errorf("tx %d failed but %d of its pages rows exist", i, got)
			}
			if got := count(t, s, `SELECT count(*) FROM kv WHERE k = ?`, bad); got != 0 {
				t.Errorf("tx %d failed but %d of its kv rows exist", i, got)
			}
			if got := count(t, s, `SELECT count(*) FROM outpost_clock__pages WHERE pk0 LIKE ? || '%'`, bad); got != 0 {
				t.Errorf("tx %d failed but %d clock rows of its pages exist", i, got)
			}
			continue
		}
		if o.err != nil {
			t.Errorf("tx %d: unexpected error %v", i, o.err)
			continue
		}
		dbvs = append(dbvs, o.dbv)
		slug, _ := o.res[0].Rows[0][0].(string)
		slugs = append(slugs, slug)
		rows := query(t, s, `SELECT slug FROM pages WHERE id = ?`, good)
		if len(rows) != 1 {
			t.Errorf("tx %d succeeded but its pages row is missing", i)
		} else if got, want := rows[0][0], slug; got != want {
			t.Errorf("tx %d: stored slug = %v, want the returned %q", i, got, want)
		}
		if got, want := count(t, s, `SELECT count(*) FROM kv WHERE k = ? AND n = ?`, good, int64(i)), int64(1); got != want {
			t.Errorf("tx %d succeeded but has %d kv rows, want %d", i, got, want)
		}
		if got, want := count(t, s, `SELECT count(*) FROM outpost_clock__pages WHERE pk0 = ? AND dbv = ?`, good, o.dbv), int64(5); got != want {
			t.Errorf("tx %d: %d clock rows at its db_version %d, want %d", i, got, o.dbv, want)
		}
	}

	okCount := len(dbvs)
	if got, want := okCount, n-(n+2)/3; got != want {
		t.Errorf("successful transactions = %d, want %d", got, want)
	}
	slices.Sort(dbvs)
	for k, v := range dbvs {
		if want := int64(k + 1); v != want {
			t.Fatalf("db_versions of successful transactions = %v, want exactly 1..%d", dbvs, okCount)
		}
	}
	if got, want := s.DBVersion(), int64(okCount); got != want {
		t.Errorf("DBVersion = %d, want %d", got, want)
	}

	// Slugs: every success got its own; the slugs of failed transactions were
	// released, so the registry holds exactly the successful ones.
	slices.Sort(slugs)
	if i := len(slices.Compact(slices.Clone(slugs))); i != len(slugs) {
		t.Errorf("slugs of successful transactions repeat: %v", slugs)
	}
	var registered []string
	for _, r := range query(t, s, `SELECT slug FROM outpost_slugs ORDER BY slug`) {
		registered = append(registered, r[0].(string))
	}
	slices.Sort(registered)
	if !slices.Equal(registered, slugs) {
		t.Errorf("outpost_slugs = %v, want the successful transactions' slugs %v", registered, slugs)
	}

	st := s.Stats()
	t.Logf("stats: %+v (successful %d)", st, okCount)
	if got, want := st.Transactions, int64(okCount); got != want {
		t.Errorf("Stats.Transactions = %d, want %d", got, want)
	}
	if st.Groups >= int64(okCount) {
		t.Errorf("Stats.Groups = %d, want fewer than the %d successful transactions (group commit did not batch)", st.Groups, okCount)
	}
}

// TestStore_ExecCanceledContext checks that a transaction whose context ends
// before the writer runs it is not applied and consumes no db_version.
func TestStore_ExecCanceledContext(t *testing.T) {
	s := testutil.OpenStore(t, "", store.Options{})
	execV(t, s, `INSERT INTO pages (id) VALUES ('before')`)
	stmt := func(id string) []store.Statement {
		return []store.Statement{{SQL: `INSERT INTO pages (id, title) VALUES (?, 'canceled')`, Args: []any{id}}}
	}

	t.Run("canceled before Exec", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		before := s.DBVersion()
		_, dbv, err := s.Exec(ctx, stmt("early"))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if dbv != 0 {
			t.Errorf("db_version = %d, want 0", dbv)
		}
		if got := count(t, s, `SELECT count(*) FROM pages WHERE id = 'early'`); got != 0 {
			t.Errorf("canceled transaction applied: %d rows", got)
		}
		if got := s.DBVersion(); got != before {
			t.Errorf("DBVersion = %d, want %d (unchanged)", got, before)
		}
	})

	t.Run("canceled while queued", func(t *testing.T) {
		before := s.DBVersion()
		release := holdWriter(t, s)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		type result struct {
			dbv int64
			err error
		}
		done := make(chan result, 1)
		go func() {
			_, dbv, err := s.Exec(ctx, stmt("queued"))
			done <- result{dbv, err}
		}()
		// Let it queue behind the held writer. Had it not queued yet, the
		// cancellation takes the other path (refused at submit); either way
		// it must not apply.
		time.Sleep(50 * time.Millisecond)
		cancel()
		release()
		var r result
		select {
		case r = <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Exec did not return within 10s of its context being canceled")
		}
		if !errors.Is(r.err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", r.err)
		}
		if r.dbv != 0 {
			t.Errorf("db_version = %d, want 0", r.dbv)
		}
		if got := count(t, s, `SELECT count(*) FROM pages WHERE id = 'queued'`); got != 0 {
			t.Errorf("canceled transaction applied: %d rows", got)
		}
		if got := s.DBVersion(); got != before {
			t.Errorf("DBVersion = %d, want %d (unchanged)", got, before)
		}
	})

	// The next transaction takes the next db_version: no gap was left.
	before := s.DBVersion()
	if got, want := execV(t, s, `INSERT INTO pages (id) VALUES ('after')`), before+1; got != want {
		t.Errorf("db_version after the canceled transactions = %d, want %d", got, want)
	}
}

// TestStore_ReopenPreservesVersionAndClock closes a store and opens it again
// with the wall clock stepped back an hour: the db_version continues where it
// was and the first new write's HLC is still above every HLC written before.
func TestStore_ReopenPreservesVersionAndClock(t *testing.T) {
	dir := t.TempDir()
	base := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	ahead := base.Add(time.Hour)

	s := testutil.OpenStore(t, dir, store.Options{Now: func() time.Time { return ahead }})
	for i := range 5 {
		execV(t, s, `INSERT INTO pages (id, title) VALUES (?, 'before restart')`, fmt.Sprintf("p%d", i))
	}
	execV(t, s, `UPDATE pages SET views = views + 1`)
	lastDBV := s.DBVersion()
	maxHLC, ok := query(t, s, `SELECT max(hlc) FROM outpost_clock__pages`)[0][0].(int64)
	if !ok || maxHLC == 0 {
		t.Fatalf("max(hlc) before restart = %v, want a positive integer", maxHLC)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	s = testutil.OpenStore(t, dir, store.Options{Now: func() time.Time { return base }})
	if got, want := s.DBVersion(), lastDBV; got != want {
		t.Errorf("DBVersion after reopen = %d, want %d", got, want)
	}
	if got, want := count(t, s, `SELECT count(*) FROM pages WHERE views = 1`), int64(5); got != want {
		t.Errorf("rows after reopen = %d, want %d", got, want)
	}
	dbv := execV(t, s, `INSERT INTO pages (id, title) VALUES ('new', 'after restart')`)
	if got, want := dbv, lastDBV+1; got != want {
		t.Errorf("db_version of the first write after reopen = %d, want %d", got, want)
	}
	newHLC, _ := query(t, s, `SELECT hlc FROM outpost_clock__pages WHERE pk0 = 'new' AND col = ''`)[0][0].(int64)
	if newHLC <= maxHLC {
		t.Errorf("HLC of the first write after reopen = %d, want > %d (the highest before the restart)", newHLC, maxHLC)
	}
}

// TestStore_SingleStatementFailureInGroup checks the savepoint-free path for
// one-statement transactions: a statement that fails half way (the second
// row of a multi-row INSERT violates the key) is undone by SQLite alone,
// while its neighbours in the same commit group commit.
func TestStore_SingleStatementFailureInGroup(t *testing.T) {
	s := testutil.OpenStore(t, "", store.Options{})
	release := holdWriter(t, s)
	type outcome struct {
		i   int
		dbv int64
		err error
	}
	out := make(chan outcome, 30)
	var wg sync.WaitGroup
	for i := 0; i < 30; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			q := fmt.Sprintf(`INSERT INTO pages (id, slug) VALUES ('ok%d', outpost_slug('single %d'))`, i, i)
			if i%3 == 0 {
				q = fmt.Sprintf(`INSERT INTO pages (id, slug) VALUES ('bad%d', outpost_slug('single %d')), ('bad%d', 'dup')`, i, i, i)
			}
			_, dbv, err := s.Exec(context.Background(), []store.Statement{{SQL: q}})
			out <- outcome{i, dbv, err}
		}(i)
	}
	time.Sleep(100 * time.Millisecond) // let them queue behind the held writer
	release()
	wg.Wait()
	close(out)
	var versions []int64
	for o := range out {
		if o.i%3 == 0 {
			var e *store.Error
			if !errors.As(o.err, &e) || e.Code != store.CodeConstraint {
				t.Errorf("tx %d: err = %v, want a constraint violation", o.i, o.err)
			}
			if n := count(t, s, `SELECT count(*) FROM pages WHERE id = ?`, fmt.Sprintf("bad%d", o.i)); n != 0 {
				t.Errorf("tx %d: first row of the failed statement is visible", o.i)
			}
			if n := count(t, s, `SELECT count(*) FROM outpost_clock__pages WHERE pk0 = ?`, fmt.Sprintf("bad%d", o.i)); n != 0 {
				t.Errorf("tx %d: clock rows of the failed statement are visible", o.i)
			}
			continue
		}
		if o.err != nil {
			t.Errorf("tx %d: %v", o.i, o.err)
			continue
		}
		versions = append(versions, o.dbv)
	}
	slices.Sort(versions)
	for k, v := range versions {
		if v != int64(k+1) {
			t.Fatalf("db_versions = %v, want 1..%d", versions, len(versions))
		}
	}
	if got, want := count(t, s, `SELECT count(*) FROM outpost_slugs`), int64(len(versions)); got != want {
		t.Errorf("slug registry holds %d slugs, want %d (only committed ones)", got, want)
	}
	// A failed statement's slug is free again.
	res := exec(t, s, `INSERT INTO pages (id, slug) VALUES ('again', outpost_slug('single 0')) RETURNING slug`)
	if got := res[0].Rows[0][0]; got != "single-0-43ax" {
		t.Errorf("slug of a rolled-back statement was not released: got %v", got)
	}
}
