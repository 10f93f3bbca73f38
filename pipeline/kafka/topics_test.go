package kafka

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pushlane/pushlane/internal/config"
)

func defaultConfig(t *testing.T, environ ...string) *config.Config {
	t.Helper()
	cfg, err := config.Load("", environ)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// fakeCluster starts an in-process Kafka and returns an admin client on it.
func fakeCluster(t *testing.T, opts ...kfake.Opt) (*kfake.Cluster, *kgo.Client, *kadm.Client) {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return c, cl, kadm.NewClient(cl)
}

func specNames(specs []TopicSpec) []string {
	out := make([]string, len(specs))
	for i, s := range specs {
		out[i] = s.Name
	}
	return out
}

func configValue(s TopicSpec, key string) string {
	if v, ok := s.Configs[key]; ok && v != nil {
		return *v
	}
	return "<unset>"
}

func TestLayoutDefaults(t *testing.T) {
	specs := Layout(defaultConfig(t))
	want := []string{"pushlane.campaigns", "pushlane.campaign-control", "pushlane.ready", "pushlane.results",
		"pushlane.dead-letter", "pushlane.device-registrations"}
	for i := 0; i < 22; i++ {
		want = append(want, fmt.Sprintf("pushlane.delay.t%02d", i))
	}
	if got := specNames(specs); !slices.Equal(got, want) {
		t.Fatalf("topics:\n got %q\nwant %q", got, want)
	}
	partitions := map[string]int32{"pushlane.campaigns": 6, "pushlane.campaign-control": 1, "pushlane.ready": 12,
		"pushlane.results": 12, "pushlane.dead-letter": 3, "pushlane.device-registrations": 6}
	for _, s := range specs {
		wantP, ok := partitions[s.Name]
		if !ok {
			wantP = 6 // a tier
		}
		if s.Partitions != wantP {
			t.Errorf("%s: %d partitions, want %d", s.Name, s.Partitions, wantP)
		}
		isTier := strings.HasPrefix(s.Name, "pushlane.delay.t")
		switch {
		case s.Name == "pushlane.campaign-control":
			if len(s.Configs) != 1 || configValue(s, "cleanup.policy") != "compact" {
				t.Errorf("control topic configs %v, want only cleanup.policy=compact", s.Configs)
			}
		case isTier:
			if configValue(s, "message.timestamp.type") != "LogAppendTime" || configValue(s, "retention.ms") != "2678400000" ||
				configValue(s, "cleanup.policy") != "delete" || len(s.Configs) != 3 {
				t.Errorf("%s configs: timestamp %s retention %s cleanup %s (%d configs)", s.Name,
					configValue(s, "message.timestamp.type"), configValue(s, "retention.ms"), configValue(s, "cleanup.policy"), len(s.Configs))
			}
		default:
			// No retention configured: the broker default applies.
			// Only the control topic is compacted.
			if len(s.Configs) != 1 || configValue(s, "cleanup.policy") != "delete" {
				t.Errorf("%s configs %v, want only cleanup.policy=delete", s.Name, s.Configs)
			}
		}
		// Only the dead-letter topic needs more than the broker's
		// default may give it.
		if s.Name == "pushlane.dead-letter" {
			if want := map[string]int64{"max.message.bytes": 787456}; !maps.Equal(s.AtLeast, want) {
				t.Errorf("dead-letter topic needs %v, want %v", s.AtLeast, want)
			}
		} else if len(s.AtLeast) != 0 {
			t.Errorf("%s needs %v, want nothing", s.Name, s.AtLeast)
		}
	}
}

func TestLayoutFollowsConfig(t *testing.T) {
	cfg := defaultConfig(t,
		"PUSHLANE_DELAY__TIERS=3",
		"PUSHLANE_KAFKA__TOPICS__DELAY__NAME=acme.wait",
		"PUSHLANE_KAFKA__TOPICS__DELAY__PARTITIONS=2",
		"PUSHLANE_KAFKA__TOPICS__DELAY__RETENTION=25h",
		"PUSHLANE_KAFKA__TOPICS__RESULTS__RETENTION=168h",
		"PUSHLANE_KAFKA__TOPICS__CONTROL__RETENTION=1h",
		"PUSHLANE_KAFKA__TOPICS__READY__NAME=acme.ready",
	)
	specs := Layout(cfg)
	got := specNames(specs)
	want := []string{"pushlane.campaigns", "pushlane.campaign-control", "acme.ready", "pushlane.results",
		"pushlane.dead-letter", "pushlane.device-registrations", "acme.wait.t00", "acme.wait.t01", "acme.wait.t02"}
	if !slices.Equal(got, want) {
		t.Fatalf("topics:\n got %q\nwant %q", got, want)
	}
	byName := map[string]TopicSpec{}
	for _, s := range specs {
		byName[s.Name] = s
	}
	if v := configValue(byName["pushlane.results"], "retention.ms"); v != "604800000" {
		t.Errorf("results retention.ms = %s", v)
	}
	// Compaction, not time, bounds the control topic.
	if v := configValue(byName["pushlane.campaign-control"], "retention.ms"); v != "<unset>" {
		t.Errorf("control retention.ms = %s, want unset", v)
	}
	tier := byName["acme.wait.t02"]
	if tier.Partitions != 2 || configValue(tier, "retention.ms") != "90000000" || configValue(tier, "message.timestamp.type") != "LogAppendTime" {
		t.Errorf("tier: %+v", tier)
	}
}

func TestEnsureTopicsIsIdempotent(t *testing.T) {
	c, _, adm := fakeCluster(t)
	ctx := context.Background()
	cfg := defaultConfig(t, "PUSHLANE_DELAY__TIERS=4")
	specs := Layout(cfg)

	// kadm answers ListTopics from the client's metadata cache for
	// MetadataMinAge (5s), missing topics included; checking before and
	// after creating therefore takes two clients (or a short min age).
	before, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	problems, err := VerifyTopics(ctx, kadm.NewClient(before), specs)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != len(specs) || problems[0] != "pushlane.campaigns: missing" || problems[9] != "pushlane.delay.t03: missing" {
		t.Errorf("before creation: %q", problems)
	}

	created, err := EnsureTopics(ctx, adm, 1, specs)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(created, specNames(specs)) {
		t.Errorf("first run created %q, want every topic", created)
	}
	created, err = EnsureTopics(ctx, adm, 1, specs)
	if err != nil {
		t.Fatal(err)
	}
	if len(created) != 0 {
		t.Errorf("second run created %q, want nothing", created)
	}
	if problems, err := VerifyTopics(ctx, adm, specs); err != nil || len(problems) != 0 {
		t.Errorf("after creation: %q %v", problems, err)
	}

	details, err := adm.ListTopics(ctx, specNames(specs)...)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range specs {
		if n := len(details[s.Name].Partitions); int32(n) != s.Partitions {
			t.Errorf("%s has %d partitions, want %d", s.Name, n, s.Partitions)
		}
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, "pushlane.campaign-control", "pushlane.delay.t02")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]string{
		"pushlane.campaign-control": {"cleanup.policy": "compact"},
		"pushlane.delay.t02":        {"message.timestamp.type": "LogAppendTime", "retention.ms": "2678400000", "cleanup.policy": "delete"},
	}
	if len(rcs) != 2 {
		t.Fatalf("described %d topics", len(rcs))
	}
	for _, rc := range rcs {
		if rc.Err != nil {
			t.Fatalf("%s: %v", rc.Name, rc.Err)
		}
		got := map[string]string{}
		for _, c := range rc.Configs {
			got[c.Key] = c.MaybeValue()
		}
		for k, v := range want[rc.Name] {
			if got[k] != v {
				t.Errorf("%s %s = %q, want %q", rc.Name, k, got[k], v)
			}
		}
	}
}

