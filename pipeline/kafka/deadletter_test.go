package kafka

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/schemas"
)

func TestDeadLetterRecord(t *testing.T) {
	original := &kgo.Record{
		Topic:     "pushlane.campaigns",
		Partition: 4,
		Offset:    1289,
		Key:       []byte("broken-1"),
		Value:     []byte("\x00not json"),
		Headers: []kgo.RecordHeader{
			{Key: HeaderSchema, Value: []byte("campaign.v1")},
			{Key: "traceparent", Value: []byte("00-abc-def-01")},
		},
	}
	now := time.Date(2026, 3, 20, 10, 0, 0, 0, time.FixedZone("CET", 3600))
	const reason = "invalid campaign: not JSON: invalid character '\\x00' looking for beginning of value at byte 1"
	rec, err := DeadLetterRecord("pushlane.dead-letter", "planner", original, reason, now)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Topic != "pushlane.dead-letter" || string(rec.Key) != "broken-1" {
		t.Errorf("record topic %q key %q", rec.Topic, rec.Key)
	}
	if v, _ := Header(rec, HeaderSchema); v != "dead-letter.v1" {
		t.Errorf("schema header %q", v)
	}
	if v, _ := Header(rec, HeaderReason); v != reason {
		t.Errorf("reason header %q", v)
	}
	dl, err := schemas.DecodeDeadLetter(rec.Value)
	if err != nil {
		t.Fatalf("the dead letter does not match its own schema: %v", err)
	}
	want := schemas.DeadLetter{
		SchemaVersion: 1, Stage: "planner", Reason: reason,
		Topic: "pushlane.campaigns", Partition: 4, Offset: 1289,
		Key: []byte("broken-1"), Value: []byte("\x00not json"),
		Headers: map[string]string{HeaderSchema: "campaign.v1", "traceparent": "00-abc-def-01"},
		At:      now.UTC(),
	}
	if dl.Stage != want.Stage || dl.Reason != want.Reason || dl.Topic != want.Topic || dl.Partition != want.Partition ||
		dl.Offset != want.Offset || string(dl.Key) != string(want.Key) || string(dl.Value) != string(want.Value) ||
		!maps.Equal(dl.Headers, want.Headers) || !dl.At.Equal(want.At) || dl.At.Location() != time.UTC {
		t.Errorf("dead letter:\n got %+v\nwant %+v", *dl, want)
	}
	// The original bytes are base64 in JSON, so binary survives.
	var raw map[string]any
	if err := json.Unmarshal(rec.Value, &raw); err != nil {
		t.Fatal(err)
	}
	if raw["value"] != "AG5vdCBqc29u" || raw["key"] != "YnJva2VuLTE=" {
		t.Errorf("encoded value %v key %v", raw["value"], raw["key"])
	}
}

