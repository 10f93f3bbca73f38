package kafka

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/schemas"
)

// DeadLetterRecord wraps a record a stage could not process into a
// dead-letter event with the reason and the original bytes, keyed like the
// original so a re-drive lands on the same partition.
func DeadLetterRecord(topic, stage string, r *kgo.Record, reason string, now time.Time) (*kgo.Record, error) {
	dl := schemas.DeadLetter{
		SchemaVersion: schemas.SchemaVersion,
		Stage:         stage,
		Reason:        reason,
		Topic:         r.Topic,
		Partition:     r.Partition,
		Offset:        r.Offset,
		Key:           r.Key,
		Value:         r.Value,
		At:            now.UTC(),
	}
	if dl.Value == nil {
		dl.Value = []byte{}
	}
	if len(r.Headers) > 0 {
		dl.Headers = make(map[string]string, len(r.Headers))
		for _, h := range r.Headers {
			dl.Headers[h.Key] = string(h.Value)
		}
	}
	v, err := json.Marshal(dl)
	if err != nil {
		return nil, fmt.Errorf("kafka: encode dead letter: %w", err)
	}
	return &kgo.Record{
		Topic:   topic,
		Key:     r.Key,
		Value:   v,
		Headers: []kgo.RecordHeader{{Key: HeaderSchema, Value: []byte("dead-letter.v1")}, {Key: HeaderReason, Value: []byte(reason)}},
	}, nil
}

// DeadLetter produces r's dead letter synchronously: the caller commits r's
// offset only after this returns nil, so a dead letter is never lost.
func DeadLetter(ctx context.Context, cl *kgo.Client, topic, stage string, r *kgo.Record, reason string) error {
	dl, err := DeadLetterRecord(topic, stage, r, reason, time.Now())
	if err != nil {
		return err
	}
	if err := cl.ProduceSync(ctx, dl).FirstErr(); err != nil {
		return fmt.Errorf("kafka: produce dead letter for %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
	}
	return nil
}
