package store

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/hlc"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// job is one transaction for the writer: fn runs under its own savepoint
// inside the current commit group (none when it is one statement, or alone
// in its group: see groupOnce).
type job struct {
	ctx     context.Context
	fn      func(*Tx) error
	capture bool // local transaction: capture triggers record versions
	// single marks a transaction of one statement: it runs without a
	// savepoint, because SQLite undoes a failed statement by itself.
	single bool
	// meta marks a transaction that only moves replication cursors: it
	// takes no db_version, so it is not itself something to replicate.
	meta  bool
	again bool // run it again in the next group (see groupOnce)
	done  chan struct{}
	err   error
	dbv   int64       // db_version it committed as
	slugs []string    // slugs it issued, released again if it does not commit
	seen  []seenEntry // versions it applied, remembered once it commits
}

// Tx is a transaction being executed by the writer. It is valid only inside
// the function passed to Store.Write.
type Tx struct {
	s      *Store
	ctx    context.Context
	tc     *txContext
	budget holdBudget // held changes counted in this transaction

	// Client statements run under sctx, the transaction's time budget,
	// started by the first one; a watchdog interrupts them once it is done.
	sctx    context.Context
	endSctx func()
}

// HLC returns the transaction's timestamp.
func (tx *Tx) HLC() hlc.Timestamp { return hlc.Timestamp(tx.tc.hlc) }

// DBVersion returns the db_version the transaction will commit as.
func (tx *Tx) DBVersion() int64 { return tx.tc.dbv }

// Stats describe the writer's work, for metrics and benchmarks.
type Stats struct {
	Groups       int64         // commit groups (one fsync each)
	Transactions int64         // transactions committed
	Failed       int64         // transactions rolled back alone
	CommitTime   time.Duration // total time spent in COMMIT (the fsync)
}

// Write runs fn as one local transaction in the next commit group and returns
// its db_version once the group is durable (fsync). If fn fails, only its own
// changes are rolled back.
func (s *Store) Write(ctx context.Context, fn func(*Tx) error) (int64, error) {
	return s.submit(ctx, false, fn)
}

func (s *Store) submit(ctx context.Context, single bool, fn func(*Tx) error) (int64, error) {
	return s.enqueue(ctx, &job{ctx: ctx, fn: fn, capture: true, single: single, done: make(chan struct{})})
}

func (s *Store) enqueue(ctx context.Context, j *job) (int64, error) {
	if err := s.queue(ctx, j); err != nil {
		return 0, err
	}
	// Once queued, the job is always answered: the caller must learn whether
	// it committed even if its context ends meanwhile.
	<-j.done
	return j.dbv, j.err
}

// queue hands j to the writer, or fails if the store is closed or failed.
// It holds enqMu (shared) while it sends, so once Close has taken enqMu no
// job can slip into the queue after the writer's last look at it.
func (s *Store) queue(ctx context.Context, j *job) error {
	s.enqMu.RLock()
	defer s.enqMu.RUnlock()
	if s.closed.Load() {
		return errClosing()
	}
	if s.Err() != nil {
		return s.failedError()
	}
	select {
	case s.jobs <- j:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.failed:
		return s.failedError()
	}
}

func errClosing() *Error {
	return &Error{Code: CodeUnavailable, Statement: -1, Message: "the store is closing", Err: outpost.ErrClosed}
}

