package kafka

import (
	"context"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The least max.message.bytes of the dead-letter topic holds the biggest
// letter DeadLetterRecord makes, with its framing.
func TestDeadLetterTopicMinBytes(t *testing.T) {
	if DeadLetterTopicMinBytes != 787456 || DeadLetterTopicMinBytes <= MaxDeadLetterBytes+61+60 {
		t.Errorf("DeadLetterTopicMinBytes = %d", DeadLetterTopicMinBytes)
	}
	// Kafka's default, which README tells operators to keep, is enough.
	if DeadLetterTopicMinBytes > 1048588 {
		t.Errorf("DeadLetterTopicMinBytes %d over Kafka's default 1048588", DeadLetterTopicMinBytes)
	}
}

func TestTopicSpecCheck(t *testing.T) {
	specs := Layout(defaultConfig(t, "PUSHLANE_DELAY__TIERS=1"))
	byName := map[string]TopicSpec{}
	for _, s := range specs {
		byName[s.Name] = s
	}
	dl, control, tier := byName["pushlane.dead-letter"], byName["pushlane.campaign-control"], byName["pushlane.delay.t00"]
	// What a broker of Kafka's defaults answers for a topic that sets
	// nothing: every key with its default.
	defaults := map[string]string{"cleanup.policy": "delete", "max.message.bytes": "1048588", "min.insync.replicas": "1",
		"message.timestamp.type": "CreateTime", "retention.ms": "604800000"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range defaults {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "<absent>" {
				delete(m, kv[i])
				continue
			}
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, c := range []struct {
		name     string
		spec     TopicSpec
		have     map[string]string
		replicas int
		want     []string
	}{
		{"dead letters as created", dl, with(), 1, nil},
		{"dead letters, limit raised", dl, with("max.message.bytes", "8388608"), 1, nil},
		{"dead letters, limit at the least", dl, with("max.message.bytes", "787456"), 1, nil},
		{"dead letters compacted", dl, with("cleanup.policy", "compact"), 1,
			[]string{`pushlane.dead-letter: cleanup.policy is "compact", want "delete"`}},
		{"dead letters compacted and deleted", dl, with("cleanup.policy", "compact,delete"), 1,
			[]string{`pushlane.dead-letter: cleanup.policy is "compact,delete", want "delete"`}},
		{"dead letters, limit below a letter", dl, with("max.message.bytes", "787455"), 1,
			[]string{"pushlane.dead-letter: max.message.bytes is 787455, want at least 787456"}},
		{"dead letters, limit unknown", dl, with("max.message.bytes", "<absent>"), 1,
			[]string{`pushlane.dead-letter: max.message.bytes is "", want at least 787456`}},
		{"one in-sync replica of one", dl, with(), 2, nil},
		{"one in-sync replica of three", dl, with("cleanup.policy", "compact"), 3, []string{
			`pushlane.dead-letter: cleanup.policy is "compact", want "delete"`,
			"pushlane.dead-letter: min.insync.replicas is 1, want at least 2 (3 replicas)",
		}},
		{"two in-sync replicas of three", dl, with("min.insync.replicas", "2"), 3, nil},
		{"three in-sync replicas of five", control, with("cleanup.policy", "compact", "min.insync.replicas", "3"), 5, nil},
		{"control deleted", control, with(), 3, []string{
			`pushlane.campaign-control: cleanup.policy is "delete", want "compact"`,
			"pushlane.campaign-control: min.insync.replicas is 1, want at least 2 (3 replicas)",
		}},
		{"tier as created", tier, with("message.timestamp.type", "LogAppendTime", "retention.ms", "2678400000"), 1, nil},
		{"tier compacted", tier, with("message.timestamp.type", "LogAppendTime", "retention.ms", "-1", "cleanup.policy", "compact"), 1,
			[]string{`pushlane.delay.t00: cleanup.policy is "compact", want "delete"`}},
	} {
		if got := c.spec.Check(c.have, c.replicas); !slices.Equal(got, c.want) {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
	}
}

// Topics created before pushctl topics ran, with settings that lose or
// refuse records, are left alone and reported, each setting on a line of
// its own; the topics EnsureTopics creates report nothing.
func TestCheckTopicsReportsSettings(t *testing.T) {
	ctx := context.Background()
	specs := Layout(defaultConfig(t, "PUSHLANE_DELAY__TIERS=2"))

	_, _, adm := fakeCluster(t)
	if _, err := EnsureTopics(ctx, adm, 1, specs); err != nil {
		t.Fatal(err)
	}
	if problems, err := CheckTopics(ctx, adm, specs); err != nil || len(problems) != 0 {
		t.Errorf("created layout: %q %v, want no problems", problems, err)
	}

	_, _, adm = fakeCluster(t)
	s := kadm.StringPtr
	byHand := map[string]map[string]*string{
		"pushlane.dead-letter":          {"cleanup.policy": s("compact"), "max.message.bytes": s("500000")},
		"pushlane.results":              {"cleanup.policy": s("compact")},
		"pushlane.ready":                {"cleanup.policy": s("compact,delete")},
		"pushlane.device-registrations": {"cleanup.policy": s("compact")},
		"pushlane.campaign-control":     {"cleanup.policy": s("delete")},
		"pushlane.delay.t01":            {"cleanup.policy": s("compact"), "message.timestamp.type": s("LogAppendTime"), "retention.ms": s("2678400000")},
	}
	for _, spec := range specs {
		if c, ok := byHand[spec.Name]; ok {
			if _, err := adm.CreateTopic(ctx, spec.Partitions, 1, c, spec.Name); err != nil {
				t.Fatal(err)
			}
		}
	}
	created, err := EnsureTopics(ctx, adm, 1, specs)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"pushlane.campaigns", "pushlane.delay.t00"}; !slices.Equal(created, want) {
		t.Errorf("created %q, want %q", created, want)
	}
	problems, err := CheckTopics(ctx, adm, specs)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`pushlane.campaign-control: cleanup.policy is "delete", want "compact"`,
		`pushlane.ready: cleanup.policy is "compact,delete", want "delete"`,
		`pushlane.results: cleanup.policy is "compact", want "delete"`,
		`pushlane.dead-letter: cleanup.policy is "compact", want "delete"`,
		`pushlane.dead-letter: max.message.bytes is 500000, want at least 787456`,
		`pushlane.device-registrations: cleanup.policy is "compact", want "delete"`,
		`pushlane.delay.t01: cleanup.policy is "compact", want "delete"`,
	}
	if !slices.Equal(problems, want) {
		t.Errorf("problems:\n got %q\nwant %q", problems, want)
	}
}

// On three brokers, a topic created with three replicas, asked for or the
// broker's default, gets min.insync.replicas=2 (kfake's default is 1, as
// Kafka's); one created with fewer keeps the default; a replicated topic
// created without it is reported.
func TestEnsureTopicsSetsMinInsyncOnReplicatedTopics(t *testing.T) {
	ctx := context.Background()
	specs := Layout(defaultConfig(t, "PUSHLANE_DELAY__TIERS=1"))
	minInsync := func(adm *kadm.Client) map[string]string {
		t.Helper()
		rcs, err := adm.DescribeTopicConfigs(ctx, specNames(specs)...)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, rc := range rcs {
			for _, c := range rc.Configs {
				if c.Key == "min.insync.replicas" {
					got[rc.Name] = c.MaybeValue()
				}
			}
		}
		return got
	}
	for _, c := range []struct {
		replication int16
		want        string
	}{{3, "2"}, {-1, "2"}, {2, "1"}, {1, "1"}} {
		_, _, adm := fakeCluster(t, kfake.NumBrokers(3))
		created, err := EnsureTopics(ctx, adm, c.replication, specs)
		if err != nil || len(created) != len(specs) {
			t.Fatalf("replication %d: created %q: %v", c.replication, created, err)
		}
		for name, v := range minInsync(adm) {
			if v != c.want {
				t.Errorf("replication %d: %s min.insync.replicas %s, want %s", c.replication, name, v, c.want)
			}
		}
		if problems, err := CheckTopics(ctx, adm, specs); err != nil || len(problems) != 0 {
			t.Errorf("replication %d: %q %v, want no problems", c.replication, problems, err)
		}
		// Idempotent: nothing created or changed again.
		if created, err := EnsureTopics(ctx, adm, c.replication, specs); err != nil || len(created) != 0 {
			t.Errorf("replication %d: second run created %q (%v)", c.replication, created, err)
		}
	}

	_, _, adm := fakeCluster(t, kfake.NumBrokers(3))
	if _, err := adm.CreateTopic(ctx, 12, 3, map[string]*string{"cleanup.policy": kadm.StringPtr("delete")}, "pushlane.ready"); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateTopic(ctx, 12, 2, map[string]*string{"cleanup.policy": kadm.StringPtr("delete")}, "pushlane.results"); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureTopics(ctx, adm, 3, specs); err != nil {
		t.Fatal(err)
	}
	problems, err := CheckTopics(ctx, adm, specs)
	if want := []string{"pushlane.ready: min.insync.replicas is 1, want at least 2 (3 replicas)"}; err != nil || !slices.Equal(problems, want) {
		t.Errorf("problems %q (%v), want %q", problems, err, want)
	}
}

// A broker whose default record limit is below a dead letter (its
// message.max.bytes lowered) would refuse letters on a dead-letter topic
// created with the default: EnsureTopics gives the topic the least a
// letter needs, and nothing more.
func TestEnsureTopicsRaisesDeadLetterLimitOverALowBrokerDefault(t *testing.T) {
	c, _, adm := fakeCluster(t)
	ctx := context.Background()
	specs := Layout(defaultConfig(t, "PUSHLANE_DELAY__TIERS=1"))
	// kfake answers a creation with the configs asked for only, so
	// EnsureTopics describes the dead-letter topic: answer as a broker
	// with message.max.bytes=500000 would.
	described := 0
	c.ControlKey(int16(kmsg.DescribeConfigs), func(req kmsg.Request) (kmsg.Response, error, bool) {
		dreq := req.(*kmsg.DescribeConfigsRequest)
		described++
		resp := dreq.ResponseKind().(*kmsg.DescribeConfigsResponse)
		for _, r := range dreq.Resources {
			rr := kmsg.NewDescribeConfigsResponseResource()
			rr.ResourceType, rr.ResourceName = r.ResourceType, r.ResourceName
			for k, v := range map[string]string{"max.message.bytes": "500000", "cleanup.policy": "delete", "min.insync.replicas": "1"} {
				rc := kmsg.NewDescribeConfigsResponseResourceConfig()
				rc.Name, rc.Value, rc.Source = k, kmsg.StringPtr(v), kmsg.ConfigSourceStaticBrokerConfig
				rr.Configs = append(rr.Configs, rc)
			}
			resp.Resources = append(resp.Resources, rr)
		}
		return resp, nil, true
	})
	if _, err := EnsureTopics(ctx, adm, 1, specs); err != nil {
		t.Fatal(err)
	}
	if described != 1 {
		t.Errorf("described %d times, want once (the dead-letter topic)", described)
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, "pushlane.dead-letter", "pushlane.results")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]kadm.Config{}
	for _, rc := range rcs {
		for _, c := range rc.Configs {
			if c.Key == "max.message.bytes" {
				got[rc.Name] = c
			}
		}
	}
	if c := got["pushlane.dead-letter"]; c.MaybeValue() != "787456" || c.Source != kmsg.ConfigSourceDynamicTopicConfig {
		t.Errorf("dead-letter max.message.bytes %s (%v), want 787456 set on the topic", c.MaybeValue(), c.Source)
	}
	if c := got["pushlane.results"]; c.Source == kmsg.ConfigSourceDynamicTopicConfig {
		t.Errorf("results max.message.bytes set to %s, want the broker's default", c.MaybeValue())
	}
	if problems, err := CheckTopics(ctx, adm, specs); err != nil || len(problems) != 0 {
		t.Errorf("%q %v, want no problems", problems, err)
	}
}
