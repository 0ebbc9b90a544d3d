package edgecache

import "sync"

// Flights runs one call per key at a time; callers that arrive while it
// runs wait and share its result (request coalescing).
type Flights struct {
	mu sync.Mutex
	m  map[string]*flight
}

type flight struct {
	done chan struct{}
	val  any
	err  error
}

// Do runs fn for key unless a call for key is running, in which case it
// waits for that call's result. shared reports a result from another call.
func (f *Flights) Do(key string, fn func() (any, error)) (val any, err error, shared bool) {
	f.mu.Lock()
	if f.m == nil {
		f.m = map[string]*flight{}
	}
	if fl := f.m[key]; fl != nil {
		f.mu.Unlock()
		<-fl.done
		return fl.val, fl.err, true
	}
	fl := &flight{done: make(chan struct{})}
	f.m[key] = fl
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.m, key)
		f.mu.Unlock()
		close(fl.done)
	}()
	fl.val, fl.err = fn()
	return fl.val, fl.err, false
}

// Running reports whether a call for key is in flight.
func (f *Flights) Running(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.m[key]
	return ok
}
