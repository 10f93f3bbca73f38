package delay

import (
	"math/bits"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/pipeline/kafka"
)

// Ladder names the topics a batch can be routed to: tier k delays
// TierDelay(k) = 2^k seconds; Ready holds batches due now.
type Ladder struct {
	Tiers []string
	Ready string
}

// ReadyWithin is how close to its send-at a batch goes straight to the
// ready topic; the dispatcher's guard waits out the remainder, so nothing is
// sent early.
const ReadyWithin = time.Second

// TierDelay is the fixed delay of tier k.
func TierDelay(k int) time.Duration { return time.Second << k }

// Tier returns the tier for a batch due in remaining (>= ReadyWithin):
// the largest k with 2^k s <= remaining, capped at the top tier. Because
// the chosen delay is at most the remaining time, a batch is never made due
// after its send-at, and each hop strictly lowers the tier, so a batch is
// re-written at most len(Tiers) times (plus one loop of the top tier per
// 2^(K-1) s beyond the ladder's reach).
func (l Ladder) Tier(remaining time.Duration) int {
	secs := uint64(remaining / time.Second)
	if secs < 1 {
		secs = 1
	}
	k := bits.Len64(secs) - 1
	if k >= len(l.Tiers) {
		k = len(l.Tiers) - 1
	}
	return k
}

// Route returns the topic for a batch due at sendAt, seen at now.
func (l Ladder) Route(sendAt, now time.Time) string {
	remaining := sendAt.Sub(now)
	if remaining < ReadyWithin || len(l.Tiers) == 0 {
		return l.Ready
	}
	return l.Tiers[l.Tier(remaining)]
}

// BatchRecord builds the record of an encoded batch, keyed by batch id so
// every hop of a batch lands on the same partition number, with the
// scheduling facts in headers so routing needs no decoding.
func BatchRecord(topic, batchID, campaignID string, sendAt, expiresAt time.Time, value []byte) *kgo.Record {
	r := &kgo.Record{Topic: topic, Key: []byte(batchID), Value: value}
	r.Headers = append(r.Headers,
		kgo.RecordHeader{Key: kafka.HeaderSchema, Value: []byte("batch.v1")},
		kgo.RecordHeader{Key: kafka.HeaderCampaignID, Value: []byte(campaignID)},
		kgo.RecordHeader{Key: kafka.HeaderBatchID, Value: []byte(batchID)},
		kgo.RecordHeader{Key: kafka.HeaderSendAt, Value: []byte(kafka.UnixMillis(sendAt))},
		kgo.RecordHeader{Key: kafka.HeaderHop, Value: []byte("0")},
	)
	if !expiresAt.IsZero() {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: kafka.HeaderExpiresAt, Value: []byte(kafka.UnixMillis(expiresAt))})
	}
	return r
}
