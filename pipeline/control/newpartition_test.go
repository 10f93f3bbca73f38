package control_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/pipeline/control"
	"github.com/pushlane/pushlane/schemas"
)

// The control topic gains a partition under a running view (an operator
// raised kafka.topics.control.partitions), and a fresh publisher (pushctl
// cancel) writes a cancel there. The view is not fresh as of the cancel's
// acknowledgement until it has applied it, and it gets there within
// seconds. Before, the view listed end offsets from metadata up to 5 s
// old (the new partition left out: fresh at once), then counted the new
// partition, which its consumer did not know of for the 5 minutes of its
// metadata max age, as quiet because the broker kept answering fetches
// for partition 0: WaitFresh returned within 0.2 s with the cancel unread,
// and kept returning while it stayed unread.
func TestViewReadsAPartitionAddedWhileItRuns(t *testing.T) {
	t.Parallel()
	const topic = "control"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	send := func(cl *kgo.Client, p int32, cc schemas.CampaignControl) {
		t.Helper()
		r, err := control.Record(topic, cc)
		if err != nil {
			t.Fatal(err)
		}
		r.Partition = p
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	manual := func() *kgo.Client {
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return cl
	}
	pub := manual()
	send(pub, 0, schemas.CampaignControl{CampaignID: "a", Action: schemas.ControlPause})
	// The defaults: refresh 200 ms, fetch wait 500 ms, 5 quiet checks.
	v := runView(t, ctx, c, topic)
	if !v.Paused("a") {
		t.Fatal("caught up without the pause")
	}
	// Fresh for a while, so that any metadata the view's client holds is
	// of the one-partition topic.
	for range 3 {
		if err := v.WaitFresh(ctx, time.Now()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	if _, err := kadm.NewClient(pub).CreatePartitions(ctx, 1, topic); err != nil {
		t.Fatal(err)
	}
	send(manual(), 1, schemas.CampaignControl{CampaignID: "x", Action: schemas.ControlCancel})
	acked := time.Now()
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := v.WaitFresh(wctx, acked); err != nil {
		t.Fatalf("the cancel in the new partition: %v (cancelled: %v)", err, v.Cancelled("x"))
	}
	took := time.Since(acked)
	if !v.Cancelled("x") {
		t.Fatalf("fresh as of the cancel's acknowledgement after %v, with the cancel in the new partition not applied", took)
	}
	t.Logf("the cancel in the new partition applied %v after its acknowledgement", took)
	if took > 3*time.Second {
		t.Errorf("the cancel in the new partition applied after %v", took)
	}
	// The new partition is read on: a pause there after the cancel.
	send(manual(), 1, schemas.CampaignControl{CampaignID: "y", Action: schemas.ControlPause})
	acked = time.Now()
	if err := v.WaitFresh(wctx, acked); err != nil {
		t.Fatal(err)
	}
	if !v.Paused("y") {
		t.Errorf("fresh as of the pause's acknowledgement after %v, with the pause in the new partition not applied", time.Since(acked))
	}
}
