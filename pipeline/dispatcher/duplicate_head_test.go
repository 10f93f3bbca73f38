package dispatcher_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/pipeline/delay"
	"github.com/pushlane/pushlane/pipeline/dispatcher/dispatchtest"
	"github.com/pushlane/pushlane/schemas"
)

// A copy of a batch that is sending (re-forwarded after a crash or a lost
// session, or released twice from parking) reaches the head of its ready
// partition. The batches behind it, another app's due one among them,
// must not wait for the slow batch to finish: the copy is set aside, sent
// nothing (its twin finished it), and committed in order with the rest.
func TestDispatchCopyOfSendingBatchHoldsNothingUp(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 1, 1, nil) // one ready partition: [x, x copy, y]
	// x takes 60 × 100 ms one at a time: 6 s.
	const slowDevices, fastDevices = 60, 5
	apps, slow := h.slowApp("slow", 100*time.Millisecond, 1)
	fastApps, fast := h.fakeApp("fast")
	apps["fast"] = fastApps["fast"]

	now := time.Now()
	x := batch("x", "c-slow", "slow", slowDevices, now)
	y := batch("y", "c-fast", "fast", fastDevices, now)
	var recs []*kgo.Record
	for _, b := range []schemas.Batch{x, x, y} {
		v, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, delay.BatchRecord(h.l.Ready, b.ID, b.CampaignID, b.SendAt, b.ExpiresAt, v))
	}
	if err := h.cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	group := dispatchtest.UniqueName("disp")
	r := h.start(group, apps, nil)

	rs := h.readResults(slowDevices+fastDevices, 30*time.Second)
	if len(rs) != slowDevices+fastDevices {
		t.Fatalf("%d results, want %d", len(rs), slowDevices+fastDevices)
	}
	for tok, x := range dispatchtest.ByToken(rs) {
		if len(x) != 1 {
			t.Errorf("%s: %d results", tok, len(x))
		}
	}

	xs, ys := slow.Sends(), fast.Sends()
	if len(xs) != slowDevices || len(ys) != fastDevices {
		t.Fatalf("sends: x %d, y %d; want %d, %d", len(xs), len(ys), slowDevices, fastDevices)
	}
	if d, dup := slow.Devices(); d != slowDevices || dup != 0 {
		t.Errorf("x sent to %d devices, %d twice; want %d, 0", d, dup, slowDevices)
	}
	xStart, xLast, yStart := xs[0].Start, xs[len(xs)-1].Start, ys[0].Start
	if !yStart.Before(xLast) {
		t.Errorf("y started %v after x's first send, when x had started its last: the copy of x held y up",
			yStart.Sub(xStart).Round(time.Millisecond))
	}
	if late := yStart.Sub(xStart); late > time.Second {
		t.Errorf("y started %v after x's first send, want within 1 s (x sent for %v)",
			late.Round(time.Millisecond), xLast.Sub(xStart).Round(time.Millisecond))
	}
	t.Logf("y started %v after x's first send; x sent for %v",
		yStart.Sub(xStart).Round(time.Millisecond), xLast.Sub(xStart).Round(time.Millisecond))

	if v := dispatchtest.WaitMetric(t, r.reg, 10*time.Second, 1, "pushlane_dispatcher_batches_total", "what", "duplicate"); v != 1 {
		t.Errorf("duplicates skipped: %v, want 1", v)
	}
	// All three records are finished: the group commits past them while
	// running (every second), without waiting for a stop.
	adm := kadm.NewClient(h.cl)
	var committed int64 = -1
	deadline := time.Now().Add(15 * time.Second)
	for committed < int64(len(recs)) && time.Now().Before(deadline) {
		offs, err := adm.FetchOffsets(context.Background(), group)
		if err != nil {
			t.Fatal(err)
		}
		if o, ok := offs.Lookup(h.l.Ready, 0); ok {
			committed = o.At
		}
		time.Sleep(100 * time.Millisecond)
	}
	if committed != int64(len(recs)) {
		t.Errorf("committed offset %d, want %d (past x, its copy and y)", committed, len(recs))
	}
}
