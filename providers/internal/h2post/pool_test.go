package h2post_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/providers/internal/h2post"
)

// echo answers 201 with the request's path, headers and body.
func echo(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("x-path", r.URL.Path)
	w.Header().Set("x-auth", r.Header.Get("Authorization"))
	w.Header().Set("x-length", fmt.Sprint(r.ContentLength))
	w.Header().Set("x-method", r.Method)
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(body)
}

// Over TLS (ALPN h2) through providers.DialTLS, many concurrent requests on
// two connections each get their own answer.
func TestConcurrentPostsOverTLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(echo))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	pool := x509Pool(srv)
	p := newPoolTLS(t, srv.URL, &tls.Config{RootCAs: pool}, 2)
	var wg sync.WaitGroup
	var failures atomic.Int32
	for i := range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := []byte(fmt.Sprintf(`{"n":%d}`, i))
			path := fmt.Sprintf("/3/device/%04x", i)
			auth := fmt.Sprintf("bearer tok-%d", i%3)
			r, err := p.Post(context.Background(), path, []hpack.HeaderField{{Name: "authorization", Value: auth}}, body)
			if err != nil {
				t.Errorf("post %d: %v", i, err)
				failures.Add(1)
				return
			}
			if r.Status != 201 || !bytes.Equal(r.Body, body) || r.Get("x-path") != path || r.Get("x-auth") != auth ||
				r.Get("x-length") != fmt.Sprint(len(body)) || r.Get("x-method") != "POST" {
				t.Errorf("post %d: status %d body %q header %v", i, r.Status, r.Body, r.Header)
			}
		}()
	}
	wg.Wait()
	if failures.Load() > 0 {
		t.Fatalf("%d posts failed", failures.Load())
	}
}

func x509Pool(srv *httptest.Server) *x509.CertPool {
	cp := x509.NewCertPool()
	cp.AddCert(srv.Certificate())
	return cp
}

func newPoolTLS(t *testing.T, endpoint string, tc *tls.Config, conns int) *h2post.Pool {
	t.Helper()
	p, err := h2post.New(h2post.Config{Endpoint: endpoint, TLS: tc, Dial: providers.DialTLS(true), Connections: conns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// A server that allows one stream at a time is never sent a second: every
// request succeeds (x/net's server refuses streams over its limit).
func TestMaxConcurrentStreamsOne(t *testing.T) {
	var inFlight, most atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(200)
	})
	ep, _ := serveXNet(t, &http2.Server{MaxConcurrentStreams: 1}, h)
	p := newPool(t, ep, nil)
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := p.Post(context.Background(), "/x", nil, []byte("body"))
			if err != nil || r.Status != 200 {
				t.Errorf("post %d: %v %+v", i, err, r)
			}
		}()
	}
	wg.Wait()
	if most.Load() != 1 {
		t.Fatalf("at most %d requests in flight, want 1", most.Load())
	}
}

// Connections are filled in order: requests stay on the first connection
// until the server's MAX_CONCURRENT_STREAMS are all in use, and the next is
// dialled only then; with every connection full, requests wait for a stream
// rather than fail.
func TestConnectionsFillInOrder(t *testing.T) {
	release := make(chan struct{})
	var held atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/hold" {
			held.Add(1)
			<-release
		}
		w.Header().Set("x-remote", r.RemoteAddr)
		w.WriteHeader(200)
	})
	ep, accepted := serveXNet(t, &http2.Server{MaxConcurrentStreams: 3}, h)
	p := newPool(t, ep, func(c *h2post.Config) { c.Connections = 3 })

	remotes := map[string]int{}
	for i := range 20 {
		r, err := p.Post(context.Background(), "/quick", nil, []byte("b"))
		if err != nil || r.Status != 200 {
			t.Fatalf("post %d: %v %+v", i, err, r)
		}
		remotes[r.Get("x-remote")]++
	}
	if len(remotes) != 1 || accepted.Load() != 1 {
		t.Fatalf("20 sequential posts used connections %v (%d accepted), want one", remotes, accepted.Load())
	}

	// Nine held requests: three fill each connection in turn.
	var wg sync.WaitGroup
	held9 := make(chan string, 9)
	for range 9 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := p.Post(context.Background(), "/hold", nil, []byte("b"))
			if err != nil || r.Status != 200 {
				t.Errorf("held post: %v %+v", err, r)
				return
			}
			held9 <- r.Get("x-remote")
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for held.Load() < 9 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if held.Load() != 9 || accepted.Load() != 3 {
		t.Fatalf("%d requests reached the server over %d connections, want 9 over 3", held.Load(), accepted.Load())
	}

	// All three full: a tenth waits for a stream instead of failing or
	// dialling a fourth connection, and goes out once one is released.
	tenth := postAsync(context.Background(), p, "/quick", []byte("b"))
	select {
	case r := <-tenth:
		t.Fatalf("tenth post answered while every stream was taken: %+v", r)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	wg.Wait()
	close(held9)
	per := map[string]int{}
	for r := range held9 {
		per[r]++
	}
	counts := []int{}
	for _, n := range per {
		counts = append(counts, n)
	}
	slices.Sort(counts)
	if !slices.Equal(counts, []int{3, 3, 3}) {
		t.Errorf("held requests per connection %v, want [3 3 3]", counts)
	}
	if r := <-tenth; r.err != nil || r.resp.Status != 200 {
		t.Errorf("tenth post: %v %+v", r.err, r.resp)
	}
	if accepted.Load() != 3 {
		t.Errorf("%d connections accepted, want at most Connections (3)", accepted.Load())
	}
}

