package apns

import (
	"context"
	"slices"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/sideshow/apns2"
	"golang.org/x/net/http2/hpack"

	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/schemas/apnspush"
)

// Payload limits (bytes).
const (
	MaxPayload     = 4096
	MaxPayloadVoIP = 5120
	MaxCollapseID  = 64
)

// Prepared is a message validated and encoded once: payload bytes and
// headers, shared by every device it goes to. Safe for concurrent use.
type Prepared struct {
	s        *Sender
	Payload  []byte // the JSON body, exactly as sent
	Topic    string
	PushType string
	Priority int // 10, 5 or 1
	// Expires is the apns-expiration as of Prepare (zero: none): the
	// earlier of the message's Expiration and Prepare's time plus its TTL.
	// Each request carries its own: the earlier of the Expiration and the
	// request's time plus the TTL, so a chunk sent minutes after Prepare
	// still gets the TTL after its send (Apple keeps a notification whose
	// expiration has passed only for a device online at once).
	Expires time.Time
	// expiration is the message's Expiration (zero: none): no send starts
	// at or after it.
	expiration time.Time
	ttl        time.Duration // the message's TTL, 0 = none
	base       []hpack.HeaderField
	auth       atomic.Pointer[authHeader]
}

type authHeader struct {
	bearer  *Bearer
	expires int64 // the apns-expiration in header, Unix seconds (0: none)
	header  []hpack.HeaderField
}

var _ providers.Prepared = (*Prepared)(nil)

// Send delivers the prepared message to one device.
func (p *Prepared) Send(ctx context.Context, token string, attempt int) providers.Result {
	return p.s.sendPrepared(ctx, p, token, attempt)
}

// header returns the request header fields for bearer b (nil for
// certificate auth) sent at now. Requests only read them, so one slice
// serves every request until the token changes or, with a TTL, the
// apns-expiration's second does.
func (p *Prepared) header(b *Bearer, now time.Time) []hpack.HeaderField {
	exp := p.expiresAt(now)
	if a := p.auth.Load(); a != nil && a.bearer == b && a.expires == exp {
		return a.header
	}
	h := make([]hpack.HeaderField, 0, len(p.base)+2)
	if b != nil {
		h = append(h, hpack.HeaderField{Name: "authorization", Value: b.Header})
	}
	h = append(h, p.base...)
	if exp != 0 {
		h = append(h, hpack.HeaderField{Name: "apns-expiration", Value: strconv.FormatInt(exp, 10)})
	}
	p.auth.Store(&authHeader{bearer: b, expires: exp, header: h})
	return h
}

// expiresAt is the apns-expiration of a request at now, Unix seconds (0:
// none): the earlier of the message's Expiration and now plus its TTL.
func (p *Prepared) expiresAt(now time.Time) int64 {
	exp := p.expiration
	if p.ttl > 0 {
		if byTTL := now.Add(p.ttl); exp.IsZero() || byTTL.Before(exp) {
			exp = byTTL
		}
	}
	if exp.IsZero() {
		return 0
	}
	return exp.Unix()
}

// pushTypeSuffix is the topic suffix Apple requires for each push type.
func pushTypeSuffix(pt string) (string, bool) {
	switch apns2.EPushType(pt) {
	case apns2.PushTypeAlert, apns2.PushTypeBackground, apns2.PushTypeMDM:
		return "", true
	case apns2.PushTypeVOIP:
		return ".voip", true
	case apns2.PushTypeComplication:
		return ".complication", true
	case apns2.PushTypeFileProvider:
		return ".pushkit.fileprovider", true
	case apns2.PushTypeLiveActivity:
		return ".push-type.liveactivity", true
	case apns2.PushTypePushToTalk:
		return ".voip-ptt", true
	case apns2.PushTypeLocation:
		return ".location-query", true
	}
	return "", false
}

func reject(reason, detail string) error {
	return &providers.RejectError{Provider: "apns", Reason: reason, Detail: detail}
}

