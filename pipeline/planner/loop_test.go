package planner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pushlane/pushlane/internal/config"
	pkafka "github.com/pushlane/pushlane/pipeline/kafka"
	"github.com/pushlane/pushlane/schemas"
)

// harness runs planners against a Kafka (kfake here, the real broker in
// the integration tests) and a Store.
type harness struct {
	t        testing.TB
	brokers  []string
	cfg      Config
	store    Store
	controls Controls
	producer *kgo.Client
	adm      *kadm.Client
	reg      *prometheus.Registry
	sleep    func(context.Context, time.Duration) bool // the planner's pauses, when set
	now      func() time.Time                          // the planner's clock, when set
}

func testConfig(brokers []string, prefix string) Config {
	tiers := make([]string, 8)
	for i := range tiers {
		tiers[i] = fmt.Sprintf("%s.delay.t%02d", prefix, i)
	}
	return Config{
		Kafka: config.Kafka{Brokers: brokers, ClientID: "planner-test", GroupPrefix: prefix, Topics: config.Topics{
			Campaigns:  config.Topic{Name: prefix + ".campaigns", Partitions: 2},
			Ready:      config.Topic{Name: prefix + ".ready", Partitions: 3},
			Results:    config.Topic{Name: prefix + ".results", Partitions: 3},
			DeadLetter: config.Topic{Name: prefix + ".dead-letter", Partitions: 1},
			Delay:      config.Topic{Name: prefix + ".delay", Partitions: 2},
			Control:    config.Topic{Name: prefix + ".control", Partitions: 1},
		}},
		DelayTiers: tiers,
		Apps: map[string]config.App{
			"app":    {APNS: &config.APNS{Environment: "development", Topic: "com.example"}},
			"fcmapp": {FCM: &config.FCM{ProjectID: "p"}},
		},
		Instance:              "i1",
		PageSize:              50,
		BatchesPerTransaction: 3,
		RetryMin:              10 * time.Millisecond,
		RetryMax:              100 * time.Millisecond,
	}
}

func (h *harness) allTopics() []string {
	t := h.cfg.Kafka.Topics
	return append([]string{t.Ready.Name, t.Results.Name, t.DeadLetter.Name}, h.cfg.DelayTiers...)
}

func newKfakeHarness(t *testing.T) *harness {
	t.Helper()
	cfg, _ := kfakeCluster(t)
	return newHarness(t, cfg, newMemStore())
}

// kfakeCluster is an in-process broker with the planner's topics, and the
// test configuration pointing at it.
func kfakeCluster(t *testing.T) (Config, *kfake.Cluster) {
	t.Helper()
	cfg := testConfig(nil, "t")
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, cfg.Kafka.Topics.Campaigns.Name),
		kfake.SeedTopics(3, append([]string{cfg.Kafka.Topics.Ready.Name, cfg.Kafka.Topics.Results.Name, cfg.Kafka.Topics.DeadLetter.Name}, cfg.DelayTiers...)...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cfg.Kafka.Brokers = c.ListenAddrs()
	return cfg, c
}

func newHarness(t testing.TB, cfg Config, store Store) *harness {
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Kafka.Brokers...), kgo.DefaultProduceTopic(cfg.Kafka.Topics.Campaigns.Name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &harness{t: t, brokers: cfg.Kafka.Brokers, cfg: cfg, store: store, producer: cl, adm: kadm.NewClient(cl), reg: prometheus.NewRegistry()}
}

func (h *harness) publish(key string, value []byte) {
	h.t.Helper()
	if err := h.producer.ProduceSync(context.Background(), &kgo.Record{Key: []byte(key), Value: value}).FirstErr(); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) publishCampaign(c *schemas.Campaign) { h.publish(c.ID, campaignJSON(h.t, c)) }

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("PLANNER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

type running struct {
	p      *Planner
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// start runs a planner; hook, if set, is its test hook.
func (h *harness) start(hook func(hookEvent) error) *running {
	h.t.Helper()
	h.reg = prometheus.NewRegistry()
	p, err := New(h.cfg, Deps{Store: h.store, Controls: h.controls, Logger: testLogger(h.t), Metrics: h.reg, Now: h.now})
	if err != nil {
		h.t.Fatal(err)
	}
	p.testHook = hook
	if h.sleep != nil {
		p.sleep = h.sleep
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{p: p, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = p.Run(ctx)
	}()
	h.t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			h.t.Error("planner did not stop")
		}
		if p.crashed != nil {
			p.crashed.Client().Close()
		}
	})
	return r
}

