package store_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/store"
)

// TestCommitFailure_StoreFails: a failed COMMIT fails the store: the
// group's writers and every later write get store_failed, Err and Failed
// report it, reads still work.
func TestCommitFailure_StoreFails(t *testing.T) {
	var broken atomic.Bool
	s := testutil.OpenStore(t, "", store.Options{CommitHook: func() error {
		if broken.Load() {
			return errors.New("injected fsync failure")
		}
		return nil
	}})
	exec(t, s, `INSERT INTO pages (id, title) VALUES ('a', 'A')`)
	if s.Err() != nil {
		t.Fatalf("Err before the failure: %v", s.Err())
	}
	broken.Store(true)
	_, _, err := s.Exec(context.Background(), []store.Statement{{SQL: `INSERT INTO pages (id, title) VALUES ('b', 'B')`}})
	wantCode(t, err, store.CodeStoreFailed)
	select {
	case <-s.Failed():
	case <-time.After(bounded):
		t.Fatal("Failed() not closed after a failed COMMIT")
	}
	if err := s.Err(); !errors.Is(err, store.ErrFailed) {
		t.Fatalf("Err = %v, want ErrFailed", err)
	}
	broken.Store(false) // the disk "recovers": the store must still refuse
	_, _, err = s.Exec(context.Background(), []store.Statement{{SQL: `INSERT INTO pages (id, title) VALUES ('c', 'C')`}})
	wantCode(t, err, store.CodeStoreFailed)
	_, err = s.Write(context.Background(), func(*store.Tx) error { return nil })
	wantCode(t, err, store.CodeStoreFailed)
	if n := count(t, s, `SELECT count(*) FROM pages`); n != 1 {
		t.Fatalf("count = %d, want 1", n)
	}
}

// TestExecRacingClose: Execs racing Close all return (committed, or
// refused as unavailable); none blocks forever.
func TestExecRacingClose(t *testing.T) {
	for round := range 20 {
		s, err := store.Open(context.Background(), openOpts(t.TempDir()))
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make(chan error, 64)
		for i := range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, _, err := s.Exec(context.Background(), []store.Statement{{SQL: `INSERT INTO pages (id) VALUES (?)`, Args: []any{int64(i)}}})
				errs <- err
			}()
		}
		close(start)
		if round%2 == 0 {
			time.Sleep(time.Duration(round) * 100 * time.Microsecond)
		}
		_ = s.Close()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(bounded):
			t.Fatalf("round %d: an Exec racing Close never returned", round)
		}
		close(errs)
		for err := range errs {
			var e *store.Error
			if err != nil && (!errors.As(err, &e) || e.Code != store.CodeUnavailable) {
				t.Fatalf("round %d: Exec racing Close: %v", round, err)
			}
		}
	}
}
