package kafka

import (
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Record headers shared by the stages. Batch records carry the scheduling
// facts in headers so the delay ladder routes them without decoding the
// JSON value.
const (
	HeaderSchema     = "pushlane-schema"      // e.g. "batch.v1"
	HeaderCampaignID = "pushlane-campaign-id" // campaign id
	HeaderBatchID    = "pushlane-batch-id"    // deterministic batch id
	HeaderSendAt     = "pushlane-send-at"     // unix milliseconds, never changes
	HeaderExpiresAt  = "pushlane-expires-at"  // unix milliseconds; absent = never
	HeaderHop        = "pushlane-hop"         // times the batch was re-written by the ladder
	HeaderReason     = "pushlane-dlq-reason"  // on dead letters
)

// Header returns the value of the first header named key.
func Header(r *kgo.Record, key string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// SetHeader replaces or adds header key.
func SetHeader(r *kgo.Record, key, value string) {
	for i, h := range r.Headers {
		if h.Key == key {
			r.Headers[i].Value = []byte(value)
			return
		}
	}
	r.Headers = append(r.Headers, kgo.RecordHeader{Key: key, Value: []byte(value)})
}

// TimeHeader reads a unix-milliseconds header.
func TimeHeader(r *kgo.Record, key string) (time.Time, bool) {
	v, ok := Header(r, key)
	if !ok {
		return time.Time{}, false
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMilli(ms), true
}

// UnixMillis formats t for a time header.
func UnixMillis(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }
