package fcm

import (
	"fmt"
	"time"

	"golang.org/x/time/rate"
)

// DefaultQuotaPerMinute is Google's default FCM quota per project.
const DefaultQuotaPerMinute = 600_000

// Quota is the token bucket of one Firebase project, shared by every sender
// of that project. It holds at most a tenth of a second's worth of sends and
// refills so that no 60-second window, aligned or not, exceeds perMinute:
// burst + 60 s × rate = perMinute.
type Quota struct {
	lim       *rate.Limiter
	clock     func() time.Time
	perMinute int
}

// NewQuota returns a bucket for perMinute messages a minute; clock nil means
// time.Now.
func NewQuota(perMinute int, clock func() time.Time) (*Quota, error) {
	if perMinute < 2 {
		return nil, fmt.Errorf("fcm: quota must be at least 2 messages a minute, got %d", perMinute)
	}
	if clock == nil {
		clock = time.Now
	}
	burst := max(1, perMinute/600)
	perSecond := float64(perMinute-burst) / 60
	return &Quota{lim: rate.NewLimiter(rate.Limit(perSecond), burst), clock: clock, perMinute: perMinute}, nil
}

// PerMinute is the configured quota.
func (q *Quota) PerMinute() int { return q.perMinute }

// Reserve takes one send from the bucket and returns how long to wait before
// making it, and a function that gives the send back (when the wait is
// abandoned).
func (q *Quota) Reserve() (wait time.Duration, cancel func()) {
	wait, r := q.reserve()
	return wait, func() { q.cancel(r) }
}

// reserve is Reserve for the send path: while the bucket has a send to
// give, it takes it without allocating (AllowN changes nothing when it says
// no). r is nil when wait is zero.
func (q *Quota) reserve() (wait time.Duration, r *rate.Reservation) {
	now := q.clock()
	if q.lim.AllowN(now, 1) {
		return 0, nil
	}
	r = q.lim.ReserveN(now, 1)
	return r.DelayFrom(now), r
}

func (q *Quota) cancel(r *rate.Reservation) {
	if r != nil {
		r.CancelAt(q.clock())
	}
}
