package fcm

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"firebase.google.com/go/v4/messaging"

	"github.com/pushlane/pushlane/providers"
)

// Limits Google documents.
const (
	MaxPayload = 4096                // data plus notification, bytes
	MaxTTL     = 28 * 24 * time.Hour // android.ttl
)

// Prepared is a message validated and encoded once, waiting for a token.
// Safe for concurrent use.
type Prepared struct {
	s *Sender
	// Message is the SDK message it was encoded from (no token).
	Message *messaging.Message
	head    []byte // the SDK's body up to the token's opening quote
	tail    []byte // the rest after its closing quote
}

var _ providers.Prepared = (*Prepared)(nil)

// Send delivers the prepared message to one registration token.
func (p *Prepared) Send(ctx context.Context, token string, attempt int) providers.Result {
	return p.s.sendPrepared(ctx, p, token, attempt)
}

// Body is the request body for token: byte for byte what
// firebase-admin-go's Client.Send encodes for Message with that token.
func (p *Prepared) Body(token string) []byte {
	return p.appendBody(make([]byte, 0, p.bodyLen(token)), token)
}

func (p *Prepared) bodyLen(token string) int { return len(p.head) + len(token) + 2 + len(p.tail) }

func (p *Prepared) appendBody(b []byte, token string) []byte {
	b = append(b, p.head...)
	b = appendString(b, token)
	return append(b, p.tail...)
}

func reject(detail string) error {
	return &providers.RejectError{Provider: "fcm", Reason: "INVALID_ARGUMENT", Detail: detail}
}

// Prepare validates m and encodes everything but the token.
func (s *Sender) Prepare(m *providers.Message) (providers.Prepared, error) {
	p, err := s.prepare(m)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// PrepareFCM is Prepare returning the concrete type.
func (s *Sender) PrepareFCM(m *providers.Message) (*Prepared, error) { return s.prepare(m) }

// reservedKey: the data keys FCM keeps for itself ("from, or gcm, or any
// value prefixed by google", ErrorCode's INVALID_ARGUMENT; message_type and
// the gcm. prefix from the Message reference). Only keys certainly refused
// are refused here: a key FCM would accept, refused locally, would fail a
// whole campaign, while one it refuses costs one payload_rejected answer.
// "notification", listed in older documents, is accepted by the API.
func reservedKey(k string) bool {
	return k == "from" || k == "gcm" || k == "message_type" || strings.HasPrefix(k, "google.") || strings.HasPrefix(k, "gcm.")
}

func (s *Sender) prepare(m *providers.Message) (*Prepared, error) {
	size := len(m.Title) + len(m.Body)
	for k, v := range m.Data {
		if reservedKey(k) {
			return nil, reject("data key " + strconv.Quote(k) + " is reserved by FCM")
		}
		size += len(k) + len(v)
	}
	if size > MaxPayload {
		return nil, reject("data and notification are " + strconv.Itoa(size) + " bytes, limit 4096")
	}
	now := s.cfg.Clock()
	// hasTTL: a lifetime is sent, even one of 0 s. An expiry less than a
	// second away truncates to 0, and an absent TTL is FCM's default of
	// four weeks: the message would outlive its expiry by that much.
	ttl, hasTTL := m.TTL, m.TTL > 0 || !m.Expiration.IsZero()
	if !m.Expiration.IsZero() {
		if !m.Expiration.After(now) {
			return nil, reject("expiration " + m.Expiration.UTC().Format(time.RFC3339) + " has passed")
		}
		if d := m.Expiration.Sub(now); ttl == 0 || d < ttl {
			ttl = d.Truncate(time.Second)
		}
	}
	if ttl < 0 || ttl > MaxTTL {
		return nil, reject("ttl " + ttl.String() + " outside 0–2419200 s")
	}
	var androidPrio, apnsPrio, urgency string
	switch m.Priority {
	case providers.PriorityHigh:
		androidPrio, apnsPrio, urgency = "high", "10", "high"
	case providers.PriorityNormal:
		androidPrio, apnsPrio, urgency = "normal", "5", "normal"
	case providers.PriorityLow:
		androidPrio, apnsPrio, urgency = "normal", "1", "low"
	case "":
	default:
		return nil, reject("priority must be high, normal, low or empty, got " + strconv.Quote(m.Priority))
	}
	if len(m.CollapseID) > 64 {
		return nil, reject("collapse key is " + strconv.Itoa(len(m.CollapseID)) + " bytes, limit 64")
	}

	msg := &messaging.Message{Data: m.Data}
	if m.Title != "" || m.Body != "" {
		msg.Notification = &messaging.Notification{Title: m.Title, Body: m.Body}
	}
	switch m.Platform {
	case providers.PlatformIOS:
		msg.APNS = apnsOverride(m, apnsPrio, ttl, hasTTL, now)
	case providers.PlatformWeb:
		msg.Webpush = webpushOverride(m, urgency, ttl, hasTTL)
	default:
		a := &messaging.AndroidConfig{CollapseKey: m.CollapseID, Priority: androidPrio}
		if hasTTL {
			a.TTL = &ttl
		}
		if m.AndroidChannel != "" || m.Sound != "" {
			a.Notification = &messaging.AndroidNotification{ChannelID: m.AndroidChannel, Sound: m.Sound}
		}
		msg.Android = a
	}
	head, tail, err := s.sdk.template(msg)
	if err != nil {
		return nil, reject("firebase-admin-go: " + err.Error())
	}
	return &Prepared{s: s, Message: msg, head: head, tail: tail}, nil
}

func apnsOverride(m *providers.Message, prio string, ttl time.Duration, hasTTL bool, now time.Time) *messaging.APNSConfig {
	h := map[string]string{}
	if prio != "" {
		h["apns-priority"] = prio
	}
	switch {
	case hasTTL && ttl == 0:
		h["apns-expiration"] = "0" // Apple's "deliver once, do not store"
	case hasTTL:
		h["apns-expiration"] = strconv.FormatInt(now.Add(ttl).Unix(), 10)
	}
	if m.CollapseID != "" {
		h["apns-collapse-id"] = m.CollapseID
	}
	if m.PushType != "" {
		h["apns-push-type"] = m.PushType
	}
	aps := &messaging.Aps{Badge: m.Badge, Sound: m.Sound, ThreadID: m.ThreadID, Category: m.Category,
		MutableContent: m.MutableContent, ContentAvailable: m.ContentAvailable}
	if m.InterruptionLevel != "" {
		aps.CustomData = map[string]any{"interruption-level": m.InterruptionLevel}
	}
	return &messaging.APNSConfig{Headers: h, Payload: &messaging.APNSPayload{Aps: aps}}
}

func webpushOverride(m *providers.Message, urgency string, ttl time.Duration, hasTTL bool) *messaging.WebpushConfig {
	h := map[string]string{}
	if hasTTL {
		h["TTL"] = strconv.FormatInt(int64(ttl/time.Second), 10)
	}
	if urgency != "" {
		h["Urgency"] = urgency
	}
	w := &messaging.WebpushConfig{Headers: h}
	if m.Title != "" || m.Body != "" {
		w.Notification = &messaging.WebpushNotification{Title: m.Title, Body: m.Body, Tag: m.CollapseID}
	}
	return w
}

// appendString appends s as a JSON string exactly as encoding/json (and so
// the SDK) writes it: registration tokens are plain ASCII and are copied;
// anything else json.Marshal escapes (quotes, backslashes, control
// characters, <, > and &, non-ASCII) goes through json.Marshal.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
