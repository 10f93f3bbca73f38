package dispatcher_test

import (
	"context"
	"testing"
	"time"

	"github.com/pushlane/pushlane/pipeline/dispatcher/dispatchtest"
	"github.com/pushlane/pushlane/schemas"
)

// A pause that lands while a batch's last chunk is in flight leaves
// nothing of the batch to hold back: every device has its result when the
// chunk ends, so the batch is finished, not parked until a resume that may
// never come (which held its retry batch, and its partition's commit).
func TestDispatchBatchWhoseLastChunkEndsAfterAPauseIsFinished(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 1, 2, nil)
	apps, s := h.slowApp("app1", 700*time.Millisecond, 10)
	r := h.start(dispatchtest.UniqueName("disp"), apps, nil)
	h.write(batch("l1", "c1", "app1", 10, time.Now())) // one chunk of 10, all in flight at once
	deadline := time.Now().Add(20 * time.Second)
	for len(s.Sends()) < 10 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 10 sends started", len(s.Sends()))
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.publish("c1", schemas.ControlPause)
	if rs := h.readResults(10, 20*time.Second); len(rs) != 10 {
		t.Fatalf("%d results, want 10", len(rs))
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		p, err := h.store.Progress(context.Background(), "l1")
		if err != nil {
			t.Fatal(err)
		}
		if p.Finished {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("batch l1 not finished 10 s after its last result (parked: %v)",
				dispatchtest.MetricValue(t, r.reg, "pushlane_dispatcher_batches_total", "what", "parked"))
		}
	}
}
