// Package h2post is the senders' HTTP/2 client for their one request shape:
// a POST with a small body answered by a small response. It keeps a few
// connections to one endpoint, filled in order; each has one writer
// goroutine that writes every queued request's frames into one buffer and
// flushes once the queue is empty (or every 32 requests of a long round),
// and one reader goroutine that hands each response to its waiting caller.
//
// It replaces golang.org/x/net/http2.Transport on the hot path because that
// transport spends a goroutine, channels and two flushes (two TLS records,
// two write(2)) on every request; here a request costs one stream struct,
// its header block and its share of a batched write.
package h2post

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2/hpack"
)

// ErrNotProcessed marks the errors of requests the server certainly did not
// process (never sent, above a GOAWAY's last stream, refused with
// REFUSED_STREAM): sending them again cannot deliver twice.
var ErrNotProcessed = errors.New("request was not processed by the server (safe to send again)")

// ErrHeaderListTooLarge marks a request whose header list is over the
// server's SETTINGS_MAX_HEADER_LIST_SIZE. It was not sent (the error is
// ErrNotProcessed too), and sending it again fails the same way: the
// message, not the connection, is at fault.
var ErrHeaderListTooLarge = errors.New("header list over the server's limit")

// ErrClosed is the error of a request on a closed Pool.
var ErrClosed = errors.New("h2post: client closed")

// Config configures a Pool.
type Config struct {
	// Endpoint is the server's URL: scheme and host[:port]. Required.
	Endpoint string
	// TLS is the TLS configuration; ServerName defaults to the endpoint's
	// host and NextProtos is set to h2.
	TLS *tls.Config
	// Dial opens one connection (providers.DialTLS). Required.
	Dial func(ctx context.Context, network, addr string, cfg *tls.Config) (net.Conn, error)
	// Connections is the most connections to open. One is used until the
	// server's MAX_CONCURRENT_STREAMS are all taken; the next is dialled
	// then. Default 1.
	Connections int
	// PingInterval: a connection that has read nothing for this long is
	// pinged (checked every PingInterval, so silence is noticed after one
	// to two intervals). 0: never.
	PingInterval time.Duration
	// PingTimeout: a ping unanswered this long fails the connection.
	// Default 15s.
	PingTimeout time.Duration
	// MaxResponseBody is how much of a response body is kept; the rest is
	// read and dropped. Default 64 KiB.
	MaxResponseBody int
}

// Response is a server's answer.
type Response struct {
	Status int
	// Header holds the regular (not pseudo) header fields, names lower
	// case.
	Header []hpack.HeaderField
	// Body is the body up to Config.MaxResponseBody bytes.
	Body []byte
}

