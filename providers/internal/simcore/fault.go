package simcore

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Fault is what a simulator does wrong on purpose. The zero Fault is a
// healthy server. Faults can be changed while the server runs ("return 503
// for the next 10 s" is Fault{Rate503: 1, For: 10 * time.Second}).
type Fault struct {
	Rate429 float64 // fraction of requests answered 429 (APNs TooManyRequests, FCM QUOTA_EXCEEDED)
	Rate503 float64 // fraction of requests answered 503 (APNs ServiceUnavailable, FCM UNAVAILABLE)
	// Count, if > 0, limits the 429/503 faults to the next Count requests
	// that would otherwise have been accepted.
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

// faultParams are the names ParseFault reads.
func faultParams() []string {
	return []string{"rate429", "rate503", "count", "for", "latency", "retry_after", "goaway_after"}
}

// Check applies the limits every way of setting a fault shares: rates
// within [0, 1] that add up to at most 1, nothing negative. name turns a
// ParseFault parameter name into what the caller calls it ("fault parameter
// rate429", "flag -rate429"), so the error points at what to fix.
func (f Fault) Check(name func(param string) string) error {
	for _, r := range []struct {
		param string
		v     float64
	}{{"rate429", f.Rate429}, {"rate503", f.Rate503}} {
		if math.IsNaN(r.v) || r.v < 0 || r.v > 1 {
			return fmt.Errorf("%s: must be within [0, 1], got %g", name(r.param), r.v)
		}
	}
	if sum := f.Rate429 + f.Rate503; sum > 1 {
		return fmt.Errorf("%s and %s: add up to %g, must not exceed 1", name("rate429"), name("rate503"), sum)
	}
	for _, v := range []struct {
		param string
		neg   bool
	}{
		{"count", f.Count < 0}, {"for", f.For < 0}, {"latency", f.Latency < 0},
		{"retry_after", f.RetryAfter < 0}, {"goaway_after", f.GoAwayAfter < 0},
	} {
		if v.neg {
			return fmt.Errorf("%s: must not be negative", name(v.param))
		}
	}
	return nil
}

// ParseFault reads a Fault from query parameters: rate429, rate503, count,
// for, latency, retry_after, goaway_after (durations as "10s", "5ms"). A
// parameter it does not know, or one given twice, is an error rather than
// ignored: a misspelt "rate_503" would otherwise leave the server healthy
// while the caller believes it is failing.
func ParseFault(q url.Values) (Fault, error) {
	known := faultParams()
	var unknown []string
	for k, vs := range q {
		if !slices.Contains(known, k) {
			unknown = append(unknown, strconv.Quote(k))
		} else if len(vs) > 1 {
			return Fault{}, fmt.Errorf("fault parameter %s: given %d times", k, len(vs))
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return Fault{}, fmt.Errorf("unknown fault parameter %s (known: %s)", strings.Join(unknown, ", "), strings.Join(known, ", "))
	}
	var f Fault
	var errs []error
	parse := func(key string, set func(string) error) {
		if v := q.Get(key); v != "" {
			if err := set(v); err != nil {
				errs = append(errs, fmt.Errorf("fault parameter %s: %w", key, err))
			}
		}
	}
	float := func(dst *float64) func(string) error {
		return func(v string) (err error) { *dst, err = strconv.ParseFloat(v, 64); return err }
	}
	integer := func(dst *int64) func(string) error {
		return func(v string) (err error) { *dst, err = strconv.ParseInt(v, 10, 64); return err }
	}
	duration := func(dst *time.Duration) func(string) error {
		return func(v string) (err error) { *dst, err = time.ParseDuration(v); return err }
	}
	parse("rate429", float(&f.Rate429))
	parse("rate503", float(&f.Rate503))
	parse("count", integer(&f.Count))
	parse("for", duration(&f.For))
	parse("latency", duration(&f.Latency))
	parse("retry_after", duration(&f.RetryAfter))
	parse("goaway_after", integer(&f.GoAwayAfter))
	if len(errs) > 0 {
		return Fault{}, errors.Join(errs...)
	}
	if err := f.Check(func(p string) string { return "fault parameter " + p }); err != nil {
		return Fault{}, err
	}
	return f, nil
}

// activeFault is one Set: everything a request reads of the fault in force
// (GoAwayAfter included) comes from one load of Faults.cur, so a request
// never mixes two faults and an expiring fault can only clear itself.
type activeFault struct {
	f     Fault
	until time.Time
	left  atomic.Int64
}

// Faults holds the current Fault of one server.
type Faults struct {
	cur atomic.Pointer[activeFault]
}

// NewFaults returns a healthy fault state. Give its GoAwayAfter to the
// server's H2Config so connections read the same fault the handler does.
func NewFaults() *Faults { return &Faults{} }

// Set replaces the current fault.
func (fs *Faults) Set(f Fault, now time.Time) {
	a := &activeFault{f: f}
	if f.For > 0 {
		a.until = now.Add(f.For)
	}
	a.left.Store(f.Count)
	fs.cur.Store(a)
}

// Get returns the fault in force at now (the zero Fault if none).
func (fs *Faults) Get(now time.Time) Fault {
	a := fs.active(now)
	if a == nil {
		return Fault{}
	}
	return a.f
}

// GoAwayAfter is the GoAwayAfter of the fault in force at now (0 if none).
func (fs *Faults) GoAwayAfter(now time.Time) int64 {
	if a := fs.active(now); a != nil {
		return a.f.GoAwayAfter
	}
	return 0
}

func (fs *Faults) active(now time.Time) *activeFault {
	a := fs.cur.Load()
	if a == nil {
		return nil
	}
	if !a.until.IsZero() && !now.Before(a.until) {
		// Only this fault is cleared: a newer one Set meanwhile stays.
		fs.cur.CompareAndSwap(a, nil)
		return nil
	}
	return a
}

// Latency is what to add before answering a request at now; every request
// gets it, whatever its answer.
func (fs *Faults) Latency(now time.Time) time.Duration {
	if a := fs.active(now); a != nil {
		return a.f.Latency
	}
	return 0
}

// Decide returns, for a request at now that passed every other check and
// would be accepted, the injected status (0 = none) and the Retry-After to
// send. Call it only then: each call uses up one of the fault's Count, and
// a request refused for its own reasons must not.
func (fs *Faults) Decide(now time.Time) (status int, retryAfter time.Duration) {
	a := fs.active(now)
	if a == nil || (a.f.Rate429 <= 0 && a.f.Rate503 <= 0) {
		return 0, 0
	}
	if a.f.Count > 0 && a.left.Add(-1) < 0 {
		return 0, 0
	}
	r := rand.Float64()
	switch {
	case r < a.f.Rate429:
		return 429, a.f.RetryAfter
	case r < a.f.Rate429+a.f.Rate503:
		return 503, a.f.RetryAfter
	}
	return 0, 0
}
