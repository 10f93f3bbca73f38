package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/pushlane/pushlane/pipeline/kafka"
)

func topicsCommand() *command {
	return &command{
		name:    "topics",
		args:    "[-check] [-replication N]",
		summary: "Create the pipeline's topics that are missing, then check them all",
		details: fmt.Sprintf(`
Creates every topic of the configuration that does not exist yet (campaigns, the
compacted control topic, the delay ladder tiers with LogAppendTime, ready, results,
dead letters, registrations; where the broker's default is lower, min.insync.replicas=%[1]d
on a topic of %[2]d replicas or more and max.message.bytes=%[3]d on the dead-letter topic),
raises retention.ms of existing topics that keep records for less time than configured
(never lowers it), and leaves the rest alone; then checks them all. Each created
topic and each raise is printed.

The check reports a topic that is missing, has fewer partitions than configured, or
has a setting in effect (its own or the broker's default) that differs: cleanup.policy
other than compact on the control topic or other than delete on any other topic,
message.timestamp.type other than LogAppendTime on a tier, retention.ms shorter than
configured, max.message.bytes of the dead-letter topic under %[3]d (a dead letter
is up to %[4]d KiB), min.insync.replicas under %[1]d on a topic of %[2]d replicas or more.
Each line names the topic, the key, its value and the one wanted. Problems go to
stderr and exit 1.

-check only checks, changing nothing: use it in readiness gates and CI.`,
			kafka.MinInsyncReplicas, kafka.ReplicatedFrom, kafka.DeadLetterTopicMinBytes, kafka.MaxDeadLetterBytes>>10),
		examples: []string{
			"pushctl -config /etc/pushlane/pushlane.yaml topics",
			"pushctl -brokers kafka-0:9092 topics -check",
			"pushctl topics -replication 3",
		},
		flags: func(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
			check := fs.Bool("check", false, "only check; create nothing")
			replication := fs.Int("replication", 0, "replication factor of created topics (default kafka.topics.replication_factor)")
			return func(ctx context.Context, args []string) error {
				if len(args) > 0 {
					return usagef("unexpected argument %q", args[0])
				}
				cfg, err := c.loadConfig()
				if err != nil {
					return err
				}
				rf := cfg.Kafka.Topics.ReplicationFactor
				if *replication != 0 {
					if *check {
						return usagef("-replication does not apply to -check")
					}
					if *replication < 1 || *replication > 32767 {
						return usagef("-replication %d: want at least 1", *replication)
					}
					rf = int16(*replication)
				}
				cl, adm, err := c.admin(cfg)
				if err != nil {
					return err
				}
				defer cl.Close()
				specs := kafka.Layout(cfg)
				changed := map[string]bool{} // topics created or altered here
				if !*check {
					names, err := kafka.EnsureTopics(ctx, adm, rf, specs)
					for _, name := range names {
						fmt.Fprintf(c.stdout, "created %s\n", name)
						changed[name] = true
					}
					if err != nil {
						return err
					}
					raised, err := kafka.RaiseRetention(ctx, adm, specs)
					for _, r := range raised {
						fmt.Fprintln(c.stdout, r)
						changed[r.Topic] = true
					}
					if err != nil {
						return err
					}
				}
				problems, err := kafka.CheckTopics(ctx, adm, specs)
				// A topic is created before its partitions have leaders,
				// and an altered config reaches the broker's answers
				// through its metadata log: give both a moment before
				// calling them broken.
				for settle := time.Now().Add(15 * time.Second); len(changed) > 0 && (err != nil || concerns(problems, changed)) && time.Now().Before(settle); {
					select {
					case <-ctx.Done():
						return fmt.Errorf("check topics: %w", ctx.Err())
					case <-time.After(200 * time.Millisecond):
					}
					problems, err = kafka.CheckTopics(ctx, adm, specs)
				}
				if err != nil {
					return err
				}
				if len(problems) > 0 {
					return fmt.Errorf("%d problems:\n  %s", len(problems), strings.Join(problems, "\n  "))
				}
				fmt.Fprintf(c.stdout, "ok: %d topics as configured\n", len(specs))
				return nil
			}
		},
	}
}

// concerns says whether a problem names one of topics.
func concerns(problems []string, topics map[string]bool) bool {
	for _, p := range problems {
		if name, _, ok := strings.Cut(p, ": "); ok && topics[name] {
			return true
		}
	}
	return false
}
