package delay_test

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/pipeline/delay"
	"github.com/pushlane/pushlane/pipeline/kafka"
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

// skewedHops simulates the forwarder walking a batch down the ladder with
// its clock skew ahead of the broker's: records carry the broker's append
// time, the forwarder takes a record at DueAt and routes it by its own
// clock. It returns the hops until ready (stopping at limit).
func skewedHops(l delay.Ladder, remaining, skew time.Duration, due func(r *kgo.Record, k int, top bool) time.Time, limit int) int {
	real := time.Unix(1_800_000_000, 0) // the broker's clock
	sendAt := real.Add(remaining)
	dst := l.Route(sendAt, real.Add(skew)) // written by the forwarder too
	n := 0
	for dst != l.Ready && n < limit {
		k := 0
		fmt.Sscanf(dst, "t%02d", &k)
		// Written by a forwarder: hop 1 or more.
		r := &kgo.Record{Timestamp: real, Headers: []kgo.RecordHeader{
			{Key: kafka.HeaderSendAt, Value: []byte(kafka.UnixMillis(sendAt))}, {Key: kafka.HeaderHop, Value: []byte(strconv.Itoa(n + 1))}}}
		local := due(r, k, k == len(l.Tiers)-1)
		if at := local.Add(-skew); at.After(real) {
			real = at
		}
		real = real.Add(time.Millisecond) // a produce and a fetch
		dst = l.Route(sendAt, real.Add(skew))
		n++
	}
	return n
}

// A forwarder whose clock runs ahead of the broker's keeps the bound of one
// rewrite per tier. Taking records at Eligible alone, it found tier-k
// records due as soon as they were fetched while Route still chose tier k,
// and re-wrote them at the speed of a produce and a fetch.
func TestHopBoundWithTheForwarderClockAhead(t *testing.T) {
	l := ladder(22)
	for _, skew := range []time.Duration{0, 1500 * time.Millisecond, 5 * time.Second, 90 * time.Second, 50 * time.Minute} {
		for _, remaining := range []time.Duration{3 * time.Second, 10 * time.Second, 100 * time.Second, 7 * time.Hour, 9 * 24 * time.Hour} {
			if n := skewedHops(l, remaining, skew, delay.DueAt, 10_000); n > len(l.Tiers) {
				t.Errorf("skew %v, remaining %v: %d hops, bound %d", skew, remaining, n, len(l.Tiers))
			}
		}
	}
	// Eligible alone, as before: the loop.
	eligible := func(r *kgo.Record, k int, _ bool) time.Time { return delay.Eligible(r, k) }
	if n := skewedHops(l, 10*time.Second, 5*time.Second, eligible, 10_000); n < 100 {
		t.Errorf("Eligible alone with a 5 s skew took %d hops; the simulation no longer shows the loop it guards against", n)
	}
}

// How long DueAt holds a record past Eligible depends on who wrote it: a
// forwarder's record (hop 1 or more) up to MaxForwardedHold, so a
// forwarder's clock skew never makes it loop; the planner's or a retry's
// (hop 0) up to MaxSkewHold. Past that the record does not fit its tier and
// is taken at Eligible.
func TestDueAtHoldDependsOnTheWriter(t *testing.T) {
	appended := time.Unix(1_800_000_000, 0)
	const k = 3 // 8 s
	eligible := appended.Add(delay.TierDelay(k))
	for _, c := range []struct {
		hop  string
		hold time.Duration
		want time.Time
	}{
		{"0", 10 * time.Second, eligible.Add(10 * time.Second)},
		{"0", 40 * time.Second, eligible},
		{"", 40 * time.Second, eligible},
		{"1", 40 * time.Second, eligible.Add(40 * time.Second)},
		{"4", 50 * time.Minute, eligible.Add(50 * time.Minute)},
		{"4", 2 * time.Hour, eligible},
	} {
		sendAt := eligible.Add(c.hold + delay.TierDelay(k))
		r := &kgo.Record{Timestamp: appended, Headers: []kgo.RecordHeader{{Key: kafka.HeaderSendAt, Value: []byte(kafka.UnixMillis(sendAt))}}}
		if c.hop != "" {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: kafka.HeaderHop, Value: []byte(c.hop)})
		}
		if got := delay.DueAt(r, k, false); !got.Equal(c.want) {
			t.Errorf("hop %q, send-at %v past Eligible+2^k: due %v after Eligible, want %v", c.hop, c.hold, got.Sub(eligible), c.want.Sub(eligible))
		}
		if got := delay.DueAt(r, k, true); !got.Equal(eligible) {
			t.Errorf("top tier, hop %q: due %v after Eligible, want Eligible", c.hop, got.Sub(eligible))
		}
	}
}

// The tier topics a forwarder reads beyond its ladder: <prefix>.tNN from its
// tier count up, with NN as the tier; nothing else.
func TestFormerTiers(t *testing.T) {
	l := delay.Ladder{Tiers: []string{"p.delay.t00", "p.delay.t01"}, Ready: "p.ready"}
	got := delay.FormerTiers(l, []string{
		"p.delay.t00", "p.delay.t01", "p.delay.t02", "p.delay.t21", "p.delay.t33", "p.delay.t34",
		"p.delay.t2", "p.delay.t002", "p.delay.tx1", "q.delay.t05", "p.delay.t05.old", "p.ready",
	})
	want := map[string]int{"p.delay.t02": 2, "p.delay.t21": 21, "p.delay.t33": 33}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("FormerTiers = %v, want %v", got, want)
	}
	if got := delay.FormerTiers(delay.Ladder{Tiers: []string{"delay.t00-abc"}}, []string{"delay.t00-abc.t01"}); len(got) != 0 {
		t.Errorf("a ladder not named <prefix>.tNN adopted %v", got)
	}
}
