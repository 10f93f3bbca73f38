package delay_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pushlane/pushlane/pipeline/delay"
)

func ladder(k int) delay.Ladder {
	l := delay.Ladder{Ready: "ready"}
	for i := range k {
		l.Tiers = append(l.Tiers, fmt.Sprintf("t%02d", i))
	}
	return l
}

func TestRoute(t *testing.T) {
	l := ladder(4) // 1, 2, 4, 8 s
	now := time.Unix(1_800_000_000, 0)
	cases := []struct {
		in   time.Duration
		want string
	}{
		{-time.Hour, "ready"},
		{0, "ready"},
		{999 * time.Millisecond, "ready"},
		{time.Second, "t00"},
		{1999 * time.Millisecond, "t00"},
		{2 * time.Second, "t01"},
		{7999 * time.Millisecond, "t02"},
		{8 * time.Second, "t03"},
		{30 * 24 * time.Hour, "t03"}, // beyond the ladder: top tier, looping
	}
	for _, c := range cases {
		if got := l.Route(now.Add(c.in), now); got != c.want {
			t.Errorf("Route(now+%v) = %s, want %s", c.in, got, c.want)
		}
	}
	if got := (delay.Ladder{Ready: "ready"}).Route(now.Add(time.Hour), now); got != "ready" {
		t.Errorf("a ladder without tiers routes to %s, want ready", got)
	}
}

// hops simulates a batch walking the ladder: each hop waits its tier's
// delay plus latency, then routes again.
func hops(l delay.Ladder, remaining, latency time.Duration) (n int, early bool) {
	now := time.Unix(1_800_000_000, 0)
	sendAt := now.Add(remaining)
	for {
		dst := l.Route(sendAt, now)
		if dst == l.Ready {
			return n, sendAt.Sub(now) > delay.ReadyWithin
		}
		k := 0
		fmt.Sscanf(dst, "t%02d", &k)
		now = now.Add(delay.TierDelay(k) + latency)
		n++
	}
}

// The rewrite bound documented in the package: at most len(Tiers) hops
// within the ladder's reach, plus one top-tier loop per top-tier delay
// beyond it; a batch never reaches ready more than ReadyWithin early.
func TestHopBound(t *testing.T) {
	for _, k := range []int{1, 4, 12, 22} {
		l := ladder(k)
		top := delay.TierDelay(k - 1)
		for range 2000 {
			remaining := time.Duration(rand.Int64N(int64(min(40*24*time.Hour, 200*top))))
			if rand.IntN(2) == 0 {
				remaining = time.Duration(rand.Int64N(int64(2 * top)))
			}
			n, early := hops(l, remaining, time.Duration(rand.IntN(50))*time.Millisecond)
			loops := 0
			if reach := 2*top - time.Second; remaining > reach {
				loops = int((remaining-reach)/top) + 1
			}
			if n > k+loops {
				t.Fatalf("k=%d remaining=%v: %d hops, bound %d", k, remaining, n, k+loops)
			}
			if early {
				t.Fatalf("k=%d remaining=%v: reached ready early", k, remaining)
			}
		}
	}
}
