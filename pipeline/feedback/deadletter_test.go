package feedback

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pushlane/pushlane/internal/testenv"
	pkafka "github.com/pushlane/pushlane/pipeline/kafka"
	"github.com/pushlane/pushlane/schemas"
)

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// produceTo writes recs to partition 0 of their topics, in order, so one
// poll reads them into one flush.
func (e fakeEnv) produceTo(t *testing.T, recs ...*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// deadLetters reads topic to its end, and a little longer so that a
// duplicate would be read too.
func (e fakeEnv) deadLetters(t *testing.T, topic string) (recs []*kgo.Record, letters []*schemas.DeadLetter) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			dl, err := schemas.DecodeDeadLetter(r.Value)
			if err != nil {
				t.Errorf("dead letter does not decode: %v", err)
				return
			}
			recs, letters = append(recs, r), append(letters, dl)
		})
	}
	return recs, letters
}

func validRegistration(t *testing.T, token string) []byte {
	return encode(t, schemas.DeviceRegistration{SchemaVersion: 1, App: "a", Token: token, Platform: "ios", RegisteredAt: t0})
}

// A malformed registration under the broker's 1 MB limit can make a dead
// letter over it: its key copied twice, a header that is not UTF-8 six
// times over. Such a letter was refused (MESSAGE_TOO_LARGE) on every retry
// of the flush, for good: nothing else was polled or committed, and the
// letters of the same flush that did go through were produced again on
// every retry. Now the letter leaves out what it must, and each goes once.
func TestOversizedDeadLettersDoNotStallFeedback(t *testing.T) {
	e := newFakeEnv(t)
	bigKey := randomBytes(t, 600_000)
	e.produceTo(t,
		&kgo.Record{Topic: e.regs, Key: []byte("a/t900"), Value: validRegistration(t, "t900")},
		&kgo.Record{Topic: e.regs, Key: []byte("small"), Value: []byte(`{"schema_version":1}`)},
		&kgo.Record{Topic: e.regs, Key: []byte("headers"), Value: []byte(`not json`),
			Headers: []kgo.RecordHeader{{Key: "blob", Value: bytes.Repeat([]byte{0xff}, 200_000)}, {Key: "traceparent", Value: []byte("00-ab-cd-01")}}},
		&kgo.Record{Topic: e.regs, Key: bigKey, Value: []byte(`not json`)},
		&kgo.Record{Topic: e.regs, Key: []byte("a/t901"), Value: validRegistration(t, "t901")},
	)
	store := &fakeStore{}
	reg := prometheus.NewRegistry()
	stop := e.start(t, store, NewAccumulator(), reg)
	waitFor(t, "the registrations committed", func() bool { return committedTotal(t, e.brokers, "feedback-test", e.regs) == 5 })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	recs, letters := e.deadLetters(t, e.deadLetter)
	if len(letters) != 3 {
		t.Fatalf("%d dead letters, want 3, one per malformed registration", len(letters))
	}
	bySource := map[int64]int{}
	for i, dl := range letters {
		bySource[dl.Offset] = i
	}
	if len(bySource) != 3 {
		t.Fatalf("dead letters of source offsets %v, want 1, 2 and 3 once each", bySource)
	}
	for _, want := range []struct {
		offset       int64
		slim         string
		key, bodyKey []byte
		headers      int
		reason       string
	}{
		{1, "", []byte("small"), []byte("small"), 0, "invalid "},
		{2, "1", []byte("headers"), []byte("headers"), 0, " (the original's headers are left out: with them the dead letter would be "},
		{3, "2", bigKey, nil, 0, " (the original's headers are left out, and its key is only this dead letter's own key: with them the dead letter would be "},
	} {
		i, ok := bySource[want.offset]
		if !ok {
			t.Errorf("no dead letter of offset %d", want.offset)
			continue
		}
		rec, dl := recs[i], letters[i]
		slim, _ := pkafka.Header(rec, pkafka.HeaderDeadLetterSlim)
		if slim != want.slim || !bytes.Equal(rec.Key, want.key) || !bytes.Equal(dl.Key, want.bodyKey) || len(dl.Headers) != want.headers ||
			!strings.Contains(dl.Reason, want.reason) || string(dl.Value) != string(map[int64]string{1: `{"schema_version":1}`, 2: "not json", 3: "not json"}[want.offset]) {
			t.Errorf("dead letter of offset %d: slim %q, key %d bytes, body key %d bytes, %d headers, value %q, reason %q; want slim %q, key %d bytes, body key %d bytes, reason with %q",
				want.offset, slim, len(rec.Key), len(dl.Key), len(dl.Headers), dl.Value, dl.Reason, want.slim, len(want.key), len(want.bodyKey), want.reason)
		}
	}
	var tokens []string
	for _, c := range store.applied {
		for _, g := range c.Registrations {
			tokens = append(tokens, g.Token)
		}
	}
	if fmt.Sprint(tokens) != "[t900 t901]" {
		t.Errorf("registrations applied %v, want [t900 t901]", tokens)
	}
	if got := counterValue(t, reg, "pushlane_feedback_dead_letters_total", schemas.KindDeviceRegistration); got != 3 {
		t.Errorf("pushlane_feedback_dead_letters_total = %v, want 3", got)
	}
	if got := counterValue(t, reg, "pushlane_feedback_dead_letters_dropped_total", schemas.KindDeviceRegistration); got != 0 {
		t.Errorf("pushlane_feedback_dead_letters_dropped_total = %v, want 0", got)
	}
	if got := counterValue(t, reg, "pushlane_feedback_retries_total", stepDeadLetter); got != 0 {
		t.Errorf("dead-letter retries = %v, want 0", got)
	}
}

