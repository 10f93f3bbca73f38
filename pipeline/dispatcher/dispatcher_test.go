package dispatcher_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/pipeline/delay"
	"github.com/pushlane/pushlane/pipeline/dispatcher"
	"github.com/pushlane/pushlane/pipeline/dispatcher/dispatchtest"
	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/schemas"
)

// Every device of every batch is sent once, with its localized text, and
// gets exactly one result with the batch's facts.
func TestDispatchSendsEachDeviceOnceWithOneResult(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 2, 3, nil)
	apps, s := h.fakeApp("app1")
	h.start(dispatchtest.UniqueName("disp"), apps, nil)
	now := time.Now()
	for i, n := range []int{1, 25, 103} {
		h.write(batch("b"+string(rune('a'+i)), "c1", "app1", n, now))
	}
	rs := h.readResults(129, 30*time.Second)
	if len(rs) != 129 {
		t.Fatalf("%d results, want 129", len(rs))
	}
	ids := map[string]bool{}
	for tok, r := range dispatchtest.ByToken(rs) {
		if len(r) != 1 {
			t.Errorf("%s: %d results", tok, len(r))
			continue
		}
		res := r[0]
		if res.Outcome != schemas.OutcomeDelivered || res.Attempt != 1 || res.App != "app1" || res.CampaignID != "c1" ||
			!strings.HasPrefix(tok, res.BatchID+"-") || res.ID != dispatcher.ResultID(res.BatchID, tok, 1) {
			t.Errorf("%s: result %+v", tok, res)
		}
		want := map[string]string{schemas.PlatformIOS: dispatcher.ProviderAPNs, schemas.PlatformAndroid: dispatcher.ProviderFCM}[res.Platform]
		if res.Provider != want {
			t.Errorf("%s (%s): provider %q, want %q", tok, res.Platform, res.Provider, want)
		}
		ids[res.ID] = true
		if s.Accepted(tok) != 1 {
			t.Errorf("%s sent %d times", tok, s.Accepted(tok))
		}
	}
	if len(ids) != 129 {
		t.Errorf("%d distinct result ids, want 129", len(ids))
	}
	for _, sent := range s.Sends() {
		idx := sent.Token[strings.LastIndex(sent.Token, "-t")+2:]
		var i int
		for _, c := range idx {
			i = i*10 + int(c-'0')
		}
		want := "Hello"
		if i%3 == 0 {
			want = "Hallo" // de-AT falls back to de
		}
		if sent.Title != want {
			t.Errorf("%s got title %q, want %q", sent.Token, sent.Title, want)
		}
	}
}

// A batch that does not decode, and one of an app the dispatcher does not
// know, go to the dead-letter topic with the reason; the batch behind them
// is still sent.
func TestDispatchDeadLettersBadBatches(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 1, 1, nil)
	apps, s := h.fakeApp("app1")
	h.start(dispatchtest.UniqueName("disp"), apps, nil)
	bad := &kgo.Record{Topic: h.l.Ready, Key: []byte("bad"), Value: []byte(`{"schema_version":1,"id":"bad"}`)}
	if err := h.cl.ProduceSync(context.Background(), bad).FirstErr(); err != nil {
		t.Fatal(err)
	}
	h.write(batch("other-app", "c1", "nobody", 2, time.Now()))
	h.write(batch("good", "c1", "app1", 3, time.Now()))
	dl := h.k.ReadAll(t, h.dlq, 2, 20*time.Second)
	if len(dl) != 2 {
		t.Fatalf("%d dead letters, want 2", len(dl))
	}
	reasons := map[string]string{}
	for _, r := range dl {
		d, err := schemas.DecodeDeadLetter(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		if d.Stage != dispatcher.Stage || d.Topic != h.l.Ready {
			t.Errorf("dead letter %+v", d)
		}
		reasons[string(d.Key)] = d.Reason
	}
	if !strings.Contains(reasons["bad"], "invalid batch") || !strings.Contains(reasons["bad"], "campaign_id") {
		t.Errorf("reason of the malformed batch: %q", reasons["bad"])
	}
	if !strings.Contains(reasons["other-app"], `app "nobody" is not configured`) {
		t.Errorf("reason of the unknown app: %q", reasons["other-app"])
	}
	if rs := h.readResults(3, 20*time.Second); len(rs) != 3 {
		t.Errorf("%d results of the good batch, want 3", len(rs))
	}
	if d, _ := s.Devices(); d != 3 {
		t.Errorf("%d devices sent, want 3", d)
	}
}

