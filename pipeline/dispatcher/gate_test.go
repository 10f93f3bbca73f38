package dispatcher_test

import (
	"testing"
	"time"

	"github.com/pushlane/pushlane/pipeline/dispatcher"
	"github.com/pushlane/pushlane/pipeline/dispatcher/dispatchtest"
	"github.com/pushlane/pushlane/providers/fcm"
	"github.com/pushlane/pushlane/providers/fcmsim"
	"github.com/pushlane/pushlane/schemas"
)

// A campaign cancelled through the control topic while most of a chunk's
// Android devices wait inside the FCM sender (the app's concurrency, 40,
// above the sender's own, 2, as the defaults' 1000 above 200), behind
// requests the simulator answers after 300 ms: once the dispatcher's view
// has the cancel, the simulator gets no request but those already past
// the sender's gate (at most its concurrency), and every device it did not
// accept gets cancelled. Before, all 40 were delivered after the cancel.
func TestDispatchCancelWithdrawsSendsQueuedInTheFCMSender(t *testing.T) {
	t.Parallel()
	const devices, fcmConcurrency = 40, 2
	h := newHarness(t, 1, 1, nil)
	s, sim := dispatchtest.FCMSender(t, "app1", fcmsim.Fault{Latency: 300 * time.Millisecond}, func(c *fcm.Config) {
		c.Concurrency, c.Halt = fcmConcurrency, h.halt
	})
	h.start(dispatchtest.UniqueName("disp"), map[string]dispatcher.App{"app1": {FCM: s, Concurrency: devices}},
		func(c *dispatcher.Config) { c.ChunkSize = devices })

	b := batch("q1", "cq", "app1", devices, time.Now())
	for i := range b.Devices {
		b.Devices[i].Platform = schemas.PlatformAndroid
	}
	h.write(b)
	deadline := time.Now().Add(20 * time.Second)
	for sim.Counts().Requests < fcmConcurrency {
		if time.Now().After(deadline) {
			t.Fatal("no request at the simulator in 20 s")
		}
		time.Sleep(time.Millisecond)
	}
	h.publish("cq", schemas.ControlCancel)
	for !h.view.Cancelled("cq") { // the dispatcher's view
		if time.Now().After(deadline) {
			t.Fatal("the cancel did not reach the view")
		}
		time.Sleep(time.Millisecond)
	}
	written := sim.Counts().Requests
	rs := dispatchtest.ByToken(h.readResults(devices, 30*time.Second))
	if total := sim.Counts().Requests; total > written+fcmConcurrency {
		t.Errorf("%d requests at the simulator, %d of them after the cancel took effect; want at most the %d past the sender's gate then",
			total, total-written, fcmConcurrency)
	}
	if len(rs) != devices {
		t.Fatalf("results for %d devices, want %d", len(rs), devices)
	}
	cancelled := 0
	for _, d := range b.Devices {
		got := rs[d.Token]
		switch n := sim.AcceptedFor(d.Token); {
		case n == 1 && len(got) == 1 && got[0].Outcome == schemas.OutcomeDelivered:
		case n == 0 && len(got) == 1 && got[0].Outcome == schemas.OutcomeCancelled:
			cancelled++
		default:
			t.Errorf("%s accepted %d times by the simulator, results %+v; want delivered once or cancelled", d.Token, n, got)
		}
	}
	if cancelled == 0 {
		t.Error("no device cancelled")
	}
}