func (r *running) stop(t testing.TB) error {
	r.cancel()
	select {
	case <-r.done:
		return r.err
	case <-time.After(60 * time.Second):
		t.Fatal("planner did not stop")
		return nil
	}
}

// waitCrash waits for a planner whose hook crashes it.
func (r *running) waitCrash(t testing.TB) {
	t.Helper()
	select {
	case <-r.done:
		if !errors.Is(r.err, errCrash) {
			t.Fatalf("planner ended with %v, want the simulated crash", r.err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("planner did not crash")
	}
}

// waitDone waits until the group has committed past n campaign records,
// with no checkpoint pending.
func (h *harness) waitDone(n int64) {
	h.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	group := h.cfg.Kafka.GroupPrefix + "-planner"
	for {
		ctx, cancel := context.WithTimeout(kadm.RequireStable(context.Background()), 5*time.Second)
		offs, err := h.adm.FetchOffsetsForTopics(ctx, group, h.cfg.Kafka.Topics.Campaigns.Name)
		cancel()
		sum, pending := int64(0), false
		if err == nil {
			offs.Each(func(o kadm.OffsetResponse) {
				if o.At > 0 {
					sum += o.At
				}
				if strings.HasPrefix(o.Metadata, checkpointPrefix) {
					pending = true
				}
			})
		}
		if sum >= n && !pending {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("group committed %d of %d campaign records (checkpoint pending: %v, err %v)", sum, n, pending, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// committed is what the planner group has committed on the campaigns
// topic: the offsets summed, and the checkpoint of a campaign in progress
// (found is false when none is pending).
func (h *harness) committed(t *testing.T) (offsets int64, ck checkpoint, found bool) {
	t.Helper()
	offs, err := h.adm.FetchOffsetsForTopics(kadm.RequireStable(context.Background()), h.cfg.Kafka.GroupPrefix+"-planner",
		h.cfg.Kafka.Topics.Campaigns.Name)
	if err != nil {
		t.Fatal(err)
	}
	offs.Each(func(o kadm.OffsetResponse) {
		if o.At > 0 {
			offsets += o.At
		}
		if c, ok := decodeCheckpoint(o.Metadata); ok {
			ck, found = c, true
		}
	})
	return offsets, ck, found
}

func (h *harness) output() *output {
	h.t.Helper()
	return decodeOutput(h.t, readCommitted(h.t, h.brokers, h.allTopics()...), h.cfg.Kafka.Topics.Results.Name, h.cfg.Kafka.Topics.DeadLetter.Name)
}

func segmentCampaign(id string, batch int) *schemas.Campaign {
	return &schemas.Campaign{SchemaVersion: 1, ID: id, App: "app",
		Audience: schemas.Audience{Type: schemas.AudienceSegment},
		Content:  schemas.Content{Title: "t", Body: "b"},
		Schedule: schemas.Schedule{Mode: schemas.DeliverAt},
		Options:  schemas.Options{BatchSize: batch}}
}

func seed(s *memStore, app string, from, to int64) {
	for i := from; i <= to; i++ {
		s.add(app, row{id: i, token: iosToken(i), platform: "ios", locale: "en-US", zone: "Europe/Berlin"})
	}
}

func wantIDs(from, to int64, skip ...int64) []int64 {
	var ids []int64
	for i := from; i <= to; i++ {
		skipped := false
		for _, s := range skip {
			skipped = skipped || s == i
		}
		if !skipped {
			ids = append(ids, i)
		}
	}
	return ids
}

func equalIDs(t testing.TB, what string, got, want []int64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d devices, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: device #%d is %d, want %d (duplicates or gaps)", what, i, got[i], want[i])
		}
	}
}

func TestLoopPlansRecordsAndDeadLetters(t *testing.T) {
	h := newKfakeHarness(t)
	store := h.store.(*memStore)
	seed(store, "app", 1, 245)
	store.devices[9].token = "not-hex"     // id 10
	store.devices[99].platform = "android" // id 100
	store.devices[99].token = "fcm token with spaces"
	store.add("fcmapp", row{id: 1001, token: "fcm-a", platform: "android"})
	store.add("fcmapp", row{id: 1002, token: "fcm-b", platform: "ios"})
	store.add("fcmapp", row{id: 1003, token: "fcm-c", platform: "android"})
	store.devices[len(store.devices)-1].active = false

	c1 := segmentCampaign("c1", 20)
	c1.Options.TTLSeconds = 600
	expired := segmentCampaign("c-expired", 20)
	expired.Schedule.SendAt = time.Now().Add(-2 * time.Hour)
	expired.Schedule.ExpiresAt = time.Now().Add(-time.Hour)
	future := segmentCampaign("c-future", 100)
	future.Schedule.SendAt = time.Now().Add(90 * time.Minute)
	tokens := segmentCampaign("c-tokens", 100)
	tokens.App = "fcmapp"
	tokens.Audience = schemas.Audience{Type: schemas.AudienceTokens, Tokens: []string{"fcm-a", "fcm-b", "fcm-a", "fcm-c", "unknown",
		"fcm-tökén", strings.Repeat("x", 513)}} // no device can have these two
	unknown := segmentCampaign("c-unknown-app", 20)
	unknown.App = "nope"

	h.publishCampaign(c1)
	h.publish("garbage", []byte("{not json"))
	h.publish("c-invalid", []byte(`{"schema_version":1,"id":"c-invalid","app":"app","audience":{"type":"everyone"},"content":{"title":"t"},"schedule":{"mode":"at"}}`))
	h.publishCampaign(unknown)
	h.publishCampaign(expired)
	h.publishCampaign(future)
	h.publishCampaign(tokens)
	r := h.start(nil)
	h.waitDone(7)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	o := h.output()
	if len(o.dupBatches) > 0 {
		t.Fatalf("duplicate batches %v", o.dupBatches)
	}

	// c1: 245 devices, one invalid (id 10), one invalid FCM token (id 100).
	got := o.batchesOf("c1")
	if len(got) != 13 { // 243 devices in batches of 20
		t.Fatalf("c1: %d batches, want 13", len(got))
	}
	for i, b := range got {
		if b.ID != fmt.Sprintf("c1:v1:all:%d", i) || (i < 12 && len(b.Devices) != 20) || (i == 12 && len(b.Devices) != 3) {
			t.Errorf("c1 batch %d: %s with %d devices", i, b.ID, len(b.Devices))
		}
		if o.batchTopics[b.ID] != h.cfg.Kafka.Topics.Ready.Name {
			t.Errorf("due-now batch %s on %s", b.ID, o.batchTopics[b.ID])
		}
		if !b.ExpiresAt.Equal(b.SendAt.Add(10 * time.Minute)) {
			t.Errorf("batch %s: send %s expires %s", b.ID, b.SendAt, b.ExpiresAt)
		}
	}
	equalIDs(t, "c1", o.devicesOf("c1"), wantIDs(1, 245, 10, 100))

	// c-future: 90 minutes ahead goes to the top tier below that (2^7 s).
	for _, b := range o.batchesOf("c-future") {
		if want := h.cfg.DelayTiers[7]; o.batchTopics[b.ID] != want {
			t.Errorf("future batch %s on %s, want %s", b.ID, o.batchTopics[b.ID], want)
		}
		if !b.SendAt.Equal(future.Schedule.SendAt.UTC().Truncate(0)) && b.SendAt.Sub(future.Schedule.SendAt).Abs() > time.Millisecond {
			t.Errorf("future batch due %s, want %s", b.SendAt, future.Schedule.SendAt)
		}
	}
	equalIDs(t, "c-future", o.devicesOf("c-future"), wantIDs(1, 245, 10, 100))

	// c-tokens: active devices of the list only; the iOS device of an
	// FCM-only app passes FCM rules.
	equalIDs(t, "c-tokens", o.devicesOf("c-tokens"), []int64{1001, 1002})

	// Invalid tokens: one result each, per campaign that met them.
	var inv []string
	for _, res := range o.results {
		if res.Outcome != schemas.OutcomeInvalidToken || res.Attempt != 0 || res.App != "app" {
			t.Errorf("result %+v", res)
		}
		inv = append(inv, fmt.Sprintf("%s/%d/%s", res.CampaignID, res.DeviceID, res.Reason))
	}
	wantInv := map[string]bool{
		"c1/10/apns token must be 64 to 200 hex digits, even length":       true,
		"c1/100/fcm token has whitespace or a non-printable byte":          true,
		"c-future/10/apns token must be 64 to 200 hex digits, even length": true,
		"c-future/100/fcm token has whitespace or a non-printable byte":    true,
	}
	if len(inv) != len(wantInv) {
		t.Errorf("invalid-token results %v", inv)
	}
	for _, s := range inv {
		if !wantInv[s] {
			t.Errorf("unexpected invalid-token result %s", s)
		}
	}

	// Dead letters: the reason, and the original bytes.
	wantDL := map[string]string{
		"garbage":       "invalid campaign: not JSON",
		"c-invalid":     `invalid campaign: /audience/type: must be one of 'segment', 'tokens', got 'everyone'`,
		"c-unknown-app": `unknown app "nope": not in the planner's apps`,
	}
	if len(o.deadLetters) != len(wantDL) {
		t.Fatalf("%d dead letters", len(o.deadLetters))
	}
	for _, dl := range o.deadLetters {
		want, ok := wantDL[string(dl.Key)]
		if !ok || !strings.HasPrefix(dl.Reason, want) || dl.Stage != "planner" || dl.Topic != h.cfg.Kafka.Topics.Campaigns.Name {
			t.Errorf("dead letter %s: %q (stage %s, topic %s), want prefix %q", dl.Key, dl.Reason, dl.Stage, dl.Topic, want)
		}
		if string(dl.Key) == "garbage" && string(dl.Value) != "{not json" {
			t.Errorf("dead letter lost the original bytes: %q", dl.Value)
		}
	}

	// Bookkeeping.
	for _, w := range []struct {
		id, status   string
		devices      int64
		batches      int64
		invalid      int64
		reasonPrefix string
	}{
		{"c1", StatusPlanned, 243, 13, 2, ""},
		{"c-future", StatusPlanned, 243, 3, 2, ""},
		{"c-tokens", StatusPlanned, 2, 1, 0, ""},
		{"c-expired", StatusExpired, 0, 0, 0, "expired before planning: expires_at"},
		{"c-unknown-app", StatusFailed, 0, 0, 0, `unknown app "nope"`},
	} {
		rec, ok := store.campaign(w.id, 1)
		if !ok {
			t.Errorf("%s not recorded", w.id)
			continue
		}
		if rec.Status != w.status || rec.Devices != w.devices || rec.Batches != w.batches || rec.InvalidTokens != w.invalid || !strings.HasPrefix(rec.Reason, w.reasonPrefix) {
			t.Errorf("%s recorded %+v", w.id, rec)
		}
	}
	if n := counterValue(t, r.p.m.campaigns.WithLabelValues(outcomeDeadLettered)); n != 3 {
		t.Errorf("dead-lettered metric %v", n)
	}
	if n := counterValue(t, r.p.m.batches); n != 17 {
		t.Errorf("batches metric %v", n)
	}
	if n := counterValue(t, r.p.m.unstored); n != 2 {
		t.Errorf("unstored tokens metric %v, want 2 (c-tokens)", n)
	}
}

func TestLoopCrashAndResume(t *testing.T) {
	for _, crash := range []hookEvent{{chunks: 3, batches: 2}, {chunks: 3, batches: 0}, {chunks: 0, batches: 2}} {
		t.Run(fmt.Sprintf("after %d chunks and %d batches", crash.chunks, crash.batches), func(t *testing.T) {
			h := newKfakeHarness(t)
			store := h.store.(*memStore)
			seed(store, "app", 1, 1000)
			h.cfg.BatchesPerTransaction = 5
			c := segmentCampaign("big", 10)
			c.Options.ThrottlePerSecond = 100 // a batch every 100 ms
			h.publishCampaign(c)

			first := h.start(func(ev hookEvent) error {
				if ev.chunks == crash.chunks && ev.batches == crash.batches {
					if ev.flush != nil {
						ev.flush() // the aborted batches reach the log
					}
					return errCrash
				}
				return nil
			})
			first.waitCrash(t)
			second := h.start(nil)
			h.waitDone(1)
			if err := second.stop(t); err != nil {
				t.Fatal(err)
			}
			o := h.output()
			if len(o.dupBatches) > 0 {
				t.Fatalf("committed duplicates: %v", o.dupBatches)
			}
			got := o.batchesOf("big")
			if len(got) != 100 {
				t.Fatalf("%d batches, want 100", len(got))
			}
			start := got[0].SendAt
			for i, b := range got {
				if b.ID != fmt.Sprintf("big:v1:all:%d", i) || len(b.Devices) != 10 {
					t.Fatalf("batch %d: %s, %d devices", i, b.ID, len(b.Devices))
				}
				// The resumed plan keeps the first attempt's start: the
				// throttle spacing runs on unbroken.
				if want := start.Add(time.Duration(i) * 100 * time.Millisecond); !b.SendAt.Equal(want) {
					t.Fatalf("batch %d due %s, want %s", i, b.SendAt, want)
				}
			}
			equalIDs(t, "big", o.devicesOf("big"), wantIDs(1, 1000))
			if rec, _ := store.campaign("big", 1); rec.Status != StatusPlanned || rec.Devices != 1000 || rec.Batches != 100 {
				t.Errorf("recorded %+v", rec)
			}
			// The crash really left uncommitted batches in the log, which
			// read_committed hid.
			if crash.batches > 0 {
				all := countAll(t, h.brokers, append([]string{h.cfg.Kafka.Topics.Ready.Name}, h.cfg.DelayTiers...)...)
				if all < 100+crash.batches {
					t.Errorf("log holds %d records; the crash left no aborted batches", all)
				}
			}
		})
	}
}

func TestLoopMySQLOutage(t *testing.T) {
	h := newKfakeHarness(t)
	store := h.store.(*memStore)
	seed(store, "app", 1, 600)
	// Reads 4 to 9 fail: mid-campaign, after chunks were committed, and
	// again on the first retries.
	store.failFrom, store.failCount = 4, 6
	h.publishCampaign(segmentCampaign("c", 10))
	r := h.start(nil)
	h.waitDone(1)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	o := h.output()
	if len(o.dupBatches) > 0 || len(o.batchesOf("c")) != 60 {
		t.Fatalf("%d batches, duplicates %v", len(o.batchesOf("c")), o.dupBatches)
	}
	equalIDs(t, "c", o.devicesOf("c"), wantIDs(1, 600))
	if n := counterValue(t, r.p.m.retries.WithLabelValues("mysql")); n < 6 {
		t.Errorf("mysql retries %v, want at least 6", n)
	}
}

func TestLoopCancel(t *testing.T) {
	h := newKfakeHarness(t)
	store := h.store.(*memStore)
	seed(store, "app", 1, 500)
	ctl := &flagControls{}
	h.controls = ctl
	ctl.cancel("before")
	h.publishCampaign(segmentCampaign("before", 10))
	h.publishCampaign(segmentCampaign("during", 10))
	r := h.start(func(ev hookEvent) error {
		if ev.campaign == "during" && ev.chunks == 2 && ev.batches == 0 {
			ctl.cancel("during")
		}
		return nil
	})
	h.waitDone(2)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	o := h.output()
	if n := len(o.batchesOf("before")); n != 0 {
		t.Errorf("campaign cancelled before planning has %d batches", n)
	}
	// Two chunks of 3 batches were committed before the cancel was seen.
	if n := len(o.batchesOf("during")); n != 6 {
		t.Errorf("campaign cancelled during planning has %d batches, want 6", n)
	}
	for _, w := range []struct {
		id      string
		batches int64
	}{{"before", 0}, {"during", 6}} {
		rec, ok := store.campaign(w.id, 1)
		if !ok || rec.Status != StatusCancelled || rec.Batches != w.batches || rec.Reason != "cancelled by a control event" {
			t.Errorf("%s recorded %+v", w.id, rec)
		}
	}
}

func TestLoopStopAndRestart(t *testing.T) {
	h := newKfakeHarness(t)
	store := h.store.(*memStore)
	seed(store, "app", 1, 800)
	h.cfg.PageSize = 37 // pages and batches do not line up
	h.publishCampaign(segmentCampaign("c", 10))
	midChunk := make(chan struct{})
	signalled := make(chan struct{})
	first := h.start(func(ev hookEvent) error {
		if ev.chunks == 4 && ev.batches == 1 {
			// SIGTERM mid-chunk: the planner goes on once it is sent.
			close(midChunk)
			<-signalled
		}
		return nil
	})
	<-midChunk
	first.cancel()
	close(signalled)
	if err := first.stop(t); err != nil {
		t.Fatal(err)
	}
	// The stop committed the open chunk with a checkpoint: not finished.
	_, ck, _ := h.committed(t)
	if ck.Campaign != "c" || ck.Chunks < 5 {
		t.Fatalf("no checkpoint after a stop mid-campaign: %+v", ck)
	}
	// The new session's client joins the group at once: let its offset
	// fetch (and the checkpoint in it) land before the planner goes on, the
	// order a fast join produces. The planner must not lose it.
	second := h.start(func(ev hookEvent) error {
		if !ev.sessionStarted {
			return nil
		}
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			ev.planner.mu.Lock()
			got := strings.HasPrefix(ev.planner.committed[0].meta, checkpointPrefix) || strings.HasPrefix(ev.planner.committed[1].meta, checkpointPrefix)
			ev.planner.mu.Unlock()
			if got {
				return nil
			}
		}
		return errors.New("the offset fetch never delivered the checkpoint")
	})
	h.waitDone(1)
	if err := second.stop(t); err != nil {
		t.Fatal(err)
	}
	o := h.output()
	if len(o.dupBatches) > 0 || len(o.batchesOf("c")) != 80 {
		t.Fatalf("%d batches, duplicates %v", len(o.batchesOf("c")), o.dupBatches)
	}
	equalIDs(t, "c", o.devicesOf("c"), wantIDs(1, 800))
}

func counterValue(t testing.TB, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestLoopReplayAndEmpty: a campaign published twice (same id and
// version) is planned once: the second record is a replay of a finished
// version and commits nothing; a campaign whose filters match nobody is
// planned with no batch.
func TestLoopReplayAndEmpty(t *testing.T) {
	h := newKfakeHarness(t)
	store := h.store.(*memStore)
	seed(store, "app", 1, 95)
	c := segmentCampaign("again", 10)
	h.publishCampaign(c)
	h.publishCampaign(c)
	none := segmentCampaign("nobody", 10)
	none.Audience.Platforms = []string{"android"}
	h.publishCampaign(none)
	r := h.start(nil)
	h.waitDone(3)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	o := h.output()
	count := map[string]int{}
	for _, rec := range o.raw {
		if rec.Topic == h.cfg.Kafka.Topics.Ready.Name {
			count[string(rec.Key)]++
		}
	}
	if len(count) != 10 {
		t.Fatalf("%d distinct batch ids, want 10", len(count))
	}
	for id, n := range count {
		if n != 1 {
			t.Errorf("batch %s committed %d times", id, n)
		}
	}
	if n := counterValue(t, r.p.m.replays.WithLabelValues(replayFinished)); n != 1 {
		t.Errorf("skipped replays %v, want 1", n)
	}
	if rec, ok := store.campaign("nobody", 1); !ok || rec.Status != StatusPlanned || rec.Devices != 0 || rec.Batches != 0 {
		t.Errorf("empty campaign recorded %+v", rec)
	}
}

// TestLoopHugeRecordsAreDeadLettered: campaign records near the broker's
// 1 MB limit would make dead letters over it (the bytes go base64);
// pipeline/kafka keeps their first 64 KiB and says where the record is.
// The planner dead-letters them and plans the valid campaign behind them.
func TestLoopHugeRecordsAreDeadLettered(t *testing.T) {
	h := newKfakeHarness(t)
	seed(h.store.(*memStore), "app", 1, 30)
	huge := segmentCampaign("huge", 10)
	huge.Content.Data = map[string]string{"blob": strings.Repeat("y", 950_000)}
	hugeRaw, _ := json.Marshal(huge)
	noise := make([]byte, 950_000)
	for i := range noise {
		noise[i] = byte(rand.IntN(256))
	}
	h.publish("huge", hugeRaw)
	h.publish("noise", noise)
	h.publishCampaign(segmentCampaign("after", 10))
	r := h.start(nil)
	h.waitDone(3)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	o := h.output()
	if n := len(o.batchesOf("after")); n != 3 {
		t.Errorf("the campaign behind the huge records has %d batches, want 3", n)
	}
	byKey := map[string]*schemas.DeadLetter{}
	for _, dl := range o.deadLetters {
		byKey[string(dl.Key)] = dl
	}
	for key, c := range map[string]struct {
		raw    []byte
		reason string
	}{
		"huge":  {hugeRaw, "invalid campaign: /content: the notification is"},
		"noise": {noise, "invalid campaign: not JSON"},
	} {
		dl := byKey[key]
		if dl == nil {
			t.Errorf("%s: no dead letter", key)
			continue
		}
		kept := fmt.Sprintf("(the dead letter keeps the first 65536 of %d bytes; the whole record stays at %s/", len(c.raw), h.cfg.Kafka.Topics.Campaigns.Name)
		if !bytes.Equal(dl.Value, c.raw[:64<<10]) || !strings.HasPrefix(dl.Reason, c.reason) || !strings.Contains(dl.Reason, kept) {
			t.Errorf("%s: dead letter of %d bytes, reason %q", key, len(dl.Value), dl.Reason)
		}
	}
}

// A small event whose schema errors are many (30,000 empty user ids in
// 90 KB) made a 1.5 MB reason and a dead letter the broker refused; the
// transaction aborted and the event came back for ever, and the campaign
// behind it was never planned.
func TestLoopEventWithThousandsOfErrorsIsDeadLettered(t *testing.T) {
	h := newKfakeHarness(t)
	seed(h.store.(*memStore), "app", 1, 30)
	bad := segmentCampaign("many-errors", 10)
	bad.Audience.UserIDs = make([]string, 30_000)
	raw, _ := json.Marshal(bad)
	h.publish("many-errors", raw)
	h.publishCampaign(segmentCampaign("after", 10))
	r := h.start(nil)
	h.waitDone(2)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	o := h.output()
	if n := len(o.batchesOf("after")); n != 3 {
		t.Errorf("the campaign behind it has %d batches, want 3", n)
	}
	if len(o.deadLetters) != 1 {
		t.Fatalf("%d dead letters, want 1", len(o.deadLetters))
	}
	dl := o.deadLetters[0]
	if string(dl.Key) != "many-errors" || !bytes.Equal(dl.Value, raw) || !strings.HasPrefix(dl.Reason, "invalid campaign: ") ||
		!strings.Contains(dl.Reason, "more bytes of reason left out)") || len(dl.Reason) > pkafka.MaxDeadLetterReason+100 {
		t.Errorf("dead letter %q of %d bytes, reason of %d bytes: %.200q", dl.Key, len(dl.Value), len(dl.Reason), dl.Reason)
	}
}

// An audience of invalid tokens makes no batch, but still bounds its
// transactions: counted by batches alone it was one transaction of every
// invalid-token result, which the broker aborts past its timeout, after
// which the retry began again from the same place, for ever.
func TestLoopInvalidTokensAreCommittedInChunks(t *testing.T) {
	cfg, c := kfakeCluster(t)
	var commits atomic.Int64
	c.ControlKey(int16(kmsg.EndTxn), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if req.(*kmsg.EndTxnRequest).Commit {
			commits.Add(1)
		}
		return nil, nil, false
	})
	store := newMemStore()
	for i := int64(1); i <= 300; i++ {
		store.add("app", row{id: i, token: "", platform: "ios", locale: "en-US", zone: "Europe/Berlin"})
	}
	h := newHarness(t, cfg, store)
	h.cfg.BatchesPerTransaction = 2
	h.publishCampaign(segmentCampaign("c", 10)) // 20 devices a transaction
	r := h.start(nil)
	h.waitDone(1)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if rec, ok := store.campaign("c", 1); !ok || rec.Status != StatusPlanned || rec.InvalidTokens != 300 || rec.Batches != 0 {
		t.Errorf("campaign recorded %+v", rec)
	}
	if n := commits.Load(); n < 15 {
		t.Errorf("%d transactions committed for 300 invalid tokens at 20 devices a transaction, want at least 15", n)
	}
}

// savePause is memStore whose SaveCampaign of campaign id signals saving
// and waits for proceed.
type savePause struct {
	*memStore
	id              string
	saving, proceed chan struct{}
}

func (s *savePause) SaveCampaign(ctx context.Context, r CampaignRecord) error {
	if r.ID == s.id {
		close(s.saving)
		<-s.proceed
	}
	return s.memStore.SaveCampaign(ctx, r)
}

// A stop while one campaign completes starts no other from the same poll.
// Before, the next record was handled too: a transaction began and an
// empty checkpoint was committed for it.
func TestLoopStopStartsNoNewCampaign(t *testing.T) {
	cfg, _ := kfakeCluster(t)
	store := &savePause{memStore: newMemStore(), id: "first", saving: make(chan struct{}), proceed: make(chan struct{})}
	seed(store.memStore, "app", 1, 30)
	h := newHarness(t, cfg, store)
	expired := segmentCampaign("first", 10)
	expired.Schedule = schemas.Schedule{Mode: schemas.DeliverAt, SendAt: time.Now().Add(-2 * time.Hour), ExpiresAt: time.Now().Add(-time.Hour)}
	// One key: the same partition, one poll.
	h.publish("k", campaignJSON(t, expired))
	h.publish("k", campaignJSON(t, segmentCampaign("second", 10)))
	r := h.start(nil)
	<-store.saving
	r.cancel()
	close(store.proceed)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if rec, ok := store.campaign("first", 1); !ok || rec.Status != StatusExpired {
		t.Errorf("first recorded %+v, want expired", rec)
	}
	offsets, ck, found := h.committed(t)
	if offsets != 1 || found {
		t.Errorf("committed offsets %d with checkpoint %v (%+v); want 1 and none: the second campaign was started after the stop", offsets, found, ck)
	}
}

// A throttled campaign commits only the batches due before its
// expires_at; the devices of the later ones are recorded and counted as
// expired, with no result, as an expired wave's are. Before, all 30
// batches went onto the delay ladder, to be found expired only when due,
// and the row said 300 planned devices and none expired.
func TestLoopThrottlePastExpiry(t *testing.T) {
	h := newKfakeHarness(t)
	store := h.store.(*memStore)
	seed(store, "app", 1, 300)
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	h.now = func() time.Time { return t0 }
	c := segmentCampaign("c", 10)
	c.Options.ThrottlePerSecond = 1 // a batch every 10 s
	c.Schedule.ExpiresAt = t0.Add(time.Minute)
	h.publishCampaign(c)
	r := h.start(nil)
	h.waitDone(1)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	o := h.output()
	got := o.batchesOf("c")
	if len(got) != 6 || len(o.dupBatches) > 0 {
		t.Fatalf("%d batches (duplicates %v), want 6, due from +0 to +50 s", len(got), o.dupBatches)
	}
	for i, b := range got {
		if want := t0.Add(time.Duration(i) * 10 * time.Second); b.ID != fmt.Sprintf("c:v1:all:%d", i) || !b.SendAt.Equal(want) || !b.ExpiresAt.Equal(c.Schedule.ExpiresAt) {
			t.Errorf("batch %d: %s due %s, expiring %s; want due %s", i, b.ID, b.SendAt, b.ExpiresAt, want)
		}
	}
	equalIDs(t, "c", o.devicesOf("c"), wantIDs(1, 60))
	if len(o.results) != 0 {
		t.Errorf("%d results, want none: expired devices are counted, not reported", len(o.results))
	}
	rec, ok := store.campaign("c", 1)
	if !ok || rec.Status != StatusPlanned || rec.Devices != 60 || rec.Batches != 6 || rec.ExpiredDevices != 240 ||
		!rec.LastSendAt.Equal(t0.Add(50*time.Second)) {
		t.Errorf("recorded %+v; want planned, 60 devices in 6 batches, 240 expired, the last due at +50 s", rec)
	}
	for name, m := range map[string]struct {
		c    prometheus.Metric
		want float64
	}{
		"expired devices": {r.p.m.expired, 240},
		"devices":         {r.p.m.devices, 60},
		"batches":         {r.p.m.batches, 6},
	} {
		if got := counterValue(t, m.c); got != m.want {
			t.Errorf("%s counted %v, want %v", name, got, m.want)
		}
	}
}