func TestDeadLetterRecordOfEmptyRecord(t *testing.T) {
	// A tombstone or empty value has no bytes and no key; the dead letter
	// must still be valid, with an empty value and no headers.
	rec, err := DeadLetterRecord("dlq", "feedback", &kgo.Record{Topic: "pushlane.results", Partition: 0, Offset: 7}, "empty value", time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	dl, err := schemas.DecodeDeadLetter(rec.Value)
	if err != nil {
		t.Fatalf("invalid: %v\n%s", err, rec.Value)
	}
	if dl.Value == nil || len(dl.Value) != 0 || dl.Key != nil || dl.Headers != nil || dl.Offset != 7 {
		t.Errorf("dead letter %+v", *dl)
	}
	if rec.Key != nil {
		t.Errorf("key %q, want none", rec.Key)
	}
}

func TestDeadLetterProducesBeforeReturning(t *testing.T) {
	_, cl, adm := fakeCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := EnsureTopics(ctx, adm, 1, []TopicSpec{{Name: "pushlane.dead-letter", Partitions: 3}}); err != nil {
		t.Fatal(err)
	}
	orig := &kgo.Record{Topic: "pushlane.ready", Partition: 2, Offset: 99, Key: []byte("b-1"), Value: []byte(`{"schema_version":1}`)}
	if err := DeadLetter(ctx, cl, "pushlane.dead-letter", "dispatcher", orig, "invalid batch: /: missing property 'id'"); err != nil {
		t.Fatal(err)
	}
	consumer, err := kgo.NewClient(kgo.SeedBrokers(cl.OptValue(kgo.SeedBrokers).([]string)...),
		kgo.ConsumeTopics("pushlane.dead-letter"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	fs := consumer.PollFetches(ctx)
	if err := fs.Err(); err != nil {
		t.Fatal(err)
	}
	recs := fs.Records()
	if len(recs) != 1 {
		t.Fatalf("%d dead letters, want 1", len(recs))
	}
	dl, err := schemas.DecodeDeadLetter(recs[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	if dl.Stage != "dispatcher" || dl.Topic != "pushlane.ready" || dl.Partition != 2 || dl.Offset != 99 ||
		string(dl.Value) != `{"schema_version":1}` || dl.Reason != "invalid batch: /: missing property 'id'" {
		t.Errorf("dead letter %+v", *dl)
	}
	if string(recs[0].Key) != "b-1" {
		t.Errorf("key %q: the dead letter should be keyed like the original", recs[0].Key)
	}

	// A topic that does not exist fails, naming the original record.
	err = DeadLetter(ctx, cl, "pushlane.no-such-topic", "dispatcher", orig, "x")
	if err == nil || !strings.HasPrefix(err.Error(), "kafka: produce dead letter for pushlane.ready/2@99: UNKNOWN_TOPIC_OR_PARTITION") {
		t.Errorf("err = %v", err)
	}
}

func TestDeadLetterOfAHugeRecordKeepsItsHead(t *testing.T) {
	// 950 KB fits the broker's 1 MB limit, but not once base64-encoded in
	// a dead letter: the dead letter keeps the head and says where the
	// whole record is.
	value := bytes.Repeat([]byte("y"), 950_000)
	rec, err := DeadLetterRecord("dlq", "planner", &kgo.Record{Topic: "pushlane.campaigns", Partition: 2, Offset: 9, Key: []byte("big"), Value: value}, "invalid campaign: too big", time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Value) > 200_000 {
		t.Errorf("dead letter is %d bytes", len(rec.Value))
	}
	dl, err := schemas.DecodeDeadLetter(rec.Value)
	if err != nil {
		t.Fatalf("invalid: %v", err)
	}
	if dl.ValueBytes != 950_000 || len(dl.Value) != KeptDeadLetterValue || !bytes.Equal(dl.Value, value[:KeptDeadLetterValue]) {
		t.Errorf("value_bytes %d, kept %d bytes", dl.ValueBytes, len(dl.Value))
	}
	want := "invalid campaign: too big (the dead letter keeps the first 65536 of 950000 bytes; the whole record stays at pushlane.campaigns/2@9)"
	if dl.Reason != want {
		t.Errorf("reason %q, want %q", dl.Reason, want)
	}
}

// A reason that names thousands of schema failures is cut, so the dead
// letter stays under the broker's limit: refused, it was retried for ever
// and held its partition.
func TestDeadLetterCutsAHugeReason(t *testing.T) {
	reason := "invalid campaign: " + strings.Repeat("/user_ids/0: minLength: got 0, want 1; ", 40_000) + "é"
	rec, err := DeadLetterRecord("dlq", "planner", &kgo.Record{Topic: "pushlane.campaigns", Partition: 1, Offset: 5, Value: []byte(`{"id":"c"}`)}, reason, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Value) > 3*MaxDeadLetterReason {
		t.Errorf("dead letter is %d bytes for a %d-byte reason", len(rec.Value), len(reason))
	}
	dl, err := schemas.DecodeDeadLetter(rec.Value)
	if err != nil {
		t.Fatalf("invalid: %v", err)
	}
	head, _, ok := strings.Cut(dl.Reason, "…")
	if !ok || !strings.HasPrefix(reason, head) || len(head) > MaxDeadLetterReason || len(head) < MaxDeadLetterReason-3 {
		t.Errorf("reason kept %d bytes, cut mark %v", len(head), ok)
	}
	wantTail := fmt.Sprintf("… (%d more bytes of reason left out)", len(reason)-len(head))
	if !strings.HasSuffix(dl.Reason, wantTail) || !utf8.ValidString(dl.Reason) {
		t.Errorf("reason ends %q, want %q (valid UTF-8: %v)", dl.Reason[len(dl.Reason)-60:], wantTail, utf8.ValidString(dl.Reason))
	}
	var hdr string
	for _, h := range rec.Headers {
		if h.Key == HeaderReason {
			hdr = string(h.Value)
		}
	}
	if hdr != dl.Reason {
		t.Errorf("reason header is %d bytes, body reason %d", len(hdr), len(dl.Reason))
	}
	// A short reason is kept whole.
	short, err := DeadLetterRecord("dlq", "planner", &kgo.Record{Topic: "t", Value: []byte("x")}, "bad", time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := schemas.DecodeDeadLetter(short.Value); d == nil || d.Reason != "bad" {
		t.Errorf("short reason became %+v", d)
	}
}
