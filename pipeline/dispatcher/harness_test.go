package dispatcher_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/pipeline/control"
	"github.com/pushlane/pushlane/pipeline/delay"
	"github.com/pushlane/pushlane/pipeline/dispatcher"
	"github.com/pushlane/pushlane/pipeline/dispatcher/dispatchtest"
	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/schemas"
)

// harness is one test's topics, control view, store and producer.
type harness struct {
	t                     *testing.T
	k                     dispatchtest.Kafka
	l                     delay.Ladder
	dlq, results, control string
	view                  *control.View
	store                 dispatcher.Store
	cl                    *kgo.Client
	halt                  *providers.Halt
}

func newHarness(t *testing.T, tiers int, partitions int32, store dispatcher.Store) *harness {
	t.Helper()
	k := dispatchtest.StartKafka(t)
	l, dlq := k.Ladder(t, tiers, partitions)
	h := &harness{t: t, k: k, l: l, dlq: dlq, store: store,
		results: k.Topic(t, "results", 3, false),
		control: k.Topic(t, "control", 1, true),
		cl:      k.Client(t),
	}
	if h.store == nil {
		h.store = dispatcher.NewMemStore()
	}
	halt, err := providers.NewHalt(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.halt = halt
	v, err := control.New(control.Config{Kafka: config.Kafka{Brokers: k.Brokers, ClientID: "dispatcher-test-view"}, Topic: h.control,
		RefreshInterval: 100 * time.Millisecond, FetchMaxWait: 200 * time.Millisecond}, control.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = v.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	h.view = v
	return h
}

type runningDispatcher struct {
	d      *dispatcher.Dispatcher
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func (r *runningDispatcher) stop(t *testing.T) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("dispatcher.Run: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("dispatcher did not stop within 60 s")
		}
	})
}

// start runs a dispatcher with apps and a config adjusted by mod.
func (h *harness) start(group string, apps map[string]dispatcher.App, mod func(*dispatcher.Config)) *runningDispatcher {
	h.t.Helper()
	cfg := dispatcher.Config{
		Kafka:             config.Kafka{Brokers: h.k.Brokers, ClientID: "dispatcher-test"},
		Group:             group,
		Ladder:            h.l,
		ResultsTopic:      h.results,
		DeadLetterTopic:   h.dlq,
		ChunkSize:         10,
		ParkInterval:      200 * time.Millisecond,
		HaltProbeInterval: time.Second,
		FetchMaxWait:      100 * time.Millisecond,
		Backoff:           providers.BackoffPolicy{Base: 200 * time.Millisecond, Cap: time.Second},
	}
	if mod != nil {
		mod(&cfg)
	}
	reg := prometheus.NewRegistry()
	d, err := dispatcher.New(cfg, dispatcher.Deps{Apps: apps, Control: h.view, Store: h.store, Halt: h.halt, Metrics: reg})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningDispatcher{d: d, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- d.Run(ctx) }()
	h.t.Cleanup(func() { r.stop(h.t) })
	return r
}

// startForwarder runs the delay forwarder on the harness's ladder.
func (h *harness) startForwarder() {
	h.t.Helper()
	f, err := delay.New(delay.Config{Kafka: config.Kafka{Brokers: h.k.Brokers, ClientID: "dispatcher-test-delay"},
		Group: dispatchtest.UniqueName("delay"), Ladder: h.l, DeadLetterTopic: h.dlq, FetchMaxWait: 100 * time.Millisecond},
		delay.Deps{Control: h.view})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("forwarder: %v", err)
		}
	})
}

// fakeApp is an app whose iOS and Android devices go to one fake sender.
func (h *harness) fakeApp(name string) (map[string]dispatcher.App, *dispatchtest.Sender) {
	s := dispatchtest.NewSender(name)
	s.Halt = h.halt
	return map[string]dispatcher.App{name: {APNS: s, FCM: s, Concurrency: 50}}, s
}

// slowApp is fakeApp with a latency per send and a concurrency.
func (h *harness) slowApp(name string, latency time.Duration, concurrency int) (map[string]dispatcher.App, *dispatchtest.Sender) {
	apps, s := h.fakeApp(name)
	s.Latency = latency
	app := apps[name]
	app.Concurrency = concurrency
	apps[name] = app
	return apps, s
}

