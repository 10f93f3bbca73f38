package delay_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pushlane/pushlane/internal/kfaketest"
	"github.com/pushlane/pushlane/pipeline/delay"
	"github.com/pushlane/pushlane/pipeline/dispatcher/dispatchtest"
)

// A ready partition without a working leader holds only the batches bound
// for it. Before, the forwarder waited for such a forward for the client's
// whole delivery timeout (30 s) with its poll loop, so a batch due meanwhile
// on another partition, bound for a healthy one, was forwarded 30 s late.
func TestForwarderIsNotHeldByAnotherPartitionsDestination(t *testing.T) {
	tiers := []string{"t00", "t01", "t02"}
	c, k, cl := stallCluster(t, 2, 2, tiers)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Ready partition 0 on node 0, partition 1 on node 1.
	badPartition, badNode := int32(0), int32(0)
	for p := range int32(2) {
		if err := c.MoveTopicPartition("ready", p, p); err != nil {
			t.Fatal(err)
		}
	}
	if c.LeaderFor("ready", 0) == c.LeaderFor("ready", 1) {
		t.Fatalf("both ready partitions are led by node %d", c.LeaderFor("ready", 0))
	}
	// Newer produce requests name topics by id.
	md, err := kadm.NewClient(cl).Metadata(ctx, "ready")
	if err != nil {
		t.Fatal(err)
	}
	readyID := md.Topics["ready"].ID
	isReady := func(rt kmsg.ProduceRequestTopic) bool { return rt.Topic == "ready" || rt.TopicID == readyID }
	// Keys land on the same partition number on every topic (all have 2).
	part := kgo.StickyKeyPartitioner(nil).ForTopic("ready")
	key := func(want int32) string {
		for i := 0; ; i++ {
			if k := fmt.Sprintf("b%d", i); int32(part.Partition(&kgo.Record{Key: []byte(k)}, 2)) == want {
				return k
			}
		}
	}
	badKey, goodKey := key(badPartition), key(1-badPartition)

	var failing atomic.Bool
	failing.Store(true)
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kreq.(*kmsg.ProduceRequest)
		if !failing.Load() || c.CurrentNode() != badNode {
			return nil, nil, false
		}
		toReady := false
		for _, rt := range req.Topics {
			toReady = toReady || isReady(rt)
		}
		if !toReady {
			return nil, nil, false
		}
		return kfaketest.RefuseProduce(req, kerr.NotLeaderForPartition.Code), nil, true
	})

	l := delay.Ladder{Tiers: tiers, Ready: "ready"}
	startForwarder(t, k, l, "dlq", "delay-stall", nil)
	start := time.Now()
	// Due on t00 after 1 s, then bound for the ready partition that fails.
	writeBatch(t, cl, l, badKey, "c", start.Add(1500*time.Millisecond), time.Time{}, nil)
	// Due on t01 after 2 s, then t00, then the healthy ready partition.
	goodAt := start.Add(3 * time.Second)
	writeBatch(t, cl, l, goodKey, "c", goodAt, time.Time{}, nil)
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	got := k.ReadAll(t, "ready", 1, 20*time.Second)
	if len(got) == 0 || string(got[0].Key) != goodKey {
		t.Fatalf("ready holds %d records within 20 s, want the healthy batch %s first", len(got), goodKey)
	}
	// A round waits up to forwardRound (5 s) for what cannot be sent,
	// and the client fails such a record at its next retry after that: a
	// few seconds, not the 30 s delivery timeout.
	if late := got[0].Timestamp.Sub(goodAt); late > 12*time.Second {
		t.Errorf("the healthy batch reached ready %v after its send-at, held by the failing partition", late)
	}
	// Once the partition has a leader again, the held batch follows.
	failing.Store(false)
	got = k.ReadAll(t, "ready", 2, 30*time.Second)
	if len(got) != 2 {
		t.Fatalf("ready holds %d records after the partition recovered, want 2", len(got))
	}
}