// A finished batch id is skipped: the same batch written again (a replay,
// a re-forward) sends nothing.
func TestDispatchSkipsFinishedBatches(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 1, 2, nil)
	apps, s := h.fakeApp("app1")
	r := h.start(dispatchtest.UniqueName("disp"), apps, nil)
	b := batch("replayed", "c1", "app1", 30, time.Now())
	h.write(b)
	if rs := h.readResults(30, 20*time.Second); len(rs) != 30 {
		t.Fatalf("%d results, want 30", len(rs))
	}
	h.write(b)
	h.write(b)
	if v := dispatchtest.WaitMetric(t, r.reg, 20*time.Second, 2, "pushlane_dispatcher_batches_total", "what", "duplicate"); v != 2 {
		t.Fatalf("duplicates skipped: %v, want 2", v)
	}
	if d, dup := s.Devices(); d != 30 || dup != 0 {
		t.Errorf("devices %d, sent twice %d; want 30, 0", d, dup)
	}
	if rs := h.readResults(31, 2*time.Second); len(rs) != 30 {
		t.Errorf("%d results after the replays, want 30", len(rs))
	}
}

// Expired and cancelled batches send nothing; each device gets one
// expired / cancelled result.
func TestDispatchExpiredAndCancelledBatches(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 1, 2, nil)
	apps, s := h.fakeApp("app1")
	h.publish("c-cancelled", schemas.ControlCancel)
	h.start(dispatchtest.UniqueName("disp"), apps, nil)
	exp := batch("expired", "c-live", "app1", 7, time.Now().Add(-time.Minute))
	exp.ExpiresAt = time.Now().Add(-time.Second).UTC()
	ttl := batch("ttl", "c-live", "app1", 4, time.Now().Add(-time.Minute))
	ttl.Options.TTLSeconds = 30
	h.write(exp)
	h.write(ttl)
	h.write(batch("cancelled", "c-cancelled", "app1", 5, time.Now()))
	rs := h.readResults(16, 20*time.Second)
	if len(rs) != 16 {
		t.Fatalf("%d results, want 16", len(rs))
	}
	for tok, r := range dispatchtest.ByToken(rs) {
		want := schemas.OutcomeExpired
		if strings.HasPrefix(tok, "cancelled") {
			want = schemas.OutcomeCancelled
		}
		if len(r) != 1 || r[0].Outcome != want || r[0].Provider != "" {
			t.Errorf("%s: %+v, want one %s result", tok, r, want)
		}
	}
	if sends := s.Sends(); len(sends) != 0 {
		t.Errorf("%d sends, want none", len(sends))
	}
}

// A cancelled or expired batch that reaches ready long before its send-at
// (the forwarder sends them early on purpose) is closed out at once, not
// sent back to the ladder.
func TestDispatchClosesOutEarlyCancelledAndExpired(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 2, 1, nil)
	apps, s := h.fakeApp("app1")
	h.publish("c-gone", schemas.ControlCancel)
	r := h.start(dispatchtest.UniqueName("disp"), apps, nil)
	write := func(b schemas.Batch) {
		v, _ := json.Marshal(b)
		if err := h.cl.ProduceSync(context.Background(), delay.BatchRecord(h.l.Ready, b.ID, b.CampaignID, b.SendAt, b.ExpiresAt, v)).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	write(batch("gone", "c-gone", "app1", 3, time.Now().Add(time.Hour)))
	exp := batch("old", "c-live", "app1", 2, time.Now().Add(time.Hour))
	exp.ExpiresAt = time.Now().Add(-time.Second).UTC()
	write(exp)
	rs := h.readResults(5, 10*time.Second)
	if len(rs) != 5 {
		t.Fatalf("%d results, want 5", len(rs))
	}
	for _, x := range rs {
		want := map[string]string{"gone": schemas.OutcomeCancelled, "old": schemas.OutcomeExpired}[x.BatchID]
		if x.Outcome != want {
			t.Errorf("%s: %s, want %s", x.Token, x.Outcome, want)
		}
	}
	if v := dispatchtest.MetricValue(t, r.reg, "pushlane_dispatcher_batches_total", "what", "rerouted"); v != 0 {
		t.Errorf("%v batches re-routed", v)
	}
	if len(s.Sends()) != 0 {
		t.Errorf("%d sends", len(s.Sends()))
	}
}

// A cancel published while a batch is being sent stops it: no chunk starts
// more than 2 s after the cancel was acknowledged, and every device still
// gets exactly one result.
func TestDispatchCancelMidBatch(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 1, 1, nil)
	apps, s := h.slowApp("app1", 20*time.Millisecond, 1) // 2000 devices take 40 s
	h.start(dispatchtest.UniqueName("disp"), apps, nil)
	h.write(batch("long", "c-long", "app1", 2000, time.Now()))
	acked, rs, _ := h.cancelAfterSends(s, 30, "c-long", 2000)
	cancelled := dispatchtest.CountOutcome(t, rs, schemas.OutcomeCancelled)
	var last time.Time
	for _, x := range s.Sends() {
		if x.At.After(last) {
			last = x.At
		}
	}
	// A chunk of 10 sequential 20 ms sends may still finish after its
	// start; the last send starts no later than ack + 2 s + one chunk.
	if late := last.Sub(acked); late > 2*time.Second+250*time.Millisecond {
		t.Errorf("a send %v after the cancel was acknowledged", late)
	}
	if cancelled < 1500 {
		t.Errorf("only %d devices cancelled", cancelled)
	}
	t.Logf("sent %d, cancelled %d, last send %v after the cancel", len(s.Sends()), cancelled, last.Sub(acked))
}

// A cancel stops the sends already queued, not only the chunks not yet
// started: an app held to 20 sends a second has a whole chunk of each of
// two batches queued (200 devices, 10 s of sends), and no send starts more
// than 2 s after the cancel was acknowledged.
func TestDispatchCancelStopsQueuedSends(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 1, 2, nil)
	apps, s := h.fakeApp("app1")
	app := apps["app1"]
	app.RatePerSecond = 20
	apps["app1"] = app
	h.start(dispatchtest.UniqueName("disp"), apps, func(c *dispatcher.Config) { c.ChunkSize = 100 })
	now := time.Now()
	h.write(batch("slow-a", "c-slow", "app1", 100, now))
	h.write(batch("slow-b", "c-slow", "app1", 100, now))
	acked, rs, last := h.cancelAfterSends(s, 10, "c-slow", 200)
	if late := last.Sub(acked); late > 2*time.Second {
		t.Errorf("the last result came %v after the cancel was acknowledged", late)
	}
	sends := s.Sends()
	cancelled := dispatchtest.CountOutcome(t, rs, schemas.OutcomeCancelled)
	delivered := dispatchtest.CountOutcome(t, rs, schemas.OutcomeDelivered)
	if delivered != len(sends) || delivered+cancelled != 200 {
		t.Errorf("%d delivered and %d cancelled for %d sends; want every send delivered and the rest cancelled", delivered, cancelled, len(sends))
	}
	var late []time.Duration
	for _, x := range sends {
		if d := x.Start.Sub(acked); d > 2*time.Second {
			late = append(late, d)
		}
	}
	if len(late) > 0 {
		t.Errorf("%d sends started more than 2 s after the cancel was acknowledged, the last %v after", len(late), late[len(late)-1])
	}
	if cancelled < 100 {
		t.Errorf("only %d of 200 devices cancelled", cancelled)
	}
	t.Logf("sent %d, cancelled %d", len(sends), cancelled)
}

