package main

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/pipeline/kafka"
	"github.com/pushlane/pushlane/schemas"
)

// A letter slimmed past the copy of its key in the body still has the
// original's key as its own (slim 2, 3); one that left the key out (4) is
// re-driven under the key its topic gives the event, not keyless.
func TestRedriveKeyOfSlimmedLetters(t *testing.T) {
	slim := func(level string) []kgo.RecordHeader {
		return []kgo.RecordHeader{{Key: kafka.HeaderDeadLetterSlim, Value: []byte(level)}}
	}
	camp := &schemas.Campaign{ID: "spring"}
	reg := &schemas.DeviceRegistration{App: "shop", Token: "tok"}
	res := &schemas.Result{App: "shop", Token: "tok2"}
	for _, c := range []struct {
		name   string
		letter *kgo.Record
		dl     *schemas.DeadLetter
		event  any
		want   string
	}{
		{"the body's copy", &kgo.Record{Key: []byte("letter-key")}, &schemas.DeadLetter{Key: []byte("orig")}, camp, "orig"},
		{"slim 2: the letter's key", &kgo.Record{Key: []byte("orig"), Headers: slim("2")}, &schemas.DeadLetter{}, camp, "orig"},
		{"slim 3: the letter's key", &kgo.Record{Key: []byte("orig"), Headers: slim("3")}, &schemas.DeadLetter{}, reg, "orig"},
		{"slim 4: a campaign by its id", &kgo.Record{Headers: slim("4")}, &schemas.DeadLetter{}, camp, "spring"},
		{"slim 4: a registration by app/token", &kgo.Record{Headers: slim("4")}, &schemas.DeadLetter{}, reg, "shop/tok"},
		{"keyless original: a result by app/token", &kgo.Record{Key: []byte("x")}, &schemas.DeadLetter{}, res, "shop/tok2"},
		{"slim 1 keeps no key but the body's", &kgo.Record{Key: []byte("x"), Headers: slim("1")}, &schemas.DeadLetter{}, camp, "spring"},
	} {
		if got := string(originalKey(c.letter, c.dl, c.event)); got != c.want {
			t.Errorf("%s: key %q, want %q", c.name, got, c.want)
		}
	}
}
