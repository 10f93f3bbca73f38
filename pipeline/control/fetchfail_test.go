package control_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/internal/kfaketest"
	"github.com/pushlane/pushlane/pipeline/control"
	"github.com/pushlane/pushlane/schemas"
)

// A view whose fetches fail (an ACL that allows listing offsets but not
// reading) is not caught up, however long the offsets stand still: it has
// not read the cancel that is there. Before, a partition standing still for
// a second counted as caught up, and the cancelled campaign was sent.
func TestViewIsNotCaughtUpWhileItCannotFetch(t *testing.T) {
	const topic = "control"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _ := controlCluster(t, ctx, topic, schemas.CampaignControl{CampaignID: "c1", Action: schemas.ControlCancel})
	var failing atomic.Bool
	failing.Store(true)
	c.ControlKey(int16(kmsg.Fetch), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !failing.Load() {
			return nil, nil, false
		}
		return kfaketest.RefuseFetch(kreq.(*kmsg.FetchRequest), kerr.TopicAuthorizationFailed.Code), nil, true
	})

	v, err := control.New(control.Config{Kafka: config.Kafka{Brokers: c.ListenAddrs(), ClientID: "view-test"}, Topic: topic,
		RefreshInterval: 50 * time.Millisecond, FetchMaxWait: 100 * time.Millisecond}, control.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- v.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("view.Run: %v", err)
		}
	}()

	// Five quiet refreshes took 250 ms: give it twelve times that.
	wctx, wcancel := context.WithTimeout(ctx, 3*time.Second)
	err = v.WaitCaughtUp(wctx)
	wcancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitCaughtUp while every fetch fails = %v (cancelled: %v), want it to wait", err, v.Cancelled("c1"))
	}
	failing.Store(false)
	if err := v.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	if !v.Cancelled("c1") {
		t.Error("caught up without the cancel")
	}
}

// A fetch that is slow but does not fail (a stalled connection, an
// overloaded broker) holds a cancel acknowledged meanwhile: the view is not
// fresh as of that acknowledgement until the cancel is applied, however
// long the stall lasts. Before, a partition standing still for about a
// second counted as caught up, and WaitFresh returned with the cancel
// unread (and, with a first fix, after 15 s of silence from the broker).
func TestViewIsNotFreshWhileAFetchIsSlow(t *testing.T) {
	t.Parallel()
	const topic = "control"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, cl := controlCluster(t, ctx, topic, schemas.CampaignControl{CampaignID: "c0", Action: schemas.ControlPause})
	var slow atomic.Bool
	var slowed atomic.Int64
	c.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if slow.Load() {
			slowed.Add(1)
			c.SleepControl(func() { time.Sleep(20 * time.Second) })
		}
		return nil, nil, false
	})
	// The defaults: refresh 200 ms, fetch wait 500 ms, 5 quiet checks.
	v, err := control.New(control.Config{Kafka: config.Kafka{Brokers: c.ListenAddrs(), ClientID: "view-test"}, Topic: topic}, control.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = v.Run(runCtx) }()
	if err := v.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	slow.Store(true)
	time.Sleep(700 * time.Millisecond) // the fetch in flight ends; the next is slow
	if err := control.Publish(ctx, cl, topic, schemas.CampaignControl{CampaignID: "c1", Action: schemas.ControlCancel}); err != nil {
		t.Fatal(err)
	}
	acked := time.Now()
	// Every fetch stalls for 24 s: the client gives each up after its
	// fetch wait plus 10 s and sends another, without an error to the
	// view; the broker answers no fetch meanwhile.
	during, stopWaiting := context.WithTimeout(ctx, 24*time.Second)
	defer stopWaiting()
	if err := v.WaitFresh(during, acked); err == nil && !v.Cancelled("c1") {
		t.Fatalf("fresh as of the cancel's acknowledgement after %v, with the cancel not applied", time.Since(acked))
	}
	if slowed.Load() < 2 {
		t.Fatalf("%d fetches slowed: the test did not reach its condition", slowed.Load())
	}
	slow.Store(false)
	if err := v.WaitFresh(ctx, acked); err != nil {
		t.Fatal(err)
	}
	if !v.Cancelled("c1") {
		t.Errorf("fresh as of the cancel's acknowledgement after %v, with the cancel not applied", time.Since(acked))
	}
}

// controlCluster starts a one-broker kfake cluster with topic, and a client
// of it that has published first there; both close at cleanup.
func controlCluster(t *testing.T, ctx context.Context, topic string, first schemas.CampaignControl) (*kfake.Cluster, *kgo.Client) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	if err := control.Publish(ctx, cl, topic, first); err != nil {
		t.Fatal(err)
	}
	return c, cl
}

// A partition moved to another broker while the view's connection to its
// old leader hangs: the new leader answering fetches of its other
// partition says nothing of this one, which the view's client still asks
// the old leader for. The view is not fresh as of a cancel written after
// the move until it has read it.
func TestViewIsNotFreshWhileItsClientFetchesAMovedPartitionFromAHungLeader(t *testing.T) {
	t.Parallel()
	const topic = "control"
	c, err := kfake.NewCluster(kfake.NumBrokers(2), kfake.SeedTopics(2, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for p := range int32(2) {
		if err := c.MoveTopicPartition(topic, p, p); err != nil {
			t.Fatal(err)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	publish := func(p int32, c schemas.CampaignControl) {
		t.Helper()
		r, err := control.Record(topic, c)
		if err != nil {
			t.Fatal(err)
		}
		r.Partition = p
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	publish(0, schemas.CampaignControl{CampaignID: "a", Action: schemas.ControlPause})
	publish(1, schemas.CampaignControl{CampaignID: "b", Action: schemas.ControlPause})

	var hang atomic.Bool
	var hung atomic.Int64
	c.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if hang.Load() && c.CurrentNode() == 0 {
			hung.Add(1)
			c.SleepControl(func() { time.Sleep(30 * time.Second) })
		}
		return nil, nil, false
	})
	v, err := control.New(control.Config{Kafka: config.Kafka{Brokers: c.ListenAddrs(), ClientID: "view-test"}, Topic: topic}, control.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = v.Run(runCtx) }()
	if err := v.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	hang.Store(true)
	time.Sleep(700 * time.Millisecond) // the fetch in flight to node 0 ends; the next hangs
	if err := c.MoveTopicPartition(topic, 0, 1); err != nil {
		t.Fatal(err)
	}
	publish(0, schemas.CampaignControl{CampaignID: "c1", Action: schemas.ControlCancel})
	acked := time.Now()
	if err := v.WaitFresh(ctx, acked); err != nil {
		t.Fatal(err)
	}
	if hung.Load() == 0 {
		t.Fatal("no fetch to the old leader hung: the test did not reach its condition")
	}
	if !v.Cancelled("c1") {
		t.Errorf("fresh as of the cancel's acknowledgement after %v, with the cancel not applied", time.Since(acked))
	}
}