// A batch that expires while its devices wait for the app's rate sends
// none of them after its expiry; they are given the outcome expired.
func TestDispatchExpiryStopsQueuedSends(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 1, 1, nil)
	apps, s := h.fakeApp("app1")
	app := apps["app1"]
	app.RatePerSecond = 10 // 100 devices take 10 s
	apps["app1"] = app
	h.start(dispatchtest.UniqueName("disp"), apps, func(c *dispatcher.Config) { c.ChunkSize = 100 })
	b := batch("short-lived", "c-short", "app1", 100, time.Now())
	b.ExpiresAt = time.Now().Add(3 * time.Second)
	h.write(b)
	rs, last := h.readResultsLast(100, 30*time.Second)
	if len(rs) != 100 {
		t.Fatalf("%d results, want 100", len(rs))
	}
	// The 50 senders each hold a token reserved up to 5 s ahead; they
	// give it back, and the batch is closed out, at once.
	if late := last.Sub(b.ExpiresAt); late > 2*time.Second {
		t.Errorf("the last result came %v after the expiry", late)
	}
	sends := s.Sends()
	if len(sends) == 0 {
		t.Fatal("nothing was sent before the expiry: the batch was closed out whole, and the check before each send was not exercised")
	}
	for _, x := range sends {
		if !x.Start.Before(b.ExpiresAt) {
			t.Errorf("%s sent %v after the batch expired", x.Token, x.Start.Sub(b.ExpiresAt))
		}
	}
	expired := dispatchtest.CountOutcome(t, rs, schemas.OutcomeExpired)
	if delivered := dispatchtest.CountOutcome(t, rs, schemas.OutcomeDelivered); delivered != len(sends) || delivered+expired != 100 {
		t.Errorf("%d delivered and %d expired for %d sends; want every send delivered and the rest expired", delivered, expired, len(sends))
	}
	if expired < 50 {
		t.Errorf("only %d of 100 devices expired; at 10 a second at most 30 can be sent in the batch's 3 s", expired)
	}
}

// A send the provider refuses because the batch's expiry passed while it
// waited (for a connection, the quota, a token) is an expired device, not a
// payload the provider rejected; any other refusal stays payload_rejected.
func TestDispatchSendRefusedForItsExpiryIsExpired(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 1, 1, nil)
	apps, s := h.fakeApp("app1")
	s.SetRule(func(tok string, _ int) providers.Result {
		switch {
		case strings.HasSuffix(tok, "t0000"):
			err := &providers.RejectError{Provider: "apns", Reason: "BadExpirationDate", Detail: "expiration has passed", Err: providers.ErrExpired}
			return providers.Rejected(err, 1)
		case strings.HasSuffix(tok, "t0001"):
			return providers.Rejected(&providers.RejectError{Provider: "apns", Reason: "PayloadTooLarge", Detail: "5000 bytes"}, 1)
		}
		return providers.Result{Outcome: providers.Delivered, Status: 200}
	})
	h.start(dispatchtest.UniqueName("disp"), apps, nil)
	h.write(batch("x", "c1", "app1", 3, time.Now()))
	rs := h.readResults(3, 20*time.Second)
	got := map[string]string{}
	for tok, r := range dispatchtest.ByToken(rs) {
		for _, x := range r {
			got[tok] += x.Outcome
		}
	}
	want := map[string]string{"x-t0000": schemas.OutcomeExpired, "x-t0001": schemas.OutcomePayloadRejected, "x-t0002": schemas.OutcomeDelivered}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("outcomes %v, want %v", got, want)
	}
}

// Retryable devices come back in a retry batch <id>#a2 through the ladder,
// not before the provider's Retry-After; on the last attempt they fail.
func TestDispatchRetriesThroughTheLadder(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 2, 2, nil)
	apps, s := h.fakeApp("app1")
	var firstSend atomic.Int64
	s.SetRule(func(tok string, attempt int) providers.Result {
		switch {
		case strings.HasSuffix(tok, "t0001") && attempt == 1:
			firstSend.CompareAndSwap(0, time.Now().UnixNano())
			return providers.Result{Outcome: providers.Retryable, Status: 429, Reason: "TooManyRequests", RetryAfter: 2 * time.Second}
		case strings.HasSuffix(tok, "t0002"):
			return providers.Result{Outcome: providers.Retryable, Status: 503, Reason: "ServiceUnavailable"}
		}
		return providers.Result{Outcome: providers.Delivered, Status: 200}
	})
	h.startForwarder()
	h.start(dispatchtest.UniqueName("disp"), apps, func(c *dispatcher.Config) { c.MaxAttempts = 3 })
	h.write(batch("r", "c1", "app1", 4, time.Now()))
	// t0000, t0003: 1 each; t0001: retryable + delivered; t0002: 2 retryable + failed.
	rs := h.readResults(7, 30*time.Second)
	if len(rs) != 7 {
		t.Fatalf("%d results, want 7", len(rs))
	}
	got := dispatchtest.ByToken(rs)
	want := map[string][]string{
		"r-t0000": {"delivered@1"}, "r-t0003": {"delivered@1"},
		"r-t0001": {"retryable@1", "delivered@2"},
		"r-t0002": {"retryable@1", "retryable@2", "failed@3"},
	}
	for tok, w := range want {
		var g []string
		for _, r := range got[tok] {
			g = append(g, r.Outcome+"@"+string(rune('0'+r.Attempt)))
			wantID := "r"
			if r.Attempt > 1 {
				wantID = dispatcher.RetryBatchID("r", r.Attempt)
			}
			if r.BatchID != wantID {
				t.Errorf("%s attempt %d in batch %s, want %s", tok, r.Attempt, r.BatchID, wantID)
			}
		}
		if strings.Join(g, ",") != strings.Join(w, ",") {
			t.Errorf("%s: %v, want %v", tok, g, w)
		}
	}
	var second time.Time
	for _, x := range s.Sends() {
		if x.Token == "r-t0001" && x.Attempt == 2 {
			second = x.At
		}
	}
	if wait := second.Sub(time.Unix(0, firstSend.Load())); wait < 2*time.Second {
		t.Errorf("retry sent %v after the 429, before its Retry-After of 2 s", wait)
	}
}

// A credential failure halts the app: its batches are parked (nothing
// more sent, nothing dropped, no result for the refused devices) until a
// probe succeeds; then every device is sent once and has one result.
func TestDispatchCredentialFailureParksUntilProbeSucceeds(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 1, 2, nil)
	apps, s := h.fakeApp("app1")
	broken := refuseCredentials(s)
	r := h.start(dispatchtest.UniqueName("disp"), apps, nil)
	for _, id := range []string{"h1", "h2", "h3"} {
		h.write(batch(id, "c1", "app1", 15, time.Now()))
	}
	if v := dispatchtest.WaitMetric(t, r.reg, 20*time.Second, 3, "pushlane_dispatcher_batches_total", "what", "parked"); v < 3 {
		t.Fatalf("%v batches parked, want 3", v)
	}
	if _, halted := h.halt.Halted("app1", dispatcher.ProviderAPNs); !halted {
		t.Error("app1 not halted for APNs")
	}
	time.Sleep(2 * time.Second) // probes keep failing meanwhile
	if rs := h.readResults(1, time.Second); len(rs) != 0 {
		t.Fatalf("%d results while halted, want none: %+v", len(rs), rs[0])
	}
	refused := len(s.Sends())
	broken.Store(false)
	rs := h.readResults(45, 30*time.Second)
	if len(rs) != 45 {
		t.Fatalf("%d results after the fix, want 45", len(rs))
	}
	for tok, x := range dispatchtest.ByToken(rs) {
		if len(x) != 1 || x[0].Outcome != schemas.OutcomeDelivered {
			t.Errorf("%s: %+v", tok, x)
		}
	}
	if d, dup := s.Devices(); d != 45 || dup != 0 {
		t.Errorf("delivered %d devices, %d twice; want 45, 0", d, dup)
	}
	if l := h.halt.List(); len(l) != 0 {
		t.Errorf("still halted after a successful probe: %+v", l)
	}
	t.Logf("%d refused sends while halted (probes included)", refused)
}