func TestVerifyTopicsReportsTooFewPartitions(t *testing.T) {
	_, _, adm := fakeCluster(t)
	ctx := context.Background()
	specs := Layout(defaultConfig(t, "PUSHLANE_DELAY__TIERS=1"))
	// Someone created ready by hand, smaller than configured.
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, "pushlane.ready"); err != nil {
		t.Fatal(err)
	}
	created, err := EnsureTopics(ctx, adm, 1, specs)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(created, "pushlane.ready") || len(created) != len(specs)-1 {
		t.Errorf("created %q: an existing topic must be left alone", created)
	}
	problems, err := VerifyTopics(ctx, adm, specs)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"pushlane.ready: 2 partitions, want 12"}; !slices.Equal(problems, want) {
		t.Errorf("problems %q, want %q", problems, want)
	}
}

func TestEnsureTopicsReportsBrokerErrors(t *testing.T) {
	_, _, adm := fakeCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bad := []TopicSpec{{Name: "pushlane.ok", Partitions: 1}, {Name: "pushlane.bad", Partitions: 0}}
	created, err := EnsureTopics(ctx, adm, 1, bad)
	if err == nil || !strings.HasPrefix(err.Error(), "kafka: create topic pushlane.bad: INVALID_PARTITIONS") {
		t.Fatalf("err = %v, want it to name the topic", err)
	}
	if !slices.Equal(created, []string{"pushlane.ok"}) {
		t.Errorf("created %q before the failure, want [pushlane.ok]", created)
	}
}