// Get is the first value of header field name (lower case), "" if none.
func (r *Response) Get(name string) string {
	for _, f := range r.Header {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

// Pool sends requests over up to Config.Connections connections to one
// endpoint.
type Pool struct {
	cfg       Config
	addr      string // host:port to dial
	authority string
	scheme    string
	tls       *tls.Config
	slots     []slot
	closed    atomic.Bool
}

type slot struct {
	mu      sync.Mutex
	conn    *Conn
	dialing chan struct{} // closed when the dial in progress ends
	dialErr error
}

// New returns a Pool; it does not dial.
func New(cfg Config) (*Pool, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("h2post: endpoint: want an http(s) URL, got %q", cfg.Endpoint)
	}
	if cfg.Dial == nil {
		return nil, errors.New("h2post: Dial is required")
	}
	if cfg.Connections <= 0 {
		cfg.Connections = 1
	}
	if cfg.PingTimeout <= 0 {
		cfg.PingTimeout = 15 * time.Second
	}
	if cfg.MaxResponseBody <= 0 {
		cfg.MaxResponseBody = 64 << 10
	}
	addr := u.Host
	if u.Port() == "" {
		if u.Scheme == "https" {
			addr = net.JoinHostPort(u.Hostname(), "443")
		} else {
			addr = net.JoinHostPort(u.Hostname(), "80")
		}
	}
	var tc *tls.Config
	if cfg.TLS != nil {
		tc = cfg.TLS.Clone()
	} else {
		tc = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if tc.ServerName == "" {
		tc.ServerName = u.Hostname()
	}
	tc.NextProtos = []string{"h2"}
	return &Pool{cfg: cfg, addr: addr, authority: u.Host, scheme: u.Scheme, tls: tc,
		slots: make([]slot, cfg.Connections)}, nil
}

// Close closes every connection once its streams are done; requests after
// Close fail with ErrClosed.
func (p *Pool) Close() error {
	p.closed.Store(true)
	for i := range p.slots {
		s := &p.slots[i]
		s.mu.Lock()
		c := s.conn
		s.conn = nil
		s.mu.Unlock()
		if c != nil {
			c.shutdown()
		}
	}
	return nil
}

// Post sends a POST of body to path with the given header fields (lower
// case names, no pseudo-headers) and waits for the response. An error means
// no response came back; errors.Is(err, ErrNotProcessed) means the server
// certainly did not act on the request.
func (p *Pool) Post(ctx context.Context, path string, header []hpack.HeaderField, body []byte) (*Response, error) {
	if p.closed.Load() {
		return nil, ErrClosed
	}
	st := &stream{path: path, header: header, body: body}
	for tries := 0; ; {
		c, wait, err := p.pick(ctx)
		if err != nil {
			return nil, err
		}
		err = c.start(ctx, st, wait)
		if err == nil {
			return c.wait(ctx, st)
		}
		if errors.Is(err, errFull) {
			// Another request took the free stream first: pick again
			// (another slot, or waiting on a full one).
			continue
		}
		// A connection that went away between pick and start: the request
		// was not sent; try another, a few times.
		if !errors.Is(err, errUnusable) || tries == 3 {
			return nil, err
		}
		tries++
	}
}

// pick returns the connection for the next request: the first one, in slot
// order, with a free stream under the server's MAX_CONCURRENT_STREAMS. A
// slot is dialled only when every open connection is full, and when all
// are open and full the least busy one is returned with wait set (its
// start waits for a stream). Filling one connection before the next keeps
// each connection's requests and answers in large rounds: on the pinned
// simulator one connection carrying 200 streams cost the server 10-20%
// less CPU per request than two carrying 100 each (each round is one TLS
// record and one write(2) on both sides), which is also why HTTP/2 clients
// such as x/net/http2 open a second connection only once the first is
// full.
func (p *Pool) pick(ctx context.Context) (c *Conn, wait bool, err error) {
	for {
		var least *Conn
		leastActive := 0
		dialAt := -1
		for i := range p.slots {
			s := &p.slots[i]
			s.mu.Lock()
			c = s.conn
			s.mu.Unlock()
			var active int
			var room, usable bool
			if c != nil {
				active, room, usable = c.load()
			}
			if !usable {
				if dialAt < 0 {
					dialAt = i
				}
				continue
			}
			if room {
				return c, false, nil
			}
			if least == nil || active < leastActive {
				least, leastActive = c, active
			}
		}
		if dialAt < 0 {
			return least, true, nil // every slot holds a usable, full connection
		}
		c, err := p.dialSlot(ctx, &p.slots[dialAt])
		if err != nil || c != nil {
			return c, false, err
		}
		// The slot's new connection is already gone: look again.
	}
}

// dialSlot returns slot s's connection, dialling one (or joining the dial
// in progress) when it has none that is usable. A nil connection and nil
// error mean the dialled connection cannot take the request after all.
func (p *Pool) dialSlot(ctx context.Context, s *slot) (*Conn, error) {
	s.mu.Lock()
	if c := s.conn; c != nil && c.usable() {
		s.mu.Unlock()
		return c, nil
	}
	old := s.conn
	s.conn = nil
	if s.dialing == nil {
		done := make(chan struct{})
		s.dialing = done
		go p.dial(s, done)
	}
	done := s.dialing
	s.mu.Unlock()
	if old != nil {
		// Out of stream ids, going away or failed: it must still close
		// once its last stream ends, and its waiters go elsewhere.
		old.shutdown()
	}
	select {
	case <-done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	s.mu.Lock()
	c, err := s.conn, s.dialErr
	s.mu.Unlock()
	if c != nil && c.usable() {
		return c, nil
	}
	if err != nil {
		return nil, err
	}
	if p.closed.Load() {
		return nil, ErrClosed
	}
	return nil, nil
}

// dial opens a connection for slot s in the background, so that a caller
// giving up does not fail the dial for the others waiting on it.
func (p *Pool) dial(s *slot, done chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := dialConn(ctx, p)
	s.mu.Lock()
	s.dialing = nil
	s.dialErr = err
	if err == nil {
		if p.closed.Load() {
			c.shutdown()
			s.dialErr = ErrClosed
		} else {
			s.conn = c
		}
	}
	s.mu.Unlock()
	close(done)
}
