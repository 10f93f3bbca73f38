package fcm

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// gatedConn records the writes that reach the socket. While gated, a Write
// announces itself on entered and waits for release.
type gatedConn struct {
	net.Conn // nil: only Write and Close are used
	mu       sync.Mutex
	writes   []string
	closed   bool
	gated    bool
	entered  chan struct{}
	release  chan struct{}
	fail     error
}

func newGatedConn() *gatedConn {
	return &gatedConn{gated: true, entered: make(chan struct{}, 16), release: make(chan struct{})}
}

func (g *gatedConn) Write(p []byte) (int, error) {
	g.mu.Lock()
	gated, fail := g.gated, g.fail
	g.mu.Unlock()
	if gated {
		g.entered <- struct{}{}
		<-g.release
	}
	if fail != nil {
		return 0, fail
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.writes = append(g.writes, string(p))
	return len(p), nil
}

func (g *gatedConn) Close() error {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	return nil
}

func (g *gatedConn) ungate() {
	g.mu.Lock()
	g.gated = false
	g.mu.Unlock()
	close(g.release)
}

func (g *gatedConn) state() ([]string, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.writes...), g.closed
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCoalescingWritesWhatWaitedInOneWrite(t *testing.T) {
	g := newGatedConn()
	c := newCoalescingConn(g)
	defer c.Close()
	if n, err := c.Write([]byte("a")); n != 1 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	<-g.entered // the flusher is writing "a" and blocks there
	for _, s := range []string{"b", "cc", "ddd"} {
		if _, err := c.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	g.ungate()
	waitFor(t, "two writes", func() bool { w, _ := g.state(); return len(w) == 2 })
	if w, _ := g.state(); w[0] != "a" || w[1] != "bccddd" {
		t.Fatalf("socket writes %q, want [a bccddd]", w)
	}
}

func TestCoalescingCloseDropsWhatIsNotWritten(t *testing.T) {
	g := newGatedConn()
	c := newCoalescingConn(g)
	_, _ = c.Write([]byte("sent"))
	<-g.entered
	_, _ = c.Write([]byte("dropped"))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("late")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
	g.ungate()
	waitFor(t, "close", func() bool { _, closed := g.state(); return closed })
	time.Sleep(20 * time.Millisecond) // a flusher that wrongly kept going would write now
	if w, _ := g.state(); strings.Join(w, "|") != "sent" {
		t.Fatalf("socket writes %q: buffered frames must never go out after Close", w)
	}
}

func TestCoalescingWriteErrorIsReturnedAndCloses(t *testing.T) {
	g := newGatedConn()
	g.fail = errors.New("connection reset by peer")
	c := newCoalescingConn(g)
	_, _ = c.Write([]byte("lost"))
	<-g.entered
	g.ungate()
	waitFor(t, "close after the failed write", func() bool { _, closed := g.state(); return closed })
	if _, err := c.Write([]byte("next")); err == nil || err.Error() != "connection reset by peer" {
		t.Fatalf("Write after a failed flush: %v", err)
	}
}

func TestCoalescingPushesBackWhenTheSocketStalls(t *testing.T) {
	g := newGatedConn()
	c := newCoalescingConn(g)
	defer c.Close()
	_, _ = c.Write([]byte("x"))
	<-g.entered // the socket is stuck on "x"
	if _, err := c.Write(make([]byte, maxPending-10)); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		_, _ = c.Write(make([]byte, 100)) // past maxPending: must wait
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("Write past maxPending returned while the socket was stuck")
	case <-time.After(50 * time.Millisecond):
	}
	g.ungate()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Write still blocked after the socket drained")
	}
}

// Many writers over a real socket: every writer's frames arrive whole and in
// its order.
func TestCoalescingKeepsEveryWritersOrder(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const writers, each = 50, 200
	got := make(chan []string, 1)
	go func() {
		s, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer s.Close()
		var lines []string
		sc := bufio.NewScanner(s)
		for len(lines) < writers*each && sc.Scan() {
			lines = append(lines, sc.Text())
		}
		got <- lines
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := newCoalescingConn(raw)
	defer c.Close()
	var mu sync.Mutex // HTTP/2 writes frames under one lock too
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				mu.Lock()
				_, err := c.Write([]byte(fmt.Sprintf("%d %d\n", w, i)))
				mu.Unlock()
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	var lines []string
	select {
	case lines = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the lines did not all arrive")
	}
	if len(lines) != writers*each {
		t.Fatalf("%d lines arrived, want %d", len(lines), writers*each)
	}
	next := make([]int, writers)
	for _, l := range lines {
		var w, i int
		if _, err := fmt.Sscanf(l, "%d %d", &w, &i); err != nil || i != next[w] {
			t.Fatalf("line %q out of order (want %d %d)", l, w, next[w])
		}
		next[w]++
	}
}
