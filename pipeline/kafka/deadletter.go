package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
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

// MaxDeadLetterBytes bounds a whole dead letter: its key, its headers and
// its body. Kafka refuses a record over its default limit (the broker's
// message.max.bytes, 1048588 bytes; franz-go sends no batch over 1000012
// by default), however often it is retried, and the original's key and
// headers, each of which a record may carry up to that limit, are copied
// into the letter: the key twice (the letter's key and base64 in the
// body), a header's bytes that are not UTF-8 six times over (JSON's
// \ufffd). A dead letter over the bound leaves them out, one step at a
// time (see HeaderDeadLetterSlim). A value of MaxDeadLetterValue bytes (a
// third more in base64) with a reason of MaxDeadLetterReason bytes (up to
// six times more once JSON escapes it) fits without them, with room left
// for the record's framing.
const MaxDeadLetterBytes = 768 << 10

// HeaderDeadLetterSlim is set on a dead letter that leaves out part of the
// original to stay under MaxDeadLetterBytes or because the broker refused
// it whole, its body's reason saying what and why. Its value is how far it
// went, each step including the ones before: "1" the original's headers
// (and the letter's reason header, a copy of the body's reason), "2" the
// copy of the original's key in the body (the letter's own key still is
// the original's), "3" all but the first KeptDeadLetterValue bytes of the
// value (value_bytes says how many it had), "4" the original's key
// altogether. A step with nothing to leave out is skipped. A re-drive of
// such a letter must not take its body for the whole original: the
// original stays at topic/partition@offset.
const HeaderDeadLetterSlim = "pushlane-dead-letter-slim"

// The steps of HeaderDeadLetterSlim.
const (
	slimHeaders = 1 + iota
	slimKeyCopy
	slimValue
	slimKey
)

// slimNoteStart begins the note a slimmed letter's reason ends with, which
// the next step replaces.
const slimNoteStart = " (the original's "

// draft is a dead letter being made.
type draft struct {
	topic string
	key   []byte
	body  schemas.DeadLetter
	// base is the body's reason without the slim note.
	base string
	// reasonHeader is the reason header of a letter not slimmed.
	reasonHeader string
	level        int
	// why the last slim step was taken.
	why string
}

func (d *draft) record() (*kgo.Record, error) {
	d.body.Reason = d.base
	headers := []kgo.RecordHeader{{Key: HeaderSchema, Value: []byte("dead-letter.v1")}}
	if d.level == 0 {
		headers = append(headers, kgo.RecordHeader{Key: HeaderReason, Value: []byte(d.reasonHeader)})
	} else {
		d.body.Reason += d.slimNote()
		headers = append(headers, kgo.RecordHeader{Key: HeaderDeadLetterSlim, Value: []byte(strconv.Itoa(d.level))})
	}
	v, err := json.Marshal(d.body)
	if err != nil {
		return nil, fmt.Errorf("kafka: encode dead letter of %s/%d@%d: %w", d.body.Topic, d.body.Partition, d.body.Offset, err)
	}
	return &kgo.Record{Topic: d.topic, Key: d.key, Value: v, Headers: headers}, nil
}

func (d *draft) slimNote() string {
	left := "headers are left out"
	switch {
	case d.level >= slimKey:
		left = "key and headers are left out"
	case d.level >= slimKeyCopy && d.key != nil:
		left = "headers are left out, and its key is only this dead letter's own key"
	}
	return slimNoteStart + left + ": " + d.why + ")"
}

// slim takes the next step that leaves something out, for why; false when
// nothing is left to leave out.
func (d *draft) slim(why string) bool {
	for next := d.level + 1; next <= slimKey; next++ {
		if d.leaveOut(next) {
			d.level, d.why = next, why
			return true
		}
	}
	return false
}

