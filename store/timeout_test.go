package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/store"
)

const (
	// runaway never ends by itself; read-only, so SQLite's interrupt undoes
	// only the statement.
	runaway = `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c`
	// runawayLate returns its first row at once and runs forever for the
	// second: the driver's own context watch has ended by then.
	runawayLate = `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT 1 UNION ALL SELECT count(*) FROM c`
	// runawayWrite writes as it runs: interrupting it makes SQLite roll back
	// the whole commit group's transaction.
	runawayWrite = `INSERT INTO pages (id, title) WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT 'r' || x, 't' FROM c`
)

// bounded is the longest a liveness wait in these tests lasts.
const bounded = 30 * time.Second

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	var e *store.Error
	if !errors.As(err, &e) || e.Code != code {
		t.Fatalf("err = %v, want code %s", err, code)
	}
}

// TestStatementTimeout_Exec: a runaway client statement fails alone with
// statement_timeout; a normal write in the same commit group commits (run
// again if the interrupt cost the group its transaction), and the writer
// takes later writes.
func TestStatementTimeout_Exec(t *testing.T) {
	for name, sql := range map[string]string{"read": runaway, "read_after_first_row": runawayLate, "write": runawayWrite} {
		t.Run(name, func(t *testing.T) {
			s := testutil.OpenStore(t, "", store.Options{StatementTimeout: 200 * time.Millisecond})
			release := holdWriter(t, s)
			type res struct {
				err error
				dbv int64
			}
			bad, good := make(chan res, 1), make(chan res, 1)
			go func() {
				_, dbv, err := s.Exec(context.Background(), []store.Statement{{SQL: sql}})
				bad <- res{err, dbv}
			}()
			go func() {
				_, dbv, err := s.Exec(context.Background(), []store.Statement{{SQL: `INSERT INTO pages (id, title) VALUES ('good', 'ok')`}})
				good <- res{err, dbv}
			}()
			time.Sleep(50 * time.Millisecond) // let both queue behind the held writer (not required for correctness)
			release()
			for _, c := range []struct {
				name string
				ch   chan res
			}{{"runaway", bad}, {"normal write", good}} {
				select {
				case r := <-c.ch:
					if c.name == "runaway" {
						wantCode(t, r.err, store.CodeStatementTimeout)
					} else if r.err != nil {
						t.Fatalf("normal write in the runaway's window: %v", r.err)
					}
				case <-time.After(bounded):
					t.Fatalf("%s: no answer within %v: the writer is stuck", c.name, bounded)
				}
			}
			if n := count(t, s, `SELECT count(*) FROM pages WHERE id = 'good'`); n != 1 {
				t.Fatalf("normal write: %d rows, want 1", n)
			}
			if n := count(t, s, `SELECT count(*) FROM pages WHERE title = 't'`); n != 0 {
				t.Fatalf("the runaway left %d rows", n)
			}
			exec(t, s, `INSERT INTO pages (id, title) VALUES ('later', 'ok')`)
		})
	}
}

// TestStatementTimeout_Query: a runaway query fails with statement_timeout
// and gives its connection back.
func TestStatementTimeout_Query(t *testing.T) {
	s := testutil.OpenStore(t, "", store.Options{StatementTimeout: 200 * time.Millisecond, Readers: 1})
	for _, sql := range []string{runaway, runawayLate} {
		done := make(chan error, 1)
		go func() {
			_, err := s.Query(context.Background(), store.Statement{SQL: sql})
			done <- err
		}()
		select {
		case err := <-done:
			wantCode(t, err, store.CodeStatementTimeout)
		case <-time.After(bounded):
			t.Fatalf("query %q still running after %v", sql, bounded)
		}
	}
	if n := count(t, s, `SELECT count(*) FROM pages`); n != 0 {
		t.Fatalf("count = %d", n)
	}
}

// TestQuery_CallerCancelInterrupts: a query whose caller goes away stops,
// even past its first row.
func TestQuery_CallerCancelInterrupts(t *testing.T) {
	s := testutil.OpenStore(t, "", store.Options{StatementTimeout: -1, Readers: 1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := s.Query(ctx, store.Statement{SQL: runawayLate})
		done <- err
	}()
	waitFor(t, "the query to take the reader", func() bool { return store.ReadersInUse(s) == 1 })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(bounded):
		t.Fatal("canceled query still running")
	}
	query(t, s, `SELECT 1`)
}