// A response many times the initial stream window arrives whole: the client
// returns the window as it reads.
func TestResponseLargerThanWindow(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 300<<10/16)
	ep, _ := serveXNet(t, &http2.Server{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write(big)
	}))
	p := newPool(t, ep, func(c *h2post.Config) { c.MaxResponseBody = 1 << 20 })
	for i := range 3 {
		r, err := p.Post(context.Background(), "/big", nil, []byte("x"))
		if err != nil {
			t.Fatalf("post %d: %v", i, err)
		}
		if r.Status != 200 || !bytes.Equal(r.Body, big) {
			t.Fatalf("post %d: status %d, %d of %d bytes", i, r.Status, len(r.Body), len(big))
		}
	}
	// MaxResponseBody keeps the head and drops the rest.
	p2 := newPool(t, ep, func(c *h2post.Config) { c.MaxResponseBody = 1000 })
	r, err := p2.Post(context.Background(), "/big", nil, []byte("x"))
	if err != nil || !bytes.Equal(r.Body, big[:1000]) {
		t.Fatalf("limited: %v, %d bytes", err, len(r.Body))
	}
}

// With a 10-byte stream window the body goes in frames of at most 10 bytes,
// each after the server returned the window.
func TestTinyStreamWindow(t *testing.T) {
	srv := newRawServer(t, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 10})
	p := newPool(t, srv.endpoint(), nil)
	body := []byte(strings.Repeat("abcdefghij", 9) + "xyz")
	ch := postAsync(context.Background(), p, "/tiny", body)
	c := srv.accept()
	var got []byte
	frames := 0
	var id uint32
	for {
		f := c.next()
		if h, ok := f.(*http2.MetaHeadersFrame); ok {
			id = h.StreamID
			continue
		}
		d, ok := f.(*http2.DataFrame)
		if !ok {
			continue
		}
		frames++
		if len(d.Data()) > 10 {
			t.Fatalf("DATA of %d bytes with a 10-byte window", len(d.Data()))
		}
		got = append(got, d.Data()...)
		if d.StreamEnded() {
			break
		}
		if err := c.fr.WriteWindowUpdate(id, uint32(len(d.Data()))); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, body) || frames != 10 {
		t.Fatalf("got %q in %d frames", got, frames)
	}
	c.respond(id, "200", []byte("ok"))
	if r := await(t, ch); r.err != nil || r.resp.Status != 200 || string(r.resp.Body) != "ok" {
		t.Fatalf("result %+v", r)
	}
}

