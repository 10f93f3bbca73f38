package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

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

// RaiseRetention raises retention.ms of the existing topics of specs that
// keep records for a shorter time than their spec asks, and never lowers
// one: a longer retention loses nothing, and shortening one deletes data,
// which is an operator's call. A delay tier created under an older, shorter
// default would otherwise delete batches before they fall due. It returns
// the topics it changed, in spec order; topics that do not exist are left
// to EnsureTopics.
func RaiseRetention(ctx context.Context, adm *kadm.Client, specs []TopicSpec) ([]Raised, error) {
	want := map[string]string{}
	var names []string
	for _, s := range specs {
		if v := s.Configs["retention.ms"]; v != nil {
			want[s.Name] = *v
			names = append(names, s.Name)
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("kafka: describe topic configs: %w", err)
	}
	have := map[string]string{}
	var errs []error
	for _, rc := range rcs {
		if rc.Err != nil {
			if !errors.Is(rc.Err, kerr.UnknownTopicOrPartition) {
				errs = append(errs, fmt.Errorf("kafka: describe configs of %s: %w", rc.Name, brokerError(rc.Err, rc.ErrMessage)))
			}
			continue
		}
		for _, c := range rc.Configs {
			if c.Key == "retention.ms" {
				have[rc.Name] = c.MaybeValue()
			}
		}
	}
	// One topic at a time, in spec order: what was raised before a
	// failure is reported with it.
	var changed []Raised
	for _, name := range names {
		v, ok := have[name]
		if !ok || !RetentionShort(v, want[name]) {
			continue
		}
		resps, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "retention.ms", Value: kadm.StringPtr(want[name])}}, name)
		if err == nil {
			for _, r := range resps {
				if r.Err != nil {
					err = brokerError(r.Err, r.ErrMessage)
				}
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("kafka: raise retention.ms of %s: %w", name, err))
			continue
		}
		changed = append(changed, Raised{Topic: name, From: v, To: want[name]})
	}
	return changed, errors.Join(errs...)
}

// brokerError adds the broker's own words, when it sent any, to err.
func brokerError(err error, message string) error {
	if message == "" || strings.Contains(err.Error(), message) {
		return err
	}
	return fmt.Errorf("%w (%s)", err, message)
}

// Raised is one topic whose retention.ms RaiseRetention raised.
type Raised struct{ Topic, From, To string }

func (r Raised) String() string {
	return fmt.Sprintf("%s: retention.ms raised from %s to %s", r.Topic, RetentionText(r.From), RetentionText(r.To))
}

// RetentionShort says whether a topic's retention.ms value have keeps
// records for less time than want; -1 keeps them for ever.
func RetentionShort(have, want string) bool {
	h, err1 := strconv.ParseInt(have, 10, 64)
	w, err2 := strconv.ParseInt(want, 10, 64)
	if err1 != nil || err2 != nil {
		return have != want
	}
	return h >= 0 && (w < 0 || h < w)
}

// RetentionText is a retention.ms value with its duration, for people.
func RetentionText(ms string) string {
	v, err := strconv.ParseInt(ms, 10, 64)
	switch {
	case err != nil:
		return strconv.Quote(ms)
	case v < 0:
		return ms + " (unlimited)"
	default:
		return fmt.Sprintf("%s (%v)", ms, time.Duration(v)*time.Millisecond)
	}
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
