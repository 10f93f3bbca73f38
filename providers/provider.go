package providers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pushlane/pushlane/schemas/apnspush"
)

// Outcome is the one way a send ended. See the package doc for the mapping.
type Outcome string

// The outcomes. Their string values are part of the result-event schema.
const (
	Delivered         Outcome = "delivered"
	TokenDead         Outcome = "token_dead"
	TokenSuspect      Outcome = "token_suspect"
	Retryable         Outcome = "retryable"
	PayloadRejected   Outcome = "payload_rejected"
	CredentialFailure Outcome = "credential_failure"
)

// AllOutcomes lists every Outcome, in a stable order (metrics, tests).
func AllOutcomes() []Outcome {
	return []Outcome{Delivered, TokenDead, TokenSuspect, Retryable, PayloadRejected, CredentialFailure}
}

// Valid reports whether o is one of the six outcomes.
func (o Outcome) Valid() bool {
	for _, v := range AllOutcomes() {
		if v == o {
			return true
		}
	}
	return false
}

// Platforms of Message.Platform.
const (
	PlatformIOS     = "ios"
	PlatformAndroid = "android"
	PlatformWeb     = "web"
)

// Priorities of Message.Priority. APNs maps them to 10, 5 and 1; FCM's
// Android config to HIGH, NORMAL and NORMAL; web push urgency to high, normal
// and low. "" lets the sender choose (APNs: 5 for background pushes, else 10).
const (
	PriorityHigh   = "high"
	PriorityNormal = "normal"
	PriorityLow    = "low"
)

// Message is one notification for one device, provider-neutral. The
// dispatcher builds it once per batch and changes only Token; senders that
// implement BatchSender encode everything but the token once, in Prepare.
type Message struct {
	Token    string
	Platform string // PlatformIOS, PlatformAndroid or PlatformWeb

	Title, Body string
	Badge       *int
	Sound       string
	Data        map[string]string // custom keys: APNs top-level keys, FCM data

	PushType string // APNs apns-push-type; "" = alert, or background for a content-available-only push
	Priority string // PriorityHigh, PriorityNormal, PriorityLow or ""

	CollapseID        string // APNs apns-collapse-id (≤ 64 bytes), FCM android.collapse_key
	ThreadID          string
	Category          string
	MutableContent    bool
	ContentAvailable  bool
	InterruptionLevel string // passive, active, time-sensitive or critical

	// Expiration is when the message stops being worth delivering (zero:
	// never): no provider is asked to keep it longer, and a send that
	// starts at or after it sends nothing (payload_rejected, as Prepare
	// refuses it then). The dispatcher sets it to the batch's expiry.
	Expiration time.Time
	// TTL is how long the provider may keep the message after the send
	// (zero: as long as Expiration allows); with both, the earlier end
	// applies. APNs: apns-expiration = min(Expiration, the send's time +
	// TTL). FCM: ttl = min(TTL, Expiration − the send's time) in whole
	// seconds, at most four weeks.
	TTL time.Duration

	AndroidChannel string

	// Topic overrides the APNs topic; "" means the sender's bundle ID plus the
	// suffix the push type needs (".voip", ".push-type.liveactivity", ...).
	Topic string
}

// Visible reports whether m shows the user something: a title, body, sound
// or badge. Apple treats a push with none of them as a background push.
func (m *Message) Visible() bool {
	return apnspush.Visible(m.Title, m.Body, m.Sound, m.Badge)
}

// APNsPushType is the apns-push-type Apple gets for m: PushType, or when it
// is empty, background for a content-available push that shows nothing and
// alert otherwise. Both senders derive it here, as Apple judges the
// priority by it whichever way the push reaches it, and by the same rule
// (apnspush) as the campaign check, so what that check accepts they send.
func (m *Message) APNsPushType() string {
	return apnspush.Type(m.PushType, m.ContentAvailable, m.Visible())
}

// Result is how one send ended.
type Result struct {
	Outcome    Outcome
	Status     int           // provider HTTP status; 0 when the send never reached the provider
	Reason     string        // APNs reason, FCM error code, or the local validation reason
	ProviderID string        // apns-id, or the FCM message name
	Timestamp  time.Time     // APNs 410: the last time the token was valid (millisecond precision); zero otherwise
	Attempt    int           // the dispatcher's attempt number, copied from Send
	Latency    time.Duration // wall time of the send, immediate retries included
	RetryAfter time.Duration // what the provider asked for (Retry-After), zero if nothing
	Err        error         // the error behind any outcome other than delivered
}

// Sender sends one message; safe for concurrent use. It performs the
// provider-level immediate retries that must not leave the goroutine
// (ExpiredProviderToken refresh-and-retry once, GOAWAY/dead-connection
// re-send), but not backoff retries for 429/5xx: those come back as Retryable
// with RetryAfter, and the dispatcher re-schedules them. attempt is the
// dispatcher's attempt number, copied into Result. A send whose ctx
// carries a gate (WithSendGate) asks it after each of the sender's own
// waits and before each request, and sends nothing once it has closed.
type Sender interface {
	Send(ctx context.Context, m *Message, attempt int) Result
	Close() error
}