// A record forwarded in the round in which the record ahead of it failed
// is not forwarded again once that one goes through. Before, it stayed
// held behind the failed head (offsets are committed in order) and was
// produced a second time.
func TestForwarderDoesNotForwardTwiceBehindAFailedHead(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(2), kfake.SeedTopics(1, "t00", "t01", "t02"), kfake.SeedTopics(2, "ready", "dlq"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for p := range int32(2) {
		if err := c.MoveTopicPartition("ready", p, p); err != nil {
			t.Fatal(err)
		}
	}
	readyID := c.TopicInfo("ready").TopicID
	var failing atomic.Bool
	failing.Store(true)
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kreq.(*kmsg.ProduceRequest)
		if !failing.Load() || c.CurrentNode() != 0 {
			return nil, nil, false
		}
		for _, rt := range req.Topics {
			if rt.Topic == "ready" || rt.TopicID == readyID {
				return kfaketest.RefuseProduce(req, kerr.NotLeaderForPartition.Code), nil, true
			}
		}
		return nil, nil, false
	})
	k := dispatchtest.Kafka{Brokers: c.ListenAddrs()}
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	part := kgo.StickyKeyPartitioner(nil).ForTopic("ready")
	key := func(want int32) string {
		for i := 0; ; i++ {
			if k := fmt.Sprintf("b%d", i); int32(part.Partition(&kgo.Record{Key: []byte(k)}, 2)) == want {
				return k
			}
		}
	}
	head, behind := key(0), key(1) // ready/0 fails, ready/1 does not
	l := delay.Ladder{Tiers: []string{"t00", "t01", "t02"}, Ready: "ready"}
	startForwarder(t, k, l, "dlq", "delay-behind", nil)
	sendAt := time.Now().Add(1500 * time.Millisecond) // t00, the same partition, head first
	writeBatch(t, cl, l, head, "c", sendAt, time.Time{}, nil)
	writeBatch(t, cl, l, behind, "c", sendAt, time.Time{}, nil)
	if err := cl.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := k.ReadAll(t, "ready", 1, 20*time.Second); len(got) != 1 || string(got[0].Key) != behind {
		t.Fatalf("ready holds %d records, want %s, forwarded while the head failed", len(got), behind)
	}
	failing.Store(false)
	got := k.ReadAll(t, "ready", 3, 12*time.Second) // a third would be the duplicate
	count := map[string]int{}
	for _, r := range got {
		count[string(r.Key)]++
	}
	if count[head] != 1 || count[behind] != 1 {
		t.Errorf("ready holds %v, want each batch once", count)
	}
}

