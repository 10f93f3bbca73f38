package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pushlane/pushlane/pipeline/kafka"
	"github.com/pushlane/pushlane/schemas"
)

// TestBadInputIsDeadLetteredAndTheNextCampaignServed publishes garbage
// bytes, schema-invalid JSON, a campaign of an unknown app and two huge
// campaigns (a 600 KB notification, which no provider takes, and a 950 KB
// record, near the broker's 1 MB limit) onto the campaigns topic, then a
// valid campaign behind them on the same partition. Each bad record must land in the dead-letter
// topic with its reason and its original bytes (the head of them, with the
// size and the record's place, for one too big to carry whole), and the valid campaign must
// still reach every live device exactly once.
func TestBadInputIsDeadLetteredAndTheNextCampaignServed(t *testing.T) {
	const app = "valid-after-bad"
	pop := devices(t).app(t, app)
	// One campaigns partition: the valid campaign queues behind the bad records.
	p := newPipeline(t, spec{Apps: []string{app}, CampaignPartitions: 1})
	p.StartAll()

	huge := campaign("bad-huge-payload", app, time.Time{})
	// 600 KB of custom data: schema-valid (data values have no length
	// limit), but no provider takes a notification over 4 KB (APNs 4096
	// bytes, FCM 4096 bytes of data and notification).
	huge.Content.Data = map[string]string{"blob": strings.Repeat("x", 600_000)}
	hugeRaw, err := json.Marshal(huge)
	if err != nil {
		t.Fatal(err)
	}
	// Close to the broker's 1 MB record limit: more than a batch may hold.
	huger := campaign("bad-huge-record", app, time.Time{})
	huger.Content.Data = map[string]string{"blob": strings.Repeat("y", 950_000)}
	hugerRaw, err := json.Marshal(huger)
	if err != nil {
		t.Fatal(err)
	}
	unknown := campaign("bad-unknown-app", "no-such-app", time.Time{})
	unknownRaw, err := json.Marshal(unknown)
	if err != nil {
		t.Fatal(err)
	}

	bad := []struct {
		name       string
		key, value []byte
		reason     []string // substrings the reason must contain (any case)
	}{
		{"garbage bytes", []byte("bad-garbage"), []byte{0x00, 0xff, 0x13, 0x37, 'n', 'o', 't', 0x80, 'j', 's', 'o', 'n'}, []string{"json"}},
		{"schema-invalid JSON", []byte("bad-schema"),
			[]byte(`{"schema_version":1,"id":"bad-schema","app":"valid-after-bad","content":{"title":"no audience"},"schedule":{"mode":"at"},"options":{}}`),
			[]string{"audience"}},
		{"unknown app", []byte(unknown.ID), unknownRaw, []string{"unknown app", "no-such-app"}},
		{"huge payload", []byte(huge.ID), hugeRaw, []string{"bytes"}},
		{"huge record", []byte(huger.ID), hugerRaw, []string{"bytes"}},
	}
	for _, b := range bad {
		p.PublishRaw(b.key, b.value)
	}
	good := campaign("after-bad-"+p.Prefix, app, time.Time{})
	p.Publish(good)

	dls := p.DeadLetters(len(bad), time.Minute)
	byKey := map[string]schemas.DeadLetter{}
	for _, dl := range dls {
		byKey[string(dl.Key)] = dl
		t.Logf("dead letter: stage %s, key %q, offset %d, %d bytes, reason: %.200s", dl.Stage, dl.Key, dl.Offset, len(dl.Value), dl.Reason)
	}
	for _, b := range bad {
		dl, ok := byKey[string(b.key)]
		if !ok {
			t.Errorf("%s: no dead letter with key %q (got %d dead letters)", b.name, b.key, len(dls))
			continue
		}
		if dl.Stage != "planner" || dl.Topic != p.Cfg.Kafka.Topics.Campaigns.Name {
			t.Errorf("%s: dead letter from stage %q topic %q, want planner and %s", b.name, dl.Stage, dl.Topic, p.Cfg.Kafka.Topics.Campaigns.Name)
		}
		for _, want := range b.reason {
			if !strings.Contains(strings.ToLower(dl.Reason), want) {
				t.Errorf("%s: reason %q does not mention %q", b.name, dl.Reason, want)
			}
		}
		switch {
		case len(b.value) > kafka.MaxDeadLetterValue:
			// Too big to carry whole under the broker's record limit: the
			// head, the size, and where the whole record stays.
			if dl.ValueBytes != len(b.value) || !bytes.HasPrefix(b.value, dl.Value) || len(dl.Value) != kafka.KeptDeadLetterValue {
				t.Errorf("%s: dead letter holds %d bytes (value_bytes %d) of the original %d", b.name, len(dl.Value), dl.ValueBytes, len(b.value))
			}
			if !strings.Contains(dl.Reason, fmt.Sprintf("the whole record stays at %s/%d@%d", dl.Topic, dl.Partition, dl.Offset)) {
				t.Errorf("%s: reason %q does not say where the whole record is", b.name, dl.Reason)
			}
		case !bytes.Equal(dl.Value, b.value):
			t.Errorf("%s: dead letter holds %d bytes, not the original %d", b.name, len(dl.Value), len(b.value))
		}
	}
	if len(dls) != len(bad) {
		t.Errorf("%d dead letters, want %d (one per bad record)", len(dls), len(bad))
	}

	p.WaitFinal(good.ID, len(pop.Devices), 2*time.Minute)
	checkExactDelivery(t, p, p.Sims[app], pop, good.ID)
	// Nothing of the huge campaign may have been sent, to any device.
	if n := p.Sims[app].accepted(); n != int64(pop.count(kindLive)) {
		t.Errorf("simulators accepted %d sends, want %d (the valid campaign's live devices only)", n, pop.count(kindLive))
	}
}
