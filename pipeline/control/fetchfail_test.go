package control_test

import (
	"context"
	"errors"
	"fmt"
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
	v := runView(t, ctx, c, topic)
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

// A partition moved to another broker while its old leader's fetches hang
// (a black-holed connection) or fail at once (a killed process: reset, then
// refused): the client asks the old leader for it until its own metadata
// moves it (a hung fetch is given up after its wait plus 10 s; a failed one
// is retried after a backoff), and nothing reaches the view. The new
// leader's answers for its other partition say nothing of this one. The
// view is not fresh as of a cancel written after the move until it has read
// it. (Counting the new leader's answers alone passed it 3.3 s after the
// cancel, unread, with the hung leader; waiting out unanswered fetches
// alone, 3.9 s with the failing one.)
func TestViewIsNotFreshWhileItsClientAsksAMovedPartitionOfItsOldLeader(t *testing.T) {
	for _, fault := range []struct {
		name string
		// settle is waited before the fault: the failing case waits out
		// the client's metadata min age, so that the refresh its first
		// failure triggers still names node 0.
		settle time.Duration
		hang   bool
	}{{name: "hung", hang: true}, {name: "failing", settle: 6 * time.Second}} {
		t.Run(fault.name, func(t *testing.T) {
			t.Parallel()
			const topic = "control"
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			c, publish := twoLeaders(t, ctx, topic)
			publish(0, schemas.CampaignControl{CampaignID: "a", Action: schemas.ControlPause})
			publish(1, schemas.CampaignControl{CampaignID: "b", Action: schemas.ControlPause})
			var on atomic.Bool
			var hit atomic.Int64
			c.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
				c.KeepControl()
				if !on.Load() || c.CurrentNode() != 0 {
					return nil, nil, false
				}
				hit.Add(1)
				if fault.hang {
					c.SleepControl(func() { time.Sleep(30 * time.Second) })
					return nil, nil, false
				}
				return nil, errors.New("node 0 is down"), true // the connection is closed
			})
			v := runView(t, ctx, c, topic)
			time.Sleep(fault.settle)
			on.Store(true)
			for hit.Load() == 0 { // the fetch in flight ends; the next meets the fault
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(300 * time.Millisecond)
			if err := c.MoveTopicPartition(topic, 0, 1); err != nil {
				t.Fatal(err)
			}
			publish(0, schemas.CampaignControl{CampaignID: "c1", Action: schemas.ControlCancel})
			acked := time.Now()
			if err := v.WaitFresh(ctx, acked); err != nil {
				t.Fatal(err)
			}
			if !v.Cancelled("c1") {
				t.Errorf("fresh as of the cancel's acknowledgement after %v, with the cancel not applied", time.Since(acked))
			}
		})
	}
}

// A partition that ends one offset past its last record (its last record,
// a tombstone, compacted away) stands still below its end. A leader move in
// a healthy cluster (a controlled shutdown, a reassignment, a preferred
// leader election), of that partition or of another, every fetch answered:
// the view is fresh again within seconds (about 6 here when the gap
// partition itself moves: the client's fetch error at the move, then the
// new leader's answers). Waiting for every broker that ever answered held
// it stale for about 25 s after a move of the gap partition.
func TestViewStaysFreshAcrossALeaderMove(t *testing.T) {
	for _, moved := range []int32{0, 1} {
		t.Run(fmt.Sprintf("partition %d moves, 0 is the gap", moved), func(t *testing.T) {
			t.Parallel()
			const topic = "control"
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			c, publish := twoLeaders(t, ctx, topic)
			publish(0, schemas.CampaignControl{CampaignID: "a", Action: schemas.ControlPause})
			publish(1, schemas.CampaignControl{CampaignID: "a", Action: schemas.ControlPause})
			// Partition 0 lists its end at 2 with one record (offset 0) to read.
			listEnds(c, map[int32]int64{0: 2, 1: 1})
			v := runView(t, ctx, c, topic)
			if err := c.MoveTopicPartition(topic, moved, 1-moved); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			var worst time.Duration
			for time.Since(start) < 12*time.Second {
				t0 := time.Now()
				if err := v.WaitFresh(ctx, t0); err != nil {
					t.Fatal(err)
				}
				worst = max(worst, time.Since(t0))
				time.Sleep(100 * time.Millisecond)
			}
			if worst > 10*time.Second {
				t.Errorf("after a leader move in a healthy cluster, WaitFresh(now) took up to %v", worst)
			}
		})
	}
}

// A partition whose records were all compacted away while its start offset
// stayed at 0 has nothing to read: the view is fresh over it. (A rule that
// a partition counted as quiet only once the view had read a record from
// it kept such a view stale for good.)
func TestViewIsFreshOverAPartitionWithNoRecordLeft(t *testing.T) {
	t.Parallel()
	const topic = "control"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	listEnds(c, map[int32]int64{0: 3}) // three offsets, no record
	v, err := control.New(control.Config{Kafka: config.Kafka{Brokers: c.ListenAddrs(), ClientID: "view-test"}, Topic: topic}, control.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() { _ = v.Run(ctx) }()
	if err := v.WaitCaughtUp(ctx); err != nil {
		t.Fatalf("a view over a partition with no record left: %v", err)
	}
}

// listEnds makes c answer every ListOffsets with start 0 and the given end
// offsets by partition, whatever the partitions hold.
func listEnds(c *kfake.Cluster, ends map[int32]int64) {
	c.ControlKey(int16(kmsg.ListOffsets), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kreq.(*kmsg.ListOffsetsRequest)
		resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewListOffsetsResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewListOffsetsResponseTopicPartition()
				sp.Partition, sp.Timestamp, sp.LeaderEpoch = rp.Partition, -1, -1
				sp.Offset = 0 // the start
				if rp.Timestamp != -2 {
					sp.Offset = ends[rp.Partition]
				}
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
}

// twoLeaders starts a two-broker kfake cluster with topic of two
// partitions, partition p led by node p, and returns a publish to a given
// partition; all of it closes at cleanup.
func twoLeaders(t *testing.T, ctx context.Context, topic string) (*kfake.Cluster, func(int32, schemas.CampaignControl)) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(2), kfake.SeedTopics(2, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	for p := range int32(2) {
		if err := c.MoveTopicPartition(topic, p, p); err != nil {
			t.Fatal(err)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return c, func(p int32, cc schemas.CampaignControl) {
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
}

// runView runs a view of topic on c with the default timings until the
// test ends, and waits until it has caught up.
func runView(t *testing.T, ctx context.Context, c *kfake.Cluster, topic string) *control.View {
	t.Helper()
	v, err := control.New(control.Config{Kafka: config.Kafka{Brokers: c.ListenAddrs(), ClientID: "view-test"}, Topic: topic}, control.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	t.Cleanup(stop)
	go func() { _ = v.Run(runCtx) }()
	if err := v.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	return v
}
