package simcore

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseFault(t *testing.T) {
	for _, c := range []struct {
		query, err string
		want       Fault
	}{
		{query: "", want: Fault{}},
		{query: "rate503=1&count=3&for=10s&latency=5ms&retry_after=2s&goaway_after=9&rate429=0",
			want: Fault{Rate503: 1, Count: 3, For: 10 * time.Second, Latency: 5 * time.Millisecond, RetryAfter: 2 * time.Second, GoAwayAfter: 9}},
		{query: "rate_503=1", err: `unknown fault parameter "rate_503"`},
		{query: "rate503=1&goaway=5&Latency=1s", err: `unknown fault parameter "Latency", "goaway"`},
		{query: "rate503=1&rate503=0", err: "fault parameter rate503: given 2 times"},
		{query: "rate503=1.5", err: "fault parameter rate503: must be within [0, 1], got 1.5"},
		{query: "rate429=NaN", err: "fault parameter rate429: must be within [0, 1]"},
		{query: "rate429=0.6&rate503=0.5", err: "fault parameter rate429 and fault parameter rate503: add up to 1.1, must not exceed 1"},
		{query: "count=-1", err: "fault parameter count: must not be negative"},
		{query: "for=soon", err: "fault parameter for: time: invalid duration"},
	} {
		q, err := url.ParseQuery(c.query)
		if err != nil {
			t.Fatal(err)
		}
		f, err := ParseFault(q)
		switch {
		case c.err == "" && (err != nil || f != c.want):
			t.Errorf("%q: %+v, %v; want %+v", c.query, f, err, c.want)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: error %v, want %q", c.query, err, c.err)
		}
	}
}

// Count is spent by Decide alone (called for requests that passed every
// other check), not by reading the latency every request gets.
func TestFaultCountIsSpentByDecideOnly(t *testing.T) {
	fs := NewFaults()
	now := time.Unix(1_800_000_000, 0)
	fs.Set(Fault{Rate503: 1, Count: 2, Latency: time.Millisecond, RetryAfter: time.Second}, now)
	for range 10 {
		if l := fs.Latency(now); l != time.Millisecond {
			t.Fatalf("latency %v", l)
		}
	}
	for i, want := range []int{503, 503, 0, 0} {
		if st, ra := fs.Decide(now); st != want || (st != 0) != (ra == time.Second) {
			t.Fatalf("decision %d: %d retry after %v, want %d", i, st, ra, want)
		}
	}
	if l := fs.Latency(now); l != time.Millisecond {
		t.Fatalf("latency after the count: %v (only the 429/503 part is counted)", l)
	}
}

// The GoAwayAfter connections apply is the fault in force, read through the
// same load: an older fault expiring cannot clear a newer one's, in either
// order of expiry and Set.
func TestExpiringFaultCannotClearANewerGoAwayAfter(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	later := now.Add(2 * time.Second)
	fs := NewFaults()
	srv := NewH2Server(H2Config{Name: "test", GoAwayAfter: func() int64 { return fs.GoAwayAfter(later) }}, http.NotFoundHandler())

	// A request loaded the short fault, a newer one is Set, then the
	// request finds its fault expired.
	fs.Set(Fault{For: time.Second, GoAwayAfter: 3}, now)
	stale := fs.cur.Load()
	fs.Set(Fault{GoAwayAfter: 7}, now)
	fs.cur.CompareAndSwap(stale, nil) // what active does with an expired fault
	if got := fs.GoAwayAfter(later); got != 7 {
		t.Fatalf("GoAwayAfter after the older fault expired = %d, want the newer fault's 7", got)
	}
	// The short fault expires first, then the newer one is Set.
	fs.Set(Fault{For: time.Second, GoAwayAfter: 3}, now)
	if got := fs.GoAwayAfter(later); got != 0 {
		t.Fatalf("expired fault's GoAwayAfter = %d, want 0", got)
	}
	fs.Set(Fault{GoAwayAfter: 7}, now)

	// A connection goes away after 7 requests, not 3 and not never.
	c := &Conn{srv: srv, hs: &http.Server{}}
	for i := 1; i <= 7; i++ {
		c.Served()
		if gone := c.goingAwy.Load(); gone != (i == 7) {
			t.Fatalf("after %d requests going away = %v", i, gone)
		}
	}
}

// Faults replaced and expiring from many goroutines at once: once they are
// done, what connections apply is the GoAwayAfter of the fault in force.
func TestConcurrentSetAndExpiryKeepGoAwayAfterConsistent(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	later := now.Add(2 * time.Second)
	fs := NewFaults()
	srv := NewH2Server(H2Config{Name: "test", GoAwayAfter: func() int64 { return fs.GoAwayAfter(later) }}, http.NotFoundHandler())
	for i := range 2000 {
		fs.Set(Fault{For: time.Second, GoAwayAfter: 1}, now)
		var wg sync.WaitGroup
		start := make(chan struct{})
		wg.Go(func() { <-start; fs.Decide(later) })
		wg.Go(func() { <-start; fs.Set(Fault{GoAwayAfter: int64(i + 2)}, now) })
		wg.Go(func() { <-start; fs.Set(Fault{GoAwayAfter: int64(i + 3), Rate429: 1}, now) })
		close(start)
		wg.Wait()
		if got, want := srv.cfg.GoAwayAfter(), fs.Get(later).GoAwayAfter; got != want || want < 2 {
			t.Fatalf("round %d: connections apply GoAwayAfter %d, the fault in force has %d", i, got, want)
		}
	}
}