// Prepare validates m and encodes everything but the token.
func (s *Sender) Prepare(m *providers.Message) (providers.Prepared, error) {
	p, err := s.prepare(m)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// PrepareAPNs is Prepare returning the concrete type (payload and headers
// visible).
func (s *Sender) PrepareAPNs(m *providers.Message) (*Prepared, error) { return s.prepare(m) }

func (s *Sender) prepare(m *providers.Message) (*Prepared, error) {
	visible := m.Visible()
	pushType := m.APNsPushType()
	suffix, ok := pushTypeSuffix(pushType)
	if !ok {
		return nil, reject(apns2.ReasonInvalidPushType, "unknown push type "+strconv.Quote(pushType))
	}
	// The campaign check applies these rules too (apnspush), so a message
	// refused here for them comes from no campaign the check accepted.
	prio, prioOK := apnspush.Priority(m.Priority, pushType)
	problem := apnspush.Check(pushType, prio, visible)
	if problem == apnspush.VisibleBackground {
		return nil, reject(apns2.ReasonInvalidPushType, "a background push carries no title, body, sound or badge; send it as alert")
	}
	topic := m.Topic
	if topic == "" {
		topic = s.cfg.Topic + suffix
	} else if pushType != string(apns2.PushTypeMDM) {
		if len(topic) <= len(suffix) || topic[len(topic)-len(suffix):] != suffix || (suffix == "" && stripTopicSuffix(topic) != topic) {
			return nil, reject(apns2.ReasonBadTopic, "topic "+strconv.Quote(topic)+" does not fit push type "+pushType)
		}
	}

	if !prioOK {
		return nil, reject(apns2.ReasonBadPriority, "priority must be high, normal, low or empty, got "+strconv.Quote(m.Priority))
	}
	switch problem {
	case apnspush.BackgroundPriority:
		return nil, reject(apns2.ReasonBadPriority, "background pushes must use priority 5 (normal)")
	case apnspush.SilentAlertPriority:
		return nil, reject(apns2.ReasonBadPriority, "priority 10 needs a title, body, sound or badge; use normal for a content-available push")
	}
	if len(m.CollapseID) > MaxCollapseID {
		return nil, reject(apns2.ReasonBadCollapseID, "collapse id is "+strconv.Itoa(len(m.CollapseID))+" bytes, limit 64")
	}
	switch m.InterruptionLevel {
	case "", "passive", "active", "time-sensitive", "critical":
	default:
		return nil, reject("BadInterruptionLevel", "interruption level must be passive, active, time-sensitive or critical, got "+strconv.Quote(m.InterruptionLevel))
	}
	if _, ok := m.Data["aps"]; ok {
		return nil, reject("BadPayload", `custom data may not use the key "aps", Apple's own dictionary`)
	}
	now := s.cfg.Clock()
	if err := checkExpiration(m.Expiration, now); err != nil {
		return nil, err
	}
	// TTL is the lifetime after the send, so it applies with an
	// expiration too: Apple keeps the message until the earlier of them.
	expires := m.Expiration
	if m.TTL > 0 {
		if byTTL := now.Add(m.TTL); expires.IsZero() || byTTL.Before(expires) {
			expires = byTTL
		}
	}

	payload := encodePayload(m)
	limit := MaxPayload
	if pushType == string(apns2.PushTypeVOIP) {
		limit = MaxPayloadVoIP
	}
	if len(payload) > limit {
		return nil, reject(apns2.ReasonPayloadTooLarge, "payload is "+strconv.Itoa(len(payload))+" bytes, limit for push type "+pushType+" is "+strconv.Itoa(limit))
	}

	h := []hpack.HeaderField{
		{Name: "content-type", Value: "application/json"},
		{Name: "apns-topic", Value: topic},
		{Name: "apns-push-type", Value: pushType},
		{Name: "apns-priority", Value: strconv.Itoa(prio)},
	}
	if m.CollapseID != "" {
		h = append(h, hpack.HeaderField{Name: "apns-collapse-id", Value: m.CollapseID})
	}
	return &Prepared{s: s, Payload: payload, Topic: topic, PushType: pushType, Priority: prio, Expires: expires,
		expiration: m.Expiration, ttl: m.TTL, base: h}, nil
}

// checkExpiration refuses a message whose expiration (zero: none) is at or
// before now: it would be sent with no lifetime left. Prepare checks it, and
// each send again, since a batch's sends can go on past its expiry.
func checkExpiration(expiration, now time.Time) error {
	if !expiration.IsZero() && !expiration.After(now) {
		return &providers.RejectError{Provider: "apns", Reason: apns2.ReasonBadExpirationDate,
			Detail: "expiration " + expiration.UTC().Format(time.RFC3339) + " has passed", Err: providers.ErrExpired}
	}
	return nil
}

func stripTopicSuffix(topic string) string {
	for _, pt := range []string{"voip", "complication", "fileprovider", "liveactivity", "pushtotalk", "location"} {
		sfx, _ := pushTypeSuffix(pt)
		if len(topic) > len(sfx) && topic[len(topic)-len(sfx):] == sfx {
			return topic[:len(topic)-len(sfx)]
		}
	}
	return topic
}

// encodePayload writes {"aps":{...}, custom keys...}; custom keys sorted so
// equal messages encode to equal bytes.
func encodePayload(m *providers.Message) []byte {
	b := make([]byte, 0, 256)
	b = append(b, `{"aps":{`...)
	n := 0
	field := func(k string) {
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = appendString(b, k)
		b = append(b, ':')
	}
	if m.Title != "" || m.Body != "" {
		field("alert")
		b = append(b, '{')
		if m.Title != "" {
			b = appendString(b, "title")
			b = append(b, ':')
			b = appendString(b, m.Title)
		}
		if m.Body != "" {
			if m.Title != "" {
				b = append(b, ',')
			}
			b = appendString(b, "body")
			b = append(b, ':')
			b = appendString(b, m.Body)
		}
		b = append(b, '}')
	}
	if m.Badge != nil {
		field("badge")
		b = strconv.AppendInt(b, int64(*m.Badge), 10)
	}
	if m.Sound != "" {
		field("sound")
		b = appendString(b, m.Sound)
	}
	if m.ThreadID != "" {
		field("thread-id")
		b = appendString(b, m.ThreadID)
	}
	if m.Category != "" {
		field("category")
		b = appendString(b, m.Category)
	}
	if m.ContentAvailable {
		field("content-available")
		b = append(b, '1')
	}
	if m.MutableContent {
		field("mutable-content")
		b = append(b, '1')
	}
	if m.InterruptionLevel != "" {
		field("interruption-level")
		b = appendString(b, m.InterruptionLevel)
	}
	b = append(b, '}')
	keys := make([]string, 0, len(m.Data))
	for k := range m.Data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b = append(b, ',')
		b = appendString(b, k)
		b = append(b, ':')
		b = appendString(b, m.Data[k])
	}
	return append(b, '}')
}

// appendString appends s as a JSON string (RFC 8259), replacing invalid
// UTF-8 with U+FFFD as encoding/json does.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