func TestRaiseRetentionOnlyRaises(t *testing.T) {
	_, _, adm := fakeCluster(t)
	ctx := context.Background()
	cfg := defaultConfig(t, "PUSHLANE_DELAY__TIERS=3", "PUSHLANE_KAFKA__TOPICS__RESULTS__RETENTION=48h")
	specs := Layout(cfg)
	if _, err := EnsureTopics(ctx, adm, 1, specs[:len(specs)-1]); err != nil { // t02 missing
		t.Fatal(err)
	}
	// As left by an older release: t00 at the old 72h default, results
	// shorter than configured, t01 kept for ever by an operator.
	set := func(topic, ms string) {
		t.Helper()
		if _, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "retention.ms", Value: kadm.StringPtr(ms)}}, topic); err != nil {
			t.Fatal(err)
		}
	}
	set("pushlane.delay.t00", "259200000")
	set("pushlane.results", "3600000")
	set("pushlane.delay.t01", "-1")

	changed, err := RaiseRetention(ctx, adm, specs)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, r := range changed {
		lines = append(lines, r.String())
	}
	want := []string{
		"pushlane.results: retention.ms raised from 3600000 (1h0m0s) to 172800000 (48h0m0s)",
		"pushlane.delay.t00: retention.ms raised from 259200000 (72h0m0s) to 2678400000 (744h0m0s)",
	}
	if !slices.Equal(lines, want) {
		t.Errorf("changed %q, want %q", lines, want)
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, "pushlane.results", "pushlane.delay.t00", "pushlane.delay.t01")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, rc := range rcs {
		for _, c := range rc.Configs {
			if c.Key == "retention.ms" {
				got[rc.Name] = c.MaybeValue()
			}
		}
	}
	if w := map[string]string{"pushlane.results": "172800000", "pushlane.delay.t00": "2678400000", "pushlane.delay.t01": "-1"}; !maps.Equal(got, w) {
		t.Errorf("retention.ms %v, want %v", got, w)
	}
	if changed, err := RaiseRetention(ctx, adm, specs); err != nil || len(changed) != 0 {
		t.Errorf("second run changed %v (%v), want nothing", changed, err)
	}
}

func TestRetentionShort(t *testing.T) {
	for _, c := range []struct {
		have, want string
		short      bool
	}{
		{"259200000", "2678400000", true},
		{"2678400000", "2678400000", false},
		{"3000000000", "2678400000", false},
		{"-1", "2678400000", false},
		{"259200000", "-1", true},
		{"-1", "-1", false},
		{"", "2678400000", true},
	} {
		if got := RetentionShort(c.have, c.want); got != c.short {
			t.Errorf("RetentionShort(%q, %q) = %v, want %v", c.have, c.want, got, c.short)
		}
	}
}

// A raise the broker refuses is reported with the broker's words, and the
// topics raised before and after it are reported too.
func TestRaiseRetentionReportsWhatItRaisedBesideAFailure(t *testing.T) {
	c, _, adm := fakeCluster(t)
	ctx := context.Background()
	specs := Layout(defaultConfig(t, "PUSHLANE_DELAY__TIERS=3"))
	if _, err := EnsureTopics(ctx, adm, 1, specs); err != nil {
		t.Fatal(err)
	}
	for _, tier := range []string{"pushlane.delay.t00", "pushlane.delay.t01", "pushlane.delay.t02"} {
		if _, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "retention.ms", Value: kadm.StringPtr("259200000")}}, tier); err != nil {
			t.Fatal(err)
		}
	}
	c.ControlKey(int16(kmsg.IncrementalAlterConfigs), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		areq := req.(*kmsg.IncrementalAlterConfigsRequest)
		if len(areq.Resources) != 1 || areq.Resources[0].ResourceName != "pushlane.delay.t01" {
			return nil, nil, false
		}
		resp := areq.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
		rr := kmsg.NewIncrementalAlterConfigsResponseResource()
		rr.ResourceType, rr.ResourceName = areq.Resources[0].ResourceType, "pushlane.delay.t01"
		rr.ErrorCode = kerr.PolicyViolation.Code
		rr.ErrorMessage = kmsg.StringPtr("retention.ms over the cluster's maximum")
		resp.Resources = append(resp.Resources, rr)
		return resp, nil, true
	})
	changed, err := RaiseRetention(ctx, adm, specs)
	var topics []string
	for _, r := range changed {
		topics = append(topics, r.Topic)
	}
	if !slices.Equal(topics, []string{"pushlane.delay.t00", "pushlane.delay.t02"}) {
		t.Errorf("raised %q, want t00 and t02", topics)
	}
	if err == nil || !strings.Contains(err.Error(), "kafka: raise retention.ms of pushlane.delay.t01: POLICY_VIOLATION") ||
		!strings.Contains(err.Error(), "(retention.ms over the cluster's maximum)") {
		t.Errorf("err = %v, want t01's POLICY_VIOLATION with the broker's message", err)
	}
}