// The connection window (65535 until the server raises it) holds three
// 40000-byte bodies back until the server sends WINDOW_UPDATE; then all
// arrive whole.
func TestConnectionWindowExhausted(t *testing.T) {
	srv := newRawServer(t)
	p := newPool(t, srv.endpoint(), nil)
	bodies := make([][]byte, 3)
	var chs []<-chan result
	for i := range bodies {
		bodies[i] = bytes.Repeat([]byte{byte('a' + i)}, 40000)
		chs = append(chs, postAsync(context.Background(), p, fmt.Sprintf("/w%d", i), bodies[i]))
	}
	c := srv.accept()
	got := map[uint32][]byte{}
	total, ended := 0, 0
	for total < 65535 {
		switch f := c.next().(type) {
		case *http2.MetaHeadersFrame:
			got[f.StreamID] = nil
		case *http2.DataFrame:
			got[f.StreamID] = append(got[f.StreamID], f.Data()...)
			total += len(f.Data())
			if f.StreamEnded() {
				ended++
			}
		}
	}
	if total != 65535 {
		t.Fatalf("%d bytes of DATA within a 65535-byte connection window", total)
	}
	// Nothing more may come before the window grows: a PING's answer
	// comes back with no DATA before it.
	if err := c.fr.WritePing(false, [8]byte{1}); err != nil {
		t.Fatal(err)
	}
	for {
		f := c.next()
		if pf, ok := f.(*http2.PingFrame); ok && pf.IsAck() {
			break
		}
		if d, ok := f.(*http2.DataFrame); ok {
			t.Fatalf("%d bytes of DATA beyond the connection window", len(d.Data()))
		}
	}
	if err := c.fr.WriteWindowUpdate(0, 1<<20); err != nil {
		t.Fatal(err)
	}
	for ended < 3 {
		switch f := c.next().(type) {
		case *http2.MetaHeadersFrame:
			got[f.StreamID] = nil
		case *http2.DataFrame:
			got[f.StreamID] = append(got[f.StreamID], f.Data()...)
			if f.StreamEnded() {
				ended++
			}
		}
	}
	for id := range got {
		c.respond(id, "200", got[id][:1])
	}
	for i, ch := range chs {
		r := await(t, ch)
		if r.err != nil || r.resp.Status != 200 || r.resp.Body[0] != byte('a'+i) {
			t.Fatalf("post %d: %+v", i, r)
		}
	}
	for id, b := range got {
		if len(b) != 40000 || !bytes.Equal(b, bytes.Repeat(b[:1], 40000)) {
			t.Fatalf("stream %d: %d bytes", id, len(b))
		}
	}
}

// Streams up to GOAWAY's last stream ID complete; those above fail as not
// processed; the next request goes over a new connection.
func TestGoAwayFailsStreamsAboveLastAsNotProcessed(t *testing.T) {
	srv := newRawServer(t)
	p := newPool(t, srv.endpoint(), nil)
	var chs []<-chan result
	for i := range 4 {
		chs = append(chs, postAsync(context.Background(), p, fmt.Sprintf("/g%d", i), []byte("b")))
	}
	c := srv.accept()
	reqs := c.readRequests(4)
	var ids []uint32
	for id := range reqs {
		ids = append(ids, id)
	}
	if len(ids) != 4 {
		t.Fatalf("streams %v", ids)
	}
	if err := c.fr.WriteGoAway(3, http2.ErrCodeNo, nil); err != nil {
		t.Fatal(err)
	}
	c.respond(1, "200", []byte("one"))
	c.respond(3, "200", []byte("three"))
	var ok, notProcessed int
	for _, ch := range chs {
		r := await(t, ch)
		switch {
		case r.err == nil && r.resp.Status == 200 && (string(r.resp.Body) == "one" || string(r.resp.Body) == "three"):
			ok++
		case r.err != nil && errors.Is(r.err, h2post.ErrNotProcessed) && strings.Contains(r.err.Error(), "not processed") &&
			strings.Contains(r.err.Error(), "GOAWAY"):
			notProcessed++
		default:
			t.Errorf("unexpected result %+v", r)
		}
	}
	if ok != 2 || notProcessed != 2 {
		t.Fatalf("%d answered, %d not processed; want 2 and 2", ok, notProcessed)
	}
	next := postAsync(context.Background(), p, "/after", []byte("b"))
	c2 := srv.accept()
	for id := range c2.readRequests(1) {
		c2.respond(id, "200", []byte("new"))
	}
	if r := await(t, next); r.err != nil || string(r.resp.Body) != "new" {
		t.Fatalf("after GOAWAY: %+v", r)
	}
}

