// Package dispatchtest holds what the delay, control and dispatcher tests
// share: a Kafka to run against, topic creation, and reading topics back.
package dispatchtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/internal/testenv"
	"github.com/pushlane/pushlane/pipeline/delay"
)

// Kafka is the broker set of one test: the real Kafka of deploy/local,
// through internal/testenv (skipped, or failed under
// PUSHLANE_TEST_REQUIRE=1, when it is not running).
type Kafka struct {
	Brokers []string
}

// StartKafka returns the test Kafka.
func StartKafka(t testing.TB) Kafka {
	t.Helper()
	return Kafka{Brokers: testenv.KafkaBrokers(t)}
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

// Topic creates a uniquely named topic, deleted when t ends, and returns
// its name.
func (k Kafka) Topic(t testing.TB, name string, partitions int32, compacted bool) string {
	t.Helper()
	configs := map[string]*string{}
	if compacted {
		configs["cleanup.policy"] = kadm.StringPtr("compact")
	}
	return testenv.Topic(t, name, partitions, configs)
}

// ReadAll consumes topic from the start until it has seen at least n records
// or timeout passes, and returns what it saw. Its consumer is closed before
// it returns. A fetch error fails the test (t.Fatalf), so, like t.Fatal, it
// must be called from the test's goroutine.
func (k Kafka) ReadAll(t testing.TB, topic string, n int, timeout time.Duration) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatalf("read %s: %v", topic, err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		out = append(out, fs.Records()...)
		if ctx.Err() != nil {
			break
		}
		var errs []error
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				errs = append(errs, fmt.Errorf("read %s/%d: %w", topic, p, err))
			}
		})
		if len(errs) > 0 {
			t.Fatalf("%v", errors.Join(errs...))
		}
	}
	return out
}

// Ladder creates tiers delay tier topics (LogAppendTime, as
// pipeline/kafka.Layout makes them), a ready topic and a dead-letter topic,
// each with partitions partitions.
func (k Kafka) Ladder(t testing.TB, tiers int, partitions int32) (delay.Ladder, string) {
	t.Helper()
	l := delay.Ladder{Ready: testenv.Topic(t, "ready", partitions, nil)}
	for i := range tiers {
		l.Tiers = append(l.Tiers, testenv.Topic(t, fmt.Sprintf("delay.t%02d", i), partitions,
			map[string]*string{"message.timestamp.type": kadm.StringPtr("LogAppendTime")}))
	}
	return l, testenv.Topic(t, "dead-letter", 1, nil)
}
