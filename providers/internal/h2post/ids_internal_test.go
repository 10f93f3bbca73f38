package h2post

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// A connection that runs out of stream ids sends every request waiting on
// it to a new connection, and closes once its last stream ends. (Before,
// a woken waiter that found it unusable did not pass the wake-up on: the
// requests behind it waited until their deadline, and the old connection
// was dropped from its slot without being closed.)
func TestConnectionOutOfStreamIDsHandsOverItsWaiters(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	srv := &http2.Server{MaxConcurrentStreams: 1}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		time.Sleep(200 * time.Millisecond)
		w.WriteHeader(200)
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go srv.ServeConn(c, &http2.ServeConnOpts{Handler: h})
		}
	}()
	dial := func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	p, err := New(Config{Endpoint: "http://" + ln.Addr().String(), Dial: dial})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Post(context.Background(), "/warm", nil, []byte("x")); err != nil {
		t.Fatal(err)
	}
	old := p.slots[0].conn
	old.mu.Lock()
	old.nextID = maxStreamID - 8 // room for two more streams, then unusable
	old.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 5)
	for i := range errs {
		wg.Go(func() { _, errs[i] = p.Post(ctx, "/x", nil, []byte("body")) })
		time.Sleep(30 * time.Millisecond) // the first in flight, the rest waiting
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("post %d: %v", i, err)
		}
	}
	select {
	case <-old.dead:
	case <-time.After(2 * time.Second):
		old.mu.Lock()
		defer old.mu.Unlock()
		t.Errorf("the connection out of stream ids is still open 2 s after its last stream (active %d, closing %v)", old.active, old.closing)
	}
}
