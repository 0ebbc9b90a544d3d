package peer

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/identity"
	"github.com/outpost-edge/outpost/policy"
)

// Client makes node-to-node calls. It refuses, without dialing, an exchange
// the policy does not allow this node to start, and pins each peer's key
// against the trust list in the TLS handshake.
type Client struct {
	cfg      Config
	cert     tls.Certificate
	Refusals *Refusals
	Bytes    *Bytes // bytes read from and written to peers on dialed connections
	Seen     *Seen  // when each peer last answered, and its last hello

	mu      sync.Mutex
	clients map[string]*http.Client // by peer name + key
}

// PingInterval is how long an HTTP/2 connection may be silent before a ping
// is sent, and how long the ping may take, on both sides of the transport.
const PingInterval = 3 * time.Second

// ErrPolicy reports an exchange the policy does not allow this node to start.
var ErrPolicy = errors.New("refused by policy")

// ErrUnknownPeer reports a peer name that is not on the trust list.
var ErrUnknownPeer = errors.New("peer is not on the trust list")

// PolicyError is a refusal by the initiator's own policy check.
type PolicyError struct{ Decision policy.Decision }

func (e *PolicyError) Error() string { return "policy: " + e.Decision.Reason }

// Unwrap returns ErrPolicy.
func (e *PolicyError) Unwrap() error { return ErrPolicy }

// StatusError is a non-2xx answer from a peer, with its JSON error.
type StatusError struct {
	Status  int
	Code    string
	Message string
	Rule    string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("peer answered %d %s: %s", e.Status, e.Code, e.Message)
}

// NewClient returns a client for cfg.
func NewClient(cfg Config) (*Client, error) {
	cert, err := Certificate(cfg.Key, cfg.Self.Name)
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, cert: cert, Refusals: newRefusals(), Bytes: &Bytes{}, Seen: &Seen{}, clients: map[string]*http.Client{}}
	return c, nil
}

// Check reports whether this node may start action with the named peer.
func (c *Client) Check(name string, action policy.Action) (identity.Peer, error) {
	p, ok := c.cfg.Trust.List().ByName(name)
	if !ok {
		return p, fmt.Errorf("%w: %s", ErrUnknownPeer, name)
	}
	if action != "" {
		if d := c.cfg.Policy.Check(Party(c.cfg.Self), Party(p), action); !d.Allowed {
			c.Refusals.add("policy", d.Rule)
			return p, &PolicyError{Decision: d}
		}
	}
	if p.Addr == "" {
		return p, fmt.Errorf("peer %s has no addr in the trust list", name)
	}
	return p, nil
}

// Do sends req (whose URL holds only the path and query) to the named peer
// as the given exchange.
func (c *Client) Do(ctx context.Context, name string, action policy.Action, method, path string, body []byte) (*http.Response, error) {
	p, err := c.Check(name, action)
	if err != nil {
		return nil, err
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://"+p.Addr+path, rd)
	if err != nil {
		return nil, err
	}
	resp, err := c.httpClient(p).Do(req)
	if err != nil {
		return nil, fmt.Errorf("peer %s: %w", name, err)
	}
	c.Seen.Touch(name) // (the handshake pinned its key: it is the peer)
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		var e struct {
			Error struct{ Code, Message, Rule string } `json:"error"`
		}
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		_ = json.Unmarshal(data, &e)
		return nil, &StatusError{Status: resp.StatusCode, Code: e.Error.Code, Message: e.Error.Message, Rule: e.Error.Rule}
	}
	return resp, nil
}

// GetJSON calls a peer route and decodes its JSON answer.
func (c *Client) GetJSON(ctx context.Context, name string, action policy.Action, path string, out any) error {
	resp, err := c.Do(ctx, name, action, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out)
}

// httpClient returns the HTTP/2 client pinned to p's key.
func (c *Client) httpClient(p identity.Peer) *http.Client {
	id := p.Name + "\x00" + identity.EncodePublicKey(p.Key)
	c.mu.Lock()
	defer c.mu.Unlock()
	if hc := c.clients[id]; hc != nil {
		return hc
	}
	name := p.Name
	tlsCfg := &tls.Config{
		Certificates: []tls.Certificate{c.cert},
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{"h2"},
		// No CA: the peer's certificate is checked by pinning its key to
		// the one the trust list holds for that name, now.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			pub, err := certKey(raw)
			if err != nil {
				c.Refusals.add("no_key", name)
				return err
			}
			want, ok := c.cfg.Trust.List().ByName(name)
			if !ok {
				c.Refusals.add("unknown_peer", name)
				return fmt.Errorf("%w: %s", ErrUnknownPeer, name)
			}
			if !want.Key.Equal(pub) {
				fp := identity.Fingerprint(pub)
				c.Refusals.add("wrong_key", name+" "+fp)
				return fmt.Errorf("peer %s presented key %s but the trust list pins %s", name, fp, identity.Fingerprint(want.Key))
			}
			return nil
		},
	}
	tr := &http.Transport{
		TLSClientConfig:     tlsCfg,
		DialContext:         c.Bytes.dialContext,
		ForceAttemptHTTP2:   true,
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     2 * time.Minute,
		// A connection whose peer vanished (killed, partitioned, or moved
		// to another address) is detected by a ping within a few seconds
		// and closed, instead of staying in the pool and swallowing every
		// later request.
		HTTP2: &http.HTTP2Config{SendPingTimeout: PingInterval, PingTimeout: PingInterval},
	}
	hc := &http.Client{Transport: tr}
	c.clients[id] = hc
	return hc
}

// Close drops idle connections.
func (c *Client) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, hc := range c.clients {
		hc.CloseIdleConnections()
		delete(c.clients, k)
	}
}
