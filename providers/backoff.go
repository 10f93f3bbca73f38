package providers

import (
	"math"
	"math/rand/v2"
	"time"
)

// MaxAttempts is how many times the dispatcher sends one message to one
// device before it gives up on a retryable outcome.
const MaxAttempts = 8

// Default retry policy: the first retry waits 0.5–1 s, then 1–2, 2–4, ...
// up to 10 minutes. With MaxAttempts 8 a device is given up only after at
// least 63.5 s of waiting, so a provider outage shorter than a minute loses
// nothing.
const (
	DefaultBackoffBase = time.Second
	DefaultBackoffCap  = 10 * time.Minute
)

// BackoffPolicy is exponential backoff with "equal" jitter: half of each
// window is fixed and half is random. Full jitter (all random) can make a
// whole chain of retries fall within a short outage and give up on devices
// a few seconds later would have reached; the fixed half guarantees the
// chain spans at least half the sum of the windows, while the random half
// still spreads a wave of retries.
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
// attempt (1 = the first send) came back retryable: with window
// min(cap, base·2^(attempt-1)), a uniform random wait in [window/2, window],
// and never less than retryAfter, the provider's own Retry-After (spread
// by up to a quarter above it).
func Backoff(attempt int, retryAfter time.Duration) time.Duration {
	return DefaultBackoff().Delay(attempt, retryAfter, rand.Float64())
}

// Delay is Backoff with an explicit jitter in [0, 1), so tests can pin it.
// A provider's Retry-After wins even above Cap: the provider asked for it,
// and coming back sooner only earns another 429; the jitter then spreads
// the wait above it.
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
	d := window/2 + time.Duration(jitter*float64(window/2))
	if d < retryAfter {
		// Spread above the provider's wait, by up to a quarter of it
		// (at most 5 minutes): every device refused in one burst got
		// the same Retry-After and came back in the same burst.
		d = retryAfter
		if spread := time.Duration(jitter * float64(min(retryAfter/4, 5*time.Minute))); d <= math.MaxInt64-spread {
			d += spread // a Retry-After that saturated (an HTTP date centuries ahead) stays as it is
		}
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
