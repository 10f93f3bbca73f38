package kafka

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/pushlane/pushlane/internal/config"
)

// TopicSpec is one topic the pipeline needs, with its creation configs.
// Configs are set when the topic is created and checked on an existing
// topic: retention.ms as a least (RetentionShort), the others exactly.
// AtLeast are numeric settings the topic needs at least, checked but not
// set: the broker's default satisfies them, and an operator may raise
// them.
type TopicSpec struct {
	Name       string
	Partitions int32
	Configs    map[string]*string
	AtLeast    map[string]int64
}

// DeadLetterTopicMinBytes is the least max.message.bytes of the
// dead-letter topic: a letter of MaxDeadLetterBytes in a batch of its own,
// with room for the batch's header (61 bytes) and the record's framing
// (varint lengths and deltas, two headers: under 60 bytes). A letter the
// topic refuses is slimmed, then dropped.
const DeadLetterTopicMinBytes = MaxDeadLetterBytes + 1<<10

// MinInsyncReplicas is the least min.insync.replicas of a topic with
// ReplicatedFrom replicas or more: with one in-sync replica, a write only
// the leader acknowledged is lost with that broker. A topic with fewer
// replicas (a single-broker stack) keeps the broker's default.
const (
	MinInsyncReplicas = 2
	ReplicatedFrom    = 3
)

// Layout lists every topic of cfg: the campaigns, the compacted control
// topic, the delay ladder, ready, results, dead letters and registrations.
// Only the control topic is compacted: every other one is read by offset
// and keeps every record (a compacted dead-letter topic would drop letters
// sharing an original key and refuse keyless ones).
func Layout(cfg *config.Config) []TopicSpec {
	t := cfg.Kafka.Topics
	deleted := func(top config.Topic) map[string]*string {
		m := map[string]*string{"cleanup.policy": kadm.StringPtr("delete")}
		if top.Retention > 0 {
			m["retention.ms"] = kadm.StringPtr(strconv.FormatInt(top.Retention.Milliseconds(), 10))
		}
		return m
	}
	specs := []TopicSpec{
		{Name: t.Campaigns.Name, Partitions: t.Campaigns.Partitions, Configs: deleted(t.Campaigns)},
		{Name: t.Control.Name, Partitions: t.Control.Partitions, Configs: map[string]*string{
			// Every instance reads the whole control topic at start-up;
			// compaction keeps it to the latest state per campaign.
			"cleanup.policy": kadm.StringPtr("compact"),
		}},
		{Name: t.Ready.Name, Partitions: t.Ready.Partitions, Configs: deleted(t.Ready)},
		{Name: t.Results.Name, Partitions: t.Results.Partitions, Configs: deleted(t.Results)},
		{Name: t.DeadLetter.Name, Partitions: t.DeadLetter.Partitions, Configs: deleted(t.DeadLetter),
			AtLeast: map[string]int64{"max.message.bytes": DeadLetterTopicMinBytes}},
		{Name: t.Registrations.Name, Partitions: t.Registrations.Partitions, Configs: deleted(t.Registrations)},
	}
	for _, name := range cfg.DelayTiers() {
		c := deleted(t.Delay)
		// Due times are computed from the record timestamp; the broker's
		// append time is monotonic per partition and immune to producer
		// clock skew, so offset order is due order in each tier.
		c["message.timestamp.type"] = kadm.StringPtr("LogAppendTime")
		specs = append(specs, TopicSpec{Name: name, Partitions: t.Delay.Partitions, Configs: c})
	}
	return specs
}

// EnsureTopics creates the missing topics of specs and leaves existing ones
// alone. A setting a created topic needs at least (Needs) that the
// broker's default leaves under is raised to that least: max.message.bytes
// of the dead-letter topic under a broker limit below a letter, and
// min.insync.replicas of a topic of ReplicatedFrom replicas or more
// (replication, or the broker's default.replication.factor for -1). It
// returns the names it created.
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
			if err := raiseCreated(ctx, adm, s, resp, replication); err != nil {
				return created, fmt.Errorf("kafka: created topic %s: %w", s.Name, err)
			}
		case errors.Is(err, kerr.TopicAlreadyExists):
		default:
			return created, fmt.Errorf("kafka: create topic %s: %w", s.Name, err)
		}
	}
	return created, nil
}

