package feedback

import (
	"bytes"
	"encoding/json"
	"slices"
	"time"

	"github.com/pushlane/pushlane/schemas"
)

// decodeResult decodes a result event. Validating every record against the
// JSON Schema costs about 30µs, more than the whole rest of feedback's
// per-result work, so a fast path checks the result.v1 rules in Go and
// accepts only what the schema certainly accepts (a subset: e.g. RFC 3339
// times as Go parses them, known keys only, no nulls). Anything else goes
// through schemas.DecodeResult, whose answer is authoritative and whose
// error names the failing field for the dead letter. TestDecodeResultFast
// checks both paths agree on every example in schemas/examples.
func decodeResult(data []byte) (*schemas.Result, error) {
	if r, ok := decodeResultFast(data); ok {
		return r, nil
	}
	return schemas.DecodeResult(data)
}

// fastResult mirrors schemas.Result with pointers, so a missing required
// key is told apart from a zero value.
type fastResult struct {
	SchemaVersion     *int     `json:"schema_version"`
	ID                *string  `json:"id"`
	CampaignID        *string  `json:"campaign_id"`
	CampaignVersion   *int     `json:"campaign_version"`
	BatchID           *string  `json:"batch_id"`
	App               *string  `json:"app"`
	Provider          *string  `json:"provider"`
	DeviceID          *int64   `json:"device_id"`
	UserID            *string  `json:"user_id"`
	Token             *string  `json:"token"`
	Platform          *string  `json:"platform"`
	Locale            *string  `json:"locale"`
	Timezone          *string  `json:"timezone"`
	Wave              *string  `json:"wave"`
	Outcome           *string  `json:"outcome"`
	Status            *int     `json:"status"`
	Reason            *string  `json:"reason"`
	ProviderID        *string  `json:"provider_id"`
	ProviderTimestamp *string  `json:"provider_timestamp"`
	Attempt           *int     `json:"attempt"`
	SendAt            *string  `json:"send_at"`
	At                *string  `json:"at"`
	LatencyMs         *float64 `json:"latency_ms"`
	LatenessMs        *float64 `json:"lateness_ms"`
}

