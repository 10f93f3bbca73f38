package control_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/internal/testenv"
	"github.com/pushlane/pushlane/pipeline/control"
	"github.com/pushlane/pushlane/pipeline/dispatcher/dispatchtest"
	"github.com/pushlane/pushlane/schemas"
)

func startView(t *testing.T, k dispatchtest.Kafka, topic string, reg prometheus.Registerer) *control.View {
	t.Helper()
	v, err := control.New(control.Config{Kafka: config.Kafka{Brokers: k.Brokers, ClientID: "view-test"}, Topic: topic, RefreshInterval: 50 * time.Millisecond, FetchMaxWait: 100 * time.Millisecond},
		control.Deps{Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("view.Run: %v", err)
		}
	})
	return v
}

func publish(t *testing.T, cl *kgo.Client, topic, id, action string) {
	t.Helper()
	if err := control.Publish(context.Background(), cl, topic, schemas.CampaignControl{CampaignID: id, Action: action, Reason: "test"}); err != nil {
		t.Fatal(err)
	}
}

func TestViewAppliesActionsAndCancelIsFinal(t *testing.T) {
	k := dispatchtest.StartKafka(t)
	topic := k.Topic(t, "control", 1, true)
	cl := k.Client(t)
	reg := prometheus.NewRegistry()
	v := startView(t, k, topic, reg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	publish(t, cl, topic, "c-paused", schemas.ControlPause)
	publish(t, cl, topic, "c-resumed", schemas.ControlPause)
	publish(t, cl, topic, "c-resumed", schemas.ControlResume)
	publish(t, cl, topic, "c-cancelled", schemas.ControlPause)
	publish(t, cl, topic, "c-cancelled", schemas.ControlCancel)
	publish(t, cl, topic, "c-cancelled", schemas.ControlResume) // ignored: cancel is final
	// An invalid record is skipped, not fatal.
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("c-bad"), Value: []byte(`{"campaign_id":"c-bad","action":"explode"}`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := v.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		id                string
		cancelled, paused bool
	}{
		{"c-paused", false, true},
		{"c-resumed", false, false},
		{"c-cancelled", true, false},
		{"c-bad", false, false},
		{"c-unknown", false, false},
	}
	for _, c := range cases {
		if got := v.Cancelled(c.id); got != c.cancelled {
			t.Errorf("Cancelled(%s) = %v, want %v", c.id, got, c.cancelled)
		}
		if got := v.Paused(c.id); got != c.paused {
			t.Errorf("Paused(%s) = %v, want %v", c.id, got, c.paused)
		}
	}
	if got := dispatchtest.MetricValue(t, reg, "pushlane_control_records_total", "action", "invalid"); got != 1 {
		t.Errorf("invalid records counted %v, want 1", got)
	}
	if got := dispatchtest.MetricValue(t, reg, "pushlane_control_records_total", "action", "ignored_after_cancel"); got != 1 {
		t.Errorf("ignored_after_cancel counted %v, want 1", got)
	}

	// A tombstone forgets what its key held: on the campaign key, the
	// pause or resume, not the cancel, which compaction keeps under its
	// own key for any view started later.
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("c-cancelled")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := v.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	if !v.Cancelled("c-cancelled") {
		t.Error("a tombstone on c-cancelled forgot the cancel kept under c-cancelled/cancel")
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("c-cancelled/cancel")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := v.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := v.State("c-cancelled"); ok {
		t.Error("tombstones on both keys did not forget c-cancelled")
	}
}

// A new view (a restarted process) rebuilds the same state from the start of
// the topic.
func TestViewRebuildsFromStart(t *testing.T) {
	k := dispatchtest.StartKafka(t)
	topic := k.Topic(t, "control", 3, true)
	cl := k.Client(t)
	for i := range 30 {
		id := "c" + string(rune('a'+i%10))
		action := schemas.ControlPause
		if i%3 == 0 {
			action = schemas.ControlCancel
		}
		publish(t, cl, topic, id, action)
	}
	v := startView(t, k, topic, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := v.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	// i%3==0 for i in 0..29 hits every residue mod 10: all ten are cancelled.
	for i := range 10 {
		id := "c" + string(rune('a'+i))
		if !v.Cancelled(id) {
			t.Errorf("%s not cancelled after rebuild", id)
		}
	}
}

// FreshAsOf follows the clock while the view keeps up, and a cancel
// published after t is visible once WaitFresh(t') with t' after the publish
// returns.
func TestViewFreshness(t *testing.T) {
	k := dispatchtest.StartKafka(t)
	topic := k.Topic(t, "control", 1, true)
	cl := k.Client(t)
	v := startView(t, k, topic, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := v.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		publish(t, cl, topic, "c1", schemas.ControlPause)
		acked := time.Now()
		if err := v.WaitFresh(ctx, acked); err != nil {
			t.Fatal(err)
		}
		if !v.Paused("c1") {
			t.Fatal("pause acknowledged before WaitFresh's time is not applied")
		}
		publish(t, cl, topic, "c1", schemas.ControlResume)
		if err := v.WaitFresh(ctx, time.Now()); err != nil {
			t.Fatal(err)
		}
		if v.Paused("c1") {
			t.Fatal("resume acknowledged before WaitFresh's time is not applied")
		}
	}
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	err := v.WaitFresh(short, time.Now().Add(time.Hour))
	if err == nil || !strings.Contains(err.Error(), "catch up") {
		t.Fatalf("WaitFresh for the future: err = %v, want a catch-up timeout", err)
	}
}

// A control topic deleted under a running view makes every poll fail at
// once; the view backs off (100 ms doubling) instead of spinning on it.
func TestViewBacksOffOnPersistentFetchErrors(t *testing.T) {
	t.Parallel()
	k := dispatchtest.StartKafka(t)
	topic := k.Topic(t, "control-deleted", 1, true)
	log, warnings := testenv.CountingLogger("control topic fetch error")
	v, err := control.New(control.Config{Kafka: config.Kafka{Brokers: k.Brokers, ClientID: "view-test"}, Topic: topic,
		RefreshInterval: 50 * time.Millisecond, FetchMaxWait: 100 * time.Millisecond}, control.Deps{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	if err := v.WaitCaughtUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	adm := testenv.KafkaAdmin(t)
	if _, err := adm.DeleteTopics(context.Background(), topic); err != nil {
		t.Fatal(err)
	}
	n := testenv.CountAfterFirst(t, warnings, 30*time.Second, 3*time.Second)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("view.Run: %v", err)
	}
	// 100+200+400+800+1600 ms: at most about six failing polls in 3 s
	// (each may log one line per partition); without the backoff, hundreds.
	if n > 8 {
		t.Errorf("%d fetch errors logged in 3 s after the first: the view does not back off", n)
	}
}

// compacted is what log compaction leaves of recs, written in this order:
// the last record of each key, in offset order.
func compacted(recs []*kgo.Record) []*kgo.Record {
	last := map[string]int{}
	for i, r := range recs {
		last[string(r.Key)] = i
	}
	var out []*kgo.Record
	for i, r := range recs {
		if last[string(r.Key)] == i {
			out = append(out, r)
		}
	}
	return out
}

// A pause or resume written after a cancel is ignored by a running view;
// compaction must not let it replace the cancel for a view started later.
func TestCancelSurvivesCompactionOfLaterActions(t *testing.T) {
	k := dispatchtest.StartKafka(t)
	topic := k.Topic(t, "control", 1, true)
	cl := k.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var written []*kgo.Record
	for _, a := range []struct{ id, action string }{
		{"c-resumed-after", schemas.ControlPause},
		{"c-resumed-after", schemas.ControlCancel},
		{"c-resumed-after", schemas.ControlResume},
		{"c-paused-after", schemas.ControlCancel},
		{"c-paused-after", schemas.ControlPause},
		{"c-live", schemas.ControlPause},
		{"c-live", schemas.ControlResume},
	} {
		r, err := control.Record(topic, schemas.CampaignControl{CampaignID: a.id, Action: a.action, Reason: "test"})
		if err != nil {
			t.Fatal(err)
		}
		written = append(written, r)
	}
	kept := compacted(written)
	if len(kept) != 5 {
		t.Fatalf("compaction keeps %d of %d records, want 5 (a cancel keeps a key of its own)", len(kept), len(written))
	}
	if err := cl.ProduceSync(ctx, kept...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	v := startView(t, k, topic, nil)
	if err := v.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string][2]bool{"c-resumed-after": {true, false}, "c-paused-after": {true, false}, "c-live": {false, false}} {
		if got := [2]bool{v.Cancelled(id), v.Paused(id)}; got != want {
			t.Errorf("%s: cancelled, paused = %v, want %v", id, got, want)
		}
	}
	if got := control.Key(schemas.CampaignControl{CampaignID: "c1", Action: schemas.ControlCancel}); got != "c1/cancel" {
		t.Errorf("cancel key %q", got)
	}
	// A tombstone for the cancel's key forgets the cancel; the pause
	// under the campaign key, which compaction keeps, stands, as it does
	// for a view started after compaction.
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("c-paused-after/cancel")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := v.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	if got := [2]bool{v.Cancelled("c-paused-after"), v.Paused("c-paused-after")}; got != [2]bool{false, true} {
		t.Errorf("after a tombstone on c-paused-after/cancel: cancelled, paused = %v, want [false true]", got)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("c-paused-after")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := v.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := v.State("c-paused-after"); ok {
		t.Error("tombstones on both keys did not forget c-paused-after")
	}
}
