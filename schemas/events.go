// Package schemas holds Pushlane's wire contracts: the JSON Schemas of every
// event on Kafka, their Go types, and the MySQL and ClickHouse DDL.
//
// Every event carries "schema_version". A consumer decodes with the Decode*
// functions, which validate the raw bytes against the embedded JSON Schema
// before unmarshalling, so a schema-invalid event is rejected with a message
// that names the failing field, and can be dead-lettered with that reason.
//
// Integers: as in JSON Schema, an integer is a number with no fractional
// part however it is written, so 2, 2.0 and 0.2e1 are all the integer 2 and
// decode alike. Every integer field's schema has a minimum and a maximum:
// the range of its Go field (int and int64: 64 bits; a dead letter's
// partition: int32) or a tighter limit its description gives, so an event
// that passes the published schema never fails to fit the Go type. Bounds
// and integrality are judged exactly, as decimals: a validator that reads
// numbers as float64 (JavaScript's) can take 9223372036854775808 for the
// int64 maximum, or 2.0000000000000001 for an integer, where Pushlane does
// not. The rules are also written out for producers in json/README.md.
package schemas

import (
	"time"
)

// SchemaVersion is the version of every event schema this code writes and
// reads. A new incompatible version gets new schema files (e.g.
// campaign.v2.schema.json); readers keep accepting the old one while it is on
// the topics.
const SchemaVersion = 1

// Campaign says: send this content to this audience of App, at Schedule,
// with Options. It is the input of the planner.
type Campaign struct {
	SchemaVersion int `json:"schema_version"`
	// ID is chosen by the publisher and is stable across re-publishes.
	ID string `json:"id"`
	// Version is bumped by the publisher when it re-publishes a changed
	// campaign; batch ids derive from (ID, Version, position), so a replay of
	// the same version yields the same batch ids. Defaults to 1.
	Version   int       `json:"version,omitempty"`
	App       string    `json:"app"`
	Audience  Audience  `json:"audience"`
	Content   Content   `json:"content"`
	Schedule  Schedule  `json:"schedule"`
	Options   Options   `json:"options"`
	CreatedAt time.Time `json:"created_at,omitzero"`
}

// Audience types.
const (
	AudienceSegment = "segment" // all active devices of the app, optionally filtered
	AudienceTokens  = "tokens"  // an explicit token list (still only active devices of the app)
)

// Audience selects devices of the campaign's app. Only active devices are
// ever selected.
type Audience struct {
	Type string `json:"type"`
	// Filters of a segment; empty means no filter.
	Platforms []string `json:"platforms,omitempty"`
	Locales   []string `json:"locales,omitempty"`
	UserIDs   []string `json:"user_ids,omitempty"`
	// Tokens of a "tokens" audience.
	Tokens []string `json:"tokens,omitempty"`
}

// Content is what the user sees. Localized variants replace Title and Body
// for devices whose locale matches (exact, then language only), then
// FallbackLocale's variant, then Title/Body themselves.
type Content struct {
	Title          string                   `json:"title,omitempty"`
	Body           string                   `json:"body,omitempty"`
	Badge          *int                     `json:"badge,omitempty"`
	Sound          string                   `json:"sound,omitempty"`
	Data           map[string]string        `json:"data,omitempty"`
	Localized      map[string]LocalizedText `json:"localized,omitempty"`
	FallbackLocale string                   `json:"fallback_locale,omitempty"`
}

// LocalizedText is one locale's variant of the visible text.
type LocalizedText struct {
	Title string `json:"title,omitempty"`
	Body  string `json:"body,omitempty"`
}

// Delivery modes.
const (
	DeliverAt        = "at"         // everyone at SendAt (or now)
	DeliverLocalTime = "local_time" // LocalTime on LocalDate in each device's timezone
)