// RST_STREAM from the server fails that stream; REFUSED_STREAM says it was
// not processed, other codes do not.
func TestServerResetStream(t *testing.T) {
	srv := newRawServer(t)
	p := newPool(t, srv.endpoint(), nil)
	a := postAsync(context.Background(), p, "/a", []byte("a"))
	c := srv.accept()
	var first uint32
	for id := range c.readRequests(1) {
		first = id
	}
	b := postAsync(context.Background(), p, "/b", []byte("b"))
	var second uint32
	for id := range c.readRequests(1) {
		second = id
	}
	_ = c.fr.WriteRSTStream(first, http2.ErrCodeInternal)
	_ = c.fr.WriteRSTStream(second, http2.ErrCodeRefusedStream)
	ra, rb := await(t, a), await(t, b)
	if ra.err == nil || errors.Is(ra.err, h2post.ErrNotProcessed) || !strings.Contains(ra.err.Error(), "reset by the server") ||
		!strings.Contains(ra.err.Error(), "INTERNAL_ERROR") {
		t.Fatalf("INTERNAL_ERROR reset: %v", ra.err)
	}
	if rb.err == nil || !errors.Is(rb.err, h2post.ErrNotProcessed) || !strings.Contains(rb.err.Error(), "refused") {
		t.Fatalf("REFUSED_STREAM reset: %v", rb.err)
	}
	// The connection still serves.
	d := postAsync(context.Background(), p, "/d", []byte("d"))
	for id := range c.readRequests(1) {
		c.respond(id, "204", nil)
	}
	if r := await(t, d); r.err != nil || r.resp.Status != 204 {
		t.Fatalf("after resets: %+v", r)
	}
}

// A server may answer before the request body is all sent (RFC 9113 8.1),
// for instance an auth error judged from the headers. The stream is still
// open on its side, counting against its stream limit, until the client
// ends it: the client resets it before it opens the next stream.
func TestAnswerBeforeTheBodyResetsTheStream(t *testing.T) {
	srv := newRawServer(t, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 10},
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 1})
	p := newPool(t, srv.endpoint(), nil)
	a := postAsync(context.Background(), p, "/a", bytes.Repeat([]byte("a"), 100))
	c := srv.accept()
	var id uint32
	for got := 0; got < 10; { // the stream's window: 10 of the 100 bytes
		switch f := c.next().(type) {
		case *http2.MetaHeadersFrame:
			id = f.StreamID
		case *http2.DataFrame:
			got += len(f.Data())
		}
	}
	c.respond(id, "403", nil)
	if r := await(t, a); r.err != nil || r.resp.Status != 403 {
		t.Fatalf("early answer: %+v", r)
	}
	_ = c.fr.WriteWindowUpdate(id, 1000) // room to send the rest: it must not
	b := postAsync(context.Background(), p, "/b", []byte("b"))
	for {
		switch f := c.next().(type) {
		case *http2.RSTStreamFrame:
			if f.StreamID != id || f.ErrCode != http2.ErrCodeCancel {
				t.Fatalf("RST_STREAM %d %v, want stream %d CANCEL", f.StreamID, f.ErrCode, id)
			}
			for next := range c.readRequests(1) {
				c.respond(next, "200", nil)
			}
			if r := await(t, b); r.err != nil || r.resp.Status != 200 {
				t.Fatalf("next request: %+v", r)
			}
			return
		case *http2.DataFrame:
			if f.StreamID == id {
				t.Fatalf("%d more body bytes of stream %d after its answer", len(f.Data()), id)
			}
		case *http2.MetaHeadersFrame:
			t.Fatalf("HEADERS of stream %d while stream %d is still open at the server (MAX_CONCURRENT_STREAMS 1)", f.StreamID, id)
		}
	}
}

// A server that stops answering is found out by PING: the request in
// flight fails with an error that does not claim it was not processed.
func TestPingTimeoutOnSilentServer(t *testing.T) {
	srv := newRawServer(t)
	p := newPool(t, srv.endpoint(), func(c *h2post.Config) {
		c.PingInterval = 20 * time.Millisecond
		c.PingTimeout = 50 * time.Millisecond
	})
	ch := postAsync(context.Background(), p, "/silent", []byte("x"))
	c := srv.accept()
	c.readRequests(1)
	pings := 0
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			break // the client closed the connection
		}
		if pf, ok := f.(*http2.PingFrame); ok && !pf.IsAck() {
			pings++
		}
	}
	r := await(t, ch)
	if r.err == nil || !strings.Contains(r.err.Error(), "no answer to PING") || errors.Is(r.err, h2post.ErrNotProcessed) ||
		!strings.Contains(r.err.Error(), "may have been processed") {
		t.Fatalf("result %+v", r)
	}
	if pings != 1 {
		t.Fatalf("%d pings, want 1", pings)
	}
}

