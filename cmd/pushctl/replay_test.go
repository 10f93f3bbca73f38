package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// produceAt writes one record per timestamp to partition p of topic.
func produceAt(t *testing.T, s *stack, topic string, p int32, at ...time.Time) {
	t.Helper()
	producer, err := kgo.NewClient(kgo.SeedBrokers(s.cfg.Kafka.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	var recs []*kgo.Record
	for _, ts := range at {
		recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Timestamp: ts, Key: []byte("k"), Value: []byte("x")})
	}
	if err := producer.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// committedOffsets returns the group's offsets on topic by partition, and
// their metadata.
func committedOffsets(t *testing.T, s *stack, group, topic string) (map[int32]int64, map[int32]string) {
	t.Helper()
	got, err := s.adm.FetchOffsetsForTopics(context.Background(), group, topic)
	if err != nil {
		t.Fatal(err)
	}
	at, meta := map[int32]int64{}, map[int32]string{}
	got.Each(func(o kadm.OffsetResponse) {
		if o.At >= 0 {
			at[o.Partition], meta[o.Partition] = o.At, o.Metadata
		}
	})
	return at, meta
}

func TestReplayPlannerCheckpoint(t *testing.T) { onEachKafka(t, testReplayPlannerCheckpoint) }

// The planner keeps a campaign's progress in the metadata of its group's
// commit of the campaign record's offset. Moving that partition back drops
// it, and the campaign is planned again from its start with other batch
// contents; replay refuses that unless forced.
func testReplayPlannerCheckpoint(t *testing.T, newStack stackFactory) {
	s := newStack(t).withTopics(t)
	ctx := context.Background()
	topic, group := s.topics().Campaigns.Name, s.cfg.Kafka.GroupPrefix+"-planner"
	t0 := time.Date(2026, 3, 20, 9, 0, 0, 0, time.UTC)
	var ts []time.Time
	for i := 0; i < 10; i++ {
		ts = append(ts, t0.Add(time.Duration(i)*time.Minute))
	}
	for p := int32(0); p < 5; p++ {
		produceAt(t, s, topic, p, ts...)
	}
	// As pipeline/planner/checkpoint.go encodes them.
	midPlan := `pushlane-planner/1 {"c":"spring","v":2,"o":7,"t":1774000800000,"k":3,"a":[0,1200],"s":[0,1250],"w":[[0,6,600,0,1200]],"n":[600,6,0,0,1774000800000,1774000860000]}`
	final := `pushlane-planner/1 {"c":"autumn","v":1,"o":6,"t":1774000800000,"k":9,"a":[1,0],"s":[1,0],"w":[[0,18,1800,0,3600]],"n":[1800,18,2,0,1774000800000,1774000960000],"f":true}`
	stale := `pushlane-planner/1 {"c":"winter","v":1,"o":4,"t":1774000800000,"k":1,"a":[0,10],"s":[0,10],"w":[],"n":[0,0,0,0,0,0]}`
	offsets := kadm.Offsets{}
	offsets.Add(kadm.Offset{Topic: topic, Partition: 0, At: 7, LeaderEpoch: -1, Metadata: midPlan})
	offsets.Add(kadm.Offset{Topic: topic, Partition: 1, At: 6, LeaderEpoch: -1, Metadata: final})
	offsets.Add(kadm.Offset{Topic: topic, Partition: 2, At: 8, LeaderEpoch: -1, Metadata: stale}) // not this record's: not resumed from
	offsets.Add(kadm.Offset{Topic: topic, Partition: 3, At: 9, LeaderEpoch: -1, Metadata: ""})
	atStart := strings.Replace(midPlan, `"o":7`, `"o":2`, 1)
	offsets.Add(kadm.Offset{Topic: topic, Partition: 4, At: 2, LeaderEpoch: -1, Metadata: atStart}) // at the range start: unchanged
	if err := s.adm.CommitAllOffsets(ctx, group, offsets); err != nil {
		t.Fatal(err)
	}
	from := t0.Add(2 * time.Minute).Format(time.RFC3339)
	p0 := topic + "/0: the group is at 7, campaign spring (version 2) at offset 7, mid-plan after 3 chunks: its checkpoint is this commit's metadata, " +
		"and moved back the planner would plan the campaign again from its start, shifting devices between batches (lost or sent twice)"
	p1 := topic + "/1: the group is at 6, campaign autumn (version 1) at offset 6, planned, its MySQL row maybe not written yet: its checkpoint is this commit's metadata, " +
		"and moved back the planner would plan the campaign again from its start, shifting devices between batches (lost or sent twice)"
	refused := "pushctl replay: refused, nothing changed:\n  " + p0 + " (-force to move it anyway)\n  " + p1 + " (-force to move it anyway)\n"
	expect(t, s.run(t, "", "replay", "-topic", topic, "-group", group, "-from", from, "-dry-run"), exitFailed, "", refused)
	expect(t, s.run(t, "", "replay", "-topic", topic, "-group", group, "-from", from), exitFailed, "", refused)
	if at, _ := committedOffsets(t, s, group, topic); !slices.Equal([]int64{at[0], at[1], at[2], at[3], at[4]}, []int64{7, 6, 8, 9, 2}) {
		t.Fatalf("refused replay moved offsets: %v", at)
	}

	plan := topic + "/0: 7 -> 2 (re-runs 5 records)\n" + topic + "/1: 6 -> 2 (re-runs 4 records)\n" + topic + "/2: 8 -> 2 (re-runs 6 records)\n" +
		topic + "/3: 9 -> 2 (re-runs 7 records)\n" + topic + "/4: 2, unchanged\n" + topic + "/5: no committed offset, unchanged (the stage reads it from its start)\n"
	r := s.run(t, "", "replay", "-topic", topic, "-group", group, "-from", from, "-force")
	expect(t, r, exitOK, plan+group+" rewound: it re-runs 22 records of "+topic+" when it starts\n",
		"pushctl replay: -force: "+p0+"\npushctl replay: -force: "+p1+"\n")
	at, meta := committedOffsets(t, s, group, topic)
	if !slices.Equal([]int64{at[0], at[1], at[2], at[3], at[4]}, []int64{2, 2, 2, 2, 2}) {
		t.Errorf("offsets after the forced replay: %v", at)
	}
	if meta[4] != atStart {
		t.Errorf("partition 4's metadata %q after the replay, want its checkpoint kept", meta[4])
	}
}

func TestReplayPastProgressRetention(t *testing.T) { onEachKafka(t, testReplayPastProgressRetention) }

// The dispatcher forgets finished batch ids after 35 days: a replay of
// batches (or of campaigns, which plans batches) older than that sends them
// again, and is refused unless forced.
func testReplayPastProgressRetention(t *testing.T, newStack stackFactory) {
	s := newStack(t).withTopics(t)
	ctx := context.Background()
	T := s.topics()
	old, recent := testNow.Add(-40*24*time.Hour), testNow.Add(-24*time.Hour)
	horizon := testNow.Add(-35 * 24 * time.Hour).Format(time.RFC3339)
	commit := func(group, topic string) {
		t.Helper()
		produceAt(t, s, topic, 0, old, old.Add(time.Minute), old.Add(2*time.Minute), recent, recent.Add(time.Minute))
		offsets := kadm.Offsets{}
		offsets.AddOffset(topic, 0, 5, -1)
		if err := s.adm.CommitAllOffsets(ctx, group, offsets); err != nil {
			t.Fatal(err)
		}
	}
	unread := func(topic string, partitions int32) string {
		var b strings.Builder
		for p := int32(1); p < partitions; p++ {
			fmt.Fprintf(&b, "%s/%d: no committed offset, unchanged (the stage reads it from its start)\n", topic, p)
		}
		return b.String()
	}
	dispatcher, planner, feedback := s.cfg.Kafka.GroupPrefix+"-dispatcher", s.cfg.Kafka.GroupPrefix+"-planner", s.cfg.Kafka.GroupPrefix+"-feedback"
	commit(dispatcher, T.Ready.Name)
	commit(planner, T.Campaigns.Name)
	commit(feedback, T.Results.Name)

	for _, c := range []struct {
		group, topic string
		partitions   int32
		risk         string
	}{
		{dispatcher, T.Ready.Name, T.Ready.Partitions, "the dispatcher has forgotten their batches as finished and would send them again"},
		{planner, T.Campaigns.Name, T.Campaigns.Partitions, "the dispatcher has forgotten the batches planned from them, " +
			"which a version MySQL does not record as finished (failed, or its row deleted) would send again"},
	} {
		tooOld := c.topic + "/0: offsets 0 to 2 are older than " + horizon + " (35 days): " + c.risk
		for _, tc := range []struct{ from, first string }{{"start", "0"}, {old.Add(time.Minute).Format(time.RFC3339), "1"}, {"-985h", "0"}} {
			want := strings.Replace(tooOld, "offsets 0 to 2", "offsets "+tc.first+" to 2", 1)
			r := s.run(t, "", "replay", "-topic", c.topic, "-group", c.group, "-from", tc.from)
			expect(t, r, exitFailed, "", "pushctl replay: refused, nothing changed:\n  "+want+" (-force to move it anyway)\n")
		}
		// From within the 35 days: nothing forgotten is re-run.
		r := s.run(t, "", "replay", "-topic", c.topic, "-group", c.group, "-from", "-30h", "-dry-run")
		expect(t, r, exitOK, c.topic+"/0: 5 -> 3 (re-runs 2 records)\n"+unread(c.topic, c.partitions)+
			"dry run: "+c.group+" would re-run 2 records of "+c.topic+"; nothing changed\n", "")
		r = s.run(t, "", "replay", "-topic", c.topic, "-group", c.group, "-from", "start", "-force", "-dry-run")
		expect(t, r, exitOK, c.topic+"/0: 5 -> 0 (re-runs 5 records)\n"+unread(c.topic, c.partitions)+
			"dry run: "+c.group+" would re-run 5 records of "+c.topic+"; nothing changed\n", "pushctl replay: -force: "+tooOld+"\n")
	}

	// Results are counted by id, whatever their age.
	r := s.run(t, "", "replay", "-topic", T.Results.Name, "-group", feedback, "-from", "start", "-dry-run")
	expect(t, r, exitOK, T.Results.Name+"/0: 5 -> 0 (re-runs 5 records)\n"+unread(T.Results.Name, T.Results.Partitions)+
		"dry run: "+feedback+" would re-run 5 records of "+T.Results.Name+"; nothing changed\n", "")
}

// The delay tiers are checked like the ready topic (their records carry the
// broker's append time, so a command test cannot make them old).
func TestRetentionRisk(t *testing.T) {
	s := fakeStack(t)
	T := s.topics()
	batches := "the dispatcher has forgotten their batches as finished and would send them again"
	want := map[string]string{T.Ready.Name: batches,
		T.Campaigns.Name: "the dispatcher has forgotten the batches planned from them, which a version MySQL does not record as finished (failed, or its row deleted) would send again",
		T.Results.Name:   "", T.Registrations.Name: "", T.Control.Name: "", T.DeadLetter.Name: "", T.Delay.Name: ""}
	for _, tier := range s.cfg.DelayTiers() {
		want[tier] = batches
	}
	for topic, w := range want {
		if got := retentionRisk(s.cfg, topic); got != w {
			t.Errorf("%s: %q, want %q", topic, got, w)
		}
	}
}
