package h2post

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

func TestRedialDelay(t *testing.T) {
	for _, tc := range []struct {
		fails    int
		min, max time.Duration
	}{
		{1, 50 * time.Millisecond, 100 * time.Millisecond},
		{2, 100 * time.Millisecond, 200 * time.Millisecond},
		{5, 800 * time.Millisecond, 1600 * time.Millisecond},
		{10, 15 * time.Second, 30 * time.Second},
		{1000, 15 * time.Second, 30 * time.Second},
	} {
		if lo, hi := redialDelay(tc.fails, 0), redialDelay(tc.fails, 0.999999); lo != tc.min || hi > tc.max || hi < tc.max-time.Millisecond {
			t.Errorf("after %d failures: %s–%s, want %s–%s", tc.fails, lo, hi, tc.min, tc.max)
		}
	}
}

// While the slot to dial is backing off, a request waits for a stream of a
// full connection that works rather than for the dial; and a connection
// that answered a stream lifts its slot's backoff.
func TestBackedOffSlotYieldsToAFullConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	release := make(chan struct{})
	srv := &http2.Server{MaxConcurrentStreams: 1}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			<-release
		}
		w.WriteHeader(200)
	})
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
	dial := func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	p, err := New(Config{Endpoint: "http://" + ln.Addr().String(), Dial: dial, Connections: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Post(context.Background(), "/warm", nil, []byte("x")); err != nil {
		t.Fatal(err)
	}
	s0 := &p.slots[0]
	s0.mu.Lock()
	wait, fails := s0.redialWaitLocked(), s0.fails
	s0.mu.Unlock()
	if fails != 1 || wait != 0 {
		t.Fatalf("slot 0 after an answered stream: %d failures, redial wait %s; want the count not yet reset, no wait", fails, wait)
	}

	held := make(chan error, 1)
	go func() {
		_, err := p.Post(context.Background(), "/hold", nil, []byte("x"))
		held <- err
	}()
	for deadline := time.Now().Add(5 * time.Second); ; {
		if active, _, _ := s0.conn.load(); active == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the held request never started")
		}
		time.Sleep(time.Millisecond)
	}
	s1 := &p.slots[1]
	s1.mu.Lock()
	s1.fails, s1.retryAt, s1.lastErr = 5, time.Now().Add(time.Minute), errors.New("refused")
	s1.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	next := make(chan error, 1)
	go func() {
		_, err := p.Post(ctx, "/next", nil, []byte("y"))
		next <- err
	}()
	time.Sleep(50 * time.Millisecond)
	close(release)
	if err := <-held; err != nil {
		t.Fatalf("held request: %v", err)
	}
	if err := <-next; err != nil {
		t.Fatalf("request while slot 1 backs off: %v, want it sent on slot 0's connection", err)
	}
	if n := accepted.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}