// A paused campaign's batches are parked, other campaigns flow, and a
// resume sends them.
func TestDispatchPauseParksAndResumeSends(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 1, 1, nil)
	apps, s := h.fakeApp("app1")
	h.publish("c-paused", schemas.ControlPause)
	h.start(dispatchtest.UniqueName("disp"), apps, nil)
	h.write(batch("p1", "c-paused", "app1", 5, time.Now()))
	h.write(batch("live", "c-live", "app1", 5, time.Now()))
	rs := h.readResults(5, 20*time.Second)
	if len(rs) != 5 || rs[0].CampaignID != "c-live" {
		t.Fatalf("results before resume: %d (want 5 of c-live)", len(rs))
	}
	time.Sleep(time.Second)
	if rs := h.readResults(6, time.Second); len(rs) != 5 {
		t.Fatalf("%d results while paused, want 5", len(rs))
	}
	h.publish("c-paused", schemas.ControlResume)
	rs = h.readResults(10, 20*time.Second)
	if len(rs) != 10 {
		t.Fatalf("%d results after resume, want 10", len(rs))
	}
	if d, dup := s.Devices(); d != 10 || dup != 0 {
		t.Errorf("delivered %d, %d twice; want 10, 0", d, dup)
	}
}

// Stopping a dispatcher mid-batch and starting another in the same group
// sends every device exactly once: the stop finishes the chunk in flight
// and saves its progress.
func TestDispatchGracefulStopNoDuplicates(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 1, 2, nil)
	apps, s := h.slowApp("app1", 5*time.Millisecond, 2)
	group := dispatchtest.UniqueName("disp")
	first := h.start(group, apps, nil)
	h.write(batch("g1", "c1", "app1", 300, time.Now()))
	h.write(batch("g2", "c1", "app1", 300, time.Now()))
	deadline := time.Now().Add(20 * time.Second)
	for len(s.Sends()) < 100 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	first.stop(t)
	stoppedAt := len(s.Sends())
	h.start(group, apps, nil)
	rs := h.readResults(600, 30*time.Second)
	if len(rs) != 600 {
		t.Fatalf("%d results, want 600", len(rs))
	}
	if d, dup := s.Devices(); d != 600 || dup != 0 {
		t.Errorf("delivered %d, %d twice; want 600, 0", d, dup)
	}
	for tok, x := range dispatchtest.ByToken(rs) {
		if len(x) != 1 {
			t.Errorf("%s: %d results", tok, len(x))
		}
	}
	if stoppedAt >= 600 {
		t.Errorf("the first dispatcher sent everything (%d) before it was stopped: the test proved nothing", stoppedAt)
	}
	t.Logf("first dispatcher sent %d before its stop", stoppedAt)
}

func TestRetryBatchID(t *testing.T) {
	for in, want := range map[string]string{"x": "x#a2", "x#a2": "x#a3", "c:v1:all:3#a7": "c:v1:all:3#a3", "#a": "#a#a3"} {
		n := 2
		if strings.HasSuffix(want, "3") {
			n = 3
		}
		if got := dispatcher.RetryBatchID(in, n); got != want {
			t.Errorf("RetryBatchID(%q, %d) = %q, want %q", in, n, got, want)
		}
	}
}