// BatchSender is a Sender that can encode a message once for many devices.
// Prepare validates and encodes everything except m.Token; an invalid message
// gives a *RejectError, and every device of it is payload_rejected (see
// Rejected).
type BatchSender interface {
	Sender
	Prepare(m *Message) (Prepared, error)
}

// Prepared is a message encoded once; Send delivers it to one device token.
// Safe for concurrent use.
type Prepared interface {
	Send(ctx context.Context, token string, attempt int) Result
}

// RejectError says why a message was refused before anything was sent.
type RejectError struct {
	Provider string // "apns" or "fcm"
	Reason   string // the provider's own reason name where one exists (PayloadTooLarge, BadPriority, INVALID_ARGUMENT)
	Detail   string
	// Err, if set, classifies the refusal: ErrExpired.
	Err error
}

func (e *RejectError) Error() string {
	return fmt.Sprintf("%s: payload rejected before sending: %s: %s", e.Provider, e.Reason, e.Detail)
}

func (e *RejectError) Unwrap() error { return e.Err }

// ErrExpired is the refusal of a message whose expiration had passed when
// it was to be sent: nothing is wrong with its content, it is too late. A
// send can start just before the expiry and reach the request just after
// it (it waited for a connection, the app's quota, an access token); the
// caller records such a device as expired, not payload_rejected.
var ErrExpired = errors.New("expiration has passed")

// ErrWithdrawn is the error of a send its gate withdrew (WithSendGate):
// nothing reached the provider, not even part of a request.
var ErrWithdrawn = errors.New("send withdrawn before its request was written")

// Withdrawn is the Result of a send its gate withdrew with err: nothing was
// sent, so it is no send, and senders count and halt nothing for it. Its
// Outcome is retryable (the message can be sent later as it is), but a
// caller that gives its sends a gate knows the Result by Err
// (errors.Is(r.Err, ErrWithdrawn)) and treats it as a send it did not make.
func Withdrawn(err error) Result {
	return Result{Outcome: Retryable, Reason: "Withdrawn", Err: fmt.Errorf("%w: %w", ErrWithdrawn, err)}
}

// gateContext is WithSendGate's context: parent with a gate.
type gateContext struct {
	context.Context
	gate func() error
}

// sendGateKey finds a gate under other values (WithProbe on top of it).
type sendGateKey struct{}

func (c *gateContext) Value(key any) any {
	if key == (sendGateKey{}) {
		return c.gate
	}
	return c.Context.Value(key)
}

// WithSendGate returns parent carrying gate, the late check of every send
// made with it. A send can wait inside a sender long after its caller
// decided to make it: for a slot of the sender's own concurrency, the
// project's quota, an access token. Its caller's reasons to make it may
// have ended meanwhile (the campaign was cancelled or paused, the caller
// is stopping, the app's credentials were refused), and only the sender
// knows when the wait is over. So a sender given a gate asks it after each
// of its waits and right before it writes each request (a re-send
// included); if the gate returns an error, the send sends nothing more
// and returns Withdrawn(err). A request already written is never cut
// short: a gate only keeps requests from starting.
//
// The gate runs once or a few times per send, on the send's goroutine: it
// must be cheap and must not block. Make one per batch of sends, not one
// per send: the context is the sends' shared one, and senders share
// request deadlines between the sends of one parent (see WithoutSendGate).
func WithSendGate(parent context.Context, gate func() error) context.Context {
	return &gateContext{Context: parent, gate: gate}
}

// SendGate returns the gate ctx carries (WithSendGate), nil if none.
func SendGate(ctx context.Context) func() error {
	if g, ok := ctx.(*gateContext); ok {
		return g.gate
	}
	g, _ := ctx.Value(sendGateKey{}).(func() error)
	return g
}

// WithoutSendGate returns the context a gate was added to when ctx is
// WithSendGate's own, else ctx: the same cancellation and deadline. A
// sender that shares one request deadline between the sends of one parent
// context derives it from this, so that the sends of many batches, each
// with its own gate, still share one (the gate is read before).
func WithoutSendGate(ctx context.Context) context.Context {
	if g, ok := ctx.(*gateContext); ok {
		return g.Context
	}
	return ctx
}

// SendTimeBound is a Sender that knows the longest one of its sends can
// go on once its gate has closed (WithSendGate): its request timeout,
// rounded up as its deadlines are shared. Its waits before its deadline
// is set (its own concurrency, a quota) do not count: a send waiting in
// them when its gate closes is withdrawn without a request as soon as the
// slot frees (within this bound) or at the next recheck of the quota. A
// caller that must see its sends in flight end within a budget (a
// consumer group's rebalance timeout) sizes the budget by it. 0 means
// unbounded.
type SendTimeBound interface {
	MaxSendTime() time.Duration
}

// Rejected is the Result of a message that Prepare refused.
func Rejected(err error, attempt int) Result {
	r := Result{Outcome: PayloadRejected, Attempt: attempt, Err: err}
	if re, ok := err.(*RejectError); ok {
		r.Reason = re.Reason
	}
	return r
}
