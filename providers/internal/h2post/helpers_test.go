package h2post_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/pushlane/pushlane/providers/internal/h2post"
)

func dialPlain(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// serveXNet serves h over cleartext HTTP/2 (prior knowledge) with x/net's
// server and returns the endpoint and the number of accepted connections.
func serveXNet(t *testing.T, srv *http2.Server, h http.Handler) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go srv.ServeConn(c, &http2.ServeConnOpts{Handler: h})
		}
	}()
	return "http://" + ln.Addr().String(), &accepted
}

func newPool(t *testing.T, endpoint string, mod func(*h2post.Config)) *h2post.Pool {
	t.Helper()
	cfg := h2post.Config{Endpoint: endpoint, Dial: dialPlain}
	if mod != nil {
		mod(&cfg)
	}
	p, err := h2post.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// rawServer is a scripted HTTP/2 server: each test reads and writes the
// frames it needs.
type rawServer struct {
	t     *testing.T
	ln    net.Listener
	conns chan *rawConn
}

type rawConn struct {
	t   *testing.T
	nc  net.Conn
	fr  *http2.Framer
	buf bytes.Buffer
	enc *hpack.Encoder
}

// newRawServer accepts connections, reads the client preface and sends
// settings; accept hands each connection to the test.
func newRawServer(t *testing.T, settings ...http2.Setting) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{t: t, ln: ln, conns: make(chan *rawConn, 16)}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = nc.Close() })
			preface := make([]byte, len(http2.ClientPreface))
			if _, err := io.ReadFull(nc, preface); err != nil || string(preface) != http2.ClientPreface {
				t.Errorf("bad preface %q: %v", preface, err)
				return
			}
			rc := &rawConn{t: t, nc: nc, fr: http2.NewFramer(nc, nc)}
			rc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
			rc.enc = hpack.NewEncoder(&rc.buf)
			if err := rc.fr.WriteSettings(settings...); err != nil {
				t.Errorf("write settings: %v", err)
				return
			}
			s.conns <- rc
		}
	}()
	return s
}

func (s *rawServer) endpoint() string { return "http://" + s.ln.Addr().String() }

func (s *rawServer) accept() *rawConn {
	select {
	case c := <-s.conns:
		return c
	case <-time.After(10 * time.Second):
		s.t.Fatal("no connection")
		return nil
	}
}

// next reads the next frame that is not connection bookkeeping (SETTINGS,
// connection-level WINDOW_UPDATE); the test fails on a read error.
func (c *rawConn) next() http2.Frame {
	c.t.Helper()
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.t.Fatalf("server read: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = c.fr.WriteSettingsAck()
			}
			continue
		case *http2.WindowUpdateFrame:
			if f.StreamID == 0 {
				continue
			}
		}
		return f
	}
}

// readRequests reads frames until n requests have ended (END_STREAM) and
// returns their bodies by stream ID.
func (c *rawConn) readRequests(n int) map[uint32][]byte {
	c.t.Helper()
	bodies := map[uint32][]byte{}
	ended := 0
	for ended < n {
		switch f := c.next().(type) {
		case *http2.MetaHeadersFrame:
			bodies[f.StreamID] = []byte{}
			if f.StreamEnded() {
				ended++
			}
		case *http2.DataFrame:
			bodies[f.StreamID] = append(bodies[f.StreamID], f.Data()...)
			if f.StreamEnded() {
				ended++
			}
		}
	}
	return bodies
}

func (c *rawConn) respond(id uint32, status string, body []byte, fields ...hpack.HeaderField) {
	c.t.Helper()
	c.buf.Reset()
	_ = c.enc.WriteField(hpack.HeaderField{Name: ":status", Value: status})
	for _, f := range fields {
		_ = c.enc.WriteField(f)
	}
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.buf.Bytes(),
		EndHeaders: true, EndStream: len(body) == 0}); err != nil {
		c.t.Fatalf("server write: %v", err)
	}
	if len(body) > 0 {
		if err := c.fr.WriteData(id, true, body); err != nil {
			c.t.Fatalf("server write: %v", err)
		}
	}
}

type result struct {
	resp *h2post.Response
	err  error
}

// postAsync posts in a goroutine; the result arrives on the channel.
func postAsync(ctx context.Context, p *h2post.Pool, path string, body []byte) <-chan result {
	ch := make(chan result, 1)
	go func() {
		r, err := p.Post(ctx, path, []hpack.HeaderField{{Name: "content-type", Value: "application/json"}}, body)
		ch <- result{r, err}
	}()
	return ch
}

func await(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("no result")
		return result{}
	}
}