// run is the writer goroutine: it takes every queued job into one group.
//
// When the last group was large (many concurrent clients), it waits a little
// for the clients it just answered to send their next transactions, up to
// the size of that group and at most one group time: the wait costs less
// than the fsync a small group would spend (PostgreSQL's commit_delay idea).
// A lone client never waits.
func (s *Store) run() {
	defer close(s.done)
	defer func() {
		// Whatever is still queued when the writer ends is answered.
		for {
			select {
			case j := <-s.jobs:
				j.err = errClosing()
				close(j.done)
			default:
				return
			}
		}
	}()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	lastSize, lastCommit := 0, time.Duration(0)
	for {
		var first *job
		select {
		case first = <-s.jobs:
		case <-s.closing:
			// Answer what is still queued, then stop.
			for {
				select {
				case j := <-s.jobs:
					s.group([]*job{j})
				default:
					return
				}
			}
		}
		batch := []*job{first}
	fill:
		for len(batch) < s.opts.MaxBatch {
			select {
			case j := <-s.jobs:
				batch = append(batch, j)
			default:
				break fill
			}
		}
		if want := min(lastSize, s.opts.MaxBatch); want >= minDelayGroup && len(batch) < want {
			timer.Reset(min(lastCommit, maxGroupDelay))
		wait:
			for len(batch) < want {
				select {
				case j := <-s.jobs:
					batch = append(batch, j)
				case <-timer.C:
					break wait
				}
			}
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		}
		t := time.Now()
		s.group(batch)
		lastSize, lastCommit = len(batch), time.Since(t)
	}
}

// Group-forming delay: only after a group of at least minDelayGroup
// transactions, and never longer than maxGroupDelay.
const (
	minDelayGroup = 4
	maxGroupDelay = 500 * time.Microsecond
)

// group executes a commit group: one outer transaction, a savepoint per job,
// one COMMIT (and so one fsync) for all. If interrupting a timed-out
// client statement makes SQLite roll back the whole transaction, the other
// jobs run again in a new group.
func (s *Store) group(batch []*job) {
	for len(batch) > 0 {
		batch = s.groupOnce(batch)
	}
}

