package simcore

import (
	"fmt"
	"math/rand/v2"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"
)

// Fault is what a simulator does wrong on purpose. The zero Fault is a
// healthy server. Faults can be changed while the server runs ("return 503
// for the next 10 s" is Fault{Rate503: 1, For: 10 * time.Second}).
type Fault struct {
	Rate429 float64 // fraction of requests answered 429 (APNs TooManyRequests, FCM QUOTA_EXCEEDED)
	Rate503 float64 // fraction of requests answered 503 (APNs ServiceUnavailable, FCM UNAVAILABLE)
	// Count, if > 0, limits the 429/503 faults to the next Count requests.
	Count int64
	// For, if > 0, clears the whole fault after this long.
	For time.Duration
	// Latency is added before every answer.
	Latency time.Duration
	// RetryAfter, if > 0, is sent as Retry-After (whole seconds) with the
	// injected 429/503 answers.
	RetryAfter time.Duration
	// GoAwayAfter, if > 0, sends a graceful GOAWAY on each connection after it
	// served that many requests.
	GoAwayAfter int64
}

func (f Fault) String() string {
	return fmt.Sprintf("rate429=%g rate503=%g count=%d for=%s latency=%s retry_after=%s goaway_after=%d",
		f.Rate429, f.Rate503, f.Count, f.For, f.Latency, f.RetryAfter, f.GoAwayAfter)
}

// ParseFault reads a Fault from query parameters: rate429, rate503, count,
// for, latency, retry_after, goaway_after (durations as "10s", "5ms").
func ParseFault(q url.Values) (Fault, error) {
	var f Fault
	var err error
	float := func(key string, dst *float64) {
		if v := q.Get(key); v != "" && err == nil {
			*dst, err = strconv.ParseFloat(v, 64)
			if err == nil && (*dst < 0 || *dst > 1) {
				err = fmt.Errorf("%s must be within [0, 1], got %s", key, v)
			}
			if err != nil {
				err = fmt.Errorf("fault parameter %s: %w", key, err)
			}
		}
	}
	integer := func(key string, dst *int64) {
		if v := q.Get(key); v != "" && err == nil {
			*dst, err = strconv.ParseInt(v, 10, 64)
			if err != nil {
				err = fmt.Errorf("fault parameter %s: %w", key, err)
			}
		}
	}
	duration := func(key string, dst *time.Duration) {
		if v := q.Get(key); v != "" && err == nil {
			*dst, err = time.ParseDuration(v)
			if err != nil {
				err = fmt.Errorf("fault parameter %s: %w", key, err)
			}
		}
	}
	float("rate429", &f.Rate429)
	float("rate503", &f.Rate503)
	integer("count", &f.Count)
	duration("for", &f.For)
	duration("latency", &f.Latency)
	duration("retry_after", &f.RetryAfter)
	integer("goaway_after", &f.GoAwayAfter)
	if err == nil && f.Rate429+f.Rate503 > 1 {
		err = fmt.Errorf("rate429 + rate503 must not exceed 1")
	}
	return f, err
}

type activeFault struct {
	f     Fault
	until time.Time
	left  atomic.Int64
}

// Faults holds the current Fault of one server.
type Faults struct {
	cur atomic.Pointer[activeFault]
	srv *H2Server
}

// NewFaults ties fault state to srv (for GOAWAY).
func NewFaults(srv *H2Server) *Faults { return &Faults{srv: srv} }

// Set replaces the current fault.
func (fs *Faults) Set(f Fault, now time.Time) {
	a := &activeFault{f: f}
	if f.For > 0 {
		a.until = now.Add(f.For)
	}
	a.left.Store(f.Count)
	fs.cur.Store(a)
	fs.srv.SetGoAwayAfter(f.GoAwayAfter)
}

// Get returns the fault in force at now (the zero Fault if none).
func (fs *Faults) Get(now time.Time) Fault {
	a := fs.active(now)
	if a == nil {
		return Fault{}
	}
	return a.f
}

func (fs *Faults) active(now time.Time) *activeFault {
	a := fs.cur.Load()
	if a == nil {
		return nil
	}
	if !a.until.IsZero() && !now.Before(a.until) {
		if fs.cur.CompareAndSwap(a, nil) {
			fs.srv.SetGoAwayAfter(0)
		}
		return nil
	}
	return a
}

// Decide returns, for one request at now, the injected status (0 = none),
// the added latency and the Retry-After to send.
func (fs *Faults) Decide(now time.Time) (status int, latency, retryAfter time.Duration) {
	a := fs.active(now)
	if a == nil {
		return 0, 0, 0
	}
	latency = a.f.Latency
	if a.f.Rate429 <= 0 && a.f.Rate503 <= 0 {
		return 0, latency, 0
	}
	if a.f.Count > 0 && a.left.Add(-1) < 0 {
		return 0, latency, 0
	}
	r := rand.Float64()
	switch {
	case r < a.f.Rate429:
		return 429, latency, a.f.RetryAfter
	case r < a.f.Rate429+a.f.Rate503:
		return 503, latency, a.f.RetryAfter
	}
	return 0, latency, 0
}
