package store

import (
	"context"
	"time"
)

// DefaultStatementTimeout is the time budget of a client transaction in the
// writer and of a client query, when Options.StatementTimeout is 0.
const DefaultStatementTimeout = 5 * time.Second

// interruptEvery is how often the watchdog repeats its interrupt: SQLite
// clears an interrupt that arrives between two statements when the next
// one starts.
const interruptEvery = 10 * time.Millisecond

// closeGrace is how long Close lets the writer finish what is queued
// before it interrupts the client statement running.
const closeGrace = time.Second

// watch interrupts the statement running on h once ctx is done, and again
// every interruptEvery until stop is called. stop waits for the watcher to
// end, so no interrupt reaches a statement that runs after it.
func watch(ctx context.Context, h handle) (stop func()) {
	quit, ended := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ended)
		select {
		case <-quit:
			return
		case <-ctx.Done():
		}
		t := time.NewTicker(interruptEvery)
		defer t.Stop()
		for {
			h.interrupt()
			select {
			case <-quit:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(quit); <-ended }
}

// budget returns the context a client transaction's or query's statements
// run under: done when the statement timeout passes, when parent is done,
// or when the store gives up waiting for the writer on Close.
func (s *Store) budget(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	stopHalt := context.AfterFunc(s.halt, cancel)
	if d := s.opts.StatementTimeout; d > 0 {
		var cancelT context.CancelFunc
		ctx, cancelT = context.WithTimeout(ctx, d)
		c0 := cancel
		cancel = func() { cancelT(); c0() }
	}
	return ctx, func() { stopHalt(); cancel() }
}

// budgetErr explains why a client statement was interrupted: the store is
// closing, the caller went away, or the time budget ran out.
func (s *Store) budgetErr(ctx context.Context, stmt int) *Error {
	if s.halt.Err() != nil {
		return &Error{Code: CodeUnavailable, Statement: stmt, Message: "the store is closing; the statement was stopped and nothing of the transaction was applied; retry on a running node"}
	}
	if context.Cause(ctx) == context.DeadlineExceeded || ctx.Err() == context.DeadlineExceeded {
		return &Error{Code: CodeStatementTimeout, Statement: stmt, Err: context.DeadlineExceeded,
			Message: "the statement ran longer than the " + s.opts.StatementTimeout.String() + " time budget (--statement-timeout) and was stopped; nothing of the transaction was applied; make it cheaper (add a LIMIT, a WHERE on an indexed column, bound a recursive CTE) or raise the budget"}
	}
	return &Error{Code: CodeUnavailable, Statement: stmt, Err: ctx.Err(), Message: "request canceled"}
}
