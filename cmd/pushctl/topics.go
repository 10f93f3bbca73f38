package main

import (
	"context"
	"flag"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/pushlane/pushlane/pipeline/kafka"
)

func topicsCommand() *command {
	return &command{
		name:    "topics",
		args:    "[-check] [-replication N]",
		summary: "Create the pipeline's topics that are missing, then check them all",
		details: `
Creates every topic of the configuration that does not exist yet (campaigns, the
compacted control topic, the delay ladder tiers with LogAppendTime, ready, results,
dead letters, registrations), raises retention.ms of existing topics that keep
records for less time than configured (never lowers it), and leaves the rest alone;
then checks them all. Each created topic and each raise is printed.

The check reports a topic that is missing, has fewer partitions than configured, has
a creation setting that differs (cleanup.policy, message.timestamp.type), or keeps
records for less time than its configured retention. Problems go to stderr and
exit 1.

-check only checks, changing nothing: use it in readiness gates and CI.`,
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
				problems, err := checkTopics(ctx, adm, specs)
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
					problems, err = checkTopics(ctx, adm, specs)
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

// checkTopics is kafka.VerifyTopics plus the creation settings: a ladder
// tier with CreateTime timestamps or a control topic that is not compacted
// breaks the pipeline silently, so it is a problem too.
func checkTopics(ctx context.Context, adm *kadm.Client, specs []kafka.TopicSpec) ([]string, error) {
	problems, err := kafka.VerifyTopics(ctx, adm, specs)
	if err != nil {
		return nil, err
	}
	missing := map[string]bool{}
	for _, p := range problems {
		if name, ok := strings.CutSuffix(p, ": missing"); ok {
			missing[name] = true
		}
	}
	var names []string
	want := map[string]map[string]*string{}
	for _, s := range specs {
		if !missing[s.Name] && len(s.Configs) > 0 {
			names = append(names, s.Name)
			want[s.Name] = s.Configs
		}
	}
	if len(names) == 0 {
		return problems, nil
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("describe topic configs: %w", err)
	}
	for _, rc := range rcs {
		if rc.Err != nil {
			problems = append(problems, fmt.Sprintf("%s: describe configs: %v", rc.Name, rc.Err))
			continue
		}
		have := map[string]string{}
		for _, cf := range rc.Configs {
			have[cf.Key] = cf.MaybeValue()
		}
		keys := make([]string, 0, len(want[rc.Name]))
		for k := range want[rc.Name] {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			w := want[rc.Name][k]
			if w == nil {
				continue
			}
			if k == "retention.ms" {
				// Longer than configured loses nothing; shorter can
				// delete records before they are read (a delay tier's
				// batches before they are due).
				if kafka.RetentionShort(have[k], *w) {
					problems = append(problems, fmt.Sprintf("%s: retention.ms is %s, want at least %s", rc.Name, kafka.RetentionText(have[k]), kafka.RetentionText(*w)))
				}
				continue
			}
			if have[k] != *w {
				problems = append(problems, fmt.Sprintf("%s: %s is %q, want %q", rc.Name, k, have[k], *w))
			}
		}
	}
	return problems, nil
}
