package dispatcher

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/pipeline/delay"
	"github.com/pushlane/pushlane/pipeline/dispatcher/dispatchtest"
	"github.com/pushlane/pushlane/pipeline/kafka"
	"github.com/pushlane/pushlane/schemas"
)

// These tests replay batch records as operators' tools write them:
// kafka-console-producer writes no key unless parse.key=true and no
// headers unless parse.headers=true; kcat writes keys only with -K and
// headers only with -H. franz-go reads a null key as nil.

// bare strips r of what a replay by hand leaves out.
func bare(r *kgo.Record, keepKey, keepHeaders bool) *kgo.Record {
	out := &kgo.Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Value: r.Value}
	if keepKey {
		out.Key = r.Key
	}
	if keepHeaders {
		out.Headers = r.Headers
	}
	return out
}

func headerMap(hs []kgo.RecordHeader) map[string]string {
	m := map[string]string{}
	for _, h := range hs {
		m[h.Key] = string(h.Value)
	}
	return m
}

// Keyless records are known to the same-key guard by their batch id: two
// keyless batches run side by side, and a keyless copy of a batch in
// flight is set aside. Before, all keyless records shared the key "", so
// each was set aside behind the one in flight, whatever its batch.
func TestWorkerKnowsKeylessRecordsByTheirBatchID(t *testing.T) {
	x := bare(readyRecord(t, "X", 1, 0), false, false)    // kafka-console-producer
	y := bare(readyRecord(t, "Y", 1, 1), false, false)    // the same
	xCopy := bare(readyRecord(t, "X", 1, 2), false, true) // kcat -H: the batch-id header
	z := readyRecord(t, "Z", 1, 3)                        // as planned
	xKeyed := readyRecord(t, "X", 1, 4)                   // X as planned: the same key
	f := newFakeRun(t, x, y, xCopy, z, xKeyed)
	f.wantStarted("X, Y and Z: three batches", 0, 1, 3)
	f.wantNoStart("X in flight: its copies wait")
	f.release[0] <- true
	f.wantStarted("X done: its first copy", 2)
	f.wantMarked("X done", 0)
	f.release[2] <- true
	f.wantStarted("the first copy done: the keyed one", 4)
	for _, o := range []int64{1, 3, 4} {
		f.release[o] <- true
	}
	f.wantMarked("all done", 1, 2, 3, 4)
}

// A keyless ready record is written back keyed by its batch id, with its
// scheduling headers restored, and sends nothing where it was read: the
// keyed copy, on its batch's partition, is sent. Before, it was sent where
// it was read, beside any copy in flight on its batch's partition.
func TestKeylessReadyRecordIsRekeyed(t *testing.T) {
	store := NewMemStore()
	d, s, c := testDispatcher(t, store, &stubControl{})
	rec := bare(readyRecord(t, "K", 2, 0), false, false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if ok := d.handle(ctx, rec, make(chan struct{}, 1)); !ok {
		t.Fatal("handle did not report the keyless record done with")
	}
	if n := s.Accepted("K-t0") + s.Accepted("K-t1"); n != 0 {
		t.Fatalf("the keyless record sent %d devices where it was read", n)
	}
	got := dispatchtest.Kafka{Brokers: c.ListenAddrs()}.ReadAll(t, "ready", 1, 5*time.Second)
	if len(got) != 1 {
		t.Fatalf("ready holds %d records, want the keyed copy", len(got))
	}
	h := headerMap(got[0].Headers)
	if string(got[0].Key) != "K" || h[kafka.HeaderBatchID] != "K" || h[kafka.HeaderCampaignID] != "c1" || h[kafka.HeaderSendAt] == "" || h[kafka.HeaderHop] != "0" {
		t.Fatalf("the copy is keyed %q with headers %v; want key K and the planner's headers", got[0].Key, h)
	}
	if ok := d.handle(ctx, got[0], make(chan struct{}, 1)); !ok {
		t.Fatal("handle did not finish the keyed copy")
	}
	if a, b := s.Accepted("K-t0"), s.Accepted("K-t1"); a != 1 || b != 1 {
		t.Errorf("the keyed copy sent K-t0 %d and K-t1 %d times, want once each", a, b)
	}
}

// A replayed batch is parked keyed by its batch id and with its scheduling
// headers, restored from the batch where its record had none, so the store
// takes it and its release is routed like the planner's record. Before, a
// keyless one was parked with a nil key, which MySQL refuses (record_key
// NOT NULL): the park was retried for ever and its partition held.
func TestParkedReplayGetsItsKeyAndHeaders(t *testing.T) {
	store := NewMemStore()
	ctrl := &stubControl{paused: map[string]bool{"c1": true}}
	d, _, _ := testDispatcher(t, store, ctrl)
	planned := readyRecord(t, "H", 2, 0)
	want := headerMap(planned.Headers)

	// Keyed, without headers (kafka-console-producer, parse.key=true):
	// handled where it is, and parked with the headers it lacked.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if ok := d.handle(ctx, bare(planned, true, false), make(chan struct{}, 1)); !ok {
		t.Fatal("handle did not park the paused batch")
	}
	p, ok, _ := store.LoadParked(ctx, "H")
	if !ok || string(p.Key) != "H" || p.Headers[kafka.HeaderSendAt] != want[kafka.HeaderSendAt] ||
		p.Headers[kafka.HeaderCampaignID] != "c1" || p.Headers[kafka.HeaderBatchID] != "H" {
		t.Fatalf("parked %v: key %q, headers %v; want key H and headers %v", ok, p.Key, p.Headers, want)
	}

	// Without a key, however it got here: parked under its batch id.
	b, err := decodeBatch(planned.Value)
	if err != nil {
		t.Fatal(err)
	}
	b.ID = "H2"
	saveCtx, cancelSave := context.WithTimeout(ctx, 3*time.Second)
	defer cancelSave()
	j := &job{rec: bare(planned, false, false), b: b, app: d.apps["app1"], saveCtx: saveCtx}
	if !d.park(j, ParkPaused) {
		t.Fatal("a keyless batch was not parked: the store refused it")
	}
	if p, ok, _ := store.LoadParked(ctx, "H2"); !ok || string(p.Key) != "H2" || p.Headers[kafka.HeaderSendAt] != want[kafka.HeaderSendAt] {
		t.Errorf("parked %v: key %q, headers %v; want key H2 and send-at %s", ok, p.Key, p.Headers, want[kafka.HeaderSendAt])
	}
}