// A server that answers PINGs keeps the connection.
func TestPingAnsweredKeepsConnection(t *testing.T) {
	srv := newRawServer(t)
	p := newPool(t, srv.endpoint(), func(c *h2post.Config) {
		c.PingInterval = 5 * time.Millisecond
		c.PingTimeout = 5 * time.Second
	})
	ch := postAsync(context.Background(), p, "/p", []byte("x"))
	c := srv.accept()
	for id := range c.readRequests(1) {
		c.respond(id, "200", nil)
	}
	if r := await(t, ch); r.err != nil {
		t.Fatal(r.err)
	}
	// Idle, the connection is pinged; each PING answered keeps it. (No
	// PING within 5 s fails the read.)
	_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for range 3 {
		f := c.next()
		pf, ok := f.(*http2.PingFrame)
		if !ok || pf.IsAck() {
			t.Fatalf("idle connection: got %v, want a PING", f)
		}
		if err := c.fr.WritePing(true, pf.Data); err != nil {
			t.Fatal(err)
		}
	}
	// The next request goes over the same connection.
	ch = postAsync(context.Background(), p, "/p", []byte("y"))
	for {
		f := c.next()
		if pf, ok := f.(*http2.PingFrame); ok && !pf.IsAck() {
			_ = c.fr.WritePing(true, pf.Data)
			continue
		}
		hf, ok := f.(*http2.MetaHeadersFrame)
		if !ok {
			t.Fatalf("after the pings: got %v, want the next request", f)
		}
		for !hf.StreamEnded() {
			if df, ok := c.next().(*http2.DataFrame); ok && df.StreamEnded() {
				break
			}
		}
		c.respond(hf.StreamID, "200", nil)
		break
	}
	if r := await(t, ch); r.err != nil {
		t.Fatal(r.err)
	}
	select {
	case <-srv.conns:
		t.Fatal("a second connection was dialled")
	default:
	}
}

