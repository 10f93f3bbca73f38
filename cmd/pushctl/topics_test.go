package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/pipeline/kafka"
)

func TestTopicsCheckReportsWrongSettings(t *testing.T) {
	onEachKafka(t, testTopicsCheckReportsWrongSettings)
}

// A topic that existed before pushctl topics ran is left as it is, but a
// setting the pipeline depends on is reported, naming the topic, the key,
// the topic's value and the one it needs; once the setting is put right,
// nothing is reported.
func testTopicsCheckReportsWrongSettings(t *testing.T, newStack stackFactory) {
	cases := []struct {
		name string
		// topic names the topic created by hand.
		topic func(config.Topics) string
		// configs it is created with; fix puts them right.
		configs, fix map[string]*string
		problem      string
	}{
		{
			// Letters sharing an original key would be compacted
			// away, and keyless ones refused.
			name:    "compacted dead letters",
			topic:   func(T config.Topics) string { return T.DeadLetter.Name },
			configs: map[string]*string{"cleanup.policy": kadm.StringPtr("compact")},
			fix:     map[string]*string{"cleanup.policy": kadm.StringPtr("delete")},
			problem: `cleanup.policy is "compact", want "delete"`,
		},
		{
			// Letters up to 768 KiB would be refused, slimmed, then
			// dropped. Fixed by removing the override: the broker's
			// default (1 MB) is the topic's value then.
			name:    "dead-letter limit below a letter",
			topic:   func(T config.Topics) string { return T.DeadLetter.Name },
			configs: map[string]*string{"max.message.bytes": kadm.StringPtr("500000")},
			fix:     map[string]*string{"max.message.bytes": nil},
			problem: "max.message.bytes is 500000, want at least 787456",
		},
		{
			name:    "compacted results",
			topic:   func(T config.Topics) string { return T.Results.Name },
			configs: map[string]*string{"cleanup.policy": kadm.StringPtr("compact")},
			fix:     map[string]*string{"cleanup.policy": kadm.StringPtr("delete")},
			problem: `cleanup.policy is "compact", want "delete"`,
		},
		{
			name:    "compacted ready",
			topic:   func(T config.Topics) string { return T.Ready.Name },
			configs: map[string]*string{"cleanup.policy": kadm.StringPtr("compact,delete")},
			fix:     map[string]*string{"cleanup.policy": kadm.StringPtr("delete")},
			problem: `cleanup.policy is "compact,delete", want "delete"`,
		},
		{
			name:  "compacted tier",
			topic: func(T config.Topics) string { return T.Delay.Name + ".t01" },
			configs: map[string]*string{"cleanup.policy": kadm.StringPtr("compact"), "message.timestamp.type": kadm.StringPtr("LogAppendTime"),
				"retention.ms": kadm.StringPtr("2678400000")},
			fix:     map[string]*string{"cleanup.policy": kadm.StringPtr("delete")},
			problem: `cleanup.policy is "compact", want "delete"`,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newStack(t)
			ctx := context.Background()
			topic := c.topic(s.topics())
			var created strings.Builder
			for _, spec := range kafka.Layout(s.cfg) {
				if spec.Name == topic {
					if _, err := s.adm.CreateTopic(ctx, spec.Partitions, 1, c.configs, topic); err != nil {
						t.Fatal(err)
					}
					continue
				}
				created.WriteString("created " + spec.Name + "\n")
			}
			problem := "pushctl topics: 1 problems:\n  " + topic + ": " + c.problem + "\n"
			// The topic is left alone, and reported.
			expect(t, s.run(t, "", "topics"), exitFailed, created.String(), problem)
			expect(t, s.run(t, "", "topics", "-check"), exitFailed, "", problem)

			var alter []kadm.AlterConfig
			for k, v := range c.fix {
				op := kadm.SetConfig
				if v == nil {
					op = kadm.DeleteConfig
				}
				alter = append(alter, kadm.AlterConfig{Op: op, Name: k, Value: v})
			}
			resps, err := s.adm.AlterTopicConfigs(ctx, alter, topic)
			if err == nil {
				err = resps[0].Err
			}
			if err != nil {
				t.Fatal(err)
			}
			// An altered config reaches describe through the
			// broker's metadata log.
			var r result
			for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(250 * time.Millisecond) {
				if r = s.run(t, "", "topics", "-check"); r.code == exitOK || time.Now().After(deadline) {
					break
				}
			}
			expect(t, r, exitOK, "ok: 9 topics as configured\n", "")
		})
	}
}

// On a cluster of three brokers, topics created with three replicas get
// min.insync.replicas=2 (one in-sync replica would let a write the leader
// alone acknowledged be lost with it), and a replicated topic created
// without it is reported. kfake only: the local stack has one broker.
func TestTopicsMinInsyncReplicas(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(3))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	s := newStackOn(t, c.ListenAddrs(), func(topic string) string { return defaultTopicNames[topic] }, "pushlane")
	T := s.topics()
	ctx := context.Background()
	if _, err := s.adm.CreateTopic(ctx, T.Ready.Partitions, 3, nil, T.Ready.Name); err != nil {
		t.Fatal(err)
	}
	var created strings.Builder
	for _, spec := range kafka.Layout(s.cfg) {
		if spec.Name != T.Ready.Name {
			created.WriteString("created " + spec.Name + "\n")
		}
	}
	problem := "pushctl topics: 1 problems:\n  " + T.Ready.Name + ": min.insync.replicas is 1, want at least 2 (3 replicas)\n"
	expect(t, s.run(t, "", "topics", "-replication", "3"), exitFailed, created.String(), problem)
	expect(t, s.run(t, "", "topics", "-check"), exitFailed, "", problem)

	// Raised above the least, it is fine.
	if _, err := s.adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "min.insync.replicas", Value: kadm.StringPtr("3")}}, T.Ready.Name); err != nil {
		t.Fatal(err)
	}
	expect(t, s.run(t, "", "topics", "-check"), exitOK, "ok: 9 topics as configured\n", "")
}
