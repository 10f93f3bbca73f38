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

// resultSchema is the schema header of every result record (franz-go
// only reads header values, so all records share it).
var resultSchema = []byte("result.v1")

// resultRecords encodes results for the results topic, keyed app/token so
// one device's results stay in order on one partition. The records, their
// headers and their keys and values are carved out of a few allocations per
// call rather than six per result: results are the dispatcher's busiest
// output.
func resultRecords(topic string, results []schemas.Result) []*kgo.Record {
	recs := make([]kgo.Record, len(results))
	out := make([]*kgo.Record, len(results))
	headers := make([]kgo.RecordHeader, 2*len(results))
	buf := make([]byte, 0, 512*len(results))
	var batchID []byte
	for i := range results {
		r := &results[i]
		if batchID == nil || string(batchID) != r.BatchID {
			batchID = []byte(r.BatchID)
		}
		start := len(buf)
		buf = append(buf, r.App...)
		buf = append(buf, '/')
		buf = append(buf, r.Token...)
		keyEnd := len(buf)
		buf = appendResult(buf, r)
		h := headers[2*i : 2*i+2 : 2*i+2]
		h[0] = kgo.RecordHeader{Key: kafka.HeaderSchema, Value: resultSchema}
		h[1] = kgo.RecordHeader{Key: kafka.HeaderBatchID, Value: batchID}
		// Full slice expressions: an append to one record's key or value
		// can never run into the next record's bytes. When buf grows, the
		// earlier records keep the old array, which stays alive through
		// them.
		recs[i] = kgo.Record{Topic: topic, Key: buf[start:keyEnd:keyEnd], Value: buf[keyEnd:len(buf):len(buf)], Headers: h}
		out[i] = &recs[i]
	}
	return out
}
