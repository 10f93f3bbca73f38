package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/internal/utf8cut"
	"github.com/pushlane/pushlane/schemas"
)

// MaxDeadLetterValue is the most original bytes a dead letter carries.
// Base64 makes them a third bigger, and the broker's default record limit
// is 1 MB, so a bigger original (itself under the limit, or it would not
// be on the topic) is cut to its first KeptDeadLetterValue bytes and the
// dead letter says how big it was; the original stays on its topic.
const (
	MaxDeadLetterValue  = 512 << 10
	KeptDeadLetterValue = 64 << 10
)

// MaxDeadLetterReason is the most bytes of a reason a dead letter carries
// (in its body and in its header). A schema error names every failing
// field: 30,000 bad entries in a 90 KB campaign made a 1.5 MB reason, a
// dead letter the broker refused, and the record was retried for ever.
const MaxDeadLetterReason = 8 << 10

// cutReason shortens reason to MaxDeadLetterReason bytes, at a character,
// and says how much was left out.
func cutReason(reason string) string {
	if len(reason) <= MaxDeadLetterReason {
		return reason
	}
	kept := utf8cut.Prefix(reason, MaxDeadLetterReason)
	return fmt.Sprintf("%s… (%d more bytes of reason left out)", kept, len(reason)-len(kept))
}

// DeadLetterRecord wraps a record a stage could not process into a
// dead-letter event with the reason and the original bytes, keyed like the
// original so a re-drive lands on the same partition.
func DeadLetterRecord(topic, stage string, r *kgo.Record, reason string, now time.Time) (*kgo.Record, error) {
	reason = cutReason(reason)
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
	if len(dl.Value) > MaxDeadLetterValue {
		dl.ValueBytes = len(dl.Value)
		dl.Value = dl.Value[:KeptDeadLetterValue]
		dl.Reason += fmt.Sprintf(" (the dead letter keeps the first %d of %d bytes; the whole record stays at %s/%d@%d)",
			KeptDeadLetterValue, dl.ValueBytes, r.Topic, r.Partition, r.Offset)
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

// Refused reports a produce error no retry can fix: the destination
// refuses the record itself (too large, invalid). Such a record is
// dead-lettered with the broker's reason rather than retried for ever.
func Refused(err error) bool {
	return errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) || errors.Is(err, kerr.InvalidRecord)
}
