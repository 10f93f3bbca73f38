package dispatcher

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/pipeline/kafka"
	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/schemas"
)

// ResultID is the deterministic id of a device's result in one attempt of
// one batch: a re-sent chunk or a replayed batch writes the same id, which
// downstream consumers de-duplicate on.
func ResultID(batchID, token string, attempt int) string {
	h := sha256.New()
	h.Write([]byte(batchID))
	h.Write([]byte{0})
	h.Write([]byte(token))
	h.Write([]byte{0})
	h.Write([]byte(strconv.Itoa(attempt)))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

var attemptSuffix = regexp.MustCompile(`#a[0-9]+$`)

// RetryBatchID is the id of the retry batch of batchID for attempt:
// <batch id>#a<attempt>, the original id without any earlier #aN.
func RetryBatchID(batchID string, attempt int) string {
	return attemptSuffix.ReplaceAllString(batchID, "") + "#a" + strconv.Itoa(attempt)
}

// newResult is the result of device i of b, without outcome details.
func newResult(b *schemas.Batch, d *schemas.BatchDevice, outcome string, at time.Time) schemas.Result {
	return schemas.Result{
		SchemaVersion:   schemas.SchemaVersion,
		ID:              ResultID(b.ID, d.Token, b.Attempt),
		CampaignID:      b.CampaignID,
		CampaignVersion: b.CampaignVersion,
		BatchID:         b.ID,
		App:             b.App,
		DeviceID:        d.DeviceID,
		UserID:          d.UserID,
		Token:           d.Token,
		Platform:        d.Platform,
		Locale:          d.Locale,
		Timezone:        d.Timezone,
		Wave:            b.Wave,
		Outcome:         outcome,
		Attempt:         b.Attempt,
		SendAt:          b.SendAt.UTC(),
		At:              at.UTC(),
	}
}

// sentResult is the result of a provider send.
func sentResult(b *schemas.Batch, d *schemas.BatchDevice, provider string, r *providers.Result, outcome string, started, at time.Time) schemas.Result {
	res := newResult(b, d, outcome, at)
	res.Provider = provider
	res.Status = r.Status
	res.Reason = r.Reason
	if res.Reason == "" && r.Err != nil && outcome != schemas.OutcomeDelivered {
		res.Reason = r.Err.Error()
	}
	res.ProviderID = r.ProviderID
	if !r.Timestamp.IsZero() {
		res.ProviderTimestamp = r.Timestamp.UTC()
	}
	res.LatencyMs = float64(r.Latency) / float64(time.Millisecond)
	res.LatenessMs = float64(started.Sub(b.SendAt)) / float64(time.Millisecond)
	return res
}

// resultRecord encodes r for the results topic, keyed app/token so one
// device's results stay in order on one partition.
func resultRecord(topic string, r *schemas.Result) (*kgo.Record, error) {
	v := appendResult(make([]byte, 0, 512), r)
	return &kgo.Record{
		Topic:   topic,
		Key:     []byte(r.App + "/" + r.Token),
		Value:   v,
		Headers: []kgo.RecordHeader{{Key: kafka.HeaderSchema, Value: []byte("result.v1")}, {Key: kafka.HeaderBatchID, Value: []byte(r.BatchID)}},
	}, nil
}
