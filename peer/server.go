package peer

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/identity"
	"github.com/outpost-edge/outpost/policy"
	"github.com/outpost-edge/outpost/trust"
)

// Config describes this node to the peer transport.
type Config struct {
	Self   identity.Peer // this node: identity and public key (Addr unused)
	Key    *identity.Key
	Trust  *trust.Store
	Policy *policy.Matrix
	Logger *slog.Logger
	// Timeouts of the peer listener, so slow or idle connections (slow
	// loris) are closed: ReadHeaderTimeout bounds the TLS handshake and a
	// request's headers (0 = 10s); ReadTimeout a request body (0 = 60s;
	// handlers of long bodies extend it per request with
	// http.ResponseController, and a pull stream, which has no body, is not
	// affected); IdleTimeout a connection with no open stream (0 = 2m).
	ReadHeaderTimeout, ReadTimeout, IdleTimeout time.Duration
}

// Party returns the policy party of a peer.
func Party(p identity.Peer) policy.Party {
	return policy.Party{Name: p.Name, Role: p.Role, Farm: p.Farm}
}

// Server is the peer listener: HTTP/2 over mutual TLS. Every route declares
// the exchange it is (pull, push or neither); the server refuses a peer the
// policy does not allow, and closes the connections of a peer whose key is
// removed from the trust list.
type Server struct {
	cfg      Config
	log      *slog.Logger
	cert     tls.Certificate
	mux      *http.ServeMux
	srv      *http.Server
	ln       net.Listener
	Refusals *Refusals
	Bytes    *Bytes // bytes read from and written to peers on accepted connections
	Seen     *Seen  // when each peer last sent a request

	mu         sync.Mutex
	conns      map[string]map[net.Conn]struct{} // by key fingerprint
	helloHooks []func(identity.Peer, url.Values)

	base   context.Context // parent of every request context
	cancel context.CancelFunc
}

type ctxKey int

const (
	connKey ctxKey = iota
	peerKey
)

// NewServer returns a server for cfg; Listen binds it.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cert, err := Certificate(cfg.Key, cfg.Self.Name)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, cert: cert, mux: http.NewServeMux(), Refusals: newRefusals(), Bytes: &Bytes{}, Seen: &Seen{},
		conns: map[string]map[net.Conn]struct{}{}}
	s.base, s.cancel = context.WithCancel(context.Background())
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no peer route %s %s", r.Method, r.URL.Path))
	})
	cfg.Trust.OnChange(s.onTrustChange)
	return s, nil
}

// Handle registers a route. action is the exchange the route is, checked
// against the policy with the calling peer as initiator and this node as
// target; "" admits any trusted peer (e.g. hello).
func (s *Server) Handle(pattern string, action policy.Action, h http.Handler) {
	s.mux.Handle(pattern, s.guard(action, h))
}

func (s *Server) tlsConfig() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{s.cert},
		ClientAuth:   tls.RequireAnyClientCert,
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{"h2"},
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			pub, err := certKey(raw)
			if err != nil {
				s.Refusals.add("no_key", "")
				s.log.Warn("peer: refused a connection without a usable key", "err", err)
				return err
			}
			if _, ok := s.cfg.Trust.List().ByKey(pub); !ok {
				fp := identity.Fingerprint(pub)
				s.Refusals.add("unknown_key", fp)
				s.log.Warn("peer: refused unknown key", "fingerprint", fp)
				return fmt.Errorf("%w: %s", ErrUnknownKey, fp)
			}
			return nil
		},
	}
}

// ErrUnknownKey reports a key that is not on the trust list.
var ErrUnknownKey = errors.New("key is not on the trust list")

// Listen binds addr (":0" picks a free port).
func (s *Server) Listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("peer listen on %s: %w", addr, err)
	}
	s.ln = s.Bytes.listener(ln)
	s.srv = &http.Server{
		Handler:           s.mux,
		TLSConfig:         s.tlsConfig(),
		ReadHeaderTimeout: cmp.Or(s.cfg.ReadHeaderTimeout, 10*time.Second),
		ReadTimeout:       cmp.Or(s.cfg.ReadTimeout, 60*time.Second),
		IdleTimeout:       cmp.Or(s.cfg.IdleTimeout, 2*time.Minute),
		HTTP2:             &http.HTTP2Config{SendPingTimeout: PingInterval, PingTimeout: PingInterval},
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return s.base },
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey, c)
		},
		ConnState: func(c net.Conn, st http.ConnState) {
			if st == http.StateClosed || st == http.StateHijacked {
				s.untrack(c)
			}
		},
	}
	return nil
}

