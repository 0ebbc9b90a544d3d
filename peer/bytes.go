package peer

import (
	"context"
	"net"
	"sync/atomic"
)

// Bytes counts the bytes that cross the peer transport's TCP connections
// (TLS records, so handshakes and HTTP/2 framing included), in each
// direction. A Server counts its accepted connections, a Client its dialed
// ones.
type Bytes struct {
	in, out atomic.Int64
}

// In returns the bytes read from peers.
func (b *Bytes) In() int64 { return b.in.Load() }

// Out returns the bytes written to peers.
func (b *Bytes) Out() int64 { return b.out.Load() }

// listener returns ln with every accepted connection counted.
func (b *Bytes) listener(ln net.Listener) net.Listener { return &countingListener{Listener: ln, b: b} }

// dialContext dials like a net.Dialer and counts the connection.
func (b *Bytes) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, b: b}, nil
}

type countingListener struct {
	net.Listener
	b *Bytes
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, b: l.b}, nil
}

type countingConn struct {
	net.Conn
	b *Bytes
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.b.in.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.b.out.Add(int64(n))
	return n, err
}
