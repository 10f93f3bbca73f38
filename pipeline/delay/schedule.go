package delay

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/internal/flatjson"
	"github.com/pushlane/pushlane/pipeline/kafka"
)

// Schedule is what the ladder needs of a batch: the key its records carry
// (the batch id) and the facts of its scheduling headers.
type Schedule struct {
	BatchID    string
	CampaignID string
	SendAt     time.Time
	ExpiresAt  time.Time // zero: never
}

// ValueSchedule reads a batch's Schedule from its JSON value: its id,
// campaign_id, send_at and expires_at, the other members only skipped (the
// devices are nearly all of a batch). It is for records that lack the key or
// headers BatchRecord gives them: operators replaying a topic with kcat or
// kafka-console-producer write no headers unless told to, and keys only with
// -K or parse.key. An id and a send_at are required; nothing else of the
// batch is checked here (the dispatcher decodes it whole).
func ValueSchedule(value []byte) (Schedule, error) {
	s, ok := fastValueSchedule(value)
	if !ok {
		// Escaped keys, duplicate members, not JSON at all: encoding/json
		// decides, and words the error.
		var v struct {
			ID         string    `json:"id"`
			CampaignID string    `json:"campaign_id"`
			SendAt     time.Time `json:"send_at"`
			ExpiresAt  time.Time `json:"expires_at"`
		}
		if err := json.Unmarshal(value, &v); err != nil {
			return Schedule{}, fmt.Errorf("batch value: %w", err)
		}
		s = Schedule{BatchID: v.ID, CampaignID: v.CampaignID, SendAt: v.SendAt, ExpiresAt: v.ExpiresAt}
	}
	switch {
	case s.BatchID == "":
		return Schedule{}, errors.New("batch value has no id")
	case s.SendAt.IsZero():
		return Schedule{}, errors.New("batch value has no send_at")
	}
	return s, nil
}

// fastValueSchedule is ValueSchedule's one pass over the batch's members;
// !ok leaves the value to encoding/json.
func fastValueSchedule(value []byte) (s Schedule, ok bool) {
	seen := 0
	next, ok := flatjson.Members(value, 0, func(key []byte, i int) (int, bool) {
		var dst any
		bit := 0
		switch string(key) {
		case "id":
			dst, bit = &s.BatchID, 1
		case "campaign_id":
			dst, bit = &s.CampaignID, 2
		case "send_at":
			dst, bit = &s.SendAt, 4
		case "expires_at":
			dst, bit = &s.ExpiresAt, 8
		default:
			return flatjson.Skip(value, i)
		}
		if seen&bit != 0 {
			return i, false
		}
		seen |= bit
		end, ok := flatjson.Skip(value, i)
		if !ok {
			return end, false
		}
		return end, json.Unmarshal(value[i:end], dst) == nil
	})
	return s, ok && flatjson.SkipSpace(value, next) == len(value)
}

// Scheduled returns r with the key and the readable send-at header a batch
// record has (BatchRecord), restored from what r carries when it lacks them:
// r itself when it has both. A missing key is the batch-id header, or the
// value's id (the planner keys a batch by its id, so every copy of a batch
// lands on the same partition number, and the dispatcher never runs two
// copies of one key at once). A missing or unreadable send-at header brings
// every scheduling header from the value (ValueSchedule). The error says
// that neither the headers nor the value give a send-at; a record with a
// send-at but no id to key it by is returned as it is.
func Scheduled(r *kgo.Record) (*kgo.Record, error) {
	_, hasSendAt := kafka.TimeHeader(r, kafka.HeaderSendAt)
	if hasSendAt {
		if len(r.Key) > 0 {
			return r, nil
		}
		if id, ok := kafka.Header(r, kafka.HeaderBatchID); ok && id != "" {
			return WithSchedule(r, Schedule{BatchID: id}), nil
		}
	}
	s, err := ValueSchedule(r.Value)
	if err != nil {
		if hasSendAt {
			return r, nil
		}
		return nil, fmt.Errorf("no readable %s header, and none from the value: %w", kafka.HeaderSendAt, err)
	}
	return WithSchedule(r, s), nil
}

// WithSchedule returns a copy of r (topic, key, value and headers) with
// what it lacks of a batch record taken from s: the key s.BatchID if it has
// none, and, if its send-at header is missing or unreadable, the scheduling
// headers of s (its hop header kept when readable: it bounds the batch's
// rewrites, which a replay does not reset). A record with a readable send-at
// keeps its headers as they are: they are what the ladder has routed it by.
// It returns r itself when nothing is missing.
func WithSchedule(r *kgo.Record, s Schedule) *kgo.Record {
	_, hasSendAt := kafka.TimeHeader(r, kafka.HeaderSendAt)
	addKey := len(r.Key) == 0 && s.BatchID != ""
	if hasSendAt && !addKey {
		return r
	}
	out := &kgo.Record{Topic: r.Topic, Key: r.Key, Value: r.Value, Headers: slices.Clone(r.Headers)}
	if addKey {
		out.Key = []byte(s.BatchID)
	}
	if !hasSendAt {
		// An expires-at header beside an unreadable send-at is not
		// trusted either: the value's expiry (or none) replaces it.
		SetScheduleHeaders(out, s)
	}
	return out
}

// SetScheduleHeaders writes the scheduling headers the planner gives a
// batch record (BatchRecord's) from s into rec, replacing any there: an
// expires-at header is removed when s has no expiry. rec's hop header is
// kept when it is readable: it bounds the batch's rewrites, which a
// replay or a re-drive does not reset.
func SetScheduleHeaders(rec *kgo.Record, s Schedule) {
	hop, _ := kafka.Header(rec, kafka.HeaderHop)
	_, err := strconv.Atoi(hop)
	keepHop := err == nil
	rec.Headers = slices.DeleteFunc(rec.Headers, func(h kgo.RecordHeader) bool { return h.Key == kafka.HeaderExpiresAt })
	for _, h := range BatchRecord(rec.Topic, s.BatchID, s.CampaignID, s.SendAt, s.ExpiresAt, nil).Headers {
		if h.Key == kafka.HeaderHop && keepHop {
			continue
		}
		kafka.SetHeader(rec, h.Key, string(h.Value))
	}
}