// Records that must be dead-lettered while the dead-letter topic cannot be
// written hold the other partitions' due records for one round, not one
// ten-second attempt each, one after another.
func TestForwarderIsNotHeldByDeadLettersItCannotWrite(t *testing.T) {
	tiers := []string{"t00", "t01", "t02"}
	c, k, cl := stallCluster(t, 2, 4, tiers)
	// A real broker refuses a produce per partition; the hook below can
	// only refuse a whole request. With the dead-letter topic led alone by
	// node 1, no request it refuses carries a healthy forward, which would
	// otherwise fail with the dead letters on a shared broker by chance.
	for _, topic := range append([]string{"ready", "dlq"}, tiers...) {
		node := int32(0)
		if topic == "dlq" {
			node = 1
		}
		for p := range int32(4) {
			if err := c.MoveTopicPartition(topic, p, node); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	md, err := kadm.NewClient(cl).Metadata(ctx, "dlq")
	if err != nil {
		t.Fatal(err)
	}
	dlqID := md.Topics["dlq"].ID
	var refused atomic.Int64
	var failing atomic.Bool
	failing.Store(true)
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kreq.(*kmsg.ProduceRequest)
		toDLQ, other := false, false
		for _, rt := range req.Topics {
			isDLQ := rt.Topic == "dlq" || rt.TopicID == dlqID
			toDLQ = toDLQ || isDLQ
			other = other || !isDLQ
		}
		if !failing.Load() || !toDLQ {
			return nil, nil, false
		}
		if other {
			t.Errorf("node %d got a produce for the dead-letter topic and another: the layout did not hold", c.CurrentNode())
		}
		refused.Add(1)
		return kfaketest.RefuseProduce(req, kerr.NotLeaderForPartition.Code), nil, true
	})
	part := kgo.StickyKeyPartitioner(nil).ForTopic("t00")
	key := func(want int32) string {
		for i := 0; ; i++ {
			if k := fmt.Sprintf("b%d", i); int32(part.Partition(&kgo.Record{Key: []byte(k)}, 4)) == want {
				return k
			}
		}
	}

	l := delay.Ladder{Tiers: tiers, Ready: "ready"}
	startForwarder(t, k, l, "dlq", "delay-dead-stall", nil)
	// Three tier records without a send-at, one on each of partitions 0-2
	// of t00; the healthy batch is on partition 3.
	for i := range int32(3) {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "t00", Key: []byte(key(i)), Value: fmt.Appendf(nil, `{"n":%d}`, i)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	goodKey := key(3)
	goodAt := time.Now().Add(3 * time.Second)
	writeBatch(t, cl, l, goodKey, "c", goodAt, time.Time{}, nil)
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got := k.ReadAll(t, "ready", 1, 40*time.Second)
	if len(got) != 1 || string(got[0].Key) != goodKey {
		t.Fatalf("ready holds %d records within 40 s, want the healthy batch %s", len(got), goodKey)
	}
	if refused.Load() == 0 {
		t.Fatal("no dead letter was refused: the test did not reach its condition")
	}
	late := got[0].Timestamp.Sub(goodAt)
	t.Logf("the healthy batch reached ready %v after its send-at", late)
	// One round of dead letters (forwardRound, 5 s) from the start, less
	// the 3 s to the send-at, and a hop; one dead letter after another
	// took 7-8 s here.
	if late > 6*time.Second {
		t.Errorf("the healthy batch reached ready %v after its send-at, held by the dead letters", late)
	}
	// Once the dead-letter topic can be written, the three go there.
	failing.Store(false)
	if dl := k.ReadAll(t, "dlq", 3, 40*time.Second); len(dl) != 3 {
		t.Fatalf("dlq holds %d records, want 3", len(dl))
	}
}

// stallCluster starts a kfake cluster of brokers with ready, dlq and tiers,
// each of partitions, and a producing client; both close at cleanup.
func stallCluster(t *testing.T, brokers, partitions int, tiers []string) (*kfake.Cluster, dispatchtest.Kafka, *kgo.Client) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(brokers), kfake.SeedTopics(int32(partitions), append([]string{"ready", "dlq"}, tiers...)...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	k := dispatchtest.Kafka{Brokers: c.ListenAddrs()}
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return c, k, cl
}

// A dead letter the dead-letter topic refuses even slimmed (its
// max.message.bytes below any letter) is dropped and counted: the record's
// partition goes on, where retrying it held the partition for good.
func TestForwarderDropsADeadLetterItsTopicRefusesEvenSlimmed(t *testing.T) {
	tiers := []string{"t00", "t01", "t02"}
	c, k, cl := stallCluster(t, 2, 1, tiers)
	// The dead-letter topic alone on node 1, so the refusal below never
	// takes a forward with it (see the test above).
	for _, topic := range append([]string{"ready", "dlq"}, tiers...) {
		node := int32(0)
		if topic == "dlq" {
			node = 1
		}
		if err := c.MoveTopicPartition(topic, 0, node); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if c.CurrentNode() != 1 {
			return nil, nil, false
		}
		return kfaketest.RefuseProduce(kreq.(*kmsg.ProduceRequest), kerr.MessageTooLarge.Code), nil, true
	})
	l := delay.Ladder{Tiers: tiers, Ready: "ready"}
	r := startForwarder(t, k, l, "dlq", "delay-dead-drop", nil)
	// A tier record without a send-at, then a healthy batch behind it on
	// the same partition.
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "t00", Key: []byte("bad"), Value: []byte(`{"n":1}`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	writeBatch(t, cl, l, "good", "c", time.Now().Add(1500*time.Millisecond), time.Time{}, nil) // t00, behind it
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got := k.ReadAll(t, "ready", 1, 30*time.Second)
	if len(got) != 1 || string(got[0].Key) != "good" {
		t.Fatalf("ready holds %d records within 30 s, want the batch behind the dropped letter", len(got))
	}
	// The healthy forward and the letter's slimmed attempts run side by
	// side in one round: the drop may be counted just after.
	deadline := time.Now().Add(10 * time.Second)
	for dispatchtest.MetricValue(t, r.reg, "pushlane_delay_dead_letters_dropped_total") == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := dispatchtest.MetricValue(t, r.reg, "pushlane_delay_dead_letters_dropped_total"); n != 1 {
		t.Errorf("dead letters dropped %v, want 1", n)
	}
	if n := dispatchtest.MetricValue(t, r.reg, "pushlane_delay_dead_lettered_total"); n != 0 {
		t.Errorf("dead lettered %v, want 0", n)
	}
}
