package purge

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/store"
)

// Source is the store as the Watcher uses it.
type Source interface {
	Changed() <-chan struct{}
	DBVersion() int64
	ChangesSinceFilter(ctx context.Context, since int64, f store.ChangeFilter) ([]outpost.Group, int64, error)
	AckPurges(ctx context.Context, ids []string, applied int64) error
	UnackedPurges(ctx context.Context, limit int) ([]store.Purge, error)
}

// Target is the cache purges apply to (edgecache.Cache).
type Target interface {
	PurgeTags(tags []string, soft bool) int
	PurgeAll(soft bool) int
}

// Watcher follows a store's committed changes and purges a cache.
type Watcher struct {
	src    Source
	target Target // nil: purges are only acknowledged
	log    *slog.Logger

	mu      sync.Mutex
	through int64         // every db_version up to here is applied
	moved   chan struct{} // closed and replaced when through moves
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	started bool

	observers []func(tags []string, all bool) // guarded by mu
	acks      []string                        // applied, not yet acknowledged; guarded by mu
	ackNow    chan struct{}                   // wakes the ack loop
}

// AckInterval is how often a watcher records the purges it applied (one
// write for all of them: acknowledgements replicate to every node, so one
// per purge would multiply the fleet's commits).
var AckInterval = time.Second

// Observe adds f, called after each purge the watcher applies to the cache
// with its tags (the changed tables and rows of a batch of commits, or a
// purge request's keys and URL tags) and whether it purged everything
// (benchmarks, tests).
func (w *Watcher) Observe(f func(tags []string, all bool)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.observers = append(w.observers, f)
}

func (w *Watcher) notify(tags []string, all bool) {
	w.mu.Lock()
	obs := w.observers
	w.mu.Unlock()
	for _, f := range obs {
		f(tags, all)
	}
}

// NewWatcher returns a Watcher of src that purges target (which may be
// nil). Start starts it.
func NewWatcher(src Source, target Target, log *slog.Logger) *Watcher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Watcher{src: src, target: target, log: log, moved: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{}), ackNow: make(chan struct{}, 1)}
}

// Start begins following the store from its current db_version: the cache
// is empty at start (it lives in memory), so only later changes matter.
// Purges this node has not acknowledged yet (it stopped before it could)
// are acknowledged first.
func (w *Watcher) Start() {
	w.mu.Lock()
	w.through = w.src.DBVersion()
	w.started = true
	w.mu.Unlock()
	go w.run()
}

// Stop stops the watcher and waits for it.
func (w *Watcher) Stop() {
	w.once.Do(func() { close(w.stop) })
	w.mu.Lock()
	started := w.started
	w.mu.Unlock()
	if started {
		<-w.done
	}
}

// Through returns the db_version up to which changes have been applied.
func (w *Watcher) Through() int64 { w.mu.Lock(); defer w.mu.Unlock(); return w.through }

// WaitApplied waits until the changes up to dbv have been applied to the
// cache, or ctx ends.
func (w *Watcher) WaitApplied(ctx context.Context, dbv int64) error {
	for {
		w.mu.Lock()
		t, ch := w.through, w.moved
		w.mu.Unlock()
		if t >= dbv {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-w.done:
			return outpost.ErrClosed
		}
	}
}

func (w *Watcher) run() {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-w.stop; cancel() }()
	acked := make(chan struct{})
	go w.ackLoop(ctx, acked)
	defer func() { <-acked; close(w.done) }()
	w.ackMissed(ctx)
	for {
		changed := w.src.Changed()
		if w.src.DBVersion() <= w.Through() {
			select {
			case <-changed:
			case <-w.stop:
				return
			}
		}
		if err := w.step(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			w.log.Warn("purge: reading changes", "err", err)
			select {
			case <-time.After(200 * time.Millisecond):
			case <-w.stop:
				return
			}
		}
	}
}

// ackMissed acknowledges purges this node never acknowledged: its cache
// started empty, so they hold for it.
func (w *Watcher) ackMissed(ctx context.Context) {
	ps, err := w.src.UnackedPurges(ctx, 10_000)
	if err != nil || len(ps) == 0 {
		return
	}
	ids := make([]string, len(ps))
	for i, p := range ps {
		ids[i] = p.ID
	}
	if err := w.src.AckPurges(ctx, ids, time.Now().UnixMilli()); err != nil {
		w.log.Warn("purge: acknowledge missed purges", "err", err)
	}
}

// step applies the next batch of committed groups.
func (w *Watcher) step(ctx context.Context) error {
	// Only which rows changed matters here, and a purge's body: the
	// rest is read from the clock tables' dbv index alone.
	groups, through, err := w.src.ChangesSinceFilter(ctx, w.Through(), store.ChangeFilter{MaxChanges: 10_000, KeysOnly: true, Values: []string{"outpost_purges"}})
	if err != nil {
		return err
	}
	tags := map[string]struct{}{}
	var acks []string
	for _, g := range groups {
		for i := range g.Changes {
			ch := &g.Changes[i]
			switch {
			case strings.EqualFold(ch.Table, "outpost_purges"):
				if ch.Col != "body" {
					continue
				}
				body, _ := ch.Val.(string)
				id, _ := ch.PK[0].(string)
				w.applyPurge(id, body)
				acks = append(acks, id)
			case strings.HasPrefix(strings.ToLower(ch.Table), "outpost_"):
			default:
				tags[TableTag(ch.Table)] = struct{}{}
				tags[RowTag(ch.Table, ch.PK)] = struct{}{}
			}
		}
	}
	if len(tags) > 0 {
		list := make([]string, 0, len(tags))
		for t := range tags {
			list = append(list, t)
		}
		if w.target != nil {
			w.target.PurgeTags(list, false)
		}
		w.notify(list, false)
	}
	w.mu.Lock()
	w.acks = append(w.acks, acks...)
	if len(w.acks) >= 1000 {
		select {
		case w.ackNow <- struct{}{}:
		default:
		}
	}
	if through > w.through {
		w.through = through
		close(w.moved)
		w.moved = make(chan struct{})
	}
	w.mu.Unlock()
	return nil
}

// ackLoop records the applied purges every AckInterval, and once more
// when the watcher stops.
func (w *Watcher) ackLoop(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(AckInterval)
	defer t.Stop()
	flush := func(ctx context.Context) {
		w.mu.Lock()
		ids := w.acks
		w.acks = nil
		w.mu.Unlock()
		if len(ids) == 0 {
			return
		}
		if err := w.src.AckPurges(ctx, ids, time.Now().UnixMilli()); err != nil {
			w.log.Warn("purge: acknowledge", "err", err, "purges", len(ids))
		}
	}
	for {
		select {
		case <-t.C:
		case <-w.ackNow:
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			flush(fctx)
			cancel()
			return
		}
		flush(ctx)
	}
}

func (w *Watcher) applyPurge(id, body string) {
	r, err := Decode(body)
	if err != nil {
		w.log.Warn("purge: unreadable purge request", "id", id, "err", err)
		return
	}
	if w.target != nil {
		if r.All {
			w.target.PurgeAll(r.Soft)
		} else {
			w.target.PurgeTags(r.Tags(), r.Soft)
		}
	}
	w.notify(r.Tags(), r.All)
	w.log.Debug("purge applied", "id", id, "keys", len(r.Keys), "urls", len(r.URLs), "all", r.All, "soft", r.Soft)
}
