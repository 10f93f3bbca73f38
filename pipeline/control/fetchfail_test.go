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
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := control.Publish(ctx, cl, topic, schemas.CampaignControl{CampaignID: "c1", Action: schemas.ControlCancel}); err != nil {
		t.Fatal(err)
	}
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
