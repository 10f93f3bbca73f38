package providers

import (
	"context"
	"crypto/tls"
	"net"
	"time"
)

// DialTLS returns the senders' HTTP/2 dialer. With lowLatency false it leaves
// Nagle's algorithm on: Go's HTTP/2 transport flushes the HEADERS and every
// DATA frame of each request as its own TLS record, and with many streams in
// flight letting the kernel coalesce them into full segments halves the
// reads the provider's server does per request; on the simulator it raised
// the APNs sender from 46% of the h2load ceiling to the ceiling
// (docs/benchmarks.md). The price is latency when sends are sparse: a
// request whose HEADERS segment is not yet acknowledged waits for the peer's
// delayed ACK (40 ms on Linux) before its DATA goes out. lowLatency true
// sets TCP_NODELAY, for apps that send one notification at a time.
func DialTLS(lowLatency bool) func(ctx context.Context, network, addr string, cfg *tls.Config) (net.Conn, error) {
	return func(ctx context.Context, network, addr string, cfg *tls.Config) (net.Conn, error) {
		d := net.Dialer{Timeout: 20 * time.Second, KeepAlive: 15 * time.Second}
		raw, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if tc, ok := raw.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(lowLatency)
		}
		c := tls.Client(raw, cfg)
		if err := c.HandshakeContext(ctx); err != nil {
			_ = raw.Close()
			return nil, err
		}
		return c, nil
	}
}
