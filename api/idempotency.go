package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/store"
)

// IdempotencyHeader is the request header that makes a POST /v1/exec
// idempotent: a request whose key was already applied gets the original
// response again instead of running a second time.
const IdempotencyHeader = "Idempotency-Key"

// ReplayHeader is set to "true" on a response replayed for an
// Idempotency-Key that was already applied.
const ReplayHeader = "Idempotent-Replay"

// MaxIdempotencyKey is the longest Idempotency-Key accepted, in bytes.
const MaxIdempotencyKey = 128

// Defaults of IdempotencyConfig.
const (
	DefaultIdempotencyTTL         = 24 * time.Hour
	DefaultIdempotencyMaxEntries  = 100_000
	DefaultIdempotencyMaxBytes    = 256 << 20
	DefaultIdempotencyMaxResponse = 1 << 20
)

// IdempotencyConfig bounds what a node remembers of requests that carried an
// Idempotency-Key. Zero fields take the defaults.
type IdempotencyConfig struct {
	// TTL is how long a key is remembered after its request was applied
	// (DefaultIdempotencyTTL, 24 h). A retry after that runs again.
	TTL time.Duration
	// MaxEntries and MaxBytes bound the keys kept and the bytes of their
	// responses; past them the oldest keys are forgotten before their TTL
	// (checked every pruneEvery applied keys and once a minute).
	MaxEntries int
	MaxBytes   int64
	// MaxResponse is the largest response body kept for a replay; a larger
	// one is not kept, and its replay is a 409 idempotency_response_not_kept
	// that says the write was applied and at which db_version.
	MaxResponse int
	// Now is the clock; nil = time.Now. For tests.
	Now func() time.Time
}

func (c IdempotencyConfig) withDefaults() IdempotencyConfig {
	if c.TTL <= 0 {
		c.TTL = DefaultIdempotencyTTL
	}
	if c.MaxEntries <= 0 {
		c.MaxEntries = DefaultIdempotencyMaxEntries
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultIdempotencyMaxBytes
	}
	if c.MaxResponse <= 0 {
		c.MaxResponse = DefaultIdempotencyMaxResponse
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// pruneEvery: expired and surplus keys are deleted once in this many
// applied keys, or when a minute has passed since the last pruning.
const pruneEvery = 256

// idempotency is a Server's state for Idempotency-Key: the keys whose
// request is running now, and when to prune.
type idempotency struct {
	cfg IdempotencyConfig

	mu       sync.Mutex
	inflight map[string]chan struct{}

	// Writer goroutine only (ExecThen's callback).
	sincePrune int
	lastPrune  time.Time
}

func newIdempotency(cfg IdempotencyConfig) *idempotency {
	return &idempotency{cfg: cfg.withDefaults(), inflight: map[string]chan struct{}{}}
}

// acquire makes the caller the only request running with key on this node:
// a second request with the same key waits until the first is answered (then
// it finds the first's response kept, or, if the first failed, runs itself).
func (id *idempotency) acquire(ctx context.Context, key string) (release func(), err error) {
	for {
		id.mu.Lock()
		ch, busy := id.inflight[key]
		if !busy {
			ch = make(chan struct{})
			id.inflight[key] = ch
			id.mu.Unlock()
			return func() {
				id.mu.Lock()
				delete(id.inflight, key)
				id.mu.Unlock()
				close(ch)
			}, nil
		}
		id.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// validIdempotencyKey reports whether k is 1 to 128 printable ASCII
// characters (space included).
func validIdempotencyKey(k string) bool {
	if len(k) == 0 || len(k) > MaxIdempotencyKey {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// requestHash fingerprints the statements of a request (their SQL and the
// SQL values of their args), so a key reused for other work is refused
// whatever the JSON's spacing or member order.
func requestHash(stmts []store.Statement) []byte {
	h := sha256.New()
	var n [8]byte
	put := func(b []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	var buf []byte
	for _, st := range stmts {
		put([]byte(st.SQL))
		binary.BigEndian.PutUint64(n[:], uint64(len(st.Args)))
		h.Write(n[:])
		for _, a := range st.Args {
			buf = AppendValue(buf[:0], a)
			put(buf)
		}
	}
	return h.Sum(nil)
}

// execIdempotent runs a /v1/exec request that carries an Idempotency-Key:
// it replays the kept response of an applied key, refuses a key reused for
// another request, and otherwise runs the statements and keeps the response
// in the same transaction.
func (s *Server) execIdempotent(w http.ResponseWriter, r *http.Request, key string, stmts []store.Statement) {
	id := s.idem
	hash := requestHash(stmts)
	release, err := id.acquire(r.Context(), key)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, store.CodeUnavailable, "request canceled while another request with the same Idempotency-Key ran", -1)
		return
	}
	defer release()
	rem, err := s.store.Remembered(r.Context(), key)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	now := id.cfg.Now()
	if rem != nil && now.Sub(rem.Created) < id.cfg.TTL {
		if !bytes.Equal(rem.Hash, hash) {
			writeError(w, http.StatusUnprocessableEntity, "idempotency_key_reused", fmt.Sprintf("Idempotency-Key %q was already used for a different request (applied at db_version %d); use a new key for new work", key, rem.DBV), -1)
			return
		}
		w.Header().Set(ReplayHeader, "true")
		if rem.Body == nil {
			writeError(w, http.StatusConflict, "idempotency_response_not_kept", fmt.Sprintf("the request with Idempotency-Key %q was applied at db_version %d, but its response was too large to keep for a replay; read the result with /v1/query", key, rem.DBV), -1)
			return
		}
		body := rem.Body
		if rem.Status == http.StatusOK {
			// The log position is known only after the commit, so it is
			// added to the replay as to the first answer (while this node
			// still remembers it: the last 65,536 writes).
			body = s.withPosition(body, rem.DBV)
		}
		writeJSON(w, rem.Status, body)
		return
	}
	var body []byte
	_, dbv, err := s.store.ExecThen(r.Context(), stmts, func(tx *store.Tx, results []store.Result) error {
		body = execBody(results, tx.DBVersion())
		kept := body
		if len(kept) > id.cfg.MaxResponse {
			kept = nil
		}
		if err := tx.Remember(key, store.Remembered{Hash: hash, Status: http.StatusOK, Body: kept, DBV: tx.DBVersion(), Created: now}); err != nil {
			return err
		}
		id.sincePrune++
		if id.sincePrune >= pruneEvery || now.Sub(id.lastPrune) > time.Minute {
			if _, err := tx.ForgetRemembered(now.Add(-id.cfg.TTL), id.cfg.MaxEntries, id.cfg.MaxBytes); err != nil {
				return err
			}
			id.sincePrune, id.lastPrune = 0, now
		}
		return nil
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.withPosition(body, dbv))
}

// execBody is the JSON answer of a successful /v1/exec.
func execBody(results []store.Result, dbv int64) []byte {
	b := make([]byte, 0, 64+32*len(results))
	b = append(b, `{"results":[`...)
	for i, res := range results {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"rows_affected":`...)
		b = strconv.AppendInt(b, res.RowsAffected, 10)
		if res.Columns != nil {
			b = append(b, ',')
			b = appendRows(b, res.Columns, res.Rows)
		}
		b = append(b, '}')
	}
	b = append(b, `],"db_version":`...)
	b = strconv.AppendInt(b, dbv, 10)
	return append(b, '}')
}
