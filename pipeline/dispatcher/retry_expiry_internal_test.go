package dispatcher

import (
	"fmt"
	"testing"
	"time"

	"github.com/pushlane/pushlane/pipeline/delay"
	"github.com/pushlane/pushlane/pipeline/kafka"
	"github.com/pushlane/pushlane/schemas"
)

// A retry batch that would be due at or after its batch's expiry is due
// at the expiry instead, and routed by it: it reaches the ready topic when
// its devices are to get their expired results, not when the tier of its
// Retry-After lets it out. One due before the expiry keeps its send-at.
func TestRetryRecordDueNoLaterThanExpiry(t *testing.T) {
	d, _, _ := testDispatcher(t, NewMemStore(), &stubControl{})
	d.cfg.Ladder = delay.Ladder{Ready: "ready"}
	for k := range 10 {
		d.cfg.Ladder.Tiers = append(d.cfg.Ladder.Tiers, fmt.Sprintf("t%d", k))
	}
	for _, c := range []struct {
		name       string
		expiresIn  time.Duration // 0: no expiry
		ttl        int           // seconds after the batch's send-at
		retryAfter time.Duration
		atExpiry   bool
	}{
		{name: "Retry-After beyond the expiry", expiresIn: 20 * time.Second, retryAfter: 300 * time.Second, atExpiry: true},
		{name: "TTL ends before the Retry-After", ttl: 20, retryAfter: 300 * time.Second, atExpiry: true},
		{name: "Retry-After before the expiry", expiresIn: 600 * time.Second, retryAfter: 300 * time.Second},
		{name: "no expiry", retryAfter: 300 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			now := time.Now()
			b := &schemas.Batch{SchemaVersion: schemas.SchemaVersion, ID: "b", CampaignID: "c1", CampaignVersion: 1, App: "app1",
				Attempt: 1, SendAt: now.UTC(), Content: schemas.Content{Title: "Hello"}}
			if c.expiresIn > 0 {
				b.ExpiresAt = now.Add(c.expiresIn).UTC()
			}
			b.Options.TTLSeconds = c.ttl
			for i := range 3 {
				b.Devices = append(b.Devices, schemas.BatchDevice{DeviceID: int64(i + 1), Token: fmt.Sprintf("b-t%d", i), Platform: schemas.PlatformIOS})
			}
			j := &job{b: b}
			j.prog.Retry = j.prog.Retry.Set(1)
			j.prog.RetryAfter = c.retryAfter
			rec, err := d.retryRecord(j)
			if err != nil {
				t.Fatal(err)
			}
			r, err := decodeBatch(rec.Value)
			if err != nil {
				t.Fatal(err)
			}
			if r.ID != "b#a2" || r.Attempt != 2 || len(r.Devices) != 1 || r.Devices[0].Token != "b-t1" {
				t.Errorf("retry batch %s attempt %d devices %+v, want b#a2, 2, [b-t1]", r.ID, r.Attempt, r.Devices)
			}
			exp := expiry(b)
			if !r.ExpiresAt.Equal(exp) {
				t.Errorf("retry expires at %v, want the batch's %v", r.ExpiresAt, exp)
			}
			header, _ := kafka.TimeHeader(rec, kafka.HeaderSendAt)
			if c.atExpiry {
				if !r.SendAt.Equal(exp) || !header.Equal(exp.Truncate(time.Millisecond)) {
					t.Errorf("retry due at %v (header %v), want the expiry %v", r.SendAt, header, exp)
				}
				if want := d.cfg.Ladder.Route(exp, now); rec.Topic != want {
					t.Errorf("routed to %s, want %s (by the expiry)", rec.Topic, want)
				}
				return
			}
			if wait := r.SendAt.Sub(now); wait < c.retryAfter {
				t.Errorf("retry due in %v, before its Retry-After %v", wait, c.retryAfter)
			}
			if !r.ExpiresAt.IsZero() && !r.SendAt.Before(r.ExpiresAt) {
				t.Errorf("retry due at %v, not before its expiry %v", r.SendAt, r.ExpiresAt)
			}
			if want := d.cfg.Ladder.Route(r.SendAt, now); rec.Topic != want {
				t.Errorf("routed to %s, want %s", rec.Topic, want)
			}
		})
	}
}
