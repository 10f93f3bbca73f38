package kafka

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

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

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// franzBatchLimit is franz-go's default producer batch limit: a record
// over it (with its batch's framing) is refused before it is sent.
const franzBatchLimit = 1_000_012

// An original under the broker's 1 MB limit can carry a key or headers
// that, copied into its dead letter, take it over: the key twice, a
// header's bytes that are not UTF-8 six times over in JSON. Such a letter
// was refused for ever (MESSAGE_TOO_LARGE) and held its stage; now it
// leaves them out, step by step, and says so.
func TestDeadLetterRecordStaysUnderItsBound(t *testing.T) {
	bigKey := randomBytes(t, 600_000)
	hugeKey := randomBytes(t, 900_000)
	notUTF8 := bytes.Repeat([]byte{0xff}, 200_000)
	halfValue := randomBytes(t, 500_000)
	for _, c := range []struct {
		name string
		orig *kgo.Record
		// want: the slim header ("" none), the letter's key, and what the
		// body keeps of the key, the headers and the value.
		slim                 string
		key, bodyKey         []byte
		headers              map[string]string
		value                []byte
		valueBytes           int
		reasonHas, reasonNot []string
	}{
		{
			name: "a big key: only the letter's key keeps it",
			orig: &kgo.Record{Topic: "pushlane.device-registrations", Partition: 1, Offset: 10, Key: bigKey, Value: []byte("not json"),
				Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-abc-def-01")}}},
			slim: "2", key: bigKey, value: []byte("not json"),
			reasonHas: []string{"bad (the original's headers are left out, and its key is only this dead letter's own key: with them the dead letter would be "},
		},
		{
			name: "a header not UTF-8: the headers go, the key stays in both",
			orig: &kgo.Record{Topic: "pushlane.results", Partition: 2, Offset: 20, Key: []byte("app/tok"), Value: []byte("{}"),
				Headers: []kgo.RecordHeader{{Key: "blob", Value: notUTF8}, {Key: "traceparent", Value: []byte("00-abc-def-01")}}},
			slim: "1", key: []byte("app/tok"), bodyKey: []byte("app/tok"), value: []byte("{}"),
			reasonHas: []string{"bad (the original's headers are left out: with them the dead letter would be 1200"},
			reasonNot: []string{"its key"},
		},
		{
			name: "a big key and a big value: the value's head too",
			orig: &kgo.Record{Topic: "pushlane.campaigns", Partition: 3, Offset: 30, Key: bigKey[:500_000], Value: halfValue},
			slim: "3", key: bigKey[:500_000], value: halfValue[:KeptDeadLetterValue], valueBytes: 500_000,
			reasonHas: []string{"bad (the dead letter keeps the first 65536 of 500000 bytes; the whole record stays at pushlane.campaigns/3@30) (the original's headers are left out, and its key is only this dead letter's own key: "},
		},
		{
			name: "a key near the broker's limit: no key at all",
			orig: &kgo.Record{Topic: "pushlane.campaign-control", Partition: 4, Offset: 40, Key: hugeKey, Value: []byte("x")},
			slim: "4", value: []byte("x"),
			reasonHas: []string{"bad (the original's key and headers are left out: with them the dead letter would be 2100"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec, err := DeadLetterRecord("dlq", "feedback", c.orig, "bad", time.Unix(0, 0))
			if err != nil {
				t.Fatal(err)
			}
			if n := recordBytes(rec); n > MaxDeadLetterBytes {
				t.Errorf("dead letter is %d bytes, over %d", n, MaxDeadLetterBytes)
			}
			dl, err := schemas.DecodeDeadLetter(rec.Value)
			if err != nil {
				t.Fatalf("invalid: %v", err)
			}
			slim, _ := Header(rec, HeaderDeadLetterSlim)
			_, hasReasonHeader := Header(rec, HeaderReason)
			if slim != c.slim || hasReasonHeader {
				t.Errorf("slim header %q (reason header %v), want %q and no reason header", slim, hasReasonHeader, c.slim)
			}
			if !bytes.Equal(rec.Key, c.key) || !bytes.Equal(dl.Key, c.bodyKey) || !maps.Equal(dl.Headers, c.headers) {
				t.Errorf("letter key %d bytes (want %d), body key %d bytes (want %d), body headers %d (want %d)",
					len(rec.Key), len(c.key), len(dl.Key), len(c.bodyKey), len(dl.Headers), len(c.headers))
			}
			if !bytes.Equal(dl.Value, c.value) || dl.ValueBytes != c.valueBytes {
				t.Errorf("value %d bytes of %d, want %d of %d", len(dl.Value), dl.ValueBytes, len(c.value), c.valueBytes)
			}
			for _, want := range c.reasonHas {
				if !strings.Contains(dl.Reason, want) {
					t.Errorf("reason %q lacks %q", dl.Reason, want)
				}
			}
			for _, not := range c.reasonNot {
				if strings.Contains(dl.Reason, not) {
					t.Errorf("reason %q has %q", dl.Reason, not)
				}
			}
			if strings.Count(dl.Reason, slimNoteStart) != 1 || !strings.HasSuffix(dl.Reason, fmt.Sprintf("over the %d a dead letter may have)", MaxDeadLetterBytes)) {
				t.Errorf("reason %q: want one slim note, last", dl.Reason)
			}
		})
	}
}

// The most a dead letter's body holds, the value it keeps whole and the
// longest reason JSON-escaped at its biggest, from a topic with the
// longest name Kafka allows, fits the bound without leaving anything out,
// with room for franz-go's framing: only the key and headers are ever cut
// for the bound.
func TestDeadLetterBoundHoldsTheLargestValueAndReason(t *testing.T) {
	orig := &kgo.Record{Topic: strings.Repeat("t", 249), Partition: 1 << 30, Offset: 1 << 60,
		Value: randomBytes(t, MaxDeadLetterValue)}
	reason := strings.Repeat("<", 3*MaxDeadLetterReason)
	rec, err := DeadLetterRecord("dlq", "dispatcher", orig, reason, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if _, slim := Header(rec, HeaderDeadLetterSlim); slim {
		t.Errorf("the largest whole value and reason were slimmed")
	}
	dl, err := schemas.DecodeDeadLetter(rec.Value)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dl.Value, orig.Value) || dl.ValueBytes != 0 {
		t.Errorf("value kept %d of %d bytes", len(dl.Value), len(orig.Value))
	}
	if n := recordBytes(rec); n > MaxDeadLetterBytes || n < MaxDeadLetterBytes*9/10 {
		t.Errorf("dead letter is %d bytes: want it under %d, and the bound not loose (over 90%% of it)", n, MaxDeadLetterBytes)
	}
	if MaxDeadLetterBytes+64<<10 > franzBatchLimit {
		t.Errorf("MaxDeadLetterBytes %d leaves under 64 KiB below franz-go's %d", MaxDeadLetterBytes, franzBatchLimit)
	}
}

// Each step leaves one more part out, and the reason keeps one note, the
// latest, until nothing is left to leave out.
func TestSlimDeadLetterStepByStep(t *testing.T) {
	value := bytes.Repeat([]byte("v"), 100_000)
	letter, err := DeadLetterRecord("dlq", "planner", &kgo.Record{Topic: "pushlane.campaigns", Partition: 1, Offset: 7, Key: []byte("c-1"), Value: value,
		Headers: []kgo.RecordHeader{{Key: "h", Value: []byte("x")}}}, "invalid campaign", time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct {
		slim, key, bodyKey string
		headers, value     int
		reason             string
	}{
		{"1", "c-1", "c-1", 0, 100_000, "invalid campaign (the original's headers are left out: refused 1)"},
		{"2", "c-1", "", 0, 100_000, "invalid campaign (the original's headers are left out, and its key is only this dead letter's own key: refused 2)"},
		{"3", "c-1", "", 0, KeptDeadLetterValue, "invalid campaign (the dead letter keeps the first 65536 of 100000 bytes; the whole record stays at pushlane.campaigns/1@7) (the original's headers are left out, and its key is only this dead letter's own key: refused 3)"},
		{"4", "", "", 0, KeptDeadLetterValue, "invalid campaign (the dead letter keeps the first 65536 of 100000 bytes; the whole record stays at pushlane.campaigns/1@7) (the original's key and headers are left out: refused 4)"},
	} {
		next, err := SlimDeadLetter(letter, "refused "+want.slim)
		if err != nil || next == nil {
			t.Fatalf("step %s: %v, %v", want.slim, next, err)
		}
		letter = next
		dl, err := schemas.DecodeDeadLetter(letter.Value)
		if err != nil {
			t.Fatalf("step %s: invalid: %v", want.slim, err)
		}
		slim, _ := Header(letter, HeaderDeadLetterSlim)
		if slim != want.slim || string(letter.Key) != want.key || string(dl.Key) != want.bodyKey || len(dl.Headers) != want.headers ||
			len(dl.Value) != want.value || dl.Reason != want.reason || letter.Topic != "dlq" {
			t.Errorf("step %s: slim %q, key %q, body key %q, %d headers, %d value bytes, reason\n%q\nwant %+v", want.slim, slim, letter.Key, dl.Key, len(dl.Headers), len(dl.Value), dl.Reason, want)
		}
	}
	if last, err := SlimDeadLetter(letter, "refused 5"); last != nil || err != nil {
		t.Errorf("nothing left to leave out, got %v, %v", last, err)
	}
	// An original without a key skips the key steps, and says nothing of a key.
	keyless, err := DeadLetterRecord("dlq", "delay", &kgo.Record{Topic: "t", Value: []byte("x")}, "bad", time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if keyless, err = SlimDeadLetter(keyless, "why"); err != nil || keyless == nil {
		t.Fatal(err)
	}
	if dl, _ := schemas.DecodeDeadLetter(keyless.Value); dl == nil || dl.Reason != "bad (the original's headers are left out: why)" {
		t.Errorf("keyless letter slimmed to %+v", dl)
	}
	if again, err := SlimDeadLetter(keyless, "why"); again != nil || err != nil {
		t.Errorf("a keyless letter with a short value has one step, got another: %v, %v", again, err)
	}
}

// limitedTopic creates a one-partition topic of at most maxBytes a batch.
func limitedTopic(t *testing.T, adm *kadm.Client, name string, maxBytes int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"max.message.bytes": kadm.StringPtr(fmt.Sprint(maxBytes))}, name); err != nil {
		t.Fatal(err)
	}
}

func readAll(t *testing.T, brokers []string, topic string, want int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// One more than expected: a duplicate would be read before the
	// deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) <= want && ctx.Err() == nil {
		out = append(out, cl.PollFetches(ctx).Records()...)
	}
	return out
}

