package fcm_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/providers/fcm"
)

// maxInWindow is the most sends any window of length w holds.
func maxInWindow(times []time.Time, w time.Duration) int {
	best, lo := 0, 0
	for hi := range times {
		for times[hi].Sub(times[lo]) >= w {
			lo++
		}
		best = max(best, hi-lo+1)
	}
	return best
}

func TestQuotaBucketNeverExceedsTheMinute(t *testing.T) {
	clk := newFakeClock()
	q, err := fcm.NewQuota(600, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	var sent []time.Time
	for range 2000 {
		wait, _ := q.Reserve()
		_ = clk.Sleep(context.Background(), wait)
		sent = append(sent, clk.Now())
	}
	if got := maxInWindow(sent, time.Minute); got > 600 {
		t.Fatalf("%d sends in one minute, quota 600", got)
	}
	// And it is not needlessly slow: 2000 sends take about 2000/599·60 s.
	took := sent[len(sent)-1].Sub(sent[0])
	if took < 199*time.Second || took > 202*time.Second {
		t.Fatalf("2000 sends took %s of clock time", took)
	}
	if _, err := fcm.NewQuota(1, nil); err == nil {
		t.Error("quota 1 accepted")
	}
}

func TestSenderWaitsOnTheProjectBucket(t *testing.T) {
	clk := newFakeClock()
	sim, acct := startSim(t, nil)
	q, _ := fcm.NewQuota(120, clk.Now)
	// Two apps of one project share the bucket.
	a := newSender(t, sim, acct, func(c *fcm.Config) { c.Quota = q; c.Clock = clk.Now; c.Sleep = clk.Sleep; c.LowLatency = true })
	b := newSender(t, sim, acct, func(c *fcm.Config) {
		c.Quota = q
		c.Clock = clk.Now
		c.Sleep = clk.Sleep
		c.App = "b"
		c.LowLatency = true
	})
	start := clk.Now()
	var sent []time.Time
	for i := range 300 {
		s := a
		if i%2 == 1 {
			s = b
		}
		m := note()
		m.Token = fmt.Sprintf("q-%d", i)
		if r := s.Send(context.Background(), m, 1); r.Outcome != providers.Delivered {
			t.Fatal(r)
		}
		sent = append(sent, clk.Now())
	}
	if got := maxInWindow(sent, time.Minute); got > 120 {
		t.Fatalf("%d sends in a minute, quota 120", got)
	}
	if took := clk.Now().Sub(start); took < 2*time.Minute {
		t.Fatalf("300 sends at 120/min took only %s", took)
	}
	if c := sim.Counts(); c.Accepted != 300 {
		t.Fatalf("accepted %d", c.Accepted)
	}
}
