package fcm

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"firebase.google.com/go/v4/messaging"

	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/schemas/apnspush"
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
	// Message is the SDK message it was encoded from (no token). With an
	// Expiration, its android.ttl or webpush TTL is the lifetime left at
	// Prepare; each send writes the lifetime left at that send instead.
	Message *messaging.Message
	// platform is that of the providers.Message it was prepared from:
	// which halts refuse its sends depends on it (Sender.halted).
	platform string
	head     []byte // the SDK's body up to the token's opening quote
	tail     []byte // the rest after its closing quote

	// expires is the message's Expiration (zero: none): no send starts at
	// or after it.
	expires time.Time
	ttl     time.Duration // the message's own TTL, 0 = none
	// ttlIn and ttlAt are where each send writes the lifetime left, in
	// whole seconds: at offset ttlAt of head or tail. ttlIn is inNeither
	// when the body holds no lifetime that shrinks as time passes (no
	// expiration; an APNs override, whose apns-expiration is absolute).
	// Writing it per send, instead of encoding it once at Prepare, keeps a
	// batch sent in chunks over minutes from outliving its expiry.
	ttlIn ttlPart
	ttlAt int
}

var _ providers.Prepared = (*Prepared)(nil)

// Send delivers the prepared message to one registration token.
func (p *Prepared) Send(ctx context.Context, token string, attempt int) providers.Result {
	return p.s.sendPrepared(ctx, p, token, attempt)
}

// Body is the request body for token: byte for byte what
// firebase-admin-go's Client.Send encodes for Message with that token, but
// for a message with an expiration the lifetime left now (the sender's
// Clock) in place of Message's, 0 once the expiration has passed (a send
// then sends nothing).
func (p *Prepared) Body(token string) []byte {
	var now time.Time
	if !p.expires.IsZero() {
		now = p.s.cfg.Clock()
	}
	b, _ := p.bodyAt(token, now)
	return b
}

// bodyAt is the request body for token sent at now; err refuses a message
// whose expiration has passed by now (its body then carries a lifetime of
// 0).
func (p *Prepared) bodyAt(token string, now time.Time) ([]byte, error) {
	if p.expires.IsZero() {
		return p.appendBody(make([]byte, 0, p.bodyLen(token)), token, 0), nil
	}
	ttl, err := lifetime(p.ttl, p.expires, now)
	return p.appendBody(make([]byte, 0, p.bodyLen(token)), token, int64(ttl/time.Second)), err
}

// maxTTLDigits: MaxTTL is 2419200 s.
const maxTTLDigits = 7

func (p *Prepared) bodyLen(token string) int {
	n := len(p.head) + len(token) + 2 + len(p.tail)
	if p.ttlIn != inNeither {
		n += maxTTLDigits
	}
	return n
}

// appendBody appends the body for token; secs is the lifetime written at
// ttlAt, if the body has one.
func (p *Prepared) appendBody(b []byte, token string, secs int64) []byte {
	switch p.ttlIn {
	case inNeither:
		b = append(b, p.head...)
		b = appendString(b, token)
		return append(b, p.tail...)
	case inTail:
		b = append(b, p.head...)
		b = appendString(b, token)
		b = append(b, p.tail[:p.ttlAt]...)
		b = strconv.AppendInt(b, secs, 10)
		return append(b, p.tail[p.ttlAt:]...)
	default:
		b = append(b, p.head[:p.ttlAt]...)
		b = strconv.AppendInt(b, secs, 10)
		b = append(b, p.head[p.ttlAt:]...)
		b = appendString(b, token)
		return append(b, p.tail...)
	}
}

