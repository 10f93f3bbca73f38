package dispatcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/time/rate"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/internal/kfaketest"
	"github.com/pushlane/pushlane/internal/service"
	"github.com/pushlane/pushlane/pipeline/delay"
	"github.com/pushlane/pushlane/pipeline/dispatcher/dispatchtest"
	"github.com/pushlane/pushlane/pipeline/kafka"
	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/schemas"
)

// These tests drive the dispatcher's parts against an in-process broker
// (kfake) and MemStore, to reach failure paths the integration tests can
// only hit by timing: outages longer than FinishTimeout, a stop during a
// probe, more parked batches than one listing returns.

type stubControl struct {
	mu     sync.Mutex
	paused map[string]bool
}

func (c *stubControl) Cancelled(string) bool { return false }

func (c *stubControl) Paused(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.paused[id]
}

func (c *stubControl) WaitFresh(context.Context, time.Time) error { return nil }

// pausedFrom is a control view whose campaigns are paused from the
// after-th question on.
type pausedFrom struct {
	stubControl
	after int64
	asked atomic.Int64
}

func (c *pausedFrom) Paused(string) bool { return c.asked.Add(1) > c.after }

// outageStore is a MemStore whose SaveProgress fails while down is set.
type outageStore struct {
	*MemStore
	down  atomic.Bool
	saves atomic.Int64 // failed attempts
}

func (s *outageStore) SaveProgress(ctx context.Context, id string, p Progress) error {
	if s.down.Load() {
		s.saves.Add(1)
		return errors.New("dial tcp 127.0.0.1:3306: connect: connection refused")
	}
	return s.MemStore.SaveProgress(ctx, id, p)
}

// testDispatcher is a Dispatcher wired as Run wires it, on a kfake broker,
// with FinishTimeout 300ms.
func testDispatcher(t *testing.T, store Store, ctrl ControlView) (*Dispatcher, *dispatchtest.Sender, *kfake.Cluster) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "ready", "results", "dlq"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	s := dispatchtest.NewSender("app1")
	cfg := Config{Group: "g", Ladder: delay.Ladder{Ready: "ready"}, ResultsTopic: "results", DeadLetterTopic: "dlq",
		ChunkSize: 10, FinishTimeout: 300 * time.Millisecond, ResultsLinger: -1, ParkInterval: 50 * time.Millisecond}
	d, err := New(cfg, Deps{Apps: map[string]App{"app1": {APNS: s, FCM: s, Concurrency: 4}}, Control: ctrl, Store: store,
		Metrics: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	startSendPool(t, d, c)
	return d, s, c
}

// startSendPool gives d, built but not Run, a client of cluster c and
// its pool of send loops, so tests can call handle directly; both are
// stopped at cleanup.
func startSendPool(t *testing.T, d *Dispatcher, c *kfake.Cluster) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	d.cl, d.bg = cl, context.Background()
	d.sends = make(chan *sendJob, d.poolSize)
	var pool sync.WaitGroup
	for range d.poolSize {
		pool.Go(func() { d.sendLoop(d.sends) })
	}
	t.Cleanup(func() { close(d.sends); pool.Wait() })
}

// haltWithProbeDue halts app1 for a bad certificate, in store, in d's view
// and in the senders' registry, with its probe due.
// appHalted reports whether this dispatcher sees app halted: a provider
// refused its credentials (here or on another instance) and no probe has
// succeeded since.
func (d *Dispatcher) appHalted(app string) bool {
	_, ok := d.haltedProvider(app)
	return ok
}