// Schedule says when the campaign is sent and until when it is worth sending.
type Schedule struct {
	Mode string `json:"mode"`
	// SendAt is the instant for mode "at"; zero or past means now.
	SendAt time.Time `json:"send_at,omitzero"`
	// LocalTime ("09:00") and LocalDate ("2026-03-29") for mode
	// "local_time": each device gets LocalDate LocalTime in its own IANA
	// timezone (Timezone of the device, or DefaultTimezone when unknown).
	LocalTime       string `json:"local_time,omitempty"`
	LocalDate       string `json:"local_date,omitempty"`
	DefaultTimezone string `json:"default_timezone,omitempty"`
	// ExpiresAt: nothing is sent after it. If zero, Options.TTLSeconds
	// after each batch's send-at applies; if both are zero, no expiry.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// Priorities.
const (
	PriorityHigh   = "high"   // APNs 10, FCM HIGH
	PriorityNormal = "normal" // APNs 5, FCM NORMAL
	PriorityLow    = "low"    // APNs 1, FCM NORMAL
)

// APNs push types, as Apple defines them.
var PushTypes = []string{"alert", "background", "location", "voip", "complication", "fileprovider", "mdm", "liveactivity", "pushtotalk"}

// Options tune how the campaign is sent.
type Options struct {
	Priority          string `json:"priority,omitempty"`
	PushType          string `json:"push_type,omitempty"`
	CollapseID        string `json:"collapse_id,omitempty"`
	ThreadID          string `json:"thread_id,omitempty"`
	Category          string `json:"category,omitempty"`
	MutableContent    bool   `json:"mutable_content,omitempty"`
	ContentAvailable  bool   `json:"content_available,omitempty"`
	InterruptionLevel string `json:"interruption_level,omitempty"`
	AndroidChannel    string `json:"android_channel,omitempty"`
	// TTLSeconds bounds each batch's life after its send-at when
	// Schedule.ExpiresAt is not set; it is also the provider-side TTL.
	TTLSeconds int `json:"ttl_seconds,omitempty"`
	// BatchSize is the number of devices per batch event; default 1000.
	BatchSize int `json:"batch_size,omitempty"`
	// ThrottlePerSecond spaces the campaign's batch send-ats so that its
	// devices fall due at this many per second on average (a whole batch
	// is due at once: any T seconds hold fewer than R·T + batch_size);
	// waves of local time that start at different instants are spaced
	// apart, not against each other. 0 means unthrottled.
	ThrottlePerSecond int `json:"throttle_per_second,omitempty"`
}

// DefaultBatchSize is the batch size when a campaign does not set one, as
// in the script Pushlane replaced.
const DefaultBatchSize = 1000

// MaxBatchDevices is the most devices one batch event may carry (the
// schemas' batch_size maximum and devices maxItems): 2000 devices with long
// FCM tokens stay well under Kafka's default 1 MB record limit.
const MaxBatchDevices = 2000

// Control actions.
const (
	ControlCancel = "cancel"
	ControlPause  = "pause"
	ControlResume = "resume"
)

// CampaignControl changes a running campaign. It lives on a compacted
// topic: a pause or resume is keyed by the campaign id, so the latest of
// them survives compaction, and a cancel by "<id>/cancel"
// (pipeline/control.Key), so no later pause or resume replaces it. Cancel
// is final: readers ignore a pause or resume that follows a cancel.
type CampaignControl struct {
	SchemaVersion int       `json:"schema_version"`
	CampaignID    string    `json:"campaign_id"`
	Action        string    `json:"action"`
	Reason        string    `json:"reason,omitempty"`
	At            time.Time `json:"at"`
}

// Batch is one slice of a campaign's audience, due at SendAt. It carries
// everything the dispatcher needs, so sending needs no database lookup.
type Batch struct {
	SchemaVersion int `json:"schema_version"`
	// ID is deterministic: derived from campaign id, version, wave and
	// sequence (and attempt for retries), so replays yield the same id.
	ID              string        `json:"id"`
	CampaignID      string        `json:"campaign_id"`
	CampaignVersion int           `json:"campaign_version"`
	App             string        `json:"app"`
	Wave            string        `json:"wave,omitempty"` // timezone group of local-time campaigns
	Seq             int           `json:"seq"`
	Attempt         int           `json:"attempt"` // 1 for the first send; retries carry the failed devices only
	SendAt          time.Time     `json:"send_at"`
	ExpiresAt       time.Time     `json:"expires_at,omitzero"`
	Content         Content       `json:"content"`
	Options         Options       `json:"options"`
	Devices         []BatchDevice `json:"devices"`
}

// BatchDevice is one recipient of a batch.
type BatchDevice struct {
	DeviceID int64  `json:"device_id,omitempty"`
	UserID   string `json:"user_id,omitempty"`
	Token    string `json:"token"`
	Platform string `json:"platform"`
	Locale   string `json:"locale,omitempty"`
	Timezone string `json:"timezone,omitempty"`
}

// Platforms.
const (
	PlatformIOS     = "ios"
	PlatformAndroid = "android"
)

// PlatformOf returns the platform constant spelled by b, and whether b is
// one; hand-written decoders use it to keep one shared string per platform
// instead of a copy per device.
func PlatformOf(b []byte) (string, bool) {
	switch string(b) {
	case PlatformIOS:
		return PlatformIOS, true
	case PlatformAndroid:
		return PlatformAndroid, true
	}
	return "", false
}

// Result outcomes. The first six are the providers' classification; the
// rest are decided by the pipeline without calling a provider.
const (
	OutcomeDelivered         = "delivered"
	OutcomeTokenDead         = "token_dead"
	OutcomeTokenSuspect      = "token_suspect"
	OutcomeRetryable         = "retryable" // a retry was scheduled
	OutcomePayloadRejected   = "payload_rejected"
	OutcomeCredentialFailure = "credential_failure"
	OutcomeFailed            = "failed"        // retries exhausted
	OutcomeExpired           = "expired"       // not sent: past expires-at
	OutcomeCancelled         = "cancelled"     // not sent: campaign cancelled
	OutcomeInvalidToken      = "invalid_token" // not batched: token malformed for its platform
)

// Outcomes lists every outcome, for schemas, metrics and summaries.
var Outcomes = []string{OutcomeDelivered, OutcomeTokenDead, OutcomeTokenSuspect, OutcomeRetryable,
	OutcomePayloadRejected, OutcomeCredentialFailure, OutcomeFailed, OutcomeExpired, OutcomeCancelled, OutcomeInvalidToken}

// Result is what happened to one device in one attempt.
type Result struct {
	SchemaVersion int `json:"schema_version"`
	// ID is deterministic (batch id, device token, attempt), so a replayed
	// or re-sent result is recognised downstream.
	ID              string `json:"id"`
	CampaignID      string `json:"campaign_id"`
	CampaignVersion int    `json:"campaign_version"`
	BatchID         string `json:"batch_id"`
	App             string `json:"app"`
	Provider        string `json:"provider,omitempty"` // apns | fcm
	DeviceID        int64  `json:"device_id,omitempty"`
	UserID          string `json:"user_id,omitempty"`
	Token           string `json:"token"`
	Platform        string `json:"platform"`
	Locale          string `json:"locale,omitempty"`
	Timezone        string `json:"timezone,omitempty"`
	Wave            string `json:"wave,omitempty"`
	Outcome         string `json:"outcome"`
	Status          int    `json:"status,omitempty"`
	Reason          string `json:"reason,omitempty"`
	ProviderID      string `json:"provider_id,omitempty"` // apns-id or FCM message name
	// ProviderTimestamp is APNs' 410 timestamp: the last time Apple knew
	// the token was valid.
	ProviderTimestamp time.Time `json:"provider_timestamp,omitzero"`
	Attempt           int       `json:"attempt"`
	SendAt            time.Time `json:"send_at,omitzero"`
	At                time.Time `json:"at"` // when the outcome was known
	LatencyMs         float64   `json:"latency_ms,omitempty"`
	LatenessMs        float64   `json:"lateness_ms,omitempty"` // send start minus send-at
}

// DeadLetter wraps an event a stage could not process, with the reason and
// the original bytes, so nothing is lost and it can be re-driven.
type DeadLetter struct {
	SchemaVersion int    `json:"schema_version"`
	Stage         string `json:"stage"`
	Reason        string `json:"reason"`
	Topic         string `json:"topic"`
	Partition     int32  `json:"partition"`
	Offset        int64  `json:"offset"`
	Key           []byte `json:"key,omitempty"`
	Value         []byte `json:"value"` // original bytes, base64 in JSON
	// ValueBytes is set when Value holds only the first bytes of an
	// original too big to fit in a dead letter under the broker's record
	// limit; the whole original stays at Topic/Partition@Offset.
	ValueBytes int               `json:"value_bytes,omitempty"`
	Headers    map[string]string `json:"headers,omitempty"`
	At         time.Time         `json:"at"`
}

// MaxStoredTokenBytes is the length of devices.token, which holds ASCII
// only (schemas/mysql/0001_devices.sql): a longer or non-ASCII token names
// no stored device.
const MaxStoredTokenBytes = 512

// StoredToken reports whether token can be a devices.token: ASCII of at
// most MaxStoredTokenBytes.
func StoredToken(token string) bool {
	if len(token) > MaxStoredTokenBytes {
		return false
	}
	for i := 0; i < len(token); i++ {
		if token[i] >= 0x80 {
			return false
		}
	}
	return true
}

// DeviceRegistration is how app backends report a (re-)registered token.
// Feedback upserts it into devices and sets registered_at, which guards
// against deactivating a token re-registered after an APNs 410.
type DeviceRegistration struct {
	SchemaVersion int       `json:"schema_version"`
	App           string    `json:"app"`
	Token         string    `json:"token"`
	Platform      string    `json:"platform"`
	UserID        string    `json:"user_id,omitempty"`
	Locale        string    `json:"locale,omitempty"`
	Timezone      string    `json:"timezone,omitempty"`
	RegisteredAt  time.Time `json:"registered_at"`
	// Unregister marks a token the app knows is gone (logout, uninstall).
	Unregister bool `json:"unregister,omitempty"`
}