// A cancelled request returns the context's error and resets its stream.
func TestCancelResetsStream(t *testing.T) {
	srv := newRawServer(t)
	p := newPool(t, srv.endpoint(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	ch := postAsync(ctx, p, "/cancel", []byte("x"))
	c := srv.accept()
	var id uint32
	for sid := range c.readRequests(1) {
		id = sid
	}
	cancel()
	for {
		if r, ok := c.next().(*http2.RSTStreamFrame); ok {
			if r.StreamID != id || r.ErrCode != http2.ErrCodeCancel {
				t.Fatalf("RST_STREAM %d %v, want %d CANCEL", r.StreamID, r.ErrCode, id)
			}
			break
		}
	}
	if r := await(t, ch); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("result %+v", r)
	}
	// An answer that comes after the reset is dropped; the connection
	// serves the next request.
	c.respond(id, "200", []byte("late"))
	next := postAsync(context.Background(), p, "/next", []byte("y"))
	for sid := range c.readRequests(1) {
		c.respond(sid, "200", []byte("next"))
	}
	if r := await(t, next); r.err != nil || string(r.resp.Body) != "next" {
		t.Fatalf("next: %+v", r)
	}
}

// A connection lost with a request in flight fails it as possibly
// processed; a request never written fails as not processed.
func TestConnectionLost(t *testing.T) {
	srv := newRawServer(t, http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 1})
	p := newPool(t, srv.endpoint(), nil)
	a := postAsync(context.Background(), p, "/a", []byte("a"))
	c := srv.accept()
	c.readRequests(1)
	b := postAsync(context.Background(), p, "/b", []byte("b")) // waits for a stream slot
	// The PING's answer shows the client has had time to enqueue b; it may
	// not send it while a is open.
	_ = c.fr.WritePing(false, [8]byte{2})
	for {
		f := c.next()
		if pf, ok := f.(*http2.PingFrame); ok && pf.IsAck() {
			break
		}
		if _, ok := f.(*http2.MetaHeadersFrame); ok {
			t.Fatal("second stream opened over MAX_CONCURRENT_STREAMS 1")
		}
	}
	_ = c.nc.Close()
	ra := await(t, a)
	if ra.err == nil || errors.Is(ra.err, h2post.ErrNotProcessed) || !strings.Contains(ra.err.Error(), "may have been processed") {
		t.Fatalf("in flight: %+v", ra)
	}
	// b either failed as not processed or went out on a new connection.
	select {
	case rb := <-b:
		if rb.err == nil || !errors.Is(rb.err, h2post.ErrNotProcessed) {
			t.Fatalf("waiting: %+v", rb)
		}
	case c2 := <-srv.conns:
		for id := range c2.readRequests(1) {
			c2.respond(id, "200", nil)
		}
		if rb := await(t, b); rb.err != nil {
			t.Fatalf("waiting, re-sent: %+v", rb)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the waiting request neither failed nor was re-sent")
	}
}

// Header blocks over the frame size go out and come back in CONTINUATION
// frames.
func TestLargeHeadersUseContinuation(t *testing.T) {
	ep, _ := serveXNet(t, &http2.Server{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-echo-big", r.Header.Get("x-big"))
		w.WriteHeader(202)
	}))
	p := newPool(t, ep, nil)
	big := strings.Repeat("0123456789", 4000) // 40 KB, over two 16 KB frames even when compressed
	r, err := p.Post(context.Background(), "/big-headers", []hpack.HeaderField{{Name: "x-big", Value: big}}, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != 202 || r.Get("x-echo-big") != big {
		t.Fatalf("err %v, status %d, echoed %d of %d bytes", err, r.Status, len(r.Get("x-echo-big")), len(big))
	}
}

// A request whose header list is over the server's
// SETTINGS_MAX_HEADER_LIST_SIZE is refused before it is written: its error
// says so (ErrHeaderListTooLarge, and ErrNotProcessed: it was not sent),
// and the connection goes on serving the next request.
func TestHeaderListOverTheServersLimitIsNotSent(t *testing.T) {
	srv := newRawServer(t, http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: 600})
	p := newPool(t, srv.endpoint(), nil)
	ctx := context.Background()
	first := postAsync(ctx, p, "/small", []byte("a"))
	c := srv.accept()
	for id := range c.readRequests(1) {
		c.respond(id, "200", nil) // the server's SETTINGS came first: the client has the limit now
	}
	if r := await(t, first); r.err != nil || r.resp.Status != 200 {
		t.Fatalf("first request: %+v", r)
	}
	_, err := p.Post(ctx, "/big", []hpack.HeaderField{{Name: "x-big", Value: strings.Repeat("b", 1000)}}, []byte("b"))
	if !errors.Is(err, h2post.ErrHeaderListTooLarge) || !errors.Is(err, h2post.ErrNotProcessed) ||
		!strings.Contains(err.Error(), "exceeds the server's limit of 600") {
		t.Fatalf("big header list: %v", err)
	}
	third := postAsync(ctx, p, "/small", []byte("c"))
	reqs := c.readRequests(1)
	for id, body := range reqs {
		if string(body) != "c" {
			t.Errorf("server read body %q, want the third request's (the second was not sent)", body)
		}
		c.respond(id, "200", nil)
	}
	if r := await(t, third); r.err != nil || r.resp.Status != 200 {
		t.Fatalf("third request: %+v", r)
	}
}