// decodeResultFast returns ok only for an event that result.v1.schema.json
// accepts.
func decodeResultFast(data []byte) (*schemas.Result, bool) {
	// A null anywhere (even inside a string) takes the slow path: the
	// pointers below cannot tell a null from a missing key.
	if bytes.Contains(data, []byte("null")) {
		return nil, false
	}
	// Unmarshal rejects trailing data; unknown keys are caught by the key
	// count below.
	var f fastResult
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, false
	}
	// encoding/json matches keys case-insensitively and lets a repeated
	// key win; the schema allows only the exact names, once. So every
	// decoded field's exact `"name":` must be in the bytes, and the object
	// must have no other key.
	present := [...]struct {
		name string
		ok   bool
	}{{"schema_version", f.SchemaVersion != nil}, {"id", f.ID != nil}, {"campaign_id", f.CampaignID != nil},
		{"campaign_version", f.CampaignVersion != nil}, {"batch_id", f.BatchID != nil}, {"app", f.App != nil}, {"provider", f.Provider != nil},
		{"device_id", f.DeviceID != nil}, {"user_id", f.UserID != nil}, {"token", f.Token != nil}, {"platform", f.Platform != nil},
		{"locale", f.Locale != nil}, {"timezone", f.Timezone != nil}, {"wave", f.Wave != nil}, {"outcome", f.Outcome != nil},
		{"status", f.Status != nil}, {"reason", f.Reason != nil}, {"provider_id", f.ProviderID != nil},
		{"provider_timestamp", f.ProviderTimestamp != nil}, {"attempt", f.Attempt != nil}, {"send_at", f.SendAt != nil},
		{"at", f.At != nil}, {"latency_ms", f.LatencyMs != nil}, {"lateness_ms", f.LatenessMs != nil}}
	keys := 0
	var key [32]byte
	for _, p := range present {
		if !p.ok {
			continue
		}
		keys++
		k := append(append(append(key[:0], '"'), p.name...), '"', ':')
		if !bytes.Contains(data, k) {
			return nil, false
		}
	}
	if topLevelKeys(data) != keys {
		return nil, false
	}
	// Required keys.
	if f.SchemaVersion == nil || *f.SchemaVersion != schemas.SchemaVersion || f.ID == nil || f.CampaignID == nil ||
		f.CampaignVersion == nil || f.BatchID == nil || f.App == nil || f.Token == nil || f.Platform == nil ||
		f.Outcome == nil || f.Attempt == nil || f.At == nil {
		return nil, false
	}
	// Lengths in bytes bound lengths in code points from above, so these
	// byte checks are at least as strict as the schema's.
	if len(*f.ID) < 1 || len(*f.ID) > 256 || !campaignIDOK(*f.CampaignID) || *f.CampaignVersion < 1 ||
		len(*f.BatchID) < 1 || len(*f.App) < 1 || *f.Attempt < 0 {
		return nil, false
	}
	if *f.Platform != schemas.PlatformIOS && *f.Platform != schemas.PlatformAndroid {
		return nil, false
	}
	if !slices.Contains(schemas.Outcomes, *f.Outcome) {
		return nil, false
	}
	if f.Provider != nil && *f.Provider != "apns" && *f.Provider != "fcm" && *f.Provider != "" {
		return nil, false
	}
	if (f.DeviceID != nil && *f.DeviceID < 0) || (f.LatencyMs != nil && *f.LatencyMs < 0) {
		return nil, false
	}
	r := &schemas.Result{SchemaVersion: *f.SchemaVersion, ID: *f.ID, CampaignID: *f.CampaignID, CampaignVersion: *f.CampaignVersion,
		BatchID: *f.BatchID, App: *f.App, Token: *f.Token, Platform: *f.Platform, Outcome: *f.Outcome, Attempt: *f.Attempt,
		Provider: deref(f.Provider), UserID: deref(f.UserID), Locale: deref(f.Locale), Timezone: deref(f.Timezone),
		Wave: deref(f.Wave), Reason: deref(f.Reason), ProviderID: deref(f.ProviderID)}
	if f.DeviceID != nil {
		r.DeviceID = *f.DeviceID
	}
	if f.Status != nil {
		r.Status = *f.Status
	}
	if f.LatencyMs != nil {
		r.LatencyMs = *f.LatencyMs
	}
	if f.LatenessMs != nil {
		r.LatenessMs = *f.LatenessMs
	}
	var ok bool
	if r.At, ok = parseTime(*f.At); !ok {
		return nil, false
	}
	if f.SendAt != nil {
		if r.SendAt, ok = parseTime(*f.SendAt); !ok {
			return nil, false
		}
	}
	if f.ProviderTimestamp != nil {
		if r.ProviderTimestamp, ok = parseTime(*f.ProviderTimestamp); !ok {
			return nil, false
		}
	}
	return r, true
}

// parseTime accepts what Go's RFC 3339 parser accepts, which is within
// JSON Schema's date-time format (Go rejects a lowercase "t", leap
// seconds and out-of-range fields).
func parseTime(s string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}

// campaignIDOK checks campaign.v1's id: ^[A-Za-z0-9][A-Za-z0-9_.:-]*$,
// 1 to 128 characters.
func campaignIDOK(s string) bool {
	if len(s) < 1 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
		if !alnum && (i == 0 || (c != '_' && c != '.' && c != ':' && c != '-')) {
			return false
		}
	}
	return true
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// topLevelKeys counts the colons outside strings: the number of keys of a
// flat JSON object (nested values make the struct decode fail first).
func topLevelKeys(data []byte) int {
	n := 0
	inString, escaped := false, false
	for _, c := range data {
		switch {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case !inString && c == ':':
			n++
		}
	}
	return n
}