// lifetime is how long FCM may keep a message with TTL ttl (0: none) and
// expiration expires (zero: none) sent at now: ttl, or what is left until
// expires if that is shorter, cut to whole seconds so it never reaches past
// expires; at most MaxTTL, since FCM keeps nothing longer (an expiration
// further out is honoured anyway, not refused). Less than a second left is
// 0, "now or never"; an expiration at or before now is refused, a lifetime
// below zero.
func lifetime(ttl time.Duration, expires, now time.Time) (time.Duration, error) {
	if expires.IsZero() {
		return ttl, nil
	}
	if !expires.After(now) {
		return 0, &providers.RejectError{Provider: "fcm", Reason: "INVALID_ARGUMENT",
			Detail: "expiration " + expires.UTC().Format(time.RFC3339) + " has passed", Err: providers.ErrExpired}
	}
	if d := expires.Sub(now); ttl == 0 || d < ttl {
		ttl = d.Truncate(time.Second)
	}
	return min(ttl, MaxTTL), nil
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
	// An explicit TTL over FCM's limit is refused (campaigns cannot ask for
	// one); only a lifetime derived from an expiration is cut to it.
	if m.TTL < 0 || m.TTL > MaxTTL {
		return nil, reject("ttl " + m.TTL.String() + " outside 0–2419200 s")
	}
	now := s.cfg.Clock()
	ttl, err := lifetime(m.TTL, m.Expiration, now)
	if err != nil {
		return nil, err
	}
	// hasTTL: a lifetime is sent, even one of 0 s; an absent one is FCM's
	// default of four weeks, which would outlive the expiration.
	hasTTL := m.TTL > 0 || !m.Expiration.IsZero()
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
	// field: where the lifetime left goes at each send, for a message with
	// an expiration. The APNs override's apns-expiration is absolute: set
	// at Prepare it is at most the expiration, however late the send.
	field := noTTL
	switch m.Platform {
	case providers.PlatformIOS:
		pushType, err := apnsPushType(m, &apnsPrio)
		if err != nil {
			return nil, err
		}
		msg.APNS = apnsOverride(m, pushType, apnsPrio, ttl, hasTTL, now)
	case providers.PlatformWeb:
		msg.Webpush = webpushOverride(m, urgency, ttl, hasTTL)
		field = webpushTTL
	default:
		a := &messaging.AndroidConfig{CollapseKey: m.CollapseID, Priority: androidPrio}
		if hasTTL {
			a.TTL = &ttl
		}
		if m.AndroidChannel != "" || m.Sound != "" {
			a.Notification = &messaging.AndroidNotification{ChannelID: m.AndroidChannel, Sound: m.Sound}
		}
		msg.Android = a
		field = androidTTL
	}
	if m.Expiration.IsZero() {
		field = noTTL
	}
	t, err := s.sdk.templateTTL(msg, field)
	if err != nil {
		return nil, reject("firebase-admin-go: " + err.Error())
	}
	return &Prepared{s: s, Message: msg, platform: m.Platform, head: t.head, tail: t.tail, expires: m.Expiration, ttl: m.TTL,
		ttlIn: t.ttlIn, ttlAt: t.ttlAt}, nil
}

// apnsPushType checks m against the rules for the push type and the
// priority of a push to an Apple device, sets *prio to the apns-priority
// header to send ("": FCM's own choice) and returns the apns-push-type
// header to send ("": FCM's own choice). The rules are Apple's, which FCM
// passes on, as the APNs sender and the campaign check apply them
// (schemas/apnspush), and one of FCM's own: Google refuses a data message
// to an Apple device (one that shows nothing: no title, body, sound or
// badge) at apns-priority 10, whatever its push type, with
// INVALID_ARGUMENT on every iOS device of the campaign ("When sending
// data messages to Apple devices, the priority must be set to 5, or
// normal priority. Messages sent with high priority are rejected by the
// FCM backend", Firebase's "Setting the priority of a message"). APNs
// takes a voip, location or other push of a type but alert and background
// that shows nothing at 10, and so does the campaign check: such a
// campaign is refused here on its iOS devices sent through FCM only. For
// the same reason a push that shows nothing and names no priority goes
// at 5, where the APNs sender sends 10.
func apnsPushType(m *providers.Message, prio *string) (string, error) {
	pushType := m.APNsPushType()
	visible := m.Visible()
	p, ok := apnspush.Priority(m.Priority, pushType)
	if !ok {
		return "", reject("priority must be high, normal, low or empty, got " + strconv.Quote(m.Priority))
	}
	if !visible && m.Priority == "" {
		p = 5 // FCM's rule: not the 10 Apple's default would be
	}
	switch problem := apnspush.Check(pushType, p, visible); {
	case problem == apnspush.VisibleBackground:
		return "", reject("a background push carries no title, body, sound or badge; send it as alert")
	case problem == apnspush.BackgroundPriority:
		return "", reject("background pushes must use priority normal (apns-priority 5), got " + strconv.Quote(m.Priority))
	case !visible && p == 10:
		// FCM's rule; it covers apnspush.SilentAlertPriority.
		return "", reject("priority high needs a title, body, sound or badge: FCM refuses data messages to Apple devices at apns-priority 10; use normal")
	case problem != apnspush.OK:
		return "", reject(fmt.Sprintf("push type %s at apns-priority %d breaks Apple's rules (apnspush problem %d)", pushType, p, problem))
	}
	if m.Priority != "" || !visible {
		*prio = strconv.Itoa(p)
	}
	// An explicit type goes as asked, and a derived background one is
	// spelled out; a derived alert is left to FCM, which chooses by the
	// payload as this would.
	if m.PushType == "" && pushType != apnspush.Background {
		pushType = ""
	}
	return pushType, nil
}

func apnsOverride(m *providers.Message, pushType, prio string, ttl time.Duration, hasTTL bool, now time.Time) *messaging.APNSConfig {
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
	if pushType != "" {
		h["apns-push-type"] = pushType
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
