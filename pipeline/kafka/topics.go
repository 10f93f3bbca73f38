package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/pushlane/pushlane/internal/config"
)

// TopicSpec is one topic the pipeline needs, with its creation configs.
type TopicSpec struct {
	Name       string
	Partitions int32
	Configs    map[string]*string
}

// Layout lists every topic of cfg: the campaigns, the compacted control
// topic, the delay ladder, ready, results, dead letters and registrations.
func Layout(cfg *config.Config) []TopicSpec {
	t := cfg.Kafka.Topics
	retention := func(top config.Topic) map[string]*string {
		m := map[string]*string{}
		if top.Retention > 0 {
			m["retention.ms"] = kadm.StringPtr(strconv.FormatInt(top.Retention.Milliseconds(), 10))
		}
		return m
	}
	specs := []TopicSpec{
		{Name: t.Campaigns.Name, Partitions: t.Campaigns.Partitions, Configs: retention(t.Campaigns)},
		{Name: t.Control.Name, Partitions: t.Control.Partitions, Configs: map[string]*string{
			// Every instance reads the whole control topic at start-up;
			// compaction keeps it to the latest state per campaign.
			"cleanup.policy": kadm.StringPtr("compact"),
		}},
		{Name: t.Ready.Name, Partitions: t.Ready.Partitions, Configs: retention(t.Ready)},
		{Name: t.Results.Name, Partitions: t.Results.Partitions, Configs: retention(t.Results)},
		{Name: t.DeadLetter.Name, Partitions: t.DeadLetter.Partitions, Configs: retention(t.DeadLetter)},
		{Name: t.Registrations.Name, Partitions: t.Registrations.Partitions, Configs: retention(t.Registrations)},
	}
	for _, name := range cfg.DelayTiers() {
		c := retention(t.Delay)
		// Due times are computed from the record timestamp; the broker's
		// append time is monotonic per partition and immune to producer
		// clock skew, so offset order is due order in each tier.
		c["message.timestamp.type"] = kadm.StringPtr("LogAppendTime")
		specs = append(specs, TopicSpec{Name: name, Partitions: t.Delay.Partitions, Configs: c})
	}
	return specs
}

// EnsureTopics creates the missing topics of specs and leaves existing ones
// alone. It returns the names it created.
func EnsureTopics(ctx context.Context, adm *kadm.Client, replication int16, specs []TopicSpec) ([]string, error) {
	var created []string
	for _, s := range specs {
		resp, err := adm.CreateTopic(ctx, s.Partitions, replication, s.Configs, s.Name)
		if err == nil {
			err = resp.Err
		}
		switch {
		case err == nil:
			created = append(created, s.Name)
		case errors.Is(err, kerr.TopicAlreadyExists):
		default:
			return created, fmt.Errorf("kafka: create topic %s: %w", s.Name, err)
		}
	}
	return created, nil
}

// VerifyTopics reports topics of specs that are missing or have fewer
// partitions than configured.
func VerifyTopics(ctx context.Context, adm *kadm.Client, specs []TopicSpec) ([]string, error) {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	details, err := adm.ListTopics(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("kafka: list topics: %w", err)
	}
	var problems []string
	for _, s := range specs {
		d, ok := details[s.Name]
		switch {
		case !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition):
			problems = append(problems, s.Name+": missing")
		case d.Err != nil:
			problems = append(problems, fmt.Sprintf("%s: %v", s.Name, d.Err))
		case int32(len(d.Partitions)) < s.Partitions:
			problems = append(problems, fmt.Sprintf("%s: %d partitions, want %d", s.Name, len(d.Partitions), s.Partitions))
		}
	}
	return problems, nil
}