// A server that closes every connection as soon as it opens it, as a
// draining one does (SETTINGS and GOAWAY at once), is redialled with a
// growing delay, not in a loop bounded only by the request's deadline:
// Apple treats rapid connecting and disconnecting as a denial-of-service
// attack. The request's error says why the connections failed.
func TestServerClosingEveryConnectionAtOnceIsNotRedialledInALoop(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	var accepted atomic.Int32
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer nc.Close()
				preface := make([]byte, len(http2.ClientPreface))
				if _, err := io.ReadFull(nc, preface); err != nil {
					return
				}
				var b bytes.Buffer
				fr := http2.NewFramer(&b, nil)
				_ = fr.WriteSettings()
				_ = fr.WriteGoAway(0, http2.ErrCodeNo, nil)
				if _, err := nc.Write(b.Bytes()); err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, nc)
			}()
		}
	}()
	p := newPool(t, "http://"+ln.Addr().String(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	_, err = p.Post(ctx, "/x", nil, []byte("x"))
	if err == nil || !strings.Contains(err.Error(), "GOAWAY") || !errors.Is(err, h2post.ErrNotProcessed) {
		t.Fatalf("error %v, want one naming the GOAWAY, not processed", err)
	}
	if n := accepted.Load(); n > 5 {
		t.Fatalf("%d connections in %s, want at most 5", n, time.Since(start).Round(time.Millisecond))
	}
	// The next request, with the backoff not yet over, does not dial at
	// once either.
	before := accepted.Load()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if _, err := p.Post(ctx2, "/y", nil, []byte("y")); !errors.Is(err, h2post.ErrRedialBackoff) {
		t.Fatalf("second request: %v, want ErrRedialBackoff", err)
	}
	if n := accepted.Load(); n != before {
		t.Fatalf("second request dialled %d more connections while backing off", n-before)
	}
}

// A GOAWAY's debug data (APNs: {"reason":"BadCertificate"}) reaches the
// caller, whether the request was above the GOAWAY's last stream or lost
// with the connection the server closed after it.
func TestGoAwayDebugDataReachesTheCaller(t *testing.T) {
	const debug = `{"reason":"BadCertificate"}`
	for _, tc := range []struct {
		name         string
		last         uint32
		notProcessed bool
	}{
		{"above the last stream", 0, true},
		{"lost with the connection", 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newRawServer(t)
			p := newPool(t, srv.endpoint(), nil)
			ch := postAsync(context.Background(), p, "/a", []byte("a"))
			c := srv.accept()
			c.readRequests(1)
			if err := c.fr.WriteGoAway(tc.last, http2.ErrCodeNo, []byte(debug)); err != nil {
				t.Fatal(err)
			}
			_ = c.nc.Close()
			r := await(t, ch)
			var ga *h2post.GoAwayError
			if !errors.As(r.err, &ga) || string(ga.DebugData) != debug || ga.LastStreamID != tc.last {
				t.Fatalf("error %v, want one carrying the GOAWAY and its debug data", r.err)
			}
			if errors.Is(r.err, h2post.ErrNotProcessed) != tc.notProcessed {
				t.Fatalf("error %v: not processed %v, want %v", r.err, !tc.notProcessed, tc.notProcessed)
			}
		})
	}
}

// headersOnly writes a response's HEADERS without END_STREAM: the status
// has arrived, the body is to follow.
func (c *rawConn) headersOnly(id uint32, status string) {
	c.t.Helper()
	c.buf.Reset()
	_ = c.enc.WriteField(hpack.HeaderField{Name: ":status", Value: status})
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.buf.Bytes(), EndHeaders: true}); err != nil {
		c.t.Fatalf("server write: %v", err)
	}
}

// A 2xx whose body never ends (the stream reset, the connection lost, the
// caller's deadline) is still the server's answer: the request was taken.
// Failed as "may have been processed", the senders re-sent it, and FCM
// delivered the message twice. An error status cut short stays an error.
func TestSuccessCutShortIsAnswered(t *testing.T) {
	for _, end := range []string{"reset", "lost", "deadline"} {
		t.Run(end, func(t *testing.T) {
			srv := newRawServer(t)
			p := newPool(t, srv.endpoint(), nil)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ok := postAsync(ctx, p, "/ok", []byte("a"))
			c := srv.accept()
			var okID uint32
			for id := range c.readRequests(1) {
				okID = id
			}
			bad := postAsync(ctx, p, "/bad", []byte("b"))
			var badID uint32
			for id := range c.readRequests(1) {
				badID = id
			}
			c.headersOnly(okID, "200")
			c.headersOnly(badID, "503")
			_ = c.fr.WriteData(okID, false, []byte(`{"name":"projects/p/mess`))
			// A PING's answer shows the client has read the above.
			_ = c.fr.WritePing(false, [8]byte{7})
			for {
				if pf, isPing := c.next().(*http2.PingFrame); isPing && pf.IsAck() {
					break
				}
			}
			switch end {
			case "reset":
				_ = c.fr.WriteRSTStream(okID, http2.ErrCodeInternal)
				_ = c.fr.WriteRSTStream(badID, http2.ErrCodeInternal)
			case "lost":
				_ = c.nc.Close()
			case "deadline":
				cancel()
			}
			r := await(t, ok)
			if r.err != nil || r.resp.Status != 200 || !r.resp.Truncated || string(r.resp.Body) != `{"name":"projects/p/mess` {
				t.Errorf("200 cut short: %+v, %v; want the 200, truncated, with the body that arrived", r.resp, r.err)
			}
			if r := await(t, bad); r.err == nil {
				t.Errorf("503 cut short: %+v; want an error", r.resp)
			}
		})
	}
}
