package providers

import (
	"math/rand/v2"
	"time"
)

// MaxAttempts is how many times the dispatcher sends one message to one
// device before it gives up on a retryable outcome.
const MaxAttempts = 8

// Default retry policy: the first retry waits up to 1 s, then 2, 4, ... up to
// 10 minutes.
const (
	DefaultBackoffBase = time.Second
	DefaultBackoffCap  = 10 * time.Minute
)

// BackoffPolicy is exponential backoff with full jitter.
type BackoffPolicy struct {
	Base        time.Duration // the ceiling of the first wait; default DefaultBackoffBase
	Cap         time.Duration // no computed wait exceeds this; default DefaultBackoffCap
	MaxAttempts int           // default MaxAttempts
}

// DefaultBackoff is the policy Backoff uses.
func DefaultBackoff() BackoffPolicy {
	return BackoffPolicy{Base: DefaultBackoffBase, Cap: DefaultBackoffCap, MaxAttempts: MaxAttempts}
}

// Backoff is how long to wait before the next attempt after attempt number
// attempt (1 = the first send) came back retryable: a uniform random wait in
// [0, min(cap, base·2^(attempt-1))], and never less than retryAfter, the
// provider's own Retry-After.
func Backoff(attempt int, retryAfter time.Duration) time.Duration {
	return DefaultBackoff().Delay(attempt, retryAfter, rand.Float64())
}

// Delay is Backoff with an explicit jitter in [0, 1), so tests can pin it.
// A provider's Retry-After wins even above Cap: the provider asked for it,
// and coming back sooner only earns another 429.
func (p BackoffPolicy) Delay(attempt int, retryAfter time.Duration, jitter float64) time.Duration {
	base, ceiling := p.Base, p.Cap
	if base <= 0 {
		base = DefaultBackoffBase
	}
	if ceiling <= 0 {
		ceiling = DefaultBackoffCap
	}
	if attempt < 1 {
		attempt = 1
	}
	window := ceiling
	if shift := attempt - 1; shift < 62 && base<<shift > 0 && base<<shift < ceiling {
		window = base << shift
	}
	if jitter < 0 {
		jitter = 0
	} else if jitter >= 1 {
		jitter = 0.999999
	}
	d := time.Duration(jitter * float64(window))
	if d < retryAfter {
		d = retryAfter
	}
	return d
}

// GiveUp reports whether attempt was the last one the policy allows.
func (p BackoffPolicy) GiveUp(attempt int) bool {
	maxAttempts := p.MaxAttempts
	if maxAttempts <= 0 {
		maxAttempts = MaxAttempts
	}
	return attempt >= maxAttempts
}
