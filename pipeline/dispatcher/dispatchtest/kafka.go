// Package dispatchtest holds what the delay, control and dispatcher tests
// share: a Kafka to run against, topic creation, and reading topics back.
package dispatchtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/pipeline/delay"
)

// Kafka is a broker set for one test.
type Kafka struct {
	Brokers []string
	// Real is true against a real broker (deploy/local), false on kfake.
	Real bool
}

// StartKafka returns an in-process kfake cluster, closed when t ends.
func StartKafka(t testing.TB) Kafka {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return Kafka{Brokers: c.ListenAddrs()}
}

// Client returns a plain client (producer, admin) closed when t ends.
func (k Kafka) Client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(k.Brokers...), kgo.ProducerLinger(0)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// UniqueName returns prefix plus a random suffix, so tests sharing a
// broker never share a topic or group.
func UniqueName(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// Topic creates a uniquely named topic and returns its name.
func (k Kafka) Topic(t testing.TB, name string, partitions int32, compacted bool) string {
	t.Helper()
	full := UniqueName("t-" + strings.ReplaceAll(t.Name(), "/", "_") + "-" + name)
	configs := map[string]*string{}
	if compacted {
		configs["cleanup.policy"] = kadm.StringPtr("compact")
	}
	k.CreateTopic(t, full, partitions, configs)
	return full
}

// CreateTopic creates name with configs, tolerating that it exists.
func (k Kafka) CreateTopic(t testing.TB, name string, partitions int32, configs map[string]*string) {
	t.Helper()
	adm := kadm.NewClient(k.Client(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := adm.CreateTopic(ctx, partitions, -1, configs, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		t.Fatalf("create topic %s: %v", name, err)
	}
}

// ReadAll consumes topic from the start until it has seen at least n records
// or timeout passes, and returns what it saw.
func (k Kafka) ReadAll(t testing.TB, topic string, n int, timeout time.Duration) []*kgo.Record {
	t.Helper()
	cl := k.Client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				panic(fmt.Sprintf("read %s/%d: %v", t, p, err))
			}
		})
		out = append(out, fs.Records()...)
	}
	return out
}

// Ladder creates tiers delay tier topics (LogAppendTime, as
// pipeline/kafka.Layout makes them), a ready topic and a dead-letter topic,
// each with partitions partitions.
func (k Kafka) Ladder(t testing.TB, tiers int, partitions int32) (delay.Ladder, string) {
	t.Helper()
	base := UniqueName("t-" + strings.ReplaceAll(t.Name(), "/", "_"))
	l := delay.Ladder{Ready: base + ".ready"}
	for i := range tiers {
		name := fmt.Sprintf("%s.delay.t%02d", base, i)
		k.CreateTopic(t, name, partitions, map[string]*string{"message.timestamp.type": kadm.StringPtr("LogAppendTime")})
		l.Tiers = append(l.Tiers, name)
	}
	k.CreateTopic(t, l.Ready, partitions, nil)
	dlq := base + ".dead-letter"
	k.CreateTopic(t, dlq, 1, nil)
	return l, dlq
}
