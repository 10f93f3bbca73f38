package e2e

import (
	"testing"
	"time"
)

// TestHappyPath sends a 100,000-device campaign (55% iOS, 1% dead tokens,
// a few BadDeviceToken suspects and malformed tokens) through planner,
// delay ladder, dispatcher and feedback. The simulators must accept each
// live device exactly once and nothing else; ClickHouse's deduplicated
// counts must equal the simulators' outcome by outcome; MySQL must have
// exactly the dead tokens deactivated and each suspect struck once.
func TestHappyPath(t *testing.T) {
	const app = "happy"
	pop := devices(t).app(t, app)
	p := newPipeline(t, spec{Apps: []string{app}})
	p.StartAll()

	c := campaign("happy-"+p.Prefix, app, time.Time{})
	published := p.Publish(c)
	done := p.WaitFinal(c.ID, len(pop.Devices), 5*time.Minute)
	t.Logf("%d devices: every one has a final result %s after publishing", len(pop.Devices), done.Sub(published).Round(time.Millisecond))

	checkExactDelivery(t, p, p.Sims[app], pop, c.ID)
	checkHygiene(t, p, pop)
	status, planned, invalid, ok := plannedDevices(t, p, c.ID)
	switch {
	case !ok:
		t.Errorf("mysql: the planner recorded no campaign %s", c.ID)
	case status != "planned" || planned != int64(len(pop.Devices)-pop.count(kindInvalid)) || invalid != int64(pop.count(kindInvalid)):
		t.Errorf("mysql: campaign %s recorded as %s with %d planned devices and %d invalid tokens, want planned, %d and %d",
			c.ID, status, planned, invalid, len(pop.Devices)-pop.count(kindInvalid), pop.count(kindInvalid))
	}
	p.CheckAlive()
}
