package fcm

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"

	"github.com/pushlane/pushlane/providers"
)

// maxPending bounds what a coalescingConn holds before Write waits for the
// socket, so a peer that stops reading still pushes back on the sender.
const maxPending = 256 << 10

// dialCoalescing is providers.DialTLS with the TLS connection wrapped in a
// coalescingConn. It checks ALPN itself: the HTTP/2 transport only does so
// for a *tls.Conn.
func dialCoalescing(lowLatency bool) func(ctx context.Context, network, addr string, cfg *tls.Config) (net.Conn, error) {
	dial := providers.DialTLS(lowLatency)
	return func(ctx context.Context, network, addr string, cfg *tls.Config) (net.Conn, error) {
		c, err := dial(ctx, network, addr, cfg)
		if err != nil {
			return nil, err
		}
		tc, ok := c.(*tls.Conn)
		if !ok {
			_ = c.Close()
			return nil, fmt.Errorf("fcm: dial %s: not a TLS connection", addr)
		}
		if st := tc.ConnectionState(); st.NegotiatedProtocol != "h2" {
			_ = c.Close()
			return nil, fmt.Errorf("fcm: dial %s: server does not speak HTTP/2 (ALPN %q)", addr, st.NegotiatedProtocol)
		}
		return newCoalescingConn(tc), nil
	}
}

// coalescingConn gathers the writes of many requests into one TLS record and
// one system call. Go's HTTP/2 transport flushes every request twice, its
// HEADERS and its DATA, each into its own TLS record and write(2); with a
// few hundred requests in flight that was a third of the sender's CPU, and
// the peer paid for the small records as well. Write only appends to a
// buffer and wakes the flusher goroutine, which first yields, so that every
// request goroutine already runnable appends its frames too, and then writes
// everything at once: what nghttp2 (h2load) does.
//
// Order is kept, so HTTP/2 framing and stream-ID order are as the transport
// wrote them. What is still buffered when the connection closes is dropped,
// never sent: the transport fails every open stream of a closed connection,
// and the sender re-sends those, so sending them late as well could deliver
// a notification twice. A failed write is returned by the next Write and
// closes the connection, so reads fail too and the transport fails the
// streams whose frames were lost.
type coalescingConn struct {
	net.Conn // a *tls.Conn but in tests

	mu      sync.Mutex
	drained sync.Cond // signalled when pending shrinks or the conn fails
	pending []byte    // written by the transport, not yet by the flusher
	spare   []byte    // the flusher's previous buffer, reused
	err     error     // sticky: the write that failed, or net.ErrClosed
	wake    chan struct{}
}

func newCoalescingConn(c net.Conn) *coalescingConn {
	cc := &coalescingConn{Conn: c, wake: make(chan struct{}, 1)}
	cc.drained.L = &cc.mu
	go cc.flushLoop()
	return cc
}

// ConnectionState is the TLS state, which the HTTP/2 transport keeps for
// Response.TLS.
func (c *coalescingConn) ConnectionState() tls.ConnectionState {
	if tc, ok := c.Conn.(*tls.Conn); ok {
		return tc.ConnectionState()
	}
	return tls.ConnectionState{}
}

func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	for c.err == nil && len(c.pending) > 0 && len(c.pending)+len(p) > maxPending {
		c.drained.Wait()
	}
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return 0, err
	}
	c.pending = append(c.pending, p...)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (c *coalescingConn) flushLoop() {
	for range c.wake {
		c.mu.Lock()
		idle := c.err == nil && len(c.pending) == 0 // woken for frames an earlier round took
		c.mu.Unlock()
		if idle {
			continue
		}
		// Let the request goroutines that are runnable now add their frames
		// first: one write for all of them.
		runtime.Gosched()
		c.mu.Lock()
		if c.err != nil {
			c.mu.Unlock()
			return
		}
		buf := c.pending
		c.pending, c.spare = c.spare[:0], nil
		c.drained.Broadcast()
		c.mu.Unlock()
		_, err := c.Conn.Write(buf)
		c.mu.Lock()
		if cap(buf) <= 2*maxPending { // keep a buffer that grew past it for one burst only
			c.spare = buf[:0]
		}
		if err != nil && c.err == nil {
			c.err = err
			c.pending = nil
			c.drained.Broadcast()
		}
		failed := c.err != nil
		c.mu.Unlock()
		if err != nil {
			_ = c.Conn.Close()
		}
		if failed {
			return
		}
	}
}

// Close drops what is not yet written (see the type's comment) and closes
// the connection.
func (c *coalescingConn) Close() error {
	c.mu.Lock()
	if c.err == nil {
		c.err = net.ErrClosed
	}
	c.pending = nil
	c.drained.Broadcast()
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}: // the flusher sees err and returns
	default:
	}
	err := c.Conn.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