// leaveOut applies step, reporting whether it changed anything.
func (d *draft) leaveOut(step int) bool {
	switch step {
	case slimHeaders:
		// The reason header goes too: the body has the reason.
		d.body.Headers = nil
		return true
	case slimKeyCopy:
		if d.body.Key == nil {
			return false
		}
		d.body.Key = nil
		return true
	case slimValue:
		if len(d.body.Value) <= KeptDeadLetterValue {
			return false
		}
		if d.body.ValueBytes == 0 {
			d.body.ValueBytes = len(d.body.Value)
		}
		d.body.Value = d.body.Value[:KeptDeadLetterValue]
		d.base += valueNote(d.body)
		return true
	case slimKey:
		if d.key == nil {
			return false
		}
		d.key, d.body.Key = nil, nil
		return true
	}
	return false
}

func valueNote(dl schemas.DeadLetter) string {
	return fmt.Sprintf(" (the dead letter keeps the first %d of %d bytes; the whole record stays at %s/%d@%d)",
		len(dl.Value), dl.ValueBytes, dl.Topic, dl.Partition, dl.Offset)
}

// recordBytes is what a record weighs against the broker's limit, its
// framing aside.
func recordBytes(r *kgo.Record) int {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// DeadLetterRecord wraps a record a stage could not process into a
// dead-letter event with the reason and the original bytes, keyed like the
// original so a re-drive lands on the same partition. The letter is at
// most MaxDeadLetterBytes: an original too big for that is cut as
// HeaderDeadLetterSlim says.
func DeadLetterRecord(topic, stage string, r *kgo.Record, reason string, now time.Time) (*kgo.Record, error) {
	reason = cutReason(reason)
	d := draft{topic: topic, key: r.Key, base: reason, reasonHeader: reason, body: schemas.DeadLetter{
		SchemaVersion: schemas.SchemaVersion,
		Stage:         stage,
		Topic:         r.Topic,
		Partition:     r.Partition,
		Offset:        r.Offset,
		Key:           r.Key,
		Value:         r.Value,
		At:            now.UTC(),
	}}
	if d.body.Value == nil {
		d.body.Value = []byte{}
	}
	if len(d.body.Value) > MaxDeadLetterValue {
		d.body.ValueBytes = len(d.body.Value)
		d.body.Value = d.body.Value[:KeptDeadLetterValue]
		d.base += valueNote(d.body)
	}
	if len(r.Headers) > 0 {
		d.body.Headers = make(map[string]string, len(r.Headers))
		for _, h := range r.Headers {
			d.body.Headers[h.Key] = string(h.Value)
		}
	}
	rec, err := d.record()
	if err != nil {
		return nil, err
	}
	whole := recordBytes(rec)
	why := fmt.Sprintf("with them the dead letter would be %d bytes, over the %d a dead letter may have", whole, MaxDeadLetterBytes)
	for recordBytes(rec) > MaxDeadLetterBytes && d.slim(why) {
		if rec, err = d.record(); err != nil {
			return nil, err
		}
	}
	return rec, nil
}

// SlimDeadLetter returns letter (DeadLetterRecord's) with the next part of
// the original left out (see HeaderDeadLetterSlim), its reason saying so
// and why, or nil when nothing is left to leave out.
func SlimDeadLetter(letter *kgo.Record, why string) (*kgo.Record, error) {
	d := draft{topic: letter.Topic, key: letter.Key}
	if err := json.Unmarshal(letter.Value, &d.body); err != nil {
		return nil, fmt.Errorf("kafka: slim dead letter: %w", err)
	}
	v, _ := Header(letter, HeaderDeadLetterSlim)
	d.level, _ = strconv.Atoi(v)
	d.base = d.body.Reason
	if i := strings.LastIndex(d.base, slimNoteStart); d.level > 0 && i >= 0 {
		d.base = d.base[:i]
	}
	if !d.slim(why) {
		return nil, nil
	}
	return d.record()
}

// DeadLetterWrite is what became of one letter given to WriteDeadLetters.
type DeadLetterWrite struct {
	// Letter is the letter as last produced: slimmed if the broker
	// refused it as it was.
	Letter *kgo.Record
	// Err is why Letter is not written; nil once it is.
	Err error
	// Dropped is set with Err when the broker refused the letter with
	// nothing more to leave out: no retry can write it.
	Dropped bool
}

// WriteDeadLetters produces letters (DeadLetterRecord's) and waits for
// them. A letter the broker refuses outright (Refused) is produced again on
// its own, since a refusal fails the whole batch a letter went in, and,
// refused alone, again with one more part of the original left out
// (SlimDeadLetter) until the broker takes it or nothing is left to leave
// out (Dropped): retried as it was, it would be refused for ever. Any other
// failure is the caller's to retry, with the Letter returned, and only
// those letters: the others are written, and writing them again would
// duplicate them. The result is in the order of letters.
func WriteDeadLetters(ctx context.Context, cl *kgo.Client, letters []*kgo.Record) []DeadLetterWrite {
	out := make([]DeadLetterWrite, len(letters))
	if len(letters) == 0 {
		return out
	}
	index := make(map[*kgo.Record]int, len(letters))
	for i, l := range letters {
		out[i].Letter = l
		index[l] = i
	}
	var refused []int
	for _, res := range cl.ProduceSync(ctx, letters...) {
		i := index[res.Record]
		switch {
		case res.Err == nil:
		case Refused(res.Err):
			refused = append(refused, i)
		default:
			out[i].Err = res.Err
		}
	}
	for _, i := range refused {
		out[i] = writeAlone(ctx, cl, letters[i])
	}
	return out
}

// writeAlone produces letter on its own, slimmed until the broker takes it
// or nothing is left to leave out.
func writeAlone(ctx context.Context, cl *kgo.Client, letter *kgo.Record) DeadLetterWrite {
	err := cl.ProduceSync(ctx, letter).FirstErr()
	for Refused(err) {
		smaller, serr := SlimDeadLetter(letter, fmt.Sprintf("the broker refused the dead letter with them: %v", err))
		if serr != nil || smaller == nil {
			return DeadLetterWrite{Letter: letter, Err: errors.Join(err, serr), Dropped: true}
		}
		letter = smaller
		err = cl.ProduceSync(ctx, letter).FirstErr()
	}
	return DeadLetterWrite{Letter: letter, Err: err}
}

// ErrDeadLetterDropped says a dead letter was refused by its topic even
// slimmed to the least it can hold (the topic's max.message.bytes is set
// below it): no retry will write it, and a stage that retried it would
// hold its partition for good. Callers count it, log the original's
// topic, partition and offset (the original stays there), and go on.
var ErrDeadLetterDropped = errors.New("refused even at its smallest, dropped")

// DeadLetter produces r's dead letter synchronously: the caller commits r's
// offset only after this returns nil, so a dead letter is never lost. A
// letter the broker refuses is written slimmed (WriteDeadLetters); one it
// refuses even at its smallest fails with ErrDeadLetterDropped (and an
// error Refused reports).
func DeadLetter(ctx context.Context, cl *kgo.Client, topic, stage string, r *kgo.Record, reason string) error {
	dl, err := DeadLetterRecord(topic, stage, r, reason, time.Now())
	if err != nil {
		return err
	}
	w := WriteDeadLetters(ctx, cl, []*kgo.Record{dl})[0]
	switch {
	case w.Dropped:
		return fmt.Errorf("kafka: produce dead letter for %s/%d@%d: %w: %w", r.Topic, r.Partition, r.Offset, ErrDeadLetterDropped, w.Err)
	case w.Err != nil:
		return fmt.Errorf("kafka: produce dead letter for %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, w.Err)
	}
	return nil
}

// Refused reports a produce error no retry can fix: the destination
// refuses the record itself (too large, invalid). Such a record is
// dead-lettered with the broker's reason rather than retried for ever.
func Refused(err error) bool {
	return errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) || errors.Is(err, kerr.InvalidRecord)
}