// Needs is what a topic of s with replicas replicas needs at least:
// s.AtLeast and, with ReplicatedFrom replicas or more, MinInsyncReplicas
// (unless s.Configs sets min.insync.replicas itself).
func (s TopicSpec) Needs(replicas int) map[string]int64 {
	need := maps.Clone(s.AtLeast)
	if replicas >= ReplicatedFrom && s.Configs["min.insync.replicas"] == nil {
		if need == nil {
			need = map[string]int64{}
		}
		need["min.insync.replicas"] = max(need["min.insync.replicas"], MinInsyncReplicas)
	}
	return need
}

// raiseCreated raises the settings of s's topic, just created (resp) with
// replication asked for, that the broker's defaults leave under what the
// topic needs. The broker answers a creation with the replicas and configs
// in effect (Kafka 2.4+); a config it leaves out is described, and the
// replicas it leaves out are replication's.
func raiseCreated(ctx context.Context, adm *kadm.Client, s TopicSpec, resp kadm.CreateTopicResponse, replication int16) error {
	rf := resp.ReplicationFactor
	if rf <= 0 {
		rf = replication
	}
	need := s.Needs(int(rf))
	if len(need) == 0 {
		return nil
	}
	have := map[string]string{}
	described := false
	for k := range need {
		if c, ok := resp.Configs[k]; ok {
			have[k] = c.MaybeValue()
		} else if !described {
			described = true
			rcs, err := adm.DescribeTopicConfigs(ctx, s.Name)
			if err == nil {
				var rc kadm.ResourceConfig
				if rc, err = rcs.On(s.Name, nil); err == nil && rc.Err != nil {
					err = brokerError(rc.Err, rc.ErrMessage)
				}
				for _, c := range rc.Configs {
					if _, ok := have[c.Key]; !ok {
						have[c.Key] = c.MaybeValue()
					}
				}
			}
			if err != nil {
				return fmt.Errorf("describe configs: %w", err)
			}
		}
	}
	var alter []kadm.AlterConfig
	for _, k := range slices.Sorted(maps.Keys(need)) {
		// A value the broker does not say is left to the check.
		if v, err := strconv.ParseInt(have[k], 10, 64); err == nil && v < need[k] {
			alter = append(alter, kadm.AlterConfig{Name: k, Value: kadm.StringPtr(strconv.FormatInt(need[k], 10))})
		}
	}
	if len(alter) == 0 {
		return nil
	}
	if err := alterTopic(ctx, adm, s.Name, alter); err != nil {
		var keys []string
		for _, a := range alter {
			keys = append(keys, a.Name)
		}
		return fmt.Errorf("raise %s: %w", strings.Join(keys, ", "), err)
	}
	return nil
}

// alterTopic sets the configs alter of topic name (an incremental change:
// its other overrides stay), with the broker's own error for a refusal.
func alterTopic(ctx context.Context, adm *kadm.Client, name string, alter []kadm.AlterConfig) error {
	resps, err := adm.AlterTopicConfigs(ctx, alter, name)
	if err != nil {
		return err
	}
	for _, r := range resps {
		if r.Err != nil {
			err = brokerError(r.Err, r.ErrMessage)
		}
	}
	return err
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
		if err := alterTopic(ctx, adm, name, []kadm.AlterConfig{{Name: "retention.ms", Value: kadm.StringPtr(want[name])}}); err != nil {
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
	problems, _, err := verifyTopics(ctx, adm, specs)
	return problems, err
}

// verifyTopics is VerifyTopics, with the replicas of each topic that
// exists.
func verifyTopics(ctx context.Context, adm *kadm.Client, specs []TopicSpec) ([]string, map[string]int, error) {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	details, err := adm.ListTopics(ctx, names...)
	if err != nil {
		return nil, nil, fmt.Errorf("kafka: list topics: %w", err)
	}
	var problems []string
	replicas := map[string]int{}
	for _, s := range specs {
		d, ok := details[s.Name]
		switch {
		case !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition):
			problems = append(problems, s.Name+": missing")
			continue
		case d.Err != nil:
			problems = append(problems, fmt.Sprintf("%s: %v", s.Name, d.Err))
			continue
		case int32(len(d.Partitions)) < s.Partitions:
			problems = append(problems, fmt.Sprintf("%s: %d partitions, want %d", s.Name, len(d.Partitions), s.Partitions))
		}
		replicas[s.Name] = 0
		for _, p := range d.Partitions {
			replicas[s.Name] = max(replicas[s.Name], len(p.Replicas))
		}
	}
	return problems, replicas, nil
}

