package dispatcher_test

import (
	"strings"
	"testing"
	"time"

	"github.com/pushlane/pushlane/pipeline/dispatcher"
	"github.com/pushlane/pushlane/pipeline/dispatcher/dispatchtest"
	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/schemas"
)

// A device whose retry could only be due after its batch expired (a 429
// asking for 60 s, the batch expiring in 4 s) gets its expired result at
// the expiry, in the retry batch and as attempt 2, and is sent once. Due
// at its Retry-After, the retry sat in the 32 s tier and the expired
// result came half a minute late.
func TestDispatchRetryDueAfterExpiryExpiresOnTime(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 7, 1, nil)
	apps, s := h.fakeApp("app1")
	s.SetRule(func(tok string, attempt int) providers.Result {
		if strings.HasSuffix(tok, "t0001") {
			return providers.Result{Outcome: providers.Retryable, Status: 429, Reason: "TooManyRequests", RetryAfter: time.Minute}
		}
		return providers.Result{Outcome: providers.Delivered, Status: 200}
	})
	h.startForwarder()
	h.start(dispatchtest.UniqueName("disp"), apps, nil)
	b := batch("rx", "c1", "app1", 3, time.Now())
	b.ExpiresAt = time.Now().Add(4 * time.Second).UTC()
	h.write(b)

	rs, last := h.readResultsLast(4, 20*time.Second)
	if len(rs) != 4 {
		t.Fatalf("%d results within 20 s, want 4 (the retried device's expired one included)", len(rs))
	}
	// Through real Kafka (a ladder tier, the forwarder, ready, the
	// dispatcher) on a loaded CI machine; the defect was minutes late.
	if late := last.Sub(b.ExpiresAt); late > 10*time.Second {
		t.Errorf("the expired result came %v after the expiry", late)
	} else {
		t.Logf("the expired result came %v after the expiry", late)
	}
	got := dispatchtest.ByToken(rs)
	x := got["rx-t0001"]
	if len(x) != 2 || x[0].Outcome != schemas.OutcomeRetryable || x[0].Attempt != 1 || x[1].Outcome != schemas.OutcomeExpired || x[1].Attempt != 2 {
		t.Fatalf("rx-t0001: %+v, want retryable@1 then expired@2", x)
	}
	retryID := dispatcher.RetryBatchID("rx", 2)
	if e := x[1]; e.BatchID != retryID || e.ID != dispatcher.ResultID(retryID, "rx-t0001", 2) || e.At.Before(b.ExpiresAt) {
		t.Errorf("expired result %+v: want batch %s, its result id, at or after the expiry %v", e, retryID, b.ExpiresAt)
	}
	for _, tok := range []string{"rx-t0000", "rx-t0002"} {
		if r := got[tok]; len(r) != 1 || r[0].Outcome != schemas.OutcomeDelivered {
			t.Errorf("%s: %+v", tok, r)
		}
	}
	if n := len(s.Sends()); n != 3 {
		t.Errorf("%d sends, want 3 (the retry is never sent)", n)
	}
}
