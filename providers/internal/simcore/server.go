package simcore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
)

// H2Config configures an H2Server.
type H2Config struct {
	Name                 string // "apns" or "fcm", for logs and errors
	Cert                 *ServerCert
	MaxConcurrentStreams uint32         // per connection; default 1000 (what APNs advertises)
	MaxHeaderBytes       int            // the request header limit, advertised as SETTINGS_MAX_HEADER_LIST_SIZE; default net/http's 1 MiB
	ClientCAs            *x509.CertPool // if set, client certificates are requested and verified against it
	// GoAwayAfter, if set, is read after every request a connection served:
	// once the connection served that many, it gets a graceful GOAWAY (0 =
	// never). Simulators pass Faults.GoAwayAfter, so the value comes from
	// the same fault the handler answers by.
	GoAwayAfter func() int64
	Logger      *slog.Logger
}

// H2Server is an HTTP/2-over-TLS server that serves each connection with its
// own http2.Server, so one connection at a time can be sent a graceful
// GOAWAY or be dropped. Plain HTTP/1 clients are refused: the real providers
// speak HTTP/2 only.
type H2Server struct {
	cfg     H2Config
	handler http.Handler
	ln      net.Listener
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu    sync.Mutex
	conns map[*Conn]struct{}

	Accepted atomic.Int64 // connections accepted
	GoAways  atomic.Int64 // GOAWAY frames sent
	Drops    atomic.Int64 // connections dropped on purpose
}

// Conn is one client connection.
type Conn struct {
	srv      *H2Server
	raw      net.Conn
	hs       *http.Server
	served   atomic.Int64
	goingAwy atomic.Bool

	localOnce sync.Once
	local     any

	// State is the TLS state after the handshake (client certificate, ALPN).
	State tls.ConnectionState
}

type connKey struct{}

// ConnFrom returns the connection a request arrived on.
func ConnFrom(ctx context.Context) *Conn {
	c, _ := ctx.Value(connKey{}).(*Conn)
	return c
}

// NewH2Server returns a server that is not listening yet.
func NewH2Server(cfg H2Config, h http.Handler) *H2Server {
	if cfg.MaxConcurrentStreams == 0 {
		cfg.MaxConcurrentStreams = 1000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &H2Server{cfg: cfg, handler: h, ctx: ctx, cancel: cancel, conns: make(map[*Conn]struct{})}
}

// Start listens on addr ("127.0.0.1:0" for any free port) and serves in the
// background.
func (s *H2Server) Start(addr string) error {
	tcfg := &tls.Config{
		Certificates: []tls.Certificate{s.cfg.Cert.Cert},
		NextProtos:   []string{http2.NextProtoTLS},
		MinVersion:   tls.VersionTLS12,
	}
	if s.cfg.ClientCAs != nil {
		tcfg.ClientCAs = s.cfg.ClientCAs
		tcfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s simulator: listen on %s: %w", s.cfg.Name, addr, err)
	}
	s.ln = tls.NewListener(ln, tcfg)
	s.wg.Add(1)
	go s.acceptLoop()
	return nil
}

// Addr is the listening address.
func (s *H2Server) Addr() string { return s.ln.Addr().String() }

// URL is https://host:port.
func (s *H2Server) URL() string { return "https://" + s.Addr() }

// GoAwayAll sends a graceful GOAWAY on every live connection now.
func (s *H2Server) GoAwayAll() int {
	n := 0
	for _, c := range s.snapshot() {
		if c.GoAway() {
			n++
		}
	}
	return n
}

// DropAll closes every live connection at the TCP level without GOAWAY, as a
// dead peer or a broken network would. Requests in flight are lost to the
// client; some of them may have been accepted already.
func (s *H2Server) DropAll() int {
	n := 0
	for _, c := range s.snapshot() {
		_ = c.raw.Close()
		s.Drops.Add(1)
		n++
	}
	return n
}

// LiveConns is the number of open connections.
func (s *H2Server) LiveConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Close stops listening and closes every connection.
func (s *H2Server) Close() error {
	s.cancel()
	var err error
	if s.ln != nil {
		err = s.ln.Close()
	}
	for _, c := range s.snapshot() {
		_ = c.raw.Close()
	}
	s.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// GoAway starts a graceful shutdown of this connection: GOAWAY with the last
// stream the server has seen, finish those streams, then close. It returns
// false if the connection was already going away.
func (c *Conn) GoAway() bool {
	if !c.goingAwy.CompareAndSwap(false, true) {
		return false
	}
	c.srv.GoAways.Add(1)
	// Shutdown only triggers the registered http2 graceful shutdown: this
	// http.Server tracks no listeners or HTTP/1 connections of its own.
	go func() { _ = c.hs.Shutdown(context.Background()) }()
	return true
}

// Served counts a finished request on this connection and sends GOAWAY when
// H2Config.GoAwayAfter is reached. The client must carry on over a new
// connection; requests the GOAWAY refused were never processed.
func (c *Conn) Served() {
	n := c.served.Add(1)
	if c.srv.cfg.GoAwayAfter == nil {
		return
	}
	if after := c.srv.cfg.GoAwayAfter(); after > 0 && n >= after {
		c.GoAway()
	}
}

// Local is the simulator's own state for this connection, made by mk on
// the first call (APNs keeps the provider token the connection uses). It
// lives and dies with the connection, so nothing has to forget it. The
// caller synchronises access to what it stores.
func (c *Conn) Local(mk func() any) any {
	c.localOnce.Do(func() { c.local = mk() })
	return c.local
}

func (s *H2Server) snapshot() []*Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, c)
	}
	return out
}

func (s *H2Server) acceptLoop() {
	defer s.wg.Done()
	for {
		raw, err := s.ln.Accept()
		if err != nil {
			if s.ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				s.cfg.Logger.Warn("accept failed", slog.String("sim", s.cfg.Name), slog.Any("error", err))
				continue
			}
			return
		}
		s.wg.Add(1)
		go s.serve(raw)
	}
}

func (s *H2Server) serve(raw net.Conn) {
	defer s.wg.Done()
	defer raw.Close()
	tc := raw.(*tls.Conn)
	hctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	err := tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		return
	}
	st := tc.ConnectionState()
	if st.NegotiatedProtocol != http2.NextProtoTLS {
		// The providers speak HTTP/2 only; an HTTP/1.1 client gets nothing.
		return
	}
	hs := &http.Server{MaxHeaderBytes: s.cfg.MaxHeaderBytes}
	h2 := &http2.Server{MaxConcurrentStreams: s.cfg.MaxConcurrentStreams, IdleTimeout: 10 * time.Minute}
	if err := http2.ConfigureServer(hs, h2); err != nil {
		s.cfg.Logger.Error("configure http2", slog.Any("error", err))
		return
	}
	c := &Conn{srv: s, raw: raw, hs: hs, State: st}
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		return
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	s.Accepted.Add(1)
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	h2.ServeConn(raw, &http2.ServeConnOpts{
		Context:    context.WithValue(s.ctx, connKey{}, c),
		BaseConfig: hs,
		Handler:    s.handler,
	})
}
