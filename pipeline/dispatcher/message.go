package dispatcher

import (
	"context"
	"strings"
	"time"

	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/schemas"
)

// LocalizedText picks the title and body for a device locale: the exact
// locale's variant, then its language's (the part before "-" or "_"), then
// the fallback locale's, then the content's own.
func LocalizedText(c schemas.Content, locale string) (title, body string) {
	if len(c.Localized) > 0 {
		if v, ok := c.Localized[locale]; ok && locale != "" {
			return v.Title, v.Body
		}
		if i := strings.IndexAny(locale, "-_"); i > 0 {
			if v, ok := c.Localized[locale[:i]]; ok {
				return v.Title, v.Body
			}
		}
		if v, ok := c.Localized[c.FallbackLocale]; ok && c.FallbackLocale != "" {
			return v.Title, v.Body
		}
	}
	return c.Title, c.Body
}

// expiry is when a batch stops being worth sending: its expires-at, else
// TTL after its send-at, else never (zero).
func expiry(b *schemas.Batch) time.Time {
	if !b.ExpiresAt.IsZero() {
		return b.ExpiresAt
	}
	if b.Options.TTLSeconds > 0 {
		return b.SendAt.Add(time.Duration(b.Options.TTLSeconds) * time.Second)
	}
	return time.Time{}
}

// message builds the provider-neutral message of b for one platform and
// text; every device sharing them shares it. Expiration is the batch's
// expiry, even one beyond what a provider keeps (FCM: four weeks, and
// campaigns may expire 30 days out), and TTL the campaign's ttl_seconds,
// the provider-side lifetime after the send: the senders apply the earlier
// of the two, measured when each request goes (see providers.Message), so
// a message prepared once and sent chunk after chunk does not outlive the
// batch.
func message(b *schemas.Batch, platform, title, body string) *providers.Message {
	o := b.Options
	m := &providers.Message{
		Platform:          platform,
		Title:             title,
		Body:              body,
		Badge:             b.Content.Badge,
		Sound:             b.Content.Sound,
		Data:              b.Content.Data,
		PushType:          o.PushType,
		Priority:          o.Priority,
		CollapseID:        o.CollapseID,
		ThreadID:          o.ThreadID,
		Category:          o.Category,
		MutableContent:    o.MutableContent,
		ContentAvailable:  o.ContentAvailable,
		InterruptionLevel: o.InterruptionLevel,
		AndroidChannel:    o.AndroidChannel,
		Expiration:        expiry(b),
	}
	if o.TTLSeconds > 0 {
		m.TTL = time.Duration(o.TTLSeconds) * time.Second
	}
	return m
}

// prepared is one message ready to go to many devices: encoded once by a
// BatchSender, or sent whole by a plain Sender.
type prepared struct {
	provider string
	pre      providers.Prepared // nil: send msg through sender
	sender   providers.Sender
	msg      *providers.Message
	err      error // Prepare refused the content: every device is payload_rejected
	// ctx is what its sends are made with: the dispatcher's, with the
	// job's gate for them (sendGate). Set by the job's first chunk that
	// sends it, read by the sends.
	ctx context.Context
}

func (p *prepared) send(ctx context.Context, token string, attempt int) providers.Result {
	if p.err != nil {
		return providers.Rejected(p.err, attempt)
	}
	if p.pre != nil {
		return p.pre.Send(ctx, token, attempt)
	}
	m := *p.msg
	m.Token = token
	return p.sender.Send(ctx, &m, attempt)
}

type variantKey struct {
	provider, platform, title, body string
}

// messages caches the prepared messages of one batch, one per provider,
// platform and text, so content is validated and encoded once per batch and
// locale, not per device.
type messages struct {
	batch *schemas.Batch
	app   App
	cache map[variantKey]*prepared
}

func newMessages(b *schemas.Batch, app App) *messages {
	return &messages{batch: b, app: app, cache: map[variantKey]*prepared{}}
}

// forDevice returns the prepared message of device d, or nil when the app
// has no provider for its platform.
func (ms *messages) forDevice(d *schemas.BatchDevice) *prepared {
	provider, sender := ms.app.senderFor(d.Platform)
	if sender == nil {
		return nil
	}
	title, body := LocalizedText(ms.batch.Content, d.Locale)
	k := variantKey{provider, d.Platform, title, body}
	if p, ok := ms.cache[k]; ok {
		return p
	}
	p := &prepared{provider: provider, sender: sender, msg: message(ms.batch, d.Platform, title, body)}
	if bs, ok := sender.(providers.BatchSender); ok {
		p.pre, p.err = bs.Prepare(p.msg)
	}
	ms.cache[k] = p
	return p
}