func haltWithProbeDue(t *testing.T, d *Dispatcher, store Store) {
	t.Helper()
	past := time.Now().Add(-time.Minute)
	h := Halt{App: "app1", Provider: ProviderAPNs, Reason: "BadCertificate", Since: past, ProbeAt: past}
	if err := store.SetHalt(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	d.halted["app1"] = h
	d.halt.Halt("app1", ProviderAPNs, h.Reason, nil)
}

// readyRecord is batch id of n iOS devices (tokens id-t0, id-t1, ...), due
// now, at offset of partition 0.
func readyRecord(t *testing.T, id string, n int, offset int64) *kgo.Record {
	t.Helper()
	b := schemas.Batch{SchemaVersion: schemas.SchemaVersion, ID: id, CampaignID: "c1", CampaignVersion: 1, App: "app1",
		Attempt: 1, SendAt: time.Now().UTC(), Content: schemas.Content{Title: "Hello", Body: "World"}}
	for i := range n {
		b.Devices = append(b.Devices, schemas.BatchDevice{DeviceID: int64(i + 1), Token: fmt.Sprintf("%s-t%d", id, i), Platform: schemas.PlatformIOS})
	}
	v, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	r := delay.BatchRecord("ready", id, b.CampaignID, b.SendAt, time.Time{}, v)
	r.Partition, r.Offset = 0, offset
	return r
}

// A MySQL outage longer than FinishTimeout, with no stop: the chunk's
// progress is retried until MySQL is back, nothing is sent twice, and the
// partition goes on with the batches behind it. (Before, the batch gave up
// after FinishTimeout, the worker took that for a stop and exited while
// still registered, and every later batch of the partition was queued
// into it and never sent.)
func TestOutageLongerThanFinishTimeoutIsWaitedOut(t *testing.T) {
	store := &outageStore{MemStore: NewMemStore()}
	d, s, _ := testDispatcher(t, store, &stubControl{})
	tp := topicPartition{"ready", 0}
	w := newWorker(d, tp)
	f := &fakePauser{}
	w.fetch = f
	d.workers[tp] = w
	go w.run()
	t.Cleanup(w.stop)

	store.down.Store(true)
	d.enqueue(tp, []*kgo.Record{readyRecord(t, "A", 2, 0)})
	time.Sleep(4 * d.cfg.FinishTimeout)
	for i, id := range []string{"B", "C", "D", "E", "F"} {
		d.enqueue(tp, []*kgo.Record{readyRecord(t, id, 2, int64(i+1))})
	}
	select {
	case <-w.done:
		t.Fatal("the worker exited during the outage, without a stop")
	default:
	}
	if n := store.saves.Load(); n < 2 {
		t.Fatalf("%d failed progress saves during the outage, want at least 2 (it must keep trying)", n)
	}
	store.down.Store(false)

	ids := []string{"A", "B", "C", "D", "E", "F"}
	allFinished := func() bool {
		for _, id := range ids {
			if p, _ := store.Progress(context.Background(), id); !p.Finished {
				return false
			}
		}
		return true
	}
	// The progress save backs off up to 5 s between attempts.
	deadline := time.Now().Add(15 * time.Second)
	for !allFinished() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	for _, id := range ids {
		for k := range 2 {
			if n := s.Accepted(fmt.Sprintf("%s-t%d", id, k)); n != 1 {
				t.Errorf("%s-t%d sent %d times, want once", id, k, n)
			}
		}
		if p, _ := store.Progress(context.Background(), id); !p.Finished {
			t.Errorf("batch %s not finished", id)
		}
	}
	if paused, _, _ := f.state(); paused {
		t.Error("the partition is still paused with every batch finished")
	}
}

// With the results topic unreachable, results are waited for while the
// dispatcher runs, and given up FinishTimeout after a stop, so the stop
// (and a rebalance's revoke) completes.
func TestResultsWaitForKafkaUntilFinishTimeoutAfterStop(t *testing.T) {
	d, _, _ := testDispatcher(t, NewMemStore(), &stubControl{})
	dead, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	d.cl = dead
	b := &schemas.Batch{ID: "A", App: "app1", CampaignID: "c1", Attempt: 1, SendAt: time.Now()}
	dev := &schemas.BatchDevice{Token: "t0", Platform: schemas.PlatformIOS}

	stop, stopNow := context.WithCancel(context.Background())
	defer stopNow()
	saveCtx, _, cancel := d.saveContext(stop)
	defer cancel()
	res := make(chan bool, 1)
	go func() {
		res <- d.writeResults(saveCtx, []schemas.Result{newResult(b, dev, schemas.OutcomeDelivered, time.Now())})
	}()
	select {
	case ok := <-res:
		t.Fatalf("writeResults returned %v while running, with Kafka unreachable; want it to keep trying", ok)
	case <-time.After(5 * d.cfg.FinishTimeout):
	}
	stopped := time.Now()
	stopNow()
	select {
	case ok := <-res:
		if ok {
			t.Fatal("writeResults reported success with Kafka unreachable")
		}
		if took := time.Since(stopped); took < d.cfg.FinishTimeout {
			t.Errorf("gave up %s after the stop, before FinishTimeout (%s)", took, d.cfg.FinishTimeout)
		}
	case <-time.After(d.cfg.FinishTimeout + 5*time.Second):
		t.Fatalf("writeResults still blocked %s after the stop (FinishTimeout %s)", time.Since(stopped).Round(time.Millisecond), d.cfg.FinishTimeout)
	}
}

// One pass of the park loop looks at every parked batch, not just the
// first page: a batch parked behind a thousand batches of a campaign that
// stays paused is released once its own campaign is resumed.
func TestParkPassSeesBatchesBeyondOnePage(t *testing.T) {
	store := NewMemStore()
	ctrl := &stubControl{paused: map[string]bool{"big": true}}
	d, _, _ := testDispatcher(t, store, ctrl)
	ctx := context.Background()
	base := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	park := func(id, campaign string, at time.Time) {
		if err := store.Park(ctx, Parked{BatchID: id, App: "app1", CampaignID: campaign, Reason: ParkPaused,
			SendAt: base, ParkedAt: at, Key: []byte(id), Value: []byte("v"), Headers: map[string]string{}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range parkedPage + 1 {
		park(fmt.Sprintf("big-%04d", i), "big", base.Add(time.Duration(i)*time.Millisecond))
	}
	park("small-0", "small", base.Add(time.Minute)) // "small" has been resumed

	d.parkPass(ctx, map[string]time.Time{})
	if _, still, _ := store.LoadParked(ctx, "small-0"); still {
		t.Fatalf("small-0 (campaign resumed) still parked after a pass: it sorts after %d batches of a paused campaign", parkedPage+1)
	}
	if left, _ := store.ListParked(ctx, time.Time{}, "", 2*parkedPage); len(left) != parkedPage+1 {
		t.Fatalf("%d batches left parked, want the %d of the paused campaign", len(left), parkedPage+1)
	}
}

// A probe whose send never started (the stop came while it waited for
// the app's rate limit) says nothing of the credentials: the halt stays,
// in the store and in the senders' registry, and the claim is given back
// so the next probe need not wait HaltProbeInterval.
func TestProbeStoppedBeforeItsSendKeepsTheHalt(t *testing.T) {
	store := NewMemStore()
	d, s, _ := testDispatcher(t, store, &stubControl{})
	lim := newAppLimit(4)
	lim.rate = rate.NewLimiter(1, 1)
	lim.rate.Allow() // this second's token is spent: the probe's send waits ~1 s
	d.limits["app1"] = lim
	haltWithProbeDue(t, d, store)

	stop, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	if ok := d.handle(stop, readyRecord(t, "P", 3, 0), make(chan struct{}, 1)); ok {
		t.Error("handle reported the batch done although the stop came before any send")
	}
	if n := s.Accepted("P-t0"); n != 0 {
		t.Fatalf("the probe's device was sent %d times; the test needs the stop to come first", n)
	}
	if halts, _ := store.Halts(context.Background()); len(halts) != 1 {
		t.Errorf("%d halts in the store after an unanswered probe, want the app's 1", len(halts))
	}
	if _, halted := d.halt.Halted("app1", ProviderAPNs); !halted {
		t.Error("the senders' registry lets app1 through after an unanswered probe")
	}
	if !d.appHalted("app1") {
		t.Error("this dispatcher no longer sees app1 halted")
	}
	if ok, _ := store.ClaimProbe(context.Background(), "app1", time.Now(), time.Now().Add(time.Minute)); !ok {
		t.Error("the next probe cannot be claimed: the unanswered probe kept its claim")
	}
}

// A probe that ends unanswered touches only its own claim: one that lapsed
// while its device waited, with another batch probing since, leaves the
// other's claim in the store and in this instance's view. A probe whose
// device was tried and had no provider keeps its claim, so a batch of such
// devices does not claim and give back once for each. The senders'
// registry holds the halt all along: a probe's send passes it by its
// context, not by opening it.
func TestUnansweredProbeEndsOnlyItsOwnClaim(t *testing.T) {
	store := NewMemStore()
	d, _, _ := testDispatcher(t, store, &stubControl{})
	ctx := context.Background()
	haltWithProbeDue(t, d, store)
	batch := func() *job { return &job{b: &schemas.Batch{App: "app1"}} }

	// X claimed an hour ago; its claim lapsed, and Y holds the live one.
	x := batch()
	x.probe, x.probeUntil = true, time.Now().Add(-time.Hour)
	y := batch()
	until, ok := d.claimProbe(ctx, "app1")
	if !ok {
		t.Fatal("Y could not claim the probe")
	}
	y.probe, y.probeUntil = true, until
	d.probeUnanswered(x, true)
	if got := d.probing["app1"]; !got.Equal(until) {
		t.Errorf("this instance's probe of app1 lasts until %v after X ended, want Y's %v", got, until)
	}
	if _, halted := d.halt.Halted("app1", ProviderAPNs); !halted {
		t.Error("the senders' registry lets app1 through during Y's probe")
	}
	if ok, _ := store.ClaimProbe(ctx, "app1", time.Now(), time.Now().Add(time.Minute)); ok {
		t.Error("X gave Y's claim back")
	}

	// Y's device had no provider: Y keeps its claim.
	d.probeUnanswered(y, false)
	if _, probing := d.probing["app1"]; probing {
		t.Error("Y's probe is still on in this instance's view")
	}
	if _, halted := d.halt.Halted("app1", ProviderAPNs); !halted {
		t.Error("the senders' registry lets app1 through after Y's probe ended")
	}
	if ok, _ := store.ClaimProbe(ctx, "app1", time.Now(), time.Now().Add(time.Minute)); ok {
		t.Error("Y gave its claim back although its device was tried")
	}
}

// A batch that claimed the probe and is then parked before its send (its
// campaign paused between its first check and its chunk's) gives the
// claim back and leaves the app halted.
func TestProbeParkedBeforeItsSendGivesTheClaimBack(t *testing.T) {
	store := NewMemStore()
	d, s, _ := testDispatcher(t, store, &pausedFrom{after: 1})
	haltWithProbeDue(t, d, store)

	if ok := d.handle(context.Background(), readyRecord(t, "P", 3, 0), make(chan struct{}, 1)); !ok {
		t.Fatal("handle did not report the parked batch done")
	}
	if parked, _ := store.ListParked(context.Background(), time.Time{}, "", 10); len(parked) != 1 || parked[0].Reason != ParkPaused {
		t.Fatalf("parked: %+v, want the batch, paused", parked)
	}
	if n := s.Accepted("P-t0"); n != 0 {
		t.Errorf("the probe's device was sent %d times", n)
	}
	if _, probing := d.probing["app1"]; probing {
		t.Error("this instance still probes app1")
	}
	if _, halted := d.halt.Halted("app1", ProviderAPNs); !halted {
		t.Error("the senders' registry lets app1 through after the probe ended unsent")
	}
	if ok, _ := store.ClaimProbe(context.Background(), "app1", time.Now(), time.Now().Add(time.Minute)); !ok {
		t.Error("the next probe cannot be claimed: the parked batch kept its claim")
	}
}

// A re-route the destination refuses outright (MESSAGE_TOO_LARGE) is not
// retried for ever, holding the partition: the ready record goes to the
// dead-letter topic with the broker's reason, and is done with.
func TestRefusedRerouteIsDeadLettered(t *testing.T) {
	d, s, c := testDispatcher(t, NewMemStore(), &stubControl{})
	ready := c.TopicInfo("ready").TopicID // newer produce requests name topics by id
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		preq := req.(*kmsg.ProduceRequest)
		for _, rt := range preq.Topics {
			if rt.Topic != "ready" && rt.TopicID != ready {
				return nil, nil, false
			}
		}
		return kfaketest.RefuseProduce(preq, kerr.MessageTooLarge.Code), nil, true
	})
	rec := readyRecord(t, "far", 2, 0)
	kafka.SetHeader(rec, kafka.HeaderSendAt, kafka.UnixMillis(time.Now().Add(time.Hour))) // far from due: re-routed

	stop, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if ok := d.handle(stop, rec, make(chan struct{}, 1)); !ok || stop.Err() != nil {
		t.Fatalf("handle = %v (stop: %v); want the record done with, dead-lettered", ok, stop.Err())
	}
	if n := s.Accepted("far-t0"); n != 0 {
		t.Fatalf("a batch due in an hour was sent %d times", n)
	}
	recs := dispatchtest.Kafka{Brokers: c.ListenAddrs()}.ReadAll(t, "dlq", 1, 10*time.Second)
	if len(recs) != 1 {
		t.Fatalf("%d dead letters, want 1", len(recs))
	}
	dl, err := schemas.DecodeDeadLetter(recs[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	if string(dl.Key) != "far" || dl.Topic != "ready" || !strings.Contains(dl.Reason, "ready refuses the record") ||
		!strings.Contains(dl.Reason, "MESSAGE_TOO_LARGE") {
		t.Errorf("dead letter: key %s, topic %s, reason %q", dl.Key, dl.Topic, dl.Reason)
	}
	// Counted once, as what happened to it: before, also as re-routed.
	if got := counterValue(t, d.m.batches.WithLabelValues("dead_lettered")); got != 1 {
		t.Errorf("dead_lettered = %v, want 1", got)
	}
	if got := counterValue(t, d.m.batches.WithLabelValues("rerouted")); got != 0 {
		t.Errorf("rerouted = %v, want 0: the record went to the dead letters", got)
	}

	// A keyless record whose keyed copy ready refuses: dead-lettered, and
	// not counted re-keyed.
	keyless := bare(readyRecord(t, "nokey", 2, 0), false, false)
	if ok := d.handle(stop, keyless, make(chan struct{}, 1)); !ok || stop.Err() != nil {
		t.Fatalf("handle(keyless) = %v (stop: %v); want the record done with, dead-lettered", ok, stop.Err())
	}
	if n := s.Accepted("nokey-t0"); n != 0 {
		t.Fatalf("the keyless record was sent %d times where it was read", n)
	}
	if got := counterValue(t, d.m.batches.WithLabelValues("dead_lettered")); got != 2 {
		t.Errorf("dead_lettered = %v, want 2", got)
	}
	if got := counterValue(t, d.m.batches.WithLabelValues("rekeyed")); got != 0 {
		t.Errorf("rekeyed = %v, want 0: the record went to the dead letters", got)
	}
}

// The dispatcher is ready once its group is joined, not at start: with the
// brokers unreachable it stays "starting"; joined, ready; stopped,
// stopping.
func TestReadyOnceTheGroupIsJoined(t *testing.T) {
	for _, reachable := range []bool{false, true} {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "ready", "results", "dlq"))
		if err != nil {
			t.Fatal(err)
		}
		brokers := c.ListenAddrs()
		if !reachable {
			brokers = []string{"127.0.0.1:1"}
		}
		ready := service.NewReadiness()
		s := dispatchtest.NewSender("app1")
		d, err := New(Config{Kafka: config.Kafka{Brokers: brokers}, Group: "g", Ladder: delay.Ladder{Ready: "ready"}, ResultsTopic: "results", DeadLetterTopic: "dlq"},
			Deps{Apps: map[string]App{"app1": {APNS: s, FCM: s}}, Control: &stubControl{}, Store: NewMemStore(), Metrics: prometheus.NewRegistry(), Ready: ready})
		if err != nil {
			t.Fatal(err)
		}
		if err := ready.Err(); err == nil || err.Error() != "dispatcher: starting" {
			t.Fatalf("before Run: readiness %v, want dispatcher: starting", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		deadline := time.Now().Add(10 * time.Second)
		for reachable && ready.Err() != nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if !reachable {
			time.Sleep(1500 * time.Millisecond)
		}
		switch err := ready.Err(); {
		case reachable && err != nil:
			t.Errorf("joined: readiness %v, want ready", err)
		case !reachable && (err == nil || err.Error() != "dispatcher: starting"):
			t.Errorf("brokers unreachable for 1.5 s: readiness %v, want dispatcher: starting", err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if err := ready.Err(); err == nil || err.Error() != "dispatcher: stopping" {
			t.Errorf("stopped: readiness %v, want dispatcher: stopping", err)
		}
		c.Close()
	}
}

// ctxStore is a MemStore that fails a call whose context has ended, as
// database/sql does.
type ctxStore struct{ *MemStore }

func (s ctxStore) Finish(ctx context.Context, id string, at time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.MemStore.Finish(ctx, id, at)
}

func (s ctxStore) Park(ctx context.Context, p Parked) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.MemStore.Park(ctx, p)
}

// A batch whose last chunk completes during a stop is finished, its retry
// batch written and its record done with. Before, finishing used the stop's
// context, already ended: the batch was left unfinished and uncommitted,
// for the next owner to re-read, check and finish, and its retry batch
// waited until then.
func TestBatchCompletedDuringAStopIsFinished(t *testing.T) {
	store := ctxStore{NewMemStore()}
	d, s, c := testDispatcher(t, store, &stubControl{})
	// All three sends start, and are held until after the stop.
	started, release := make(chan struct{}), make(chan struct{})
	var entered atomic.Int64
	s.SetRule(func(token string, _ int) providers.Result {
		if entered.Add(1) == 3 {
			close(started)
		}
		<-release
		if token == "F-t1" {
			return providers.Result{Outcome: providers.Retryable, Status: 503, Reason: "ServiceUnavailable"}
		}
		return providers.Result{Outcome: providers.Delivered, Status: 200}
	})
	stop, stopNow := context.WithCancel(context.Background())
	defer stopNow()
	done := make(chan bool, 1)
	go func() { done <- d.handle(stop, readyRecord(t, "F", 3, 0), make(chan struct{}, 1)) }()
	<-started
	stopNow()
	close(release)
	if ok := <-done; !ok {
		t.Fatal("handle did not finish the batch whose sends completed during the stop")
	}
	p, _ := store.Progress(context.Background(), "F")
	if !p.Finished || p.Done.Count() != 3 {
		t.Errorf("progress %+v: want finished with 3 devices done", p)
	}
	// The retry batch of F-t1 is on its way (this ladder has no tiers).
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("ready"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var retries int
	for retries == 0 && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			if b, err := schemas.DecodeBatch(r.Value); err == nil && b.Attempt == 2 && len(b.Devices) == 1 && b.Devices[0].Token == "F-t1" {
				retries++
			}
		})
	}
	if retries != 1 {
		t.Errorf("%d retry batches for F-t1, want 1", retries)
	}
}

// A send in flight at the stop may end later than FinishTimeout after it
// (a provider's request timeout is as long by default): the chunk's
// results and progress are still written, with FinishTimeout counted from
// the end of the sends. Before, the save context had ended by then, the
// answered devices got no result and no progress, and the next owner sent
// them again after a graceful stop.
func TestSendOutlastingFinishTimeoutAfterStopIsSaved(t *testing.T) {
	store := NewMemStore()
	d, s, c := testDispatcher(t, store, &stubControl{})
	started, release := make(chan struct{}), make(chan struct{})
	var entered atomic.Int64
	s.SetRule(func(token string, _ int) providers.Result {
		if entered.Add(1) == 2 {
			close(started)
		}
		if token == "S-t1" { // the slow one; S-t0 is answered at once
			<-release
		}
		return providers.Result{Outcome: providers.Delivered, Status: 200}
	})
	stop, stopNow := context.WithCancel(context.Background())
	defer stopNow()
	done := make(chan bool, 1)
	go func() { done <- d.handle(stop, readyRecord(t, "S", 2, 0), make(chan struct{}, 1)) }()
	<-started
	stopNow()
	time.Sleep(3 * d.cfg.FinishTimeout)
	close(release)
	select {
	case ok := <-done:
		if !ok {
			t.Fatal("handle gave the batch up: its sends ended after FinishTimeout, and their results were not written")
		}
	case <-time.After(d.cfg.FinishTimeout + 10*time.Second):
		t.Fatal("handle still running 10 s after the sends ended")
	}
	if p, _ := store.Progress(context.Background(), "S"); !p.Finished || p.Done.Count() != 2 {
		t.Errorf("progress %+v: want finished with 2 devices done", p)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("results"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tokens := map[string]int{}
	for len(tokens) < 2 && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			var res schemas.Result
			if err := json.Unmarshal(r.Value, &res); err == nil {
				tokens[res.Token]++
			}
		})
	}
	if tokens["S-t0"] != 1 || tokens["S-t1"] != 1 {
		t.Errorf("results by token %v, want S-t0 and S-t1 once each", tokens)
	}
}

// A lost group session makes the instance not ready until it joins again:
// it sends nothing meanwhile. Before, /readyz stayed green.
func TestNotReadyAfterTheSessionIsLost(t *testing.T) {
	ready := service.NewReadiness()
	s := dispatchtest.NewSender("app1")
	d, err := New(Config{Kafka: config.Kafka{Brokers: []string{"127.0.0.1:1"}}, Group: "g", Ladder: delay.Ladder{Ready: "ready"}, ResultsTopic: "results", DeadLetterTopic: "dlq"},
		Deps{Apps: map[string]App{"app1": {APNS: s, FCM: s}}, Control: &stubControl{}, Store: NewMemStore(), Metrics: prometheus.NewRegistry(), Ready: ready})
	if err != nil {
		t.Fatal(err)
	}
	ready.Set(Stage, nil) // joined
	d.onLost(context.Background(), nil, map[string][]int32{"ready": {0}})
	if err := ready.Err(); err == nil || err.Error() != "dispatcher: group session lost; rejoining" {
		t.Errorf("after a lost session: readiness %v, want dispatcher: group session lost; rejoining", err)
	}
}

// A dead letter the dead-letter topic refuses even slimmed (its
// max.message.bytes set below any letter) is dropped and counted, and the
// ready record is done with: retried, it held its partition for good.
func TestDeadLetterRefusedEvenSlimmedIsDropped(t *testing.T) {
	d, _, c := testDispatcher(t, NewMemStore(), &stubControl{})
	dlq := c.TopicInfo("dlq").TopicID
	var refused atomic.Int64
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		preq := req.(*kmsg.ProduceRequest)
		for _, rt := range preq.Topics {
			if rt.Topic != "dlq" && rt.TopicID != dlq {
				return nil, nil, false
			}
		}
		refused.Add(1)
		return kfaketest.RefuseProduce(preq, kerr.MessageTooLarge.Code), nil, true
	})
	rec := &kgo.Record{Topic: "ready", Partition: 0, Offset: 7, Key: []byte("bad"), Value: []byte(`{"not":"a batch"}`)}
	stop, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	if ok := d.handle(stop, rec, make(chan struct{}, 1)); !ok || stop.Err() != nil {
		t.Fatalf("handle = %v after %v (stop: %v); want the record done with, its letter dropped", ok, time.Since(start), stop.Err())
	}
	if refused.Load() < 2 {
		t.Errorf("the dead-letter topic refused %d produces, want the letter and its slimmed forms", refused.Load())
	}
	if got := counterValue(t, d.m.batches.WithLabelValues("dead_letter_dropped")); got != 1 {
		t.Errorf("dead_letter_dropped = %v, want 1", got)
	}
	if got := counterValue(t, d.m.batches.WithLabelValues("dead_lettered")); got != 0 {
		t.Errorf("dead_lettered = %v, want 0", got)
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// An app's rate holds in every one-second window, the first of an idle
// app included, and is sustained.
func TestAppRateHoldsInEveryWindow(t *testing.T) {
	for _, perSecond := range []int{1, 7, 40, 1000} {
		d, err := New(Config{Group: "g", Ladder: delay.Ladder{Ready: "ready"}, ResultsTopic: "results", DeadLetterTopic: "dlq"},
			Deps{Apps: map[string]App{"a": {APNS: dispatchtest.NewSender("a"), RatePerSecond: perSecond}}, Control: &stubControl{}, Store: NewMemStore(),
				Metrics: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		lim := d.limits["a"].rate
		start := time.Now()
		// Take every token as soon as it is there, 1 ms apart, for 3 s.
		var at []time.Time
		for ms := range 3000 {
			now := start.Add(time.Duration(ms) * time.Millisecond)
			for lim.AllowN(now, 1) {
				at = append(at, now)
			}
		}
		for i := range at {
			n := 0
			for _, u := range at[i:] {
				if u.Sub(at[i]) < time.Second {
					n++
				}
			}
			if n > perSecond {
				t.Errorf("%d/s: %d sends in the second from %v", perSecond, n, at[i].Sub(start))
				break
			}
		}
		if len(at) < 3*perSecond {
			t.Errorf("%d/s: %d sends in 3 s, want at least %d", perSecond, len(at), 3*perSecond)
		}
	}
}

// A stop whose final commit fails returns the error, so the process exits
// non-zero: before, it logged the failure and returned nil, as a clean
// stop does. (Nothing is sent twice: the finished batch is skipped when
// read again.)
func TestStopWhoseCommitFailsReturnsTheError(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "ready", "results", "dlq"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ready := service.NewReadiness()
	s := dispatchtest.NewSender("app1")
	store := NewMemStore()
	d, err := New(Config{Kafka: config.Kafka{Brokers: c.ListenAddrs()}, Group: "g", Ladder: delay.Ladder{Ready: "ready"}, ResultsTopic: "results", DeadLetterTopic: "dlq"},
		Deps{Apps: map[string]App{"app1": {APNS: s, FCM: s}}, Control: &stubControl{}, Store: store, Metrics: prometheus.NewRegistry(), Ready: ready})
	if err != nil {
		t.Fatal(err)
	}
	// Every offset commit is refused, as by a coordinator that lost the
	// group's authorization.
	var refused atomic.Int32
	c.ControlKey(int16(kmsg.OffsetCommit), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		creq := req.(*kmsg.OffsetCommitRequest)
		resp := creq.ResponseKind().(*kmsg.OffsetCommitResponse)
		for _, rt := range creq.Topics {
			st := kmsg.NewOffsetCommitResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewOffsetCommitResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, kerr.GroupAuthorizationFailed.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		refused.Add(1)
		return resp, nil, true
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rec := readyRecord(t, "B", 2, 0)
	rec.Offset = 0
	if err := cl.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if p, _ := store.Progress(context.Background(), "B"); p.Finished {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the batch was not finished")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "dispatcher: final commit") {
			t.Errorf("Run = %v; want the final commit's failure", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
	}
	if refused.Load() == 0 {
		t.Error("no offset commit reached the broker")
	}
}
