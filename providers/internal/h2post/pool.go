// Package h2post is the senders' HTTP/2 client for their one request shape:
// a POST with a small body answered by a small response. It keeps a few
// connections to one endpoint, filled in order; each has one writer
// goroutine that writes every queued request's frames into one buffer and
// flushes once the queue is empty (or every 32 requests of a long round),
// and one reader goroutine that hands each response to its waiting caller.
// A connection slot whose connections fail before answering anything is
// redialled after a growing delay, never in a loop.
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
	"math/rand/v2"
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

// ErrRedialBackoff marks the error of a request that found no usable
// connection while the connections last dialled failed, and whose context
// ends before the next dial may start. It was not sent (the error is
// ErrNotProcessed too); sending it again at once fails the same way.
var ErrRedialBackoff = errors.New("h2post: backing off before connecting again")

// Redial backoff: see Pool.dial.
const (
	minRedialDelay = 100 * time.Millisecond
	maxRedialDelay = 30 * time.Second
)

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
	// Truncated: the stream ended (the connection lost, a reset by the
	// server, the caller's deadline) after a 2xx status and before the
	// end of its body. The server took the request; Body is what
	// arrived of its answer.
	Truncated bool
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
	done      chan struct{} // closed by Close: ends redial backoffs
}

type slot struct {
	mu      sync.Mutex
	conn    *Conn
	dialing chan struct{} // closed when the dial in progress ends
	dialErr error
	// fails counts the dials since one of the slot's connections last
	// answered a stream; while it is not zero no dial starts before
	// retryAt. lastErr is why the last of those connections failed.
	fails   int
	retryAt time.Time
	lastErr error
}

// redialWaitLocked is how long the slot must wait before it may dial.
func (s *slot) redialWaitLocked() time.Duration {
	if s.fails == 0 || s.dialing != nil || (s.conn != nil && s.conn.wasAnswered()) {
		return 0
	}
	return time.Until(s.retryAt)
}

// retireLocked takes the slot's unusable connection c into its dial
// backoff: answered streams prove the server served it, and none means it
// failed like a refused dial.
func (s *slot) retireLocked(c *Conn) {
	if c.wasAnswered() {
		s.fails = 0
	} else {
		s.lastErr = c.goneErr()
	}
}

// redialDelay is the wait before the next dial after fails failed ones:
// 100 ms doubling to 30 s, the upper half of each window random so that
// many clients turned away at once do not come back at once.
func redialDelay(fails int, jitter float64) time.Duration {
	window := maxRedialDelay
	if shift := fails - 1; shift < 16 && minRedialDelay<<shift < window {
		window = minRedialDelay << max(shift, 0)
	}
	return window/2 + time.Duration(jitter*float64(window/2))
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
		slots: make([]slot, cfg.Connections), done: make(chan struct{})}, nil
}

// Close closes every connection once its streams are done; requests after
// Close fail with ErrClosed.
func (p *Pool) Close() error {
	if !p.closed.Swap(true) {
		close(p.done)
	}
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
		if !errors.Is(err, errUnusable) {
			return nil, err
		}
		if tries == 3 {
			return nil, fmt.Errorf("%w: %w", err, c.goneErr())
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
		s := &p.slots[dialAt]
		if least != nil {
			s.mu.Lock()
			wait := s.redialWaitLocked()
			s.mu.Unlock()
			if wait > 0 {
				// The dial has to wait out the slot's backoff; a stream
				// of a connection that works is likely to free sooner.
				return least, true, nil
			}
		}
		c, err := p.dialSlot(ctx, s)
		if err != nil || c != nil {
			return c, false, err
		}
		// The slot's new connection is already gone: look again.
	}
}

// dialSlot returns slot s's connection, dialling one (or joining the dial
// in progress) when it has none that is usable, once the slot's redial
// backoff allows. A dialled connection that is already unusable (a
// draining server sends SETTINGS and GOAWAY at once) fails the request
// like a failed dial: what the server said reaches the caller, and the
// caller's re-send waits out the backoff. A nil connection and nil error
// mean the slot's new connection is gone for another reason: look again.
func (p *Pool) dialSlot(ctx context.Context, s *slot) (*Conn, error) {
	for {
		s.mu.Lock()
		old := s.conn
		if old != nil && old.usable() {
			s.mu.Unlock()
			return old, nil
		}
		s.conn = nil
		if old != nil {
			s.retireLocked(old)
		}
		done := s.dialing
		var wait time.Duration
		if done == nil {
			if wait = s.redialWaitLocked(); wait <= 0 {
				done = make(chan struct{})
				s.dialing = done
				go p.dial(s, done)
			}
		}
		fails, lastErr := s.fails, s.lastErr
		s.mu.Unlock()
		if old != nil {
			// Out of stream ids, going away or failed: it must still close
			// once its last stream ends, and its waiters go elsewhere.
			old.shutdown()
		}
		if done == nil {
			if err := p.awaitRedial(ctx, wait, fails, lastErr); err != nil {
				return nil, err
			}
			continue
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
		if c != nil {
			return nil, fmt.Errorf("h2post: %s: new connection unusable at once, request not sent (%w): %w", p.addr, ErrNotProcessed, c.goneErr())
		}
		return nil, nil
	}
}

// awaitRedial waits out a slot's redial backoff, or fails at once when ctx
// would end first: waiting could only end in ctx's error, and the caller
// is better told why no connection works.
func (p *Pool) awaitRedial(ctx context.Context, wait time.Duration, fails int, last error) error {
	if last == nil {
		last = errors.New("no reason recorded")
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
		return fmt.Errorf("%w: %s: no dial for another %s after %d failed connections, request not sent (%w); the last: %w",
			ErrRedialBackoff, p.addr, wait.Round(time.Millisecond), fails, ErrNotProcessed, last)
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-p.done:
		return ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("h2post: %s: waiting to connect again after %d failed connections (the last: %w): %w",
			p.addr, fails, last, ctx.Err())
	}
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
	// Every dial counts as failed until a stream of its connection is
	// answered (dialSlot resets the count when it retires such a
	// connection). A server that accepts connections only to close them,
	// as a draining one does with SETTINGS and GOAWAY at once, is then
	// redialled no faster than one that refuses them: Apple treats rapid
	// connecting and disconnecting as a denial-of-service attack.
	s.fails++
	s.retryAt = time.Now().Add(redialDelay(s.fails, rand.Float64()))
	if err != nil {
		s.lastErr = err
	}
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
