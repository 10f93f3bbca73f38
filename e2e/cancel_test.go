package e2e

import (
	"testing"
	"time"

	"github.com/pushlane/pushlane/schemas"
)

// cancelBound is the design's promise: no send starts later than 2 s after
// the cancel is acknowledged.
const cancelBound = 2 * time.Second

// TestCancelMidCampaign cancels a throttled 40,000-device campaign while it
// is being sent. The simulators, sampled every 5 ms, must see no send begin
// more than 2 s after the broker acknowledged the cancel (sends of chunks
// already started may finish: at most the dispatcher's in-flight chunks).
// Every planned device ends with one final result, delivered or cancelled,
// and ClickHouse's delivered count equals the simulators'.
func TestCancelMidCampaign(t *testing.T) {
	const app = "cancel"
	pop := devices(t).app(t, app)
	p := newPipeline(t, spec{Apps: []string{app}})
	p.StartAll()
	sims := p.Sims[app]
	live := int64(pop.count(kindLive))

	w := watchAccepts(t, sims, 5*time.Millisecond)
	c := campaign("cancel-"+p.Prefix, app, time.Time{})
	c.Options.ThrottlePerSecond = 4000 // about 10 s of sending
	published := p.Publish(c)
	at := p.WaitAccepted(app, live*15/100, 3*time.Minute)
	acked := p.Control(c.ID, schemas.ControlCancel)
	t.Logf("cancelled at %d of %d accepted, %s after publishing", at, live, acked.Sub(published).Round(time.Millisecond))

	// The planner records the campaign (planned or cancelled) with what it
	// emitted; every device it emitted gets a final result.
	var planned int64
	deadline := time.Now().Add(2 * time.Minute)
	for {
		status, n, invalid, ok := plannedDevices(t, p, c.ID)
		if ok {
			planned = n + invalid
			t.Logf("planner recorded %s: %d devices planned, %d invalid", status, n, invalid)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the planner recorded no campaign %s", c.ID)
		}
		time.Sleep(200 * time.Millisecond)
	}
	p.WaitFinal(c.ID, int(planned), 3*time.Minute)
	// Sends of a campaign that was not cancelled would go on for seconds:
	// look well past the bound.
	if rest := time.Until(acked.Add(10 * time.Second)); rest > 0 {
		time.Sleep(rest)
	}
	w.Stop()

	final := w.Last()
	atBound := w.At(acked.Add(cancelBound))
	late := final.Accepted - atBound
	allowance := int64(p.Cfg.Dispatcher.ChunkSize) * inFlightChunks(p)
	t.Logf("accepted: %d at the cancel, %d at cancel+%s, %d in the end (last change %s after the cancel); allowance for chunks in flight %d",
		w.At(acked), atBound, cancelBound, final.Accepted, final.At.Sub(acked).Round(time.Millisecond), allowance)
	for _, s := range w.After(acked.Add(cancelBound)) {
		t.Logf("  sends seen at cancel+%s: total %d", s.At.Sub(acked).Round(time.Millisecond), s.Accepted)
	}
	if late > allowance {
		t.Errorf("%d sends accepted later than %s after the cancel, more than the %d of chunks in flight", late, cancelBound, allowance)
	}
	if final.Accepted >= live {
		t.Errorf("every live device was sent (%d): the cancel stopped nothing", final.Accepted)
	}

	tl := checkSimulators(t, sims, pop, true)
	got := outcomesOf(t, p, c.ID)
	if got[schemas.OutcomeDelivered] != uint64(tl.Delivered) {
		t.Errorf("clickhouse: %d delivered, simulators accepted %d distinct devices", got[schemas.OutcomeDelivered], tl.Delivered)
	}
	if got[schemas.OutcomeCancelled] == 0 {
		t.Errorf("clickhouse: no cancelled results")
	}
	// Every device ended delivered or cancelled, or as its token made it
	// end: nothing failed, expired or waits for a retry.
	for outcome, n := range got {
		switch outcome {
		case schemas.OutcomeDelivered, schemas.OutcomeCancelled, schemas.OutcomeTokenDead, schemas.OutcomeTokenSuspect, schemas.OutcomeInvalidToken:
		default:
			t.Errorf("clickhouse: %d results %s; a cancelled campaign's devices end delivered or cancelled", n, outcome)
		}
	}
	if tl.DuplicateSends != 0 {
		t.Errorf("%d duplicate sends", tl.DuplicateSends)
	}
	p.CheckAlive()
}
