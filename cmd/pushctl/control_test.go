package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/pipeline/control"
	"github.com/pushlane/pushlane/pipeline/kafka"
	"github.com/pushlane/pushlane/schemas"
)

func TestControlTombstones(t *testing.T) { onEachKafka(t, testControlTombstones) }

// An operator retires a campaign with a tombstone on each of its keys, and
// every stage's view forgets it; pushctl must forget it too, or it reports a
// cancel or a pause the stages no longer honour and writes nothing.
func testControlTombstones(t *testing.T, newStack stackFactory) {
	s := newStack(t).withTopics(t)
	ts := testNow.Format(time.RFC3339)
	ctl := s.topics().Control.Name
	tombstone := func(key string) {
		t.Helper()
		if err := s.cl.ProduceSync(context.Background(), &kgo.Record{Topic: ctl, Key: []byte(key)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	expect(t, s.run(t, "", "cancel", "spring", "-reason", "v1 had a typo"), exitOK, "cancel spring: written to "+ctl+"/0@0\n", "")
	tombstone("spring/cancel") // @1
	tombstone("spring")        // @2
	// Version 2 is published: the stages would send it, so a cancel must be
	// written, not reported as already there.
	expect(t, s.run(t, "", "cancel", "spring"), exitOK, "cancel spring: written to "+ctl+"/0@3\n", "")
	expect(t, s.run(t, "", "cancel", "spring"), exitOK, "cancel spring: already cancelled at "+ts+"; nothing written\n", "")

	// The pause key's tombstone alone leaves the cancel, which compaction
	// keeps under its own key (control.Campaigns): still final.
	tombstone("spring") // @4
	expect(t, s.run(t, "", "pause", "spring"), exitFailed, "", "pushctl pause: campaign spring was cancelled at "+ts+": cancel is final, it cannot be paused\n")
	tombstone("spring/cancel") // @5

	expect(t, s.run(t, "", "pause", "update-5", "-reason", "support overloaded"), exitOK, "pause update-5: written to "+ctl+"/0@6\n", "")
	tombstone("update-5") // @7
	expect(t, s.run(t, "", "resume", "update-5"), exitOK, "resume update-5: not paused; nothing written\n", "")
	expect(t, s.run(t, "", "pause", "update-5"), exitOK, "pause update-5: written to "+ctl+"/0@8\n", "")
	expect(t, s.run(t, "", "pause", "update-5"), exitOK, "pause update-5: already paused at "+ts+"; nothing written\n", "")

	// Another campaign's tombstones forget nothing of this one.
	tombstone("update-50")        // @9
	tombstone("update-50/cancel") // @10
	expect(t, s.run(t, "", "pause", "update-5"), exitOK, "pause update-5: already paused at "+ts+"; nothing written\n", "")
}

// controlState applies records as control.View.apply does; these cases are
// the rules the command test cannot reach through one partition.
func TestControlState(t *testing.T) {
	t0 := time.Date(2026, 3, 20, 9, 0, 0, 0, time.UTC)
	event := func(id, action, reason string) []byte {
		b, err := json.Marshal(schemas.CampaignControl{SchemaVersion: schemas.SchemaVersion, CampaignID: id, Action: action, Reason: reason, At: t0})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	rec := func(p int32, o int64, min int, key string, value []byte) *kgo.Record {
		return &kgo.Record{Partition: p, Offset: o, Timestamp: t0.Add(time.Duration(min) * time.Minute), Key: []byte(key), Value: value}
	}
	cancel := func(id, reason string) []byte { return event(id, schemas.ControlCancel, reason) }
	pause := func(id, reason string) []byte { return event(id, schemas.ControlPause, reason) }
	resume := func(id, reason string) []byte { return event(id, schemas.ControlResume, reason) }

	cases := []struct {
		name string
		recs []*kgo.Record
		want string // "action reason", or "" for no state
	}{
		{"cancel is final", []*kgo.Record{rec(0, 0, 0, "s/cancel", cancel("s", "a")), rec(0, 1, 1, "s", resume("s", "b")), rec(0, 2, 2, "s", pause("s", "c"))}, "cancel a"},
		{"tombstone on the cancel key", []*kgo.Record{rec(0, 0, 0, "s/cancel", cancel("s", "a")), rec(0, 1, 1, "s/cancel", nil)}, ""},
		{"tombstone on the campaign key leaves a cancel", []*kgo.Record{rec(0, 0, 0, "s/cancel", cancel("s", "a")), rec(0, 1, 1, "s", nil)}, "cancel a"},
		{"tombstone on the cancel key leaves a pause", []*kgo.Record{rec(0, 0, 0, "s", pause("s", "b")), rec(0, 1, 1, "s/cancel", cancel("s", "a")), rec(0, 2, 2, "s/cancel", nil)}, "pause b"},
		{"tombstones on both keys", []*kgo.Record{rec(0, 0, 0, "s", pause("s", "b")), rec(0, 1, 1, "s/cancel", cancel("s", "a")), rec(0, 2, 2, "s/cancel", nil), rec(0, 3, 3, "s", nil)}, ""},
		{"events after a tombstone", []*kgo.Record{rec(0, 0, 0, "s", pause("s", "a")), rec(0, 1, 1, "s", nil), rec(0, 2, 2, "s", resume("s", "b"))}, "resume b"},
		{"other campaigns' tombstones", []*kgo.Record{rec(0, 0, 0, "s", pause("s", "a")), rec(0, 1, 1, "s2", nil), rec(0, 2, 2, "s2/cancel", nil), rec(0, 3, 3, "", nil), rec(0, 4, 4, "s/cancel/cancel", nil)}, "pause a"},
		// The view decodes every value, whatever its key.
		{"a cancel under another key", []*kgo.Record{rec(0, 0, 0, "misc", cancel("s", "a")), rec(0, 1, 1, "s", pause("s", "b"))}, "cancel a"},
		// An undecodable record is skipped, but replaces its key's record,
		// as compaction does.
		{"undecodable records replace their key's", []*kgo.Record{rec(0, 0, 0, "s", pause("s", "a")), rec(0, 1, 1, "s", []byte(`{"campaign_id":"s","action":"cancel"}`)), rec(0, 2, 2, "s", []byte{})}, ""},
		{"undecodable records under another key", []*kgo.Record{rec(0, 0, 0, "s", pause("s", "a")), rec(0, 1, 1, "x", []byte(`{"campaign_id":"s","action":"cancel"}`))}, "pause a"},
		// Across partitions, the order written: partition 1's tombstone
		// came after the cancel in partition 0.
		{"across partitions, tombstone last", []*kgo.Record{rec(0, 0, 0, "s/cancel", cancel("s", "a")), rec(1, 0, 1, "s/cancel", nil)}, ""},
		{"across partitions, cancel last", []*kgo.Record{rec(0, 0, 5, "s/cancel", cancel("s", "a")), rec(1, 0, 1, "s", pause("s", "b")), rec(1, 1, 2, "s", nil)}, "cancel a"},
		// Offsets order a partition even when timestamps go back.
		{"offset order within a partition", []*kgo.Record{rec(0, 0, 9, "s", pause("s", "a")), rec(0, 1, 1, "s", resume("s", "b"))}, "resume b"},
		{"nothing", nil, ""},
	}
	for _, tc := range cases {
		got := ""
		if st := controlState(tc.recs, "s"); st != nil {
			got = st.Action + " " + st.Reason
		}
		if got != tc.want {
			t.Errorf("%s: state %q, want %q", tc.name, got, tc.want)
		}
	}
	if k := control.Key(schemas.CampaignControl{CampaignID: "s", Action: schemas.ControlCancel}); k != "s/cancel" {
		t.Fatalf("cancel key %q: the cases above assume s/cancel", k)
	}
}

func TestDLQRedriveControl(t *testing.T) { onEachKafka(t, testDLQRedriveControl) }

// A control event is re-driven under the key its (fixed) value calls for,
// not the dead letter's: compaction keeps the latest record per key, so a
// cancel under the campaign id would be replaced by the next pause, and the
// compacted topic refuses a record without a key.
func testDLQRedriveControl(t *testing.T, newStack stackFactory) {
	s := newStack(t).withTopics(t)
	T := s.topics()
	at := time.Date(2026, 3, 20, 9, 0, 3, 0, time.UTC)
	letter := func(key []byte, value string) string {
		t.Helper()
		src := &kgo.Record{Topic: T.Control.Name, Partition: 0, Offset: 12, Key: key, Value: []byte(value),
			Headers: []kgo.RecordHeader{{Key: kafka.HeaderSchema, Value: []byte("campaign-control.v1")}, {Key: "traceparent", Value: []byte("00-ab-cd-01")}}}
		reason := "not a campaign-control event"
		if _, err := schemas.DecodeCampaignControl(src.Value); err != nil {
			reason = err.Error()
		}
		dl, err := kafka.DeadLetterRecord(T.DeadLetter.Name, "planner", src, reason, at)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.cl.ProduceSync(context.Background(), dl).FirstErr(); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%d:%d", dl.Partition, dl.Offset)
	}

	// A bad action under the campaign's key, fixed into a cancel.
	bad := letter([]byte("spring"), `{"schema_version":1,"campaign_id":"spring","action":"stop","reason":"typo","at":"2026-03-20T09:00:00Z"}`)
	fixed := filepath.Join(t.TempDir(), "fixed.json")
	if err := os.WriteFile(fixed, []byte(`{"schema_version":1,"campaign_id":"spring","action":"cancel","reason":"typo","at":"2026-03-20T09:00:00Z"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	expect(t, s.run(t, "", "dlq", "redrive", bad, "-f", fixed), exitOK, "re-drove "+bad+" ("+fixed+") to "+T.Control.Name+"/0@0\n", "")
	// A letter that kept no key (an oversized one is left out).
	keyless := letter(nil, `{"schema_version":1,"campaign_id":"autumn","action":"pause","at":"2026-03-20T09:00:00Z"}`)
	expect(t, s.run(t, "", "dlq", "redrive", keyless), exitOK, "re-drove "+keyless+" (the original bytes) to "+T.Control.Name+"/0@1\n", "")

	recs := s.records(t, T.Control.Name)
	if len(recs) != 2 {
		t.Fatalf("%d control records after two re-drives, want 2", len(recs))
	}
	for i, want := range []struct{ key, campaign, from string }{{"spring/cancel", "spring", bad}, {"autumn", "autumn", keyless}} {
		r := recs[i]
		if string(r.Key) != want.key {
			t.Errorf("re-drive %d: key %q, want %q", i+1, r.Key, want.key)
		}
		headers := map[string]string{}
		for _, h := range r.Headers {
			headers[h.Key] = string(h.Value)
		}
		wantHeaders := map[string]string{kafka.HeaderSchema: "campaign-control.v1", kafka.HeaderCampaignID: want.campaign,
			"traceparent": "00-ab-cd-01", headerRedrivenFrom: T.DeadLetter.Name + "/" + strings.Replace(want.from, ":", "@", 1)}
		if !reflect.DeepEqual(headers, wantHeaders) {
			t.Errorf("re-drive %d: headers %v, want %v", i+1, headers, wantHeaders)
		}
	}
	// The cancel stands: pushctl (as the stages) refuses to pause it.
	expect(t, s.run(t, "", "pause", "spring"), exitFailed, "",
		"pushctl pause: campaign spring was cancelled at 2026-03-20T09:00:00Z (typo): cancel is final, it cannot be paused\n")
}
