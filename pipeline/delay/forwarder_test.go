package delay_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/internal/service"
	"github.com/pushlane/pushlane/internal/testenv"
	"github.com/pushlane/pushlane/pipeline/delay"
	"github.com/pushlane/pushlane/pipeline/dispatcher/dispatchtest"
	"github.com/pushlane/pushlane/pipeline/kafka"
	"github.com/pushlane/pushlane/schemas"
)

type cancelled map[string]bool

func (c cancelled) Cancelled(id string) bool { return c[id] }

type running struct {
	f      *delay.Forwarder
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		if err := <-r.done; err != nil {
			t.Errorf("forwarder: %v", err)
		}
	})
}

func startForwarder(t *testing.T, k dispatchtest.Kafka, l delay.Ladder, dlq, group string, mod func(*delay.Config, *delay.Deps)) *running {
	t.Helper()
	cfg := delay.Config{Kafka: config.Kafka{Brokers: k.Brokers, ClientID: "delay-test"}, Group: group, Ladder: l, DeadLetterTopic: dlq}
	reg := prometheus.NewRegistry()
	deps := delay.Deps{Metrics: reg}
	if mod != nil {
		mod(&cfg, &deps)
	}
	f, err := delay.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{f: f, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- f.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// writeBatch writes a batch record the way the planner does: to the topic
// Route picks at the time of writing.
func writeBatch(t *testing.T, cl *kgo.Client, l delay.Ladder, id, campaign string, sendAt, expiresAt time.Time, value []byte) {
	t.Helper()
	if value == nil {
		value = []byte(`{}`)
	}
	r := delay.BatchRecord(l.Route(sendAt, time.Now()), id, campaign, sendAt, expiresAt, value)
	cl.Produce(context.Background(), r, func(_ *kgo.Record, err error) {
		if err != nil {
			t.Errorf("produce %s: %v", id, err)
		}
	})
}

type arrival struct {
	at     time.Time
	sendAt time.Time
	hops   int
}

func arrivals(t *testing.T, recs []*kgo.Record) map[string][]arrival {
	t.Helper()
	out := map[string][]arrival{}
	for _, r := range recs {
		sendAt, ok := kafka.TimeHeader(r, kafka.HeaderSendAt)
		if !ok {
			t.Fatalf("ready record %s without send-at", r.Key)
		}
		h, _ := kafka.Header(r, kafka.HeaderHop)
		hops, _ := strconv.Atoi(h)
		out[string(r.Key)] = append(out[string(r.Key)], arrival{at: r.Timestamp, sendAt: sendAt, hops: hops})
	}
	return out
}

// Batches with random send-ats (past, sub-second, and up to the ladder's
// top) reach the ready topic at most ReadyWithin before their send-at, and
// at most a second after it, in at most one hop per tier.
func TestForwarderNeverEarlyBoundedLateness(t *testing.T) {
	t.Parallel()
	k := dispatchtest.StartKafka(t)
	l, dlq := k.Ladder(t, 4, 3)
	startForwarder(t, k, l, dlq, dispatchtest.UniqueName("delay"), nil)
	cl := k.Client(t)
	const n = 300
	start := time.Now()
	ids := rand.Perm(n)
	for _, i := range ids {
		// -1 s .. +7 s, millisecond resolution, so sub-second remainders
		// and every tier occur.
		sendAt := start.Add(time.Duration(rand.IntN(8000)-1000) * time.Millisecond)
		writeBatch(t, cl, l, fmt.Sprintf("b%03d", i), "c1", sendAt, time.Time{}, nil)
	}
	if err := cl.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := arrivals(t, k.ReadAll(t, l.Ready, n, 30*time.Second))
	if len(got) != n {
		t.Fatalf("%d distinct batches reached ready, want %d", len(got), n)
	}
	var worst time.Duration
	var lateness []time.Duration
	for id, as := range got {
		if len(as) != 1 {
			t.Errorf("%s reached ready %d times", id, len(as))
		}
		a := as[0]
		if early := a.sendAt.Sub(a.at); early > delay.ReadyWithin {
			t.Errorf("%s reached ready %v before its send-at", id, early)
		}
		due := a.sendAt
		if due.Before(start) {
			due = start
		}
		late := a.at.Sub(due)
		worst = max(worst, late)
		lateness = append(lateness, late)
		// The requirement is p99 under 1 s (below); a single batch may be
		// held up by the machine (CI runs other packages' stacks on the
		// same two cores), not by minutes.
		if late > 5*time.Second {
			t.Errorf("%s reached ready %v after its send-at", id, late)
		}
		if a.hops > len(l.Tiers) {
			t.Errorf("%s took %d hops on a %d-tier ladder", id, a.hops, len(l.Tiers))
		}
	}
	slices.Sort(lateness)
	if p99 := lateness[len(lateness)*99/100]; p99 > time.Second {
		t.Errorf("p99 lateness at ready %v, want under 1 s", p99)
	}
	t.Logf("worst lateness at ready: %v", worst)
}

// A batch beyond the ladder's reach loops on the top tier and still arrives
// on time; hops stay within len(Tiers) + loops.
func TestForwarderTopTierLoops(t *testing.T) {
	t.Parallel()
	k := dispatchtest.StartKafka(t)
	l, dlq := k.Ladder(t, 2, 1) // 1 s and 2 s
	startForwarder(t, k, l, dlq, dispatchtest.UniqueName("delay"), nil)
	cl := k.Client(t)
	sendAt := time.Now().Add(6500 * time.Millisecond)
	writeBatch(t, cl, l, "far", "c1", sendAt, time.Time{}, nil)
	got := arrivals(t, k.ReadAll(t, l.Ready, 1, 20*time.Second))["far"]
	if len(got) != 1 {
		t.Fatalf("far arrived %d times", len(got))
	}
	if early := sendAt.Sub(got[0].at); early > delay.ReadyWithin {
		t.Errorf("arrived %v early", early)
	}
	if late := got[0].at.Sub(sendAt); late > 3*time.Second {
		t.Errorf("arrived %v late", late)
	}
	// 6.5 s on a (1 s, 2 s) ladder: 2+2 (loops) then 2, then 1 or ready.
	if got[0].hops < 3 || got[0].hops > 5 {
		t.Errorf("hops = %d, want 3..5", got[0].hops)
	}
}

// Cancelled and expired batches skip the rest of the ladder: they reach
// ready at their next due hop, where the dispatcher writes their results.
func TestForwarderCancelledAndExpiredGoStraightToReady(t *testing.T) {
	t.Parallel()
	k := dispatchtest.StartKafka(t)
	l, dlq := k.Ladder(t, 4, 1)
	r := startForwarder(t, k, l, dlq, dispatchtest.UniqueName("delay"), func(_ *delay.Config, d *delay.Deps) {
		d.Control = cancelled{"c-cancelled": true}
	})
	cl := k.Client(t)
	now := time.Now()
	// 9 s ahead: tier 3 (8 s) in a 4-tier ladder, then tier 0 (1 s).
	writeBatch(t, cl, l, "cancelled", "c-cancelled", now.Add(9*time.Second), time.Time{}, nil)
	writeBatch(t, cl, l, "expired", "c-live", now.Add(9*time.Second), now.Add(2*time.Second), nil)
	got := arrivals(t, k.ReadAll(t, l.Ready, 2, 20*time.Second))
	for _, id := range []string{"cancelled", "expired"} {
		as := got[id]
		if len(as) != 1 {
			t.Fatalf("%s arrived %d times", id, len(as))
		}
		if as[0].at.After(now.Add(8500*time.Millisecond)) || as[0].hops != 1 {
			t.Errorf("%s arrived at +%v after %d hops, want at its first due hop (+8 s)", id, as[0].at.Sub(now), as[0].hops)
		}
	}
	for _, why := range []string{"cancelled", "expired"} {
		if v := dispatchtest.WaitMetric(t, r.reg, 2*time.Second, 1, "pushlane_delay_forwarded_total", "why", why, "to", l.Ready); v != 1 {
			t.Errorf("forwarded why=%s: %v, want 1", why, v)
		}
	}
}

func TestForwarderDeadLettersUnroutableRecords(t *testing.T) {
	t.Parallel()
	k := dispatchtest.StartKafka(t)
	l, dlq := k.Ladder(t, 2, 1)
	startForwarder(t, k, l, dlq, dispatchtest.UniqueName("delay"), nil)
	cl := k.Client(t)
	bad := &kgo.Record{Topic: l.Tiers[0], Key: []byte("no-send-at"), Value: []byte("x"),
		Headers: []kgo.RecordHeader{{Key: kafka.HeaderSendAt, Value: []byte("tomorrow")}}}
	if err := cl.ProduceSync(context.Background(), bad).FirstErr(); err != nil {
		t.Fatal(err)
	}
	writeBatch(t, cl, l, "good", "c1", time.Now().Add(1500*time.Millisecond), time.Time{}, nil)
	dl := k.ReadAll(t, dlq, 1, 10*time.Second)
	if len(dl) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dl))
	}
	d, err := schemas.DecodeDeadLetter(dl[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	if d.Stage != delay.Stage || !strings.Contains(d.Reason, kafka.HeaderSendAt) || string(d.Value) != "x" || d.Topic != l.Tiers[0] {
		t.Errorf("dead letter = %+v", d)
	}
	// The bad record does not block the good one behind it.
	if got := arrivals(t, k.ReadAll(t, l.Ready, 1, 10*time.Second)); len(got["good"]) != 1 {
		t.Errorf("good batch arrived %d times", len(got["good"]))
	}
}

// A record its destination refuses (here: larger than the ready topic's
// max.message.bytes) is tried once more on its own, then dead-lettered with
// the broker's reason. Meanwhile the other tiers are fetched and forwarded
// as usual, and the batch behind it on its partition follows once it is
// gone. (Before, its due head made every poll return at once without the
// buffered fetches: the whole ladder stalled, retrying it in a hot loop.)
func TestForwarderDeadLettersWhatTheDestinationRefuses(t *testing.T) {
	t.Parallel()
	k := dispatchtest.StartKafka(t)
	l, dlq := k.Ladder(t, 2, 1)
	rs, err := testenv.KafkaAdmin(t).AlterTopicConfigs(context.Background(),
		[]kadm.AlterConfig{{Name: "max.message.bytes", Value: kadm.StringPtr("4000")}}, l.Ready)
	if err == nil {
		err = rs[0].Err
	}
	if err != nil {
		t.Fatal(err)
	}
	log, failures := testenv.CountingLogger("forward failed; it stays held and is retried")
	startForwarder(t, k, l, dlq, dispatchtest.UniqueName("delay"), func(_ *delay.Config, d *delay.Deps) { d.Logger = log })
	cl := k.Client(t)
	pad := make([]byte, 8000) // random, so compression cannot bring it under 4000 bytes
	for i := range pad {
		pad[i] = byte(rand.N(256))
	}
	now := time.Now()
	writeBatch(t, cl, l, "too-big", "c1", now.Add(1500*time.Millisecond), time.Time{}, fmt.Appendf(nil, `{"pad":"%x"}`, pad))
	writeBatch(t, cl, l, "behind", "c1", now.Add(1600*time.Millisecond), time.Time{}, nil)
	if err := cl.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // both due on tier 0; the first round fails
	writeBatch(t, cl, l, "other-tier", "c1", time.Now().Add(3500*time.Millisecond), time.Time{}, nil)

	dl := k.ReadAll(t, dlq, 1, 15*time.Second)
	t.Logf("dead letter read %s after the first write", time.Since(now).Round(time.Millisecond))
	if len(dl) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dl))
	}
	d, err := schemas.DecodeDeadLetter(dl[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	if string(dl[0].Key) != "too-big" || d.Topic != l.Tiers[0] || !strings.Contains(d.Reason, l.Ready+" refuses the record") ||
		!strings.Contains(d.Reason, "TOO_LARGE") {
		t.Errorf("dead letter %s = topic %s, reason %q", dl[0].Key, d.Topic, d.Reason)
	}
	got := arrivals(t, k.ReadAll(t, l.Ready, 2, 15*time.Second))
	t.Logf("ready read %s after the first write", time.Since(now).Round(time.Millisecond))
	if len(got["behind"]) != 1 || len(got["other-tier"]) != 1 || len(got) != 2 {
		t.Errorf("ready got %v, want behind and other-tier once each", got)
	}
	if n := failures.Load(); n < 1 || n > 3 {
		t.Errorf("%d failed-forward warnings, want 1 to 3 (one failed round, then a pause and one try alone)", n)
	}
}

// A graceful stop while records wait, then a new forwarder in the same
// group: every batch arrives exactly once.
func TestForwarderGracefulRestartNoLossNoDuplicates(t *testing.T) {
	t.Parallel()
	k := dispatchtest.StartKafka(t)
	l, dlq := k.Ladder(t, 3, 3)
	group := dispatchtest.UniqueName("delay")
	first := startForwarder(t, k, l, dlq, group, nil)
	cl := k.Client(t)
	const n = 60
	now := time.Now()
	for i := range n {
		writeBatch(t, cl, l, fmt.Sprintf("b%02d", i), "c1", now.Add(time.Duration(1000+i*80)*time.Millisecond), time.Time{}, nil)
	}
	if err := cl.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Stop the first forwarder once it has forwarded some (the first are
	// due after about a second, the last after almost six): the stop must
	// find records forwarded and records held.
	adm := kadm.NewClient(k.Client(t))
	deadline := time.Now().Add(20 * time.Second)
	for recordsOn(t, adm, l.Ready) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("nothing forwarded to ready within 20 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	first.stop(t)
	if forwarded := recordsOn(t, adm, l.Ready); forwarded <= 0 || forwarded >= n {
		t.Fatalf("the first forwarder stopped after forwarding %d of %d batches, want some forwarded and some held", forwarded, n)
	} else {
		t.Logf("the first forwarder forwarded %d of %d before its stop", forwarded, n)
	}
	startForwarder(t, k, l, dlq, group, nil)
	got := arrivals(t, k.ReadAll(t, l.Ready, n, 20*time.Second))
	time.Sleep(time.Second) // room for a duplicate to show up
	got = arrivals(t, k.ReadAll(t, l.Ready, n+1, 2*time.Second))
	if len(got) != n {
		t.Fatalf("%d distinct batches arrived, want %d", len(got), n)
	}
	for id, as := range got {
		if len(as) != 1 {
			t.Errorf("%s arrived %d times", id, len(as))
		}
	}
}

// While thousands of records wait on a tier, the forwarder holds about one
// fetch per partition, not all of them.
func TestForwarderHoldsBoundedRecords(t *testing.T) {
	t.Parallel()
	k := dispatchtest.StartKafka(t)
	l, dlq := k.Ladder(t, 5, 1)
	r := startForwarder(t, k, l, dlq, dispatchtest.UniqueName("delay"), func(c *delay.Config, _ *delay.Deps) {
		c.FetchMaxPartitionBytes = 32 << 10
		c.MaxPollRecords = 50
	})
	cl := k.Client(t, kgo.ProducerBatchMaxBytes(16<<10))
	const n = 3000
	value := []byte(`{"pad":"` + strings.Repeat("x", 2000) + `"}`)
	// Due 24 s after the first write: written within 8 s of it, a batch
	// goes to the top tier (16 s), later to tier 3 (8 s), and none comes
	// due before first+16 s however slow the writes are. Until first+15 s
	// nothing is within the 1 s prefetch window, so only the first fetch
	// of each partition may be held.
	first := time.Now()
	sendAt := first.Add(24 * time.Second)
	quiet := first.Add(14 * time.Second) // a second of margin
	for i := range n {
		writeBatch(t, cl, l, fmt.Sprintf("b%04d", i), "c1", sendAt, time.Time{}, value)
	}
	if err := cl.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d batches in %v", n, time.Since(first).Round(time.Millisecond))
	held := func() float64 { return dispatchtest.MetricValue(t, r.reg, "pushlane_delay_held_records") }
	// The group has joined and fetched once something is held.
	maxHeld := held()
	for maxHeld == 0 {
		if time.Now().After(quiet) {
			t.Fatalf("nothing held %v after the first write: the forwarder never fetched the waiting tier", time.Since(first).Round(time.Millisecond))
		}
		time.Sleep(20 * time.Millisecond)
		maxHeld = held()
	}
	start := time.Now()
	end := start.Add(5 * time.Second)
	if end.After(quiet) {
		end = quiet
	}
	if end.Sub(start) < 2*time.Second {
		t.Fatalf("first fetch held only %v after the first write, too late to watch it for 2 s before anything comes due", start.Sub(first).Round(time.Millisecond))
	}
	for time.Now().Before(end) {
		time.Sleep(20 * time.Millisecond)
		maxHeld = max(maxHeld, held())
	}
	t.Logf("held at most %v records for %v", maxHeld, end.Sub(start).Round(time.Millisecond))
	if maxHeld > 100 {
		t.Errorf("held up to %v records of %d waiting, want 1..100 (one 32 KiB fetch, a poll of 50)", maxHeld, n)
	}
	got := k.ReadAll(t, l.Ready, n, 45*time.Second)
	if len(got) != n {
		t.Fatalf("%d arrived, want %d", len(got), n)
	}
}

// recordsOn returns how many records topic holds (the sum of its
// partitions' end offsets: no transactions, no compaction).
func recordsOn(t *testing.T, adm *kadm.Client, topic string) int64 {
	t.Helper()
	ends, err := adm.ListEndOffsets(context.Background(), topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatalf("end offsets of %s: %v", topic, err)
	}
	var sum int64
	ends.Each(func(o kadm.ListedOffset) { sum += o.Offset })
	return sum
}

// The forwarder is ready once its group is joined, not at start: with the
// brokers unreachable it stays "starting"; joined, ready; stopped,
// stopping.
func TestForwarderReadyOnceTheGroupIsJoined(t *testing.T) {
	t.Parallel()
	k := dispatchtest.StartKafka(t)
	l, dlq := k.Ladder(t, 2, 1)
	for _, reachable := range []bool{false, true} {
		ready := service.NewReadiness()
		r := startForwarder(t, k, l, dlq, dispatchtest.UniqueName("delay"), func(c *delay.Config, d *delay.Deps) {
			d.Ready = ready
			if !reachable {
				c.Kafka.Brokers = []string{"127.0.0.1:1"}
			}
		})
		if reachable {
			deadline := time.Now().Add(20 * time.Second)
			for ready.Err() != nil && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if err := ready.Err(); err != nil {
				t.Fatalf("joined: readiness %v, want ready", err)
			}
		} else {
			time.Sleep(1500 * time.Millisecond)
			if err := ready.Err(); err == nil || err.Error() != "delay: starting" {
				t.Errorf("brokers unreachable for 1.5 s: readiness %v, want delay: starting", err)
			}
		}
		r.stop(t)
		if err := ready.Err(); err == nil || err.Error() != "delay: stopping" {
			t.Errorf("stopped: readiness %v, want delay: stopping", err)
		}
	}
}

// A record that does not fit its tier (written by a process whose clock is
// far ahead, by hand, or to a ladder that has grown since) does not hold
// the records behind it in its partition: it is re-written at once to the
// tier it fits, and they go on time. The forwarder held such a record on
// its tier until its send-at was near, and everything behind it with it.
func TestForwarderIsNotHeldByARecordThatDoesNotFitItsTier(t *testing.T) {
	t.Parallel()
	k := dispatchtest.StartKafka(t)
	l, dlq := k.Ladder(t, 4, 1) // 1, 2, 4, 8 s; one partition
	cl := k.Client(t)
	now := time.Now()
	misfitAt := now.Add(40 * time.Second) // Route would pick the top tier
	dueAt := now.Add(1500 * time.Millisecond)
	for _, r := range []*kgo.Record{
		delay.BatchRecord(l.Tiers[0], "misfit", "c1", misfitAt, time.Time{}, []byte(`{}`)),
		delay.BatchRecord(l.Tiers[0], "due", "c1", dueAt, time.Time{}, []byte(`{}`)),
	} {
		if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	startForwarder(t, k, l, dlq, dispatchtest.UniqueName("delay"), nil)

	got := arrivals(t, k.ReadAll(t, l.Ready, 1, 15*time.Second))
	if len(got["due"]) != 1 {
		t.Fatalf("ready holds %v, want the due batch once", got)
	}
	// Held behind the misfit it came 38 s late; the margin is the
	// machine's.
	if late := got["due"][0].at.Sub(dueAt); late > 3*time.Second {
		t.Errorf("the batch behind the misfit reached ready %v after its send-at", late)
	}
	if _, early := got["misfit"]; early {
		t.Errorf("the misfit reached ready %v before its send-at", misfitAt.Sub(got["misfit"][0].at))
	}
	top := k.ReadAll(t, l.Tiers[3], 1, 10*time.Second)
	if len(top) != 1 || string(top[0].Key) != "misfit" {
		t.Fatalf("top tier holds %d records, want the misfit re-written there", len(top))
	}
	if h, _ := kafka.Header(top[0], kafka.HeaderHop); h != "1" {
		t.Errorf("misfit re-written with hop %q, want 1", h)
	}
}

// A ladder with fewer tiers than before (delay.tiers lowered) still
// forwards the batches waiting on the tier topics above its top, each no
// earlier than that tier's delay says, into the ladder as it is now. They
// were never read again, and retention deleted them unsent.
func TestForwarderReadsTierTopicsAboveItsTop(t *testing.T) {
	t.Parallel()
	k := dispatchtest.StartKafka(t)
	cl := k.Client(t)
	adm := kadm.NewClient(cl)
	prefix := dispatchtest.UniqueName("ladder")
	logAppend := map[string]*string{"message.timestamp.type": kadm.StringPtr("LogAppendTime")}
	var names []string
	for i := range 4 { // t00..t03 exist; the ladder is configured with two
		names = append(names, fmt.Sprintf("%s.t%02d", prefix, i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	created, err := adm.CreateTopics(ctx, 1, 1, logAppend, names...)
	if err == nil {
		err = created.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		deleted, err := adm.DeleteTopics(dctx, names...)
		if err == nil {
			err = deleted.Error()
		}
		if err != nil {
			t.Logf("delete %v: %v", names, err)
		}
	})
	l := delay.Ladder{Tiers: names[:2], Ready: testenv.Topic(t, "ready", 1, nil)}
	dlq := testenv.Topic(t, "dead-letter", 1, nil)

	now := time.Now()
	at := map[string]time.Time{"on-t02": now.Add(4500 * time.Millisecond), "on-t03": now.Add(9 * time.Second)}
	for id, tier := range map[string]string{"on-t02": names[2], "on-t03": names[3]} {
		if err := cl.ProduceSync(ctx, delay.BatchRecord(tier, id, "c1", at[id], time.Time{}, []byte(`{}`))).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	startForwarder(t, k, l, dlq, dispatchtest.UniqueName("delay"), nil)

	got := arrivals(t, k.ReadAll(t, l.Ready, 2, 20*time.Second))
	for id, sendAt := range at {
		if len(got[id]) != 1 {
			t.Errorf("%s reached ready %d times, want once", id, len(got[id]))
			continue
		}
		a := got[id][0]
		if early := sendAt.Sub(a.at); early > delay.ReadyWithin {
			t.Errorf("%s reached ready %v before its send-at", id, early)
		}
		if late := a.at.Sub(sendAt); late > 3*time.Second {
			t.Errorf("%s reached ready %v after its send-at", id, late)
		}
		// Read as the tier its name says, each comes due with under a
		// second to go and goes straight to ready; read as tier 0 it
		// would wait there and take a hop through t00 too.
		if a.hops != 1 {
			t.Errorf("%s reached ready in %d hops, want 1", id, a.hops)
		}
	}
}