// replayControl is a control view whose pauses the test changes.
type replayControl struct {
	mu     sync.Mutex
	paused map[string]bool
}

func (c *replayControl) Cancelled(string) bool { return false }

func (c *replayControl) Paused(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.paused[id]
}

func (c *replayControl) resume(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.paused, id)
}

func (c *replayControl) WaitFresh(context.Context, time.Time) error { return nil }

// The forwarder and the dispatcher, run as cmd/dispatcher runs them, given
// tier and ready records replayed by hand (no key, no headers, or one of
// the two; copies on other partitions than their batch's) of a campaign
// that runs and of one that is paused: every device is sent once, none
// before its batch's send-at, the paused batches are parked and sent once
// resumed, a batch behind them on their partition is not held up, and
// nothing is dead-lettered. Before, the tier records were dead-lettered,
// and the keyless paused batch was parked with a nil key, which the store
// refused for ever, holding its partition's keyless records behind it.
func TestReplayedRecordsWithoutKeyOrHeadersAreSentOnce(t *testing.T) {
	tiers := []string{"t00", "t01", "t02", "t03"}
	const partitions = 3
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, append([]string{"ready", "results", "dlq"}, tiers...)...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	k := dispatchtest.Kafka{Brokers: c.ListenAddrs()}
	l := delay.Ladder{Tiers: tiers, Ready: "ready"}
	ctrl := &replayControl{paused: map[string]bool{"held": true}}
	store := NewMemStore()
	s := dispatchtest.NewSender("app1")

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	f, err := delay.New(delay.Config{Kafka: config.Kafka{Brokers: k.Brokers}, Group: "delay", Ladder: l, DeadLetterTopic: "dlq",
		FetchMaxWait: 100 * time.Millisecond}, delay.Deps{Control: ctrl, Metrics: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{Kafka: config.Kafka{Brokers: k.Brokers}, Group: "dispatcher", Ladder: l, ResultsTopic: "results", DeadLetterTopic: "dlq",
		ChunkSize: 10, ResultsLinger: -1, ParkInterval: 100 * time.Millisecond, FetchMaxWait: 100 * time.Millisecond},
		Deps{Apps: map[string]App{"app1": {APNS: s, FCM: s, Concurrency: 8}}, Control: ctrl, Store: store, Metrics: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	for name, run := range map[string]func(context.Context) error{"forwarder": f.Run, "dispatcher": d.Run} {
		wg.Go(func() {
			if err := run(ctx); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		})
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...), kgo.ProducerLinger(0), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	keyPart := kgo.StickyKeyPartitioner(nil).ForTopic("ready")
	partitionOf := func(id string) int32 { return int32(keyPart.Partition(&kgo.Record{Key: []byte(id)}, partitions)) }

	const devices = 4
	now := time.Now().Truncate(time.Millisecond)
	sendAt := map[string]time.Time{}
	var recs []*kgo.Record
	// replay adds batch id's record on topic, as a replay writes it, once
	// per partition given.
	replay := func(id, campaign, topic string, in time.Duration, keyed, headered bool, parts ...int32) {
		b := schemas.Batch{SchemaVersion: schemas.SchemaVersion, ID: id, CampaignID: campaign, CampaignVersion: 1, App: "app1",
			Attempt: 1, SendAt: now.Add(in).UTC(), Content: schemas.Content{Title: "Hello", Body: "World"}}
		for i := range devices {
			b.Devices = append(b.Devices, schemas.BatchDevice{DeviceID: int64(i + 1), Token: fmt.Sprintf("%s-t%d", id, i), Platform: schemas.PlatformIOS})
		}
		v, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		sendAt[id] = b.SendAt
		for _, p := range parts {
			r := bare(delay.BatchRecord(topic, id, campaign, b.SendAt, time.Time{}, v), keyed, headered)
			r.Partition = p
			recs = append(recs, r)
		}
	}
	replay("live-ready", "live", "ready", 0, false, false, 0, 1)
	replay("live-tier", "live", "t01", 2500*time.Millisecond, false, false, 0, 2)
	replay("live-far", "live", "ready", 4*time.Second, true, false, partitionOf("live-far"))
	replay("live-headered", "live", "ready", 0, false, true, 2)
	replay("held-ready", "held", "ready", 0, false, false, 0, 1)
	replay("held-tier", "held", "t01", 2500*time.Millisecond, false, false, 1)
	replay("held-more", "held", "ready", 0, false, false, 0) // keyless behind held-ready on ready/0
	replay("behind", "live", "ready", 0, true, true, 0)      // as planned, behind them all on ready/0
	for _, r := range recs {
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	sentOnce := func(prefix string) bool {
		for i := range devices {
			if s.Accepted(fmt.Sprintf("%s-t%d", prefix, i)) == 0 {
				return false
			}
		}
		return true
	}
	waitFor := func(what string, timeout time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for !cond() {
			if time.Now().After(deadline) {
				n, dup := s.Devices()
				ps, _ := store.ListParked(ctx, time.Time{}, "", 10)
				t.Fatalf("%s: not within %v (%d devices sent, %d more than once; %d batches parked)", what, timeout, n, dup, len(ps))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	live := []string{"live-ready", "live-tier", "live-far", "live-headered", "behind"}
	held := []string{"held-ready", "held-tier", "held-more"}
	waitFor("the running campaign's batches sent", 20*time.Second, func() bool {
		for _, id := range live {
			if !sentOnce(id) {
				return false
			}
		}
		return true
	})
	waitFor("the paused campaign's batches parked", 10*time.Second, func() bool {
		ps, _ := store.ListParked(ctx, time.Time{}, "", 10)
		return len(ps) == len(held)
	})
	for _, id := range held {
		p, ok, _ := store.LoadParked(ctx, id)
		if !ok || string(p.Key) != id || p.Headers[kafka.HeaderSendAt] != kafka.UnixMillis(sendAt[id]) {
			t.Errorf("%s parked %v with key %q and headers %v; want its batch id and send-at", id, ok, p.Key, p.Headers)
		}
		if sentOnce(id) || s.Accepted(id+"-t0") > 0 {
			t.Errorf("%s sent while its campaign is paused", id)
		}
	}
	ctrl.resume("held")
	waitFor("the paused campaign's batches sent once resumed", 10*time.Second, func() bool {
		for _, id := range held {
			if !sentOnce(id) {
				return false
			}
		}
		return true
	})
	time.Sleep(time.Second) // room for a second send of any copy

	if n, dup := s.Devices(); n != devices*(len(live)+len(held)) || dup != 0 {
		t.Errorf("%d devices sent, %d of them more than once; want %d, each once", n, dup, devices*(len(live)+len(held)))
	}
	for _, sent := range s.Sends() {
		id := sent.Token[:strings.LastIndex(sent.Token, "-t")]
		if sent.Start.Before(sendAt[id]) {
			t.Errorf("%s sent %v before its send-at", sent.Token, sendAt[id].Sub(sent.Start))
		}
	}
	if dl := k.ReadAll(t, "dlq", 1, time.Second); len(dl) != 0 {
		t.Errorf("%d dead letters, want none (first: %s)", len(dl), dl[0].Value)
	}
}

// A keyless copy of a finished batch is done with where it is read, not
// written back: a write per replayed record, and a fresh timestamp that
// hid the batch's age from pushctl replay's 35-day check.
func TestKeylessCopyOfAFinishedBatchIsNotWrittenBack(t *testing.T) {
	store := NewMemStore()
	d, s, c := testDispatcher(t, store, &stubControl{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := store.Finish(ctx, "F", time.Now()); err != nil {
		t.Fatal(err)
	}
	if ok := d.handle(ctx, bare(readyRecord(t, "F", 2, 0), false, false), make(chan struct{}, 1)); !ok {
		t.Fatal("handle did not report the keyless copy done with")
	}
	if n := s.Accepted("F-t0") + s.Accepted("F-t1"); n != 0 {
		t.Fatalf("a finished batch sent %d devices", n)
	}
	if got := (dispatchtest.Kafka{Brokers: c.ListenAddrs()}).ReadAll(t, "ready", 1, 2*time.Second); len(got) != 0 {
		t.Fatalf("ready holds %d records, want no copy written back", len(got))
	}
	if got := counterValue(t, d.m.batches.WithLabelValues("duplicate")); got != 1 {
		t.Errorf("duplicate = %v, want 1", got)
	}
}
