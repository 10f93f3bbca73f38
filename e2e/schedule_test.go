package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestScheduledCampaignsAreSentInDueOrder publishes three campaigns out of
// order: the one due in 90 s first, then the one due in 5 s, then one due
// now. Each goes to its own app, so its own simulators, sampled every 5 ms,
// tell when its sends happened. None may be sent before its send-at
// (checked by the simulators' samples and by each result's lateness, which
// the dispatcher measures from the start of the send), and they must start
// in due order.
func TestScheduledCampaignsAreSentInDueOrder(t *testing.T) {
	type sched struct {
		app   string
		delay time.Duration
	}
	// In publishing order.
	scheds := []sched{{"sched-90s", 90 * time.Second}, {"sched-5s", 5 * time.Second}, {"sched-now", 0}}
	shared := devices(t)
	var apps []string
	for _, s := range scheds {
		shared.app(t, s.app)
		apps = append(apps, s.app)
	}
	// Eight tiers reach 128 s: the 90 s campaign walks down the ladder.
	p := newPipeline(t, spec{Apps: apps, Tiers: 8})
	p.StartAll()

	watches := map[string]*acceptWatch{}
	for _, a := range apps {
		watches[a] = watchAccepts(t, p.Sims[a], 5*time.Millisecond)
	}
	base := time.Now().Truncate(time.Millisecond) // the "now" campaign is due already when published
	due := map[string]time.Time{}
	ids := map[string]string{}
	for _, s := range scheds {
		due[s.app] = base.Add(s.delay)
		c := campaign(fmt.Sprintf("%s-%s", s.app, p.Prefix), s.app, due[s.app])
		ids[s.app] = c.ID
		p.Publish(c)
		t.Logf("published %s due at %s", c.ID, due[s.app].Format(time.StampMilli))
	}

	for _, s := range []string{"sched-now", "sched-5s", "sched-90s"} {
		pop := shared.app(t, s)
		done := p.WaitFinal(ids[s], len(pop.Devices), due[s].Sub(time.Now())+2*time.Minute)
		w := watches[s]
		first, last := w.First(), w.Last()
		t.Logf("%s: due %s, first send seen %+v after due, last at %+v, all results %+v after due",
			s, due[s].Format(time.StampMilli), first.Sub(due[s]).Round(time.Millisecond),
			last.At.Sub(due[s]).Round(time.Millisecond), done.Sub(due[s]).Round(time.Millisecond))
		if n := w.At(due[s]); n != 0 {
			t.Errorf("%s: %d sends accepted before its send-at %s", s, n, due[s].Format(time.StampMilli))
		}
		if first.IsZero() {
			t.Errorf("%s: no send seen", s)
		}
		checkExactDelivery(t, p, p.Sims[s], pop, ids[s])

		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var early, n uint64
		var p50, p99, max float64
		err := p.CH.QueryRow(ctx, fmt.Sprintf(`SELECT countIf(lateness_ms < 0), count(), quantileExact(0.5)(lateness_ms), quantileExact(0.99)(lateness_ms), max(lateness_ms)
			FROM (SELECT result_id, any(lateness_ms) AS lateness_ms FROM %s.results WHERE campaign_id = ? AND outcome NOT IN ('invalid_token', 'cancelled', 'expired') GROUP BY result_id)`, p.CHDB), ids[s]).
			Scan(&early, &n, &p50, &p99, &max)
		cancel()
		if err != nil {
			t.Fatalf("clickhouse: lateness of %s: %v", ids[s], err)
		}
		t.Logf("%s: %d sent results, lateness p50 %.0f ms, p99 %.0f ms, max %.0f ms", s, n, p50, p99, max)
		if early != 0 {
			t.Errorf("%s: %d of %d results were sent before their send-at (negative lateness)", s, early, n)
		}
	}
	// Due order: each campaign's first send after the earlier-due one's.
	order := []string{"sched-now", "sched-5s", "sched-90s"}
	for i := 1; i < len(order); i++ {
		a, b := watches[order[i-1]].First(), watches[order[i]].First()
		if !b.After(a) {
			t.Errorf("%s started at %s, not after %s (%s)", order[i], b.Format(time.StampMilli), order[i-1], a.Format(time.StampMilli))
		}
	}
	p.CheckAlive()
}
