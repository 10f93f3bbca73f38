package control_test

import (
	"context"
	"crypto/rand"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/internal/testenv"
	"github.com/pushlane/pushlane/pipeline/control"
	"github.com/pushlane/pushlane/pipeline/dispatcher/dispatchtest"
	"github.com/pushlane/pushlane/schemas"
)

// startAuditor runs an auditor of group until the returned stop is called.
func startAuditor(t *testing.T, k dispatchtest.Kafka, topic, group, dlq string, reg prometheus.Registerer) (stop func()) {
	t.Helper()
	a, err := control.NewAuditor(control.AuditorConfig{Kafka: config.Kafka{Brokers: k.Brokers, ClientID: "audit-test"},
		Topic: topic, Group: group, DeadLetterTopic: dlq}, control.Deps{Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("auditor.Run: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

// Invalid control records reach the dead-letter topic once, with the
// reason, however many planners audit the topic, and not again after a
// restart; valid events and tombstones do not.
func TestAuditorDeadLettersInvalidControlRecordsOnce(t *testing.T) {
	k := dispatchtest.StartKafka(t)
	topic := k.Topic(t, "control", 3, true)
	dlq := k.Topic(t, "dead-letter", 1, false)
	group := dispatchtest.UniqueName("audit")
	cl := k.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	publish(t, cl, topic, "c-1", schemas.ControlCancel)
	publish(t, cl, topic, "c-2", schemas.ControlPause)
	bad := []*kgo.Record{
		{Topic: topic, Key: []byte("c-bad-action"), Value: []byte(`{"schema_version":1,"campaign_id":"c-bad-action","action":"explode","at":"2026-11-28T03:00:00Z"}`)},
		{Topic: topic, Key: []byte("c-no-at"), Value: []byte(`{"schema_version":1,"campaign_id":"c-no-at","action":"cancel"}`)},
		{Topic: topic, Key: []byte("c-not-json"), Value: []byte(`cancel c-not-json`)},
	}
	if err := cl.ProduceSync(ctx, bad...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// A tombstone is valid: it forgets a campaign.
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("c-2")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// Two planners, one group.
	regs := []*prometheus.Registry{prometheus.NewRegistry(), prometheus.NewRegistry()}
	stopA := startAuditor(t, k, topic, group, dlq, regs[0])
	stopB := startAuditor(t, k, topic, group, dlq, regs[1])
	letters := k.ReadAll(t, dlq, len(bad), 30*time.Second)
	// Anything more (a second letter for one record) would come within
	// the auditors' next polls.
	time.Sleep(2 * time.Second)
	stopA()
	stopB()

	var keys []string
	// One more than expected, so a duplicate would be read: this waits out
	// its timeout.
	for _, r := range k.ReadAll(t, dlq, len(bad)+1, 5*time.Second) {
		// Valid by the dead-letter schema, as pushctl dlq reads it.
		dl, err := schemas.DecodeDeadLetter(r.Value)
		if err != nil {
			t.Fatalf("dead letter %s: %v", r.Value, err)
		}
		if dl.Stage != control.AuditStage || dl.Topic != topic || dl.Reason == "" {
			t.Errorf("dead letter %+v: want stage %q, topic %q and a reason", dl, control.AuditStage, topic)
		}
		if string(dl.Key) != string(r.Key) {
			t.Errorf("dead letter keyed %q, carries key %q", r.Key, dl.Key)
		}
		for _, b := range bad {
			if string(b.Key) == string(dl.Key) && string(b.Value) != string(dl.Value) {
				t.Errorf("dead letter of %s carries %q, want the original %q", dl.Key, dl.Value, b.Value)
			}
		}
		switch string(dl.Key) {
		case "c-bad-action":
			if !strings.Contains(dl.Reason, "action") {
				t.Errorf("reason for c-bad-action: %q, want it to name the action", dl.Reason)
			}
		case "c-no-at":
			if !strings.Contains(dl.Reason, "at") {
				t.Errorf("reason for c-no-at: %q, want it to name the missing at", dl.Reason)
			}
		}
		keys = append(keys, string(dl.Key))
	}
	sort.Strings(keys)
	if got, want := strings.Join(keys, ","), "c-bad-action,c-no-at,c-not-json"; got != want {
		t.Errorf("dead-lettered %s, want %s once each (%d letters read first)", got, want, len(letters))
	}
	var counted float64
	for _, reg := range regs {
		counted += dispatchtest.MetricValue(t, reg, "pushlane_control_dead_letters_total")
	}
	if counted != float64(len(bad)) {
		t.Errorf("pushlane_control_dead_letters_total over both auditors = %v, want %d", counted, len(bad))
	}

	// A restarted planner resumes from the group's commits: no new letter,
	// until a new invalid record.
	startAuditor(t, k, topic, group, dlq, prometheus.NewRegistry())
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("c-late"), Value: []byte(`{}`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	after := k.ReadAll(t, dlq, len(bad)+2, 8*time.Second)
	if len(after) != len(bad)+1 || string(after[len(after)-1].Key) != "c-late" {
		var got []string
		for _, r := range after {
			got = append(got, string(r.Key))
		}
		t.Errorf("after the restart the dead-letter topic holds %v, want the first three and c-late", got)
	}
}

// A dead letter the broker refuses (the original's key and headers are kept
// whole, and a control record may carry them up to the broker's limit) is
// written again without them, with the reason saying so, and the auditor
// goes on: retried as it was, it held the auditor and its group for good.
func TestAuditorWritesARefusedDeadLetterWithoutTheKey(t *testing.T) {
	k := dispatchtest.StartKafka(t)
	topic := k.Topic(t, "control", 1, true)
	// Room for a letter's body, not for a 4 KB key on top of it.
	dlq := testenv.Topic(t, "dead-letter", 1, map[string]*string{"max.message.bytes": kadm.StringPtr("3000")})
	cl := k.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Random, so the producer's compression does not shrink it under the
	// limit.
	bigKey := make([]byte, 4000)
	if _, err := rand.Read(bigKey); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx,
		&kgo.Record{Topic: topic, Key: bigKey, Value: []byte(`not json`)},
		&kgo.Record{Topic: topic, Key: []byte("c-small"), Value: []byte(`{}`)},
		&kgo.Record{Topic: topic, Key: []byte("c-headers"), Value: []byte(`{"x":1}`), Headers: []kgo.RecordHeader{{Key: "blob", Value: bigKey}}},
	).FirstErr(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	startAuditor(t, k, topic, dispatchtest.UniqueName("audit"), dlq, reg)
	letters := k.ReadAll(t, dlq, 3, 30*time.Second)
	if len(letters) != 3 {
		t.Fatalf("%d dead letters, want 3", len(letters))
	}
	// By the source offset: the refused letter is written again after the
	// one beside it.
	bySource := map[int64]*kgo.Record{}
	decoded := map[int64]*schemas.DeadLetter{}
	for _, l := range letters {
		dl, err := schemas.DecodeDeadLetter(l.Value)
		if err != nil {
			t.Fatalf("dead letter %s: %v", l.Value, err)
		}
		bySource[dl.Offset], decoded[dl.Offset] = l, dl
	}
	big, small := decoded[0], decoded[1]
	if big == nil || small == nil {
		t.Fatalf("dead letters of source offsets %v, want 0 and 1", decoded)
	}
	if len(bySource[0].Key) != 0 || len(big.Key) != 0 || !strings.Contains(big.Reason, "key and headers are left out") {
		t.Errorf("refused letter written as key %d bytes, body key %d bytes, reason %q; want no key and the reason saying so",
			len(bySource[0].Key), len(big.Key), big.Reason)
	}
	if string(bySource[1].Key) != "c-small" || string(small.Key) != "c-small" || strings.Contains(small.Reason, "left out") {
		t.Errorf("the letter beside it: key %q, body %+v; want it whole, keyed c-small", bySource[1].Key, small)
	}
	// Too large only for its headers: they go, the key (the campaign, and
	// what a re-drive to the compacted topic needs) stays.
	if hdr := decoded[2]; hdr == nil || string(bySource[2].Key) != "c-headers" || string(hdr.Key) != "c-headers" ||
		len(hdr.Headers) != 0 || !strings.Contains(hdr.Reason, "the original's headers are left out") {
		t.Errorf("letter of the record with large headers: key %q, body %+v; want keyed c-headers, no headers, the reason saying so", bySource[2].Key, hdr)
	}
	if got := dispatchtest.WaitMetric(t, reg, 10*time.Second, 3, "pushlane_control_dead_letters_total"); got != 3 {
		t.Errorf("pushlane_control_dead_letters_total = %v, want 3", got)
	}
}

// As above, on kfake so that it runs without the stack, and with a letter
// that no step makes small enough: it is dropped and counted, and the
// auditor commits past it instead of retrying it for ever.
func TestAuditorSlimsOrDropsRefusedDeadLettersOnKfake(t *testing.T) {
	const topic, dlq, group = "control", "dead-letter", "audit"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	k := dispatchtest.Kafka{Brokers: c.ListenAddrs()}
	cl := k.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, map[string]*string{"max.message.bytes": kadm.StringPtr("3000")}, dlq); err != nil {
		t.Fatal(err)
	}
	bigKey := make([]byte, 4000)
	bigValue := make([]byte, 5000)
	for _, b := range [][]byte{bigKey, bigValue} {
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.ProduceSync(ctx,
		&kgo.Record{Topic: topic, Key: bigKey, Value: []byte(`not json`)},
		&kgo.Record{Topic: topic, Key: []byte("c-small"), Value: []byte(`{}`)},
		&kgo.Record{Topic: topic, Key: []byte("c-headers"), Value: []byte(`{"x":1}`), Headers: []kgo.RecordHeader{{Key: "blob", Value: bigKey}}},
		&kgo.Record{Topic: topic, Key: []byte("c-drop"), Value: bigValue},
	).FirstErr(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	stop := startAuditor(t, k, topic, group, dlq, reg)
	if got := dispatchtest.WaitMetric(t, reg, 10*time.Second, 1, "pushlane_control_dead_letters_dropped_total"); got != 1 {
		t.Fatalf("pushlane_control_dead_letters_dropped_total = %v, want 1", got)
	}
	if got := dispatchtest.WaitMetric(t, reg, 10*time.Second, 3, "pushlane_control_dead_letters_total"); got != 3 {
		t.Errorf("pushlane_control_dead_letters_total = %v, want 3", got)
	}
	// Committed past all four, the dropped one too.
	deadline := time.Now().Add(10 * time.Second)
	var committed int64
	for time.Now().Before(deadline) {
		offs, err := kadm.NewClient(cl).FetchOffsets(ctx, group)
		if err == nil {
			if o, ok := offs.Lookup(topic, 0); ok && o.Err == nil {
				committed = o.At
			}
		}
		if committed == 4 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	if committed != 4 {
		t.Errorf("committed offset %d, want 4", committed)
	}

	// One more than expected, so a duplicate would be read.
	letters := k.ReadAll(t, dlq, 4, 2*time.Second)
	bySource := map[int64]*kgo.Record{}
	decoded := map[int64]*schemas.DeadLetter{}
	for _, l := range letters {
		dl, err := schemas.DecodeDeadLetter(l.Value)
		if err != nil {
			t.Fatalf("dead letter %s: %v", l.Value, err)
		}
		if decoded[dl.Offset] != nil {
			t.Errorf("two dead letters of source offset %d", dl.Offset)
		}
		bySource[dl.Offset], decoded[dl.Offset] = l, dl
	}
	if len(letters) != 3 || decoded[0] == nil || decoded[1] == nil || decoded[2] == nil {
		t.Fatalf("%d dead letters, of source offsets %v; want 0, 1 and 2", len(letters), decoded)
	}
	if big := decoded[0]; len(bySource[0].Key) != 0 || len(big.Key) != 0 || !strings.Contains(big.Reason, "the original's key and headers are left out: the broker refused the dead letter with them: MESSAGE_TOO_LARGE") {
		t.Errorf("refused letter written as key %d bytes, body key %d bytes, reason %q; want no key and the reason saying so",
			len(bySource[0].Key), len(big.Key), big.Reason)
	}
	if small := decoded[1]; string(bySource[1].Key) != "c-small" || string(small.Key) != "c-small" || strings.Contains(small.Reason, "left out") {
		t.Errorf("the letter beside it: key %q, body %+v; want it whole, keyed c-small", bySource[1].Key, small)
	}
	if hdr := decoded[2]; string(bySource[2].Key) != "c-headers" || string(hdr.Key) != "c-headers" ||
		len(hdr.Headers) != 0 || !strings.Contains(hdr.Reason, " (the original's headers are left out: the broker refused the dead letter with them: MESSAGE_TOO_LARGE") {
		t.Errorf("letter of the record with large headers: key %q, body %+v; want keyed c-headers, no headers, the reason saying so", bySource[2].Key, hdr)
	}
}