// Addr returns the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve answers peers until Close; it returns at once.
func (s *Server) Serve() {
	go func() {
		if err := s.srv.ServeTLS(s.ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("peer: serve", "err", err)
		}
	}()
}

// Close stops the listener, ends open streams (their request contexts are
// canceled) and closes every peer connection.
func (s *Server) Close(ctx context.Context) error {
	s.cancel()
	if s.srv == nil {
		return nil
	}
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	return err
}

// guard authenticates the peer of a request (again: the trust list may have
// changed since the handshake) and applies the policy.
func (s *Server) guard(action policy.Action, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pub, err := PeerKey(r.TLS)
		if err != nil {
			s.Refusals.add("no_key", "")
			WriteError(w, http.StatusUnauthorized, "no_key", "present an ed25519 client certificate")
			return
		}
		p, ok := s.cfg.Trust.List().ByKey(pub)
		if !ok {
			fp := identity.Fingerprint(pub)
			s.Refusals.add("removed_key", fp)
			WriteError(w, http.StatusForbidden, "unknown_key", "key "+fp+" is no longer on the trust list")
			if c, ok := r.Context().Value(connKey).(net.Conn); ok {
				go c.Close()
			}
			return
		}
		if c, ok := r.Context().Value(connKey).(net.Conn); ok {
			s.track(identity.Fingerprint(pub), c)
		}
		s.Seen.Touch(p.Name)
		if action != "" {
			d := s.cfg.Policy.Check(Party(p), Party(s.cfg.Self), action)
			if !d.Allowed {
				s.Refusals.add("policy", d.Rule)
				s.log.Warn("peer: policy refused", "peer", p.Name, "action", action, "rule", d.Rule)
				writeJSON(w, http.StatusForbidden, map[string]any{"error": map[string]string{
					"code": "policy_refused", "message": d.Reason, "rule": d.Rule}})
				return
			}
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), peerKey, p)))
	})
}

// From returns the authenticated peer of a request served by a Server.
func From(ctx context.Context) (identity.Peer, bool) {
	p, ok := ctx.Value(peerKey).(identity.Peer)
	return p, ok
}

func (s *Server) track(fp string, c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.conns[fp]
	if m == nil {
		m = map[net.Conn]struct{}{}
		s.conns[fp] = m
	}
	m[c] = struct{}{}
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for fp, m := range s.conns {
		delete(m, c)
		if len(m) == 0 {
			delete(s.conns, fp)
		}
	}
}

// onTrustChange closes, at once, every connection of a key that lost trust,
// open streams included.
func (s *Server) onTrustChange(d trust.Diff) {
	s.mu.Lock()
	var doomed []net.Conn
	for _, p := range d.Removed {
		fp := identity.Fingerprint(p.Key)
		for c := range s.conns[fp] {
			doomed = append(doomed, c)
		}
		delete(s.conns, fp)
	}
	s.mu.Unlock()
	for _, c := range doomed {
		c.Close()
	}
	if len(doomed) > 0 {
		s.log.Info("peer: closed connections of removed keys", "connections", len(doomed))
	}
}

// WriteError writes the JSON error body every peer route uses.
func WriteError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// Refusals counts refused peers by kind (unknown_key, no_key, removed_key,
// policy) and detail (key fingerprint or policy rule).
type Refusals struct {
	mu sync.Mutex
	m  map[string]int64
}

func newRefusals() *Refusals { return &Refusals{m: map[string]int64{}} }

// NewRefusals returns empty counters.
func NewRefusals() *Refusals { return newRefusals() }

// Add counts one refusal of kind with detail (e.g. a stream refused for
// load, a group too large to send).
func (r *Refusals) Add(kind, detail string) { r.add(kind, detail) }

func (r *Refusals) add(kind, detail string) {
	r.mu.Lock()
	r.m[kind+"\x00"+detail]++
	r.mu.Unlock()
}

// Refusal is one counter of Refusals.Snapshot.
type Refusal struct {
	Kind   string `json:"kind"`
	Detail string `json:"detail,omitempty"`
	Count  int64  `json:"count"`
}

// Snapshot returns the counters.
func (r *Refusals) Snapshot() []Refusal {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Refusal, 0, len(r.m))
	for k, n := range r.m {
		kind, detail, _ := strings.Cut(k, "\x00")
		out = append(out, Refusal{Kind: kind, Detail: detail, Count: n})
	}
	return out
}

// Total returns the number of refusals of a kind ("" = all kinds).
func (r *Refusals) Total(kind string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n int64
	for k, c := range r.m {
		if kk, _, _ := strings.Cut(k, "\x00"); kind == "" || kk == kind {
			n += c
		}
	}
	return n
}