// refuseCredentials makes s refuse every send's credentials (as APNs
// refuses a provider token) until the returned switch is turned off; then
// it delivers.
func refuseCredentials(s *dispatchtest.Sender) *atomic.Bool {
	var broken atomic.Bool
	broken.Store(true)
	s.SetRule(func(string, int) providers.Result {
		if broken.Load() {
			return providers.Result{Outcome: providers.CredentialFailure, Status: 403, Reason: "InvalidProviderToken"}
		}
		return providers.Result{Outcome: providers.Delivered, Status: 200}
	})
	return &broken
}

// batch builds a batch of n devices with tokens <id>-tNNNN.
func batch(id, campaign, app string, n int, sendAt time.Time) schemas.Batch {
	b := schemas.Batch{
		SchemaVersion: schemas.SchemaVersion, ID: id, CampaignID: campaign, CampaignVersion: 1, App: app,
		Seq: 0, Attempt: 1, SendAt: sendAt.UTC(),
		Content: schemas.Content{Title: "Hello", Body: "World", Localized: map[string]schemas.LocalizedText{"de": {Title: "Hallo", Body: "Welt"}}},
	}
	for i := range n {
		p := schemas.PlatformIOS
		if i%2 == 1 {
			p = schemas.PlatformAndroid
		}
		loc := "en-US"
		if i%3 == 0 {
			loc = "de-AT"
		}
		b.Devices = append(b.Devices, schemas.BatchDevice{DeviceID: int64(i + 1), Token: fmt.Sprintf("%s-t%04d", id, i), Platform: p, Locale: loc})
	}
	return b
}

// write produces b as the planner does: to the topic the ladder picks now.
func (h *harness) write(b schemas.Batch) {
	h.t.Helper()
	v, err := json.Marshal(b)
	if err != nil {
		h.t.Fatal(err)
	}
	r := delay.BatchRecord(h.l.Route(b.SendAt, time.Now()), b.ID, b.CampaignID, b.SendAt, b.ExpiresAt, v)
	if err := h.cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
		h.t.Fatal(err)
	}
}

// readResults reads the results topic until n results arrived (or timeout)
// and decodes each with the schema.
func (h *harness) readResults(n int, timeout time.Duration) []schemas.Result {
	h.t.Helper()
	rs, _ := h.readResultsLast(n, timeout)
	return rs
}

// readResultsLast is readResults that also returns when the last of the
// results was produced (the latest record timestamp, stamped by the
// dispatcher's client), so bounds on when results came do not count the
// time this harness takes to read them back.
func (h *harness) readResultsLast(n int, timeout time.Duration) ([]schemas.Result, time.Time) {
	h.t.Helper()
	var out []schemas.Result
	var last time.Time
	for _, r := range h.k.ReadAll(h.t, h.results, n, timeout) {
		res, err := schemas.DecodeResult(r.Value)
		if err != nil {
			h.t.Fatalf("result does not match its schema: %v", err)
		}
		if want := res.App + "/" + res.Token; string(r.Key) != want {
			h.t.Errorf("result key %q, want %q", r.Key, want)
		}
		if r.Timestamp.After(last) {
			last = r.Timestamp
		}
		out = append(out, *res)
	}
	return out, last
}

// cancelAfterSends waits until s has made n sends, cancels campaign, and
// reads the want results every device must end with; it returns when the
// cancel was acknowledged, the results, and when the last of them was
// produced.
func (h *harness) cancelAfterSends(s *dispatchtest.Sender, n int, campaign string, want int) (acked time.Time, rs []schemas.Result, last time.Time) {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for len(s.Sends()) < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	// A cancel published before the sends began would test a cancel
	// before the start, and pass as "mid-batch".
	if got := len(s.Sends()); got < n {
		h.t.Fatalf("%d sends in 20 s, want %d before the cancel", got, n)
	}
	acked = h.publish(campaign, schemas.ControlCancel)
	rs, last = h.readResultsLast(want, 30*time.Second)
	if len(rs) != want {
		h.t.Fatalf("%d results, want %d", len(rs), want)
	}
	return acked, rs, last
}

func (h *harness) publish(campaign, action string) time.Time {
	h.t.Helper()
	if err := control.Publish(context.Background(), h.cl, h.control, schemas.CampaignControl{CampaignID: campaign, Action: action}); err != nil {
		h.t.Fatal(err)
	}
	return time.Now()
}
