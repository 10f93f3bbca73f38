package delay_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/pipeline/delay"
	"github.com/pushlane/pushlane/pipeline/kafka"
	"github.com/pushlane/pushlane/schemas"
)

// batchValue is a batch value with the scheduling facts the forwarder reads
// from it (the rest of a batch it never looks at).
func batchValue(id, campaign string, sendAt, expiresAt time.Time) []byte {
	v := fmt.Appendf(nil, `{"schema_version":1,"id":%q,"campaign_id":%q,"send_at":%q`, id, campaign, sendAt.UTC().Format(time.RFC3339Nano))
	if !expiresAt.IsZero() {
		v = fmt.Appendf(v, `,"expires_at":%q`, expiresAt.UTC().Format(time.RFC3339Nano))
	}
	return append(v, `,"devices":[{"token":"t0","platform":"ios"}]}`...)
}

// Tier records replayed by hand, as kcat and kafka-console-producer write
// them (no headers unless told, keys only with -K or parse.key), are
// forwarded once each, keyed by batch id onto the partition the planner's
// key picks, with their scheduling headers restored from the value: never
// before their send-at, an expired one straight to ready. Only a record
// with no send-at in headers or value is dead-lettered. Before, every
// record without a send-at header was dead-lettered.
func TestForwarderForwardsRecordsReplayedWithoutHeadersOrKey(t *testing.T) {
	tiers := []string{"t00", "t01", "t02", "t03"}
	const partitions = 3
	_, k, cl := stallCluster(t, 1, partitions, tiers)
	l := delay.Ladder{Tiers: tiers, Ready: "ready"}
	startForwarder(t, k, l, "dlq", "delay-replay", nil)

	now := time.Now()
	type replayed struct {
		id, topic       string
		sendAt, expires time.Time
		keyed, headered bool
		wantReady       bool // reaches ready in this test (else it would be early)
	}
	cases := []replayed{
		{id: "bare", topic: "t01", sendAt: now.Add(2500 * time.Millisecond), wantReady: true},
		{id: "keyed-bare", topic: "t00", sendAt: now.Add(1500 * time.Millisecond), keyed: true, wantReady: true},
		{id: "headered-keyless", topic: "t01", sendAt: now.Add(2 * time.Second), headered: true, wantReady: true},
		{id: "expired", topic: "t02", sendAt: now.Add(time.Hour), expires: now.Add(-time.Minute), wantReady: true},
		{id: "far", topic: "t00", sendAt: now.Add(time.Minute)},
	}
	for _, c := range cases {
		r := &kgo.Record{Topic: c.topic, Value: batchValue(c.id, "c1", c.sendAt, c.expires)}
		if c.keyed {
			r.Key = []byte(c.id)
		}
		if c.headered {
			r.Headers = delay.BatchRecord(c.topic, c.id, "c1", c.sendAt, c.expires, nil).Headers
		}
		if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// The one record nothing can route.
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: "t00", Value: []byte(`{"n":1}`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	got := k.ReadAll(t, "ready", 4, 20*time.Second)
	// A second copy of any would be the fifth: wait a little for it.
	got = append(got, k.ReadAll(t, "ready", len(got)+1, 2*time.Second)[len(got):]...)
	byID := map[string][]*kgo.Record{}
	for _, r := range got {
		byID[string(r.Key)] = append(byID[string(r.Key)], r)
	}
	part := kgo.StickyKeyPartitioner(nil).ForTopic("ready")
	for _, c := range cases {
		rs := byID[c.id]
		if !c.wantReady {
			if len(rs) > 0 {
				t.Errorf("%s reached ready %v before its send-at", c.id, c.sendAt.Sub(rs[0].Timestamp))
			}
			continue
		}
		if len(rs) != 1 {
			t.Errorf("%s reached ready %d times, want once (ready holds %d records)", c.id, len(rs), len(got))
			continue
		}
		r := rs[0]
		if want := int32(part.Partition(&kgo.Record{Key: []byte(c.id)}, partitions)); r.Partition != want {
			t.Errorf("%s on ready partition %d, want %d, where its batch id keys it", c.id, r.Partition, want)
		}
		h := headers(r)
		if h[kafka.HeaderSendAt] != kafka.UnixMillis(c.sendAt) || h[kafka.HeaderCampaignID] != "c1" || h[kafka.HeaderBatchID] != c.id {
			t.Errorf("%s reached ready with headers %v, want send-at %s of campaign c1", c.id, h, kafka.UnixMillis(c.sendAt))
		}
		if !c.expires.IsZero() && h[kafka.HeaderExpiresAt] != kafka.UnixMillis(c.expires) {
			t.Errorf("%s reached ready with expires-at %q, want %s", c.id, h[kafka.HeaderExpiresAt], kafka.UnixMillis(c.expires))
		}
		if hop, _ := strconv.Atoi(h[kafka.HeaderHop]); hop < 1 {
			t.Errorf("%s reached ready with hop %q", c.id, h[kafka.HeaderHop])
		}
		if c.expires.IsZero() && c.sendAt.Sub(r.Timestamp) > delay.ReadyWithin {
			t.Errorf("%s reached ready %v before its send-at, more than ReadyWithin", c.id, c.sendAt.Sub(r.Timestamp))
		}
	}
	// The far one waits on the ladder, keyed and with its headers, for
	// the tier its send-at fits.
	var far []*kgo.Record
	for _, r := range k.ReadAll(t, "t03", 1, 10*time.Second) {
		if string(r.Key) == "far" {
			far = append(far, r)
		}
	}
	if len(far) != 1 || headers(far[0])[kafka.HeaderSendAt] != kafka.UnixMillis(cases[4].sendAt) {
		t.Errorf("the far batch is %d times on the top tier, want once with its send-at header", len(far))
	}
	dl := k.ReadAll(t, "dlq", 2, 3*time.Second)
	if len(dl) != 1 {
		t.Fatalf("%d dead letters, want 1 (the record without any send-at)", len(dl))
	}
	d, err := schemas.DecodeDeadLetter(dl[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	if string(d.Value) != `{"n":1}` || !strings.Contains(d.Reason, kafka.HeaderSendAt) || !strings.Contains(d.Reason, "no id") {
		t.Errorf("dead letter of %s, reason %q", d.Value, d.Reason)
	}
}