// TestClose_InterruptsRunningStatement: Close does not wait forever for a
// client statement (here with no time budget at all).
func TestClose_InterruptsRunningStatement(t *testing.T) {
	s, err := store.Open(context.Background(), openOpts(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	opts := openOpts(t.TempDir())
	opts.StatementTimeout = -1
	if s, err = store.Open(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := s.Exec(context.Background(), []store.Statement{{SQL: runaway}})
		done <- err
	}()
	waitFor(t, "the runaway to run", func() bool { return store.WriterBusy(s) })
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case <-closed:
	case <-time.After(bounded):
		t.Fatal("Close hangs behind a running statement")
	}
	select {
	case err := <-done:
		wantCode(t, err, store.CodeUnavailable)
	case <-time.After(bounded):
		t.Fatal("the runaway was never answered")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bounded)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", bounded, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestChangesSince_ClientReadersBusy: outbound replication reads on
// connections of its own; client queries holding every reader do not stall
// it.
func TestChangesSince_ClientReadersBusy(t *testing.T) {
	const readers = 2
	s := testutil.OpenStore(t, "", store.Options{StatementTimeout: -1, Readers: readers})
	exec(t, s, `INSERT INTO pages (id, title) VALUES ('a', 'A')`)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for range 2 * readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = s.Query(ctx, store.Statement{SQL: runaway})
		}()
	}
	waitFor(t, "slow queries to hold every reader", func() bool { return store.ReadersInUse(s) == readers })
	rctx, rcancel := context.WithTimeout(context.Background(), bounded)
	defer rcancel()
	groups, through, err := s.ChangesSince(rctx, 0, "", 1000)
	if err != nil {
		t.Fatalf("ChangesSince with every client reader busy: %v", err)
	}
	if len(groups) != 1 || through != 1 {
		t.Fatalf("groups = %d, through = %d", len(groups), through)
	}
	if _, _, err := s.Cursor(rctx, "MASTER01", "pull"); err != nil {
		t.Fatalf("Cursor with every client reader busy: %v", err)
	}
}

// TestResultBytesLimit: a result over MaxResultBytes is refused with
// result_too_large, in /v1/query and in RETURNING.
func TestResultBytesLimit(t *testing.T) {
	s := testutil.OpenStore(t, "", store.Options{MaxResultBytes: 10_000})
	_, err := s.Query(context.Background(), store.Statement{SQL: `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 100) SELECT x, randomblob(200) FROM c`})
	wantCode(t, err, store.CodeResultTooLarge)
	_, _, err = s.Exec(context.Background(), []store.Statement{{SQL: `SELECT zeroblob(20000)`}})
	wantCode(t, err, store.CodeResultTooLarge)
	if rows := query(t, s, `SELECT length(zeroblob(9000))`); rows[0][0] != int64(9000) {
		t.Fatalf("a small result: %v", rows)
	}
}

// TestValueLengthLimit: a value over MaxValueBytes fails at once with
// value_too_large rather than being built (SQLite's own limit is 1 GB).
func TestValueLengthLimit(t *testing.T) {
	s := testutil.OpenStore(t, "", store.Options{})
	big := fmt.Sprintf(`SELECT zeroblob(%d)`, store.MaxValueBytes+1)
	_, err := s.Query(context.Background(), store.Statement{SQL: big})
	wantCode(t, err, store.CodeValueTooLarge)
	_, _, err = s.Exec(context.Background(), []store.Statement{{SQL: `SELECT zeroblob(300000000)`}})
	wantCode(t, err, store.CodeValueTooLarge)
	_, _, err = s.Exec(context.Background(), []store.Statement{{SQL: `INSERT INTO pages (id, body) VALUES ('x', zeroblob(300000000))`}})
	wantCode(t, err, store.CodeValueTooLarge)
	exec(t, s, `INSERT INTO pages (id, title) VALUES ('y', 'ok')`)
}