// CheckTopics is VerifyTopics plus the settings of the topics that exist
// (TopicSpec.Check): a ladder tier with CreateTime timestamps, a control
// topic that is not compacted or another topic that is, a dead-letter topic
// refusing letters or a replicated topic acknowledging writes on one
// replica breaks the pipeline silently, so each is a problem too.
func CheckTopics(ctx context.Context, adm *kadm.Client, specs []TopicSpec) ([]string, error) {
	problems, replicas, err := verifyTopics(ctx, adm, specs)
	if err != nil {
		return nil, err
	}
	var names []string
	byName := map[string]TopicSpec{}
	for _, s := range specs {
		if _, ok := replicas[s.Name]; ok {
			names = append(names, s.Name)
			byName[s.Name] = s
		}
	}
	if len(names) == 0 {
		return problems, nil
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("kafka: describe topic configs: %w", err)
	}
	described := map[string]kadm.ResourceConfig{}
	for _, rc := range rcs {
		described[rc.Name] = rc
	}
	for _, name := range names {
		rc, ok := described[name]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("%s: describe configs: no answer", name))
		case rc.Err != nil:
			problems = append(problems, fmt.Sprintf("%s: describe configs: %v", name, brokerError(rc.Err, rc.ErrMessage)))
		default:
			// A key the topic does not set is answered with the
			// broker's default (its source says so): the value in
			// effect either way.
			have := map[string]string{}
			for _, c := range rc.Configs {
				have[c.Key] = c.MaybeValue()
			}
			problems = append(problems, byName[name].Check(have, replicas[name])...)
		}
	}
	return problems, nil
}

// Check reports how a topic of s with the configs in effect have (by key)
// and replicas replicas differs from s, each difference naming the topic,
// the key, the topic's value and what s needs, in key order: Configs
// exactly but retention.ms, which may be longer; Needs at least.
func (s TopicSpec) Check(have map[string]string, replicas int) []string {
	atLeast := s.Needs(replicas)
	var keys []string
	for k, v := range s.Configs {
		if v != nil {
			keys = append(keys, k)
		}
	}
	for k := range atLeast {
		if s.Configs[k] == nil {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var problems []string
	for _, k := range keys {
		if w, ok := atLeast[k]; ok {
			if h, err := strconv.ParseInt(have[k], 10, 64); err != nil || h < w {
				why := ""
				if k == "min.insync.replicas" {
					why = fmt.Sprintf(" (%d replicas)", replicas)
				}
				problems = append(problems, fmt.Sprintf("%s: %s is %s, want at least %d%s", s.Name, k, numberText(have[k]), w, why))
			}
			continue
		}
		w := *s.Configs[k]
		if k == "retention.ms" {
			// Longer than configured loses nothing; shorter can
			// delete records before they are read (a delay tier's
			// batches before they are due).
			if RetentionShort(have[k], w) {
				problems = append(problems, fmt.Sprintf("%s: retention.ms is %s, want at least %s", s.Name, RetentionText(have[k]), RetentionText(w)))
			}
			continue
		}
		if have[k] != w {
			problems = append(problems, fmt.Sprintf("%s: %s is %q, want %q", s.Name, k, have[k], w))
		}
	}
	return problems
}

// numberText is a config value, quoted unless it is a number.
func numberText(v string) string {
	if _, err := strconv.ParseInt(v, 10, 64); err == nil {
		return v
	}
	return strconv.Quote(v)
}
