package control_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/pipeline/control"
	"github.com/pushlane/pushlane/schemas"
)

// On the wire, through a running view: a zero-length key reads back as a
// key (an empty slice, not nil), so a tombstone under it forgets the pause
// written under it, and a tombstone without a key forgets nothing.
func TestViewForgetsWhatATombstoneUnderTheZeroLengthKeyReplaces(t *testing.T) {
	t.Parallel()
	const topic = "control"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, cl := controlCluster(t, ctx, topic, schemas.CampaignControl{CampaignID: "a", Action: schemas.ControlPause})
	v := runView(t, ctx, c, topic)
	produce := func(r *kgo.Record) {
		t.Helper()
		r.Topic = topic
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := v.WaitFresh(ctx, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	r, err := control.Record(topic, schemas.CampaignControl{CampaignID: "c", Action: schemas.ControlPause})
	if err != nil {
		t.Fatal(err)
	}
	r.Key = []byte{}
	produce(r)
	if !v.Paused("c") {
		t.Fatal(`the pause under "" is not applied`)
	}
	produce(&kgo.Record{}) // a tombstone without a key
	if !v.Paused("c") {
		t.Fatal(`a tombstone without a key forgot the pause under ""`)
	}
	produce(&kgo.Record{Key: []byte{}})
	if st, ok := v.State("c"); ok {
		t.Errorf(`after a tombstone under "": %+v, want no state, as a view started after compaction holds`, st)
	}
	if !v.Paused("a") {
		t.Error("a tombstone under \"\" forgot a campaign under its own key")
	}
}
