package providers

import (
	"context"
	"crypto/tls"
	"net"
	"time"
)

// DialTLS returns the senders' HTTP/2 dialer. With lowLatency false it leaves
// Nagle's algorithm on. It was turned on when the senders went through Go's
// HTTP/2 transport, which flushed the HEADERS and every DATA frame of each
// request as its own TLS record: letting the kernel coalesce them halved the
// reads the provider's server did per request (docs/benchmarks.md). The
// senders' own client (providers/internal/h2post) now writes every queued
// request in one flush, but Nagle still helps under load: against the
// pinned simulator, in interleaved runs, turning it off cost the simulator
// about 3 µs and the sender about 2 µs of CPU per send. The price of Nagle
// is latency when sends are sparse: a write whose previous segment is not
// yet acknowledged waits for the peer's delayed ACK (40 ms on Linux).
// lowLatency true sets TCP_NODELAY, for apps that send one notification at
// a time.
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