// smallDeadLetterEnv is a fake cluster whose dead-letter topic has
// partitions partitions and takes batches of at most maxBytes.
func smallDeadLetterEnv(t *testing.T, partitions int32, maxBytes int) (fakeEnv, *kfake.Cluster) {
	t.Helper()
	e := fakeEnv{results: "results", regs: "registrations", deadLetter: "limited-dead-letter"}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, e.results, e.regs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	e.brokers = c.ListenAddrs()
	adm, err := kadm.NewOptClient(kgo.SeedBrokers(e.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := adm.CreateTopic(ctx, partitions, 1, map[string]*string{"max.message.bytes": kadm.StringPtr(fmt.Sprint(maxBytes))}, e.deadLetter); err != nil {
		t.Fatal(err)
	}
	return e, c
}

// keysOf is the key and source offset of each letter.
func keysOf(recs []*kgo.Record, letters []*schemas.DeadLetter) []string {
	var out []string
	for i, dl := range letters {
		out = append(out, fmt.Sprintf("%s@%d", recs[i].Key, dl.Offset))
	}
	return out
}

// A dead letter the dead-letter topic refuses even at its smallest is
// dropped, counted and logged with its source, and the group goes on; the
// letter beside it, refused with it in one batch, is written once. Before,
// the refused letter was retried for ever, and the other written again on
// every retry.
func TestRefusedDeadLetterIsDroppedAndTheOtherWrittenOnce(t *testing.T) {
	e, _ := smallDeadLetterEnv(t, 1, 4000)
	e.produceTo(t,
		&kgo.Record{Topic: e.regs, Key: []byte("a/t900"), Value: validRegistration(t, "t900")},
		// 10 KB of random bytes: no letter of it fits in 4000.
		&kgo.Record{Topic: e.regs, Key: []byte("drop"), Value: randomBytes(t, 10_000)},
		&kgo.Record{Topic: e.regs, Key: []byte("once"), Value: []byte(`{"schema_version":1}`)},
	)
	logs := &testenv.SyncBuffer{}
	reg := prometheus.NewRegistry()
	stop := e.startDeps(t, Deps{Store: &fakeStore{}, Sink: NewAccumulator(), Metrics: reg, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	waitFor(t, "the registrations committed", func() bool { return committedTotal(t, e.brokers, "feedback-test", e.regs) == 3 })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	if got := keysOf(e.deadLetters(t, e.deadLetter)); fmt.Sprint(got) != "[once@2]" {
		t.Errorf("dead letters (key@source offset) %v, want [once@2]", got)
	}
	for _, m := range []struct {
		name, label string
		want        float64
	}{
		{"pushlane_feedback_dead_letters_total", schemas.KindDeviceRegistration, 1},
		{"pushlane_feedback_dead_letters_dropped_total", schemas.KindDeviceRegistration, 1},
		{"pushlane_feedback_dead_letters_dropped_total", schemas.KindResult, 0},
		{"pushlane_feedback_retries_total", stepDeadLetter, 0},
	} {
		if got := counterValue(t, reg, m.name, m.label); got != m.want {
			t.Errorf("%s{%s} = %v, want %v", m.name, m.label, got, m.want)
		}
	}
	var dropLog []string
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "level=ERROR") {
			dropLog = append(dropLog, line)
		}
	}
	if len(dropLog) != 1 {
		t.Fatalf("error log lines %q, want one, of the dropped letter", dropLog)
	}
	for _, want := range []string{"dropped", "topic=" + e.regs + " ", "partition=0 ", "offset=1 ", "MESSAGE_TOO_LARGE"} {
		if !strings.Contains(dropLog[0], want) {
			t.Errorf("error log of the dropped letter %q lacks %q", dropLog[0], want)
		}
	}
}

// A dead letter that fails for a reason a retry may fix fails the step,
// whose retry writes that letter alone: the letters of the flush already
// written are not produced again (before, each retry wrote them all).
func TestDeadLetterRetryWritesOnlyTheUnwrittenLetters(t *testing.T) {
	e, c := smallDeadLetterEnv(t, 2, 1<<20)
	// Keys that the letters, keyed like their originals, take to
	// partitions 0 and 1 of the dead-letter topic.
	part := kgo.StickyKeyPartitioner(nil).ForTopic(e.deadLetter)
	keyOn := func(p int, prefix string) []byte {
		for i := range 100 {
			k := []byte(fmt.Sprint(prefix, i))
			if part.Partition(&kgo.Record{Key: k}, 2) == p {
				return k
			}
		}
		t.Fatalf("no key of %s on partition %d", prefix, p)
		return nil
	}
	onceKey, retryKey := keyOn(0, "once-"), keyOn(1, "retry-")
	// The first two produce requests for partition 1 fail, as those to an
	// unreachable leader would.
	faults := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: e.deadLetter, Partitions: []int32{1}, Count: 2})
	e.produceTo(t,
		&kgo.Record{Topic: e.regs, Key: onceKey, Value: []byte(`{"schema_version":1}`)},
		&kgo.Record{Topic: e.regs, Key: retryKey, Value: []byte(`not json`)},
		&kgo.Record{Topic: e.regs, Key: []byte("a/t900"), Value: validRegistration(t, "t900")},
	)
	reg := prometheus.NewRegistry()
	stop := e.start(t, &fakeStore{}, NewAccumulator(), reg)
	waitFor(t, "the registrations committed", func() bool { return committedTotal(t, e.brokers, "feedback-test", e.regs) == 3 })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	got := keysOf(e.deadLetters(t, e.deadLetter))
	if want := fmt.Sprintf("%s@0 %s@1", onceKey, retryKey); strings.Join(got, " ") != want && strings.Join(got, " ") != fmt.Sprintf("%s@1 %s@0", retryKey, onceKey) {
		t.Errorf("dead letters (key@source offset) %v, want %s once each", got, want)
	}
	if n := faults.Hits(); n != 2 {
		t.Errorf("%d produce requests for partition 1 failed, want 2", n)
	}
	if got := counterValue(t, reg, "pushlane_feedback_retries_total", stepDeadLetter); got != 2 {
		t.Errorf("dead-letter retries = %v, want 2", got)
	}
	if got := counterValue(t, reg, "pushlane_feedback_dead_letters_total", schemas.KindDeviceRegistration); got != 2 {
		t.Errorf("pushlane_feedback_dead_letters_total = %v, want 2", got)
	}
}