// A letter the broker refuses is written slimmed, or dropped when nothing
// is left to leave out; the letters beside it in the refused batch are
// written once; another failure is left to the caller with the letter.
// Before, feedback retried a refused letter for ever, and produced the
// others of its flush again on every retry.
func TestWriteDeadLettersSlimsOrDropsRefusedLetters(t *testing.T) {
	c, cl, adm := fakeCluster(t, kfake.SeedTopics(1, "other"))
	limitedTopic(t, adm, "dlq", 3000)
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: "other", Count: 1})
	letter := func(topic string, offset int64, key []byte, value []byte, headers ...kgo.RecordHeader) *kgo.Record {
		l, err := DeadLetterRecord(topic, "feedback", &kgo.Record{Topic: "src", Offset: offset, Key: key, Value: value, Headers: headers}, "bad", time.Unix(0, 0))
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	letters := []*kgo.Record{
		letter("dlq", 0, []byte("k0"), []byte("small")),
		letter("dlq", 1, []byte("k1"), []byte("x"), kgo.RecordHeader{Key: "blob", Value: randomBytes(t, 2500)}),
		letter("dlq", 2, randomBytes(t, 2900), []byte("x")),
		letter("dlq", 3, []byte("k3"), randomBytes(t, 5000)),
		letter("other", 4, []byte("k4"), []byte("x")),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got := WriteDeadLetters(ctx, cl, letters)
	if len(got) != len(letters) {
		t.Fatalf("%d results for %d letters", len(got), len(letters))
	}
	for i, want := range []struct {
		slim    string
		err     error
		dropped bool
	}{{"", nil, false}, {"1", nil, false}, {"4", nil, false}, {"4", kerr.MessageTooLarge, true}, {"", kerr.UnknownServerError, false}} {
		w := got[i]
		slim, _ := Header(w.Letter, HeaderDeadLetterSlim)
		if slim != want.slim || w.Dropped != want.dropped || !errors.Is(w.Err, want.err) || (want.err == nil) != (w.Err == nil) {
			t.Errorf("letter %d: slim %q, dropped %v, err %v; want slim %q, dropped %v, err %v", i, slim, w.Dropped, w.Err, want.slim, want.dropped, want.err)
		}
	}
	if got[4].Letter != letters[4] {
		t.Errorf("the letter that failed otherwise came back changed")
	}
	var sources []int64
	for _, r := range readAll(t, c.ListenAddrs(), "dlq", 3) {
		dl, err := schemas.DecodeDeadLetter(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		sources = append(sources, dl.Offset)
	}
	if fmt.Sprint(sources) != "[0 1 2]" {
		t.Errorf("dlq holds the letters of source offsets %v, want [0 1 2] once each", sources)
	}

	// The retry of the letter that failed otherwise writes it.
	if w := WriteDeadLetters(ctx, cl, []*kgo.Record{got[4].Letter}); w[0].Err != nil {
		t.Errorf("retry: %v", w[0].Err)
	}
	if n := len(readAll(t, c.ListenAddrs(), "other", 1)); n != 1 {
		t.Errorf("other holds %d letters, want 1", n)
	}
}

// DeadLetter writes a refused letter slimmed, and fails, in a way Refused
// reports, only when the broker refuses it even at its smallest.
func TestDeadLetterSlimsARefusedLetter(t *testing.T) {
	c, cl, adm := fakeCluster(t)
	limitedTopic(t, adm, "dlq", 3000)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	withHeader := &kgo.Record{Topic: "pushlane.ready", Partition: 2, Offset: 5, Key: []byte("b-1"), Value: []byte("x"),
		Headers: []kgo.RecordHeader{{Key: "blob", Value: randomBytes(t, 2500)}}}
	if err := DeadLetter(ctx, cl, "dlq", "dispatcher", withHeader, "invalid batch"); err != nil {
		t.Fatalf("a letter that fits without the headers: %v", err)
	}
	recs := readAll(t, c.ListenAddrs(), "dlq", 1)
	if len(recs) != 1 {
		t.Fatalf("%d letters, want 1", len(recs))
	}
	if dl, err := schemas.DecodeDeadLetter(recs[0].Value); err != nil || string(recs[0].Key) != "b-1" || string(dl.Key) != "b-1" ||
		!strings.HasPrefix(dl.Reason, "invalid batch (the original's headers are left out: the broker refused the dead letter with them: MESSAGE_TOO_LARGE") {
		t.Errorf("letter key %q, body %+v, %v", recs[0].Key, dl, err)
	}
	tooBig := &kgo.Record{Topic: "pushlane.ready", Partition: 2, Offset: 6, Key: []byte("b-2"), Value: randomBytes(t, 5000)}
	err := DeadLetter(ctx, cl, "dlq", "dispatcher", tooBig, "invalid batch")
	if !Refused(err) || !errors.Is(err, ErrDeadLetterDropped) ||
		!strings.HasPrefix(err.Error(), "kafka: produce dead letter for pushlane.ready/2@6: refused even at its smallest, dropped: MESSAGE_TOO_LARGE") {
		t.Errorf("err = %v, want refused even at its smallest, dropped", err)
	}
}
