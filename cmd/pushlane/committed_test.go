package main

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The demo is done only once feedback's group has committed every results
// partition up to its end: a flush writes its analytics sink and its MySQL
// changes at once, so the sink alone said done while the MySQL statements
// were still running, and the stop cut them (the drain wrote them again).
func TestFeedbackCommittedWaitsForEveryPartition(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "results"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic("results"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	adm := kadm.NewClient(cl)
	if !feedbackCommitted(ctx, adm, "fb", "results") {
		t.Fatal("an empty results topic is not reported committed")
	}
	for _, p := range []int32{0, 0, 1} {
		if err := cl.ProduceSync(ctx, &kgo.Record{Partition: p, Value: []byte("r")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	commit := func(p int32, at int64) {
		t.Helper()
		o := kadm.Offsets{}
		o.Add(kadm.Offset{Topic: "results", Partition: p, At: at, LeaderEpoch: -1})
		if err := adm.CommitAllOffsets(ctx, "fb", o); err != nil {
			t.Fatal(err)
		}
	}
	if feedbackCommitted(ctx, adm, "fb", "results") {
		t.Fatal("reported committed before the group committed anything")
	}
	commit(0, 2)
	if feedbackCommitted(ctx, adm, "fb", "results") {
		t.Fatal("reported committed with partition 1 not committed")
	}
	commit(1, 0)
	if feedbackCommitted(ctx, adm, "fb", "results") {
		t.Fatal("reported committed with partition 1 behind its end")
	}
	commit(1, 1)
	if !feedbackCommitted(ctx, adm, "fb", "results") {
		t.Fatal("not reported committed with every partition at its end")
	}
}