// groupOnce runs batch as one commit group and answers its jobs, except
// the ones it returns, which are to run again.
func (s *Store) groupOnce(batch []*job) (again []*job) {
	ctx := context.Background()
	committed := 0
	defer func() {
		s.stats.txns.Add(int64(committed))
		s.stats.failed.Add(int64(len(batch) - committed - len(again)))
		for _, j := range batch {
			if j.err != nil || j.again {
				for _, sl := range j.slugs {
					s.slugs.Release(sl)
				}
			}
			if j.again {
				j.again, j.err, j.dbv, j.slugs, j.seen = false, nil, 0, nil, nil
				again = append(again, j)
				continue
			}
			close(j.done)
		}
	}()
	if s.Err() != nil {
		for _, j := range batch {
			j.err = s.failedError()
		}
		return nil
	}
	if s.halt.Err() != nil {
		// Close gave up waiting: what is still queued is not run.
		for _, j := range batch {
			j.err = errClosing()
		}
		return nil
	}
	if err := s.control(ctx, "BEGIN IMMEDIATE"); err != nil {
		for _, j := range batch {
			j.err = &Error{Code: CodeInternal, Statement: -1, Message: "begin transaction: " + err.Error(), Err: err}
		}
		return nil
	}
	start := s.dbv
	s.groupLogged = false
	s.groupPos = s.groupPos[:0]
	var ok []*job
	broken := false
	retry := false // the transaction was lost to an interrupt: the others run again
	for _, j := range batch {
		if broken {
			if retry {
				j.again = true
			} else {
				j.err = errAborted()
			}
			continue
		}
		if err := j.ctx.Err(); err != nil {
			j.err = err
			continue
		}
		tc := &txContext{capture: j.capture, hlc: int64(s.clock.Now()), dbv: s.dbv + 1}
		// A transaction alone in its group needs no savepoint either: if it
		// fails, the whole group is rolled back, which is only its own work.
		alone := len(batch) == 1 && !j.single
		err := s.runJob(ctx, j, tc, alone)
		for _, sl := range tc.slugs {
			j.slugs = append(j.slugs, sl.slug)
		}
		j.seen = tc.seen
		if err == nil {
			if !j.meta && (j.capture || tc.wrote) {
				s.dbv++
				j.dbv = tc.dbv
			}
			ok = append(ok, j)
			continue
		}
		j.err = err
		if alone {
			// No savepoint: roll back the group, which holds nothing else.
			broken = true
			continue
		}
		if tc.interrupted {
			// SQLite rolls back the whole transaction when it interrupts
			// a statement that writes, and only the statement otherwise.
			if !s.wh.inTransaction() {
				broken, retry = true, true
				continue
			}
			if j.single {
				continue
			}
		} else if j.single {
			// No savepoint: SQLite already undid the failed statement,
			// unless the error was one that ends the whole transaction.
			broken = tc.lost || txLost(err)
			continue
		}
		if rerr := s.control(ctx, "ROLLBACK TO outpost_tx"); rerr != nil {
			// SQLite rolled back the whole transaction (e.g. I/O error):
			// nothing of this group is left.
			broken = true
			continue
		}
		if rerr := s.control(ctx, "RELEASE outpost_tx"); rerr != nil {
			broken = true
		}
	}
	if broken {
		_, _ = s.conn.ExecContext(ctx, "ROLLBACK")
		s.dbv = start
		for _, j := range ok {
			if retry {
				j.again = true
			} else {
				j.err, j.dbv = errAborted(), 0
			}
		}
		return nil
	}
	if len(ok) == 0 {
		_, _ = s.conn.ExecContext(ctx, "ROLLBACK")
		return nil
	}
	if err := s.logGroup(ctx, start, ok); err != nil {
		_, _ = s.conn.ExecContext(ctx, "ROLLBACK")
		s.dbv = start
		for _, j := range ok {
			j.err, j.dbv = &Error{Code: CodeInternal, Statement: -1, Message: err.Error(), Err: err}, 0
		}
		s.log.Error("commit group failed", "err", err, "size", len(batch))
		return nil
	}
	committing, err := s.finishGroup(ctx)
	if err != nil {
		_, _ = s.conn.ExecContext(ctx, "ROLLBACK")
		s.dbv = start
		var jerr *Error
		if committing {
			// After a failed COMMIT (a failed fsync above all) neither the
			// page cache nor the outcome can be trusted: stop writing.
			s.fail(err)
			jerr = s.failedError()
			jerr.Message = "the commit failed (" + err.Error() + "); whether this transaction is durable is unknown, check before retrying; " + jerr.Message
		} else {
			jerr = &Error{Code: CodeInternal, Statement: -1, Message: "commit: " + err.Error(), Err: err}
		}
		for _, j := range ok {
			j.err, j.dbv = jerr, 0
		}
		s.log.Error("commit group failed", "err", err, "size", len(batch))
		return nil
	}
	s.committed.Store(s.dbv)
	s.stats.groups.Add(1)
	committed = len(ok)
	if s.opts.OnGroup != nil {
		s.opts.OnGroup(len(ok), s.lastCommit)
	}
	for _, j := range ok {
		s.seen.add(j.seen)
	}
	for _, p := range s.groupPos {
		s.pos.put(p.dbv, p.pos)
	}
	if s.dbv != start || s.groupLogged {
		// Only a group that took a db_version or appended log entries
		// has something to serve: one that moved cursors or merged
		// nothing (duplicates) wakes nobody, so an idle link stays idle.
		s.broadcast()
	}
	return nil
}

// logGroup writes the group's local transactions to this node's log.
func (s *Store) logGroup(ctx context.Context, start int64, ok []*job) error {
	var dbvs map[int64]bool
	for _, j := range ok {
		if j.capture && j.dbv > 0 {
			if dbvs == nil {
				dbvs = map[int64]bool{}
			}
			dbvs[j.dbv] = true
		}
	}
	if dbvs == nil {
		return nil
	}
	return s.logLocal(ctx, start, s.dbv, dbvs)
}

// control runs a transaction-control statement, prepared once.
func (s *Store) control(ctx context.Context, query string) error {
	st, err := s.stmts.get(ctx, query)
	if err != nil {
		return err
	}
	_, err = st.ExecContext(ctx)
	return err
}

// txLost reports whether err is one after which SQLite may have rolled back
// the whole transaction rather than just the failed statement
// (https://sqlite.org/lang_transaction.html: SQLITE_FULL, IOERR, BUSY, NOMEM,
// and INTERRUPT; CORRUPT for good measure).
func txLost(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_NOMEM,
		sqlite3.SQLITE_INTERRUPT, sqlite3.SQLITE_CORRUPT:
		return true
	}
	return false
}

