package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/internal/testenv"
	pkafka "github.com/pushlane/pushlane/pipeline/kafka"
)

// TestScaleOut runs two instances of every stage in their consumer groups,
// checks that each instance owns a share of the partitions, then stops one
// instance of each stage (SIGTERM, as a scale-down or a rolling update
// does) in the middle of a 100,000-device campaign. The remaining instances
// must take over every partition and finish the campaign with nothing lost
// and, the hand-over being graceful, nothing sent twice. A second campaign,
// published afterwards onto the campaigns partition the stopped planner
// owned, proves the planner's partitions moved too.
func TestScaleOut(t *testing.T) {
	const app, lateApp = "scale", "scale-late"
	pop := devices(t).app(t, app)
	latePop := devices(t).app(t, lateApp)
	sp := spec{Apps: []string{app, lateApp}, DynamicDispatchers: true, CampaignPartitions: 2, DelayPartitions: 2, ReadyPartitions: 4, ResultsPartitions: 4}
	p := newPipeline(t, sp)

	first := map[string]*proc{}
	for range 2 {
		for _, s := range stageCommands {
			pr := p.Start(s)
			if first[s] == nil {
				first[s] = pr
			}
		}
	}
	// Every stage's group has two members, each owning part of its input.
	groups := map[string]int{
		"planner":    sp.CampaignPartitions,
		"dispatcher": sp.ReadyPartitions,
		"feedback":   sp.ResultsPartitions + 1, // and the registrations topic
	}
	for stage, parts := range groups {
		ms := p.WaitGroup(stage, 2, parts, time.Minute)
		t.Logf("group %s: %+v", stage, ms)
	}
	delayTopics := sp.DelayPartitions * len(p.Cfg.DelayTiers())
	ms := p.WaitGroup("delay", 2, delayTopics, time.Minute)
	t.Logf("group delay: %d members", len(ms))

	// The campaigns partition the first planner owns.
	var plannerPart int32 = -1
	members, err := p.GroupMembers("planner")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if m.ClientID == p.ClientID(first["planner"].Name) {
			for _, ps := range m.Topics {
				for part := range ps {
					plannerPart = part
				}
			}
		}
	}
	if plannerPart < 0 {
		t.Fatalf("no campaigns partition owned by %s (client id %s) among %+v", first["planner"].Name, p.ClientID(first["planner"].Name), members)
	}

	live := int64(pop.count(kindLive))
	c := campaign("scale-"+p.Prefix, app, time.Time{})
	c.Options.ThrottlePerSecond = 3000 // about 35 s of sending
	published := p.Publish(c)
	at := p.WaitAccepted(app, live*30/100, 3*time.Minute)
	t.Logf("at %d of %d accepted (%s): stop one instance of every stage", at, live, time.Since(published).Round(time.Millisecond))
	stopped := time.Now()
	for _, s := range stageCommands {
		first[s].Stop(t, 60*time.Second)
	}
	if at := p.Sims[app].accepted(); at >= live {
		t.Errorf("the campaign was over (%d accepted) before the instances stopped", at)
	}
	// A static member (the planner's -instance) does not leave its group on
	// SIGTERM: its partitions move when its session times out.
	for _, stage := range []string{"dispatcher", "feedback", "planner"} {
		p.WaitGroup(stage, 1, groups[stage], 2*time.Minute)
		t.Logf("group %s: one member owns all %d partitions %s after the stop", stage, groups[stage], time.Since(stopped).Round(100*time.Millisecond))
	}
	p.WaitGroup("delay", 1, delayTopics, time.Minute)
	t.Logf("group delay: one member owns all %d partitions %s after the stop", delayTopics, time.Since(stopped).Round(100*time.Millisecond))

	late := campaign("scale-late-"+p.Prefix, lateApp, time.Time{})
	raw, err := json.Marshal(late)
	if err != nil {
		t.Fatal(err)
	}
	cl := testenv.KafkaClient(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rec := &kgo.Record{Topic: p.Cfg.Kafka.Topics.Campaigns.Name, Partition: plannerPart, Key: []byte(late.ID), Value: raw,
		Headers: []kgo.RecordHeader{{Key: pkafka.HeaderSchema, Value: []byte("campaign.v1")}}}
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	t.Logf("published %s to campaigns partition %d, which %s owned", late.ID, plannerPart, first["planner"].Name)

	done := p.WaitFinal(c.ID, len(pop.Devices), 3*time.Minute)
	t.Logf("every device has a final result %s after publishing", done.Sub(published).Round(time.Millisecond))
	p.WaitFinal(late.ID, len(latePop.Devices), 3*time.Minute)

	checkExactDelivery(t, p, p.Sims[app], pop, c.ID)
	checkExactDelivery(t, p, p.Sims[lateApp], latePop, late.ID)
	checkHygiene(t, p, pop)
	for _, s := range stageCommands {
		if !strings.HasSuffix(first[s].Name, "-1") {
			t.Errorf("stopped %s, meant the first instance", first[s].Name)
		}
	}
	p.CheckAlive()
}