// The planner writes batches in transactions and re-plans an aborted chunk
// under the same batch ids, with whatever devices the audience holds by
// then. A batch of an aborted chunk must never be forwarded or sent: the
// finished-batch record would then skip its committed re-plan, losing the
// devices that moved between the two and sending others twice. One batch
// goes through a delay tier, one straight to the ready topic.
func TestDispatchIgnoresBatchesOfAbortedTransactions(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 2, 2, nil)
	h.startForwarder()
	apps, s := h.fakeApp("app1")
	h.start(dispatchtest.UniqueName("disp"), apps, nil)
	txn := h.k.Client(t, kgo.TransactionalID(dispatchtest.UniqueName("planner-txn")))
	ctx := context.Background()

	dueNow, dueSoon := time.Now(), time.Now().Add(3*time.Second)
	chunk := func(commit bool, tokenPrefix string) {
		t.Helper()
		if err := txn.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for _, b := range []schemas.Batch{batch("c9:v1:all:0", "c9", "app1", 20, dueNow), batch("c9:v1:all:1", "c9", "app1", 20, dueSoon)} {
			for i := range b.Devices {
				b.Devices[i].Token = tokenPrefix + b.Devices[i].Token
			}
			v, err := json.Marshal(b)
			if err != nil {
				t.Fatal(err)
			}
			r := delay.BatchRecord(h.l.Route(b.SendAt, time.Now()), b.ID, b.CampaignID, b.SendAt, b.ExpiresAt, v)
			if err := txn.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := txn.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	chunk(false, "aborted-")
	chunk(true, "")

	rs := h.readResults(40, 30*time.Second)
	if len(rs) != 40 {
		t.Fatalf("%d results, want 40", len(rs))
	}
	// Anything the aborted chunk reached would have been sent by now: the
	// committed batches behind it on the same partitions are done.
	if rs := h.readResults(41, 2*time.Second); len(rs) != 40 {
		t.Errorf("%d results, want 40", len(rs))
	}
	for _, sent := range s.Sends() {
		if strings.HasPrefix(sent.Token, "aborted-") {
			t.Errorf("sent %s, a device of an aborted transaction", sent.Token)
		}
	}
	if d, dup := s.Devices(); d != 40 || dup != 0 {
		t.Errorf("devices %d, sent twice %d; want 40, 0", d, dup)
	}
}

// Each app is held to its concurrency across all the batches sending at
// once, and to its rate: the sends of 60 devices at 40 a second (bursts of
// 4) cannot span less than (60-4)/40 = 1.4 s.
func TestDispatchHoldsAppsToConcurrencyAndRate(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 1, 2, nil)
	apps, s := h.slowApp("app1", 5*time.Millisecond, 3)
	rated, r := h.fakeApp("app2")
	app2 := rated["app2"]
	app2.RatePerSecond = 40
	apps["app2"] = app2
	h.start(dispatchtest.UniqueName("disp"), apps, nil)
	now := time.Now()
	for _, id := range []string{"c1", "c2", "c3"} {
		h.write(batch(id, "c", "app1", 40, now))
	}
	h.write(batch("r1", "r", "app2", 60, now))
	rs := h.readResults(180, 30*time.Second)
	if len(rs) != 180 {
		t.Fatalf("%d results, want 180", len(rs))
	}
	if d, dup := s.Devices(); d != 120 || dup != 0 {
		t.Errorf("app1: delivered %d, %d twice; want 120, 0", d, dup)
	}
	if got := s.MaxInFlight(); got != 3 {
		t.Errorf("app1 (concurrency 3): at most %d sends at once, want 3", got)
	}
	if d, dup := r.Devices(); d != 60 || dup != 0 {
		t.Errorf("app2: delivered %d, %d twice; want 60, 0", d, dup)
	}
	sends := r.Sends()
	if span := sends[len(sends)-1].At.Sub(sends[0].At); span < 1300*time.Millisecond {
		t.Errorf("app2 (40/s): 60 sends within %v, want at least 1.4 s", span)
	}
}

// A device's lateness is its own send's start: with one slot and 20 ms a
// send, the tenth device of a chunk starts some 180 ms after the first,
// and its result says so. The batch's lateness metric is its first send.
func TestDispatchLatenessIsEachSendsStart(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 1, 1, nil)
	apps, _ := h.slowApp("app1", 20*time.Millisecond, 1)
	r := h.start(dispatchtest.UniqueName("disp"), apps, nil)
	h.write(batch("l1", "c1", "app1", 10, time.Now()))
	rs := h.readResults(10, 30*time.Second)
	if len(rs) != 10 {
		t.Fatalf("%d results, want 10", len(rs))
	}
	sort.Slice(rs, func(a, b int) bool { return rs[a].LatenessMs < rs[b].LatenessMs })
	if spread := rs[9].LatenessMs - rs[0].LatenessMs; spread < 150 {
		t.Errorf("lateness of the chunk's first and last send: %.1f and %.1f ms; want them at least 150 ms apart (9 sends of 20 ms between them)", rs[0].LatenessMs, rs[9].LatenessMs)
	}
	if n := dispatchtest.MetricValue(t, r.reg, "pushlane_dispatcher_lateness_seconds"); n != 1 {
		t.Errorf("lateness observed %v times, want once for the batch", n)
	}
}
