package delay_test

import (
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/pipeline/delay"
	"github.com/pushlane/pushlane/pipeline/kafka"
)

// plannerValue is a batch value as the planner writes it (members in its
// order, the devices between the scheduling facts and the end).
const plannerValue = `{"schema_version":1,"id":"c1:v1::7","campaign_id":"c1","campaign_version":1,"app":"shop","seq":7,"attempt":1,` +
	`"send_at":"2026-12-01T09:00:00.250Z","expires_at":"2026-12-01T11:00:00Z","content":{"title":"Hi","body":"x"},"options":{},` +
	`"devices":[{"token":"t0","platform":"ios"},{"token":"t1","platform":"android"}]}`

func TestValueSchedule(t *testing.T) {
	sendAt := time.Date(2026, 12, 1, 9, 0, 0, 250e6, time.UTC)
	exp := time.Date(2026, 12, 1, 11, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name, value string
		want        delay.Schedule
		err         string
	}{
		{name: "planner's", value: plannerValue, want: delay.Schedule{BatchID: "c1:v1::7", CampaignID: "c1", SendAt: sendAt, ExpiresAt: exp}},
		{name: "spaced, devices first, no expiry", value: " {\n \"devices\" : [ {\"token\":\"}\"} ] , \"send_at\" : \"2026-12-01T09:00:00.250Z\", \"id\":\"a\\/b\", \"campaign_id\":\"c1\"}\n",
			want: delay.Schedule{BatchID: "a/b", CampaignID: "c1", SendAt: sendAt}},
		{name: "escaped key (encoding/json's path)", value: `{"id":"b","send\u005fat":"2026-12-01T09:00:00.250Z","expires_at":null}`,
			want: delay.Schedule{BatchID: "b", SendAt: sendAt}},
		{name: "no id", value: `{"campaign_id":"c1","send_at":"2026-12-01T09:00:00.250Z"}`, err: "no id"},
		{name: "no send_at", value: `{"id":"b","campaign_id":"c1"}`, err: "no send_at"},
		{name: "send_at not a time", value: `{"id":"b","send_at":"tomorrow"}`, err: "batch value"},
		{name: "not JSON", value: `x`, err: "batch value"},
		{name: "trailing garbage", value: `{"id":"b","send_at":"2026-12-01T09:00:00.250Z"} x`, err: "batch value"},
	} {
		got, err := delay.ValueSchedule([]byte(c.value))
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: %+v, %v; want an error saying %q", c.name, got, err, c.err)
		case c.err == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.err == "" && (got.BatchID != c.want.BatchID || got.CampaignID != c.want.CampaignID ||
			!got.SendAt.Equal(c.want.SendAt) || !got.ExpiresAt.Equal(c.want.ExpiresAt)):
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}

func headers(r *kgo.Record) map[string]string {
	m := map[string]string{}
	for _, h := range r.Headers {
		m[h.Key] = string(h.Value)
	}
	return m
}

// A record replayed without key or headers gets them back from its value,
// as BatchRecord would have written them; one with them is left as it is.
func TestScheduledRestoresWhatAReplayLeftOut(t *testing.T) {
	sendAt := time.Date(2026, 12, 1, 9, 0, 0, 250e6, time.UTC)
	exp := time.Date(2026, 12, 1, 11, 0, 0, 0, time.UTC)
	planned := delay.BatchRecord("t03", "c1:v1::7", "c1", sendAt, exp, []byte(plannerValue))
	want := headers(planned)

	if got, err := delay.Scheduled(planned); err != nil || got != planned {
		t.Errorf("a planner's record: %p, %v; want it unchanged (%p)", got, err, planned)
	}

	// kcat without -K and -H, kafka-console-producer by default.
	bare := &kgo.Record{Topic: "t03", Value: []byte(plannerValue)}
	got, err := delay.Scheduled(bare)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Key) != "c1:v1::7" || got.Topic != "t03" || string(got.Value) != plannerValue {
		t.Errorf("bare record restored as key %q, topic %s", got.Key, got.Topic)
	}
	if h := headers(got); len(h) != len(want) || h[kafka.HeaderSendAt] != want[kafka.HeaderSendAt] ||
		h[kafka.HeaderExpiresAt] != want[kafka.HeaderExpiresAt] || h[kafka.HeaderCampaignID] != "c1" ||
		h[kafka.HeaderBatchID] != "c1:v1::7" || h[kafka.HeaderHop] != "0" || h[kafka.HeaderSchema] != "batch.v1" {
		t.Errorf("bare record restored with headers %v, want %v", h, want)
	}
	if bare.Key != nil || len(bare.Headers) != 0 {
		t.Error("Scheduled changed the record it was given")
	}

	// kcat -H without -K: the batch-id header keys it, its headers stay.
	keyless := &kgo.Record{Topic: "t03", Value: []byte(`not read`), Headers: planned.Headers}
	if got, err := delay.Scheduled(keyless); err != nil || string(got.Key) != "c1:v1::7" || len(got.Headers) != len(planned.Headers) {
		t.Errorf("keyless record with headers: key %q, %d headers, %v", got.Key, len(got.Headers), err)
	}

	// Keyed, with a send-at it cannot read, a stale expiry and a hop: the
	// value's facts replace them, the hop count stays.
	odd := &kgo.Record{Topic: "t03", Key: []byte("own-key"), Value: []byte(`{"id":"b","campaign_id":"c2","send_at":"2026-12-01T09:00:00.250Z"}`),
		Headers: []kgo.RecordHeader{{Key: kafka.HeaderSendAt, Value: []byte("tomorrow")}, {Key: kafka.HeaderExpiresAt, Value: []byte("1")},
			{Key: kafka.HeaderHop, Value: []byte("3")}, {Key: "traceparent", Value: []byte("00-ab")}}}
	got, err = delay.Scheduled(odd)
	if err != nil {
		t.Fatal(err)
	}
	h := headers(got)
	if string(got.Key) != "own-key" || h[kafka.HeaderSendAt] != want[kafka.HeaderSendAt] || h[kafka.HeaderHop] != "3" ||
		h[kafka.HeaderCampaignID] != "c2" || h["traceparent"] != "00-ab" {
		t.Errorf("odd record restored as key %q, headers %v", got.Key, h)
	}
	if _, has := h[kafka.HeaderExpiresAt]; has {
		t.Errorf("the value has no expiry, but the restored record expires at %s", h[kafka.HeaderExpiresAt])
	}

	// Neither headers nor value give a send-at.
	if _, err := delay.Scheduled(&kgo.Record{Topic: "t03", Value: []byte(`{"n":1}`)}); err == nil || !strings.Contains(err.Error(), kafka.HeaderSendAt) {
		t.Errorf("a record without any send-at: %v, want an error naming %s", err, kafka.HeaderSendAt)
	}
	// A send-at header but no id anywhere: forwarded as it is, unkeyed.
	noID := &kgo.Record{Topic: "t03", Value: []byte(`{}`), Headers: []kgo.RecordHeader{{Key: kafka.HeaderSendAt, Value: []byte("1")}}}
	if got, err := delay.Scheduled(noID); err != nil || got != noID {
		t.Errorf("a record with a send-at and no id: %v, %v; want it unchanged", got, err)
	}
}