func errAborted() *Error {
	return &Error{Code: CodeTransactionAborted, Statement: -1,
		Message: "the database aborted the commit group this transaction was part of; nothing of it was applied; retry"}
}

func (s *Store) runJob(ctx context.Context, j *job, tc *txContext, alone bool) (err error) {
	savepoint := !j.single && !alone
	if savepoint {
		if err := s.control(ctx, "SAVEPOINT outpost_tx"); err != nil {
			return &Error{Code: CodeInternal, Statement: -1, Message: "savepoint: " + err.Error(), Err: err}
		}
	}
	s.cur = tc
	defer func() {
		s.cur = nil
		s.appMode = false
		if p := recover(); p != nil {
			tc.lost = true
			err = &Error{Code: CodeInternal, Statement: -1, Message: fmt.Sprintf("panic in transaction: %v", p)}
		}
	}()
	tx := &Tx{s: s, ctx: j.ctx, tc: tc}
	err = j.fn(tx)
	tx.endBudget()
	if err != nil {
		return err
	}
	if err := s.persistSlugs(ctx, tc); err != nil {
		tc.lost = j.single // the statement's changes cannot be undone alone
		return err
	}
	if j.single {
		return nil
	}
	if !savepoint {
		// What RELEASE would have checked: an error the function handled
		// may have made SQLite roll back the whole transaction.
		if !s.wh.inTransaction() {
			tc.lost = true
			return &Error{Code: CodeInternal, Statement: -1, Message: "the database rolled back the transaction"}
		}
		return nil
	}
	if err := s.control(ctx, "RELEASE outpost_tx"); err != nil {
		return &Error{Code: CodeInternal, Statement: -1, Message: "release savepoint: " + err.Error(), Err: err}
	}
	return nil
}

// persistSlugs records the slugs the transaction issued in the replicated
// registry, inside the same transaction.
func (s *Store) persistSlugs(ctx context.Context, tc *txContext) error {
	if len(tc.slugs) == 0 {
		return nil
	}
	st, err := s.stmts.get(ctx, `INSERT INTO outpost_slugs (slug, node, title, issued) VALUES (?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("record slugs: %w", err)
	}
	now := s.opts.Now().UnixMilli()
	for _, sl := range tc.slugs {
		if _, err := st.ExecContext(ctx, sl.slug, s.opts.Identity.Name, sl.title, now); err != nil {
			return &Error{Code: CodeInternal, Statement: -1, Message: "record slug " + sl.slug + ": " + err.Error(), Err: err}
		}
	}
	return nil
}

// finishGroup persists the db_version and clock high-water mark and commits.
// committing reports whether an error came from the COMMIT itself.
func (s *Store) finishGroup(ctx context.Context) (committing bool, err error) {
	st, err := s.stmts.get(ctx, `INSERT INTO outpost_meta (key, value) VALUES ('db_version', ?), ('hlc', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`)
	if err != nil {
		return false, err
	}
	if _, err := st.ExecContext(ctx, s.dbv, int64(s.clock.Last())); err != nil {
		return false, fmt.Errorf("write meta: %w", err)
	}
	t := time.Now()
	if h := s.opts.CommitHook; h != nil {
		if err := h(); err != nil {
			return true, err
		}
	}
	if err := s.control(ctx, "COMMIT"); err != nil {
		return true, err
	}
	d := time.Since(t)
	s.stats.commitNanos.Add(d.Nanoseconds())
	s.lastCommit = d
	return false, nil
}

// Stats returns counters of the writer's work since Open.
func (s *Store) Stats() Stats {
	return Stats{
		Groups:       s.stats.groups.Load(),
		Transactions: s.stats.txns.Load(),
		Failed:       s.stats.failed.Load(),
		CommitTime:   time.Duration(s.stats.commitNanos.Load()),
	}
}

type writerStats struct {
	groups, txns, failed, commitNanos atomic.Int64
}
