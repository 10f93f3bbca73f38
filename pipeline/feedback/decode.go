package feedback

import (
	"math"
	"slices"
	"time"

	"github.com/pushlane/pushlane/internal/flatjson"
	"github.com/pushlane/pushlane/schemas"
)

// DecodeResult decodes a result event as schemas.DecodeResult does, with
// the same answer, at a fraction of the cost. Validating every record
// against the JSON Schema costs about 30µs, more than the whole rest of
// feedback's per-result work, so a fast path checks the result.v1 rules in Go and
// accepts only what the schema certainly accepts (a subset: e.g. RFC 3339
// times as Go parses them, known keys only, no nulls). Anything else goes
// through schemas.DecodeResult, whose answer is authoritative and whose
// error names the failing field for the dead letter. TestDecodeResultFast
// checks both paths agree on every example in schemas/examples.
func DecodeResult(data []byte) (*schemas.Result, error) {
	if r, ok := decodeResultFast(data); ok {
		return r, nil
	}
	return schemas.DecodeResult(data)
}

// Result keys, one bit each, for the fast path's seen-set.
const (
	kSchemaVersion = 1 << iota
	kID
	kCampaignID
	kCampaignVersion
	kBatchID
	kApp
	kProvider
	kDeviceID
	kUserID
	kToken
	kPlatform
	kLocale
	kTimezone
	kWave
	kOutcome
	kStatus
	kReason
	kProviderID
	kProviderTimestamp
	kAttempt
	kSendAt
	kAt
	kLatencyMs
	kLatenessMs
)

var resultKeys = map[string]int{
	"schema_version": kSchemaVersion, "id": kID, "campaign_id": kCampaignID, "campaign_version": kCampaignVersion,
	"batch_id": kBatchID, "app": kApp, "provider": kProvider, "device_id": kDeviceID, "user_id": kUserID,
	"token": kToken, "platform": kPlatform, "locale": kLocale, "timezone": kTimezone, "wave": kWave,
	"outcome": kOutcome, "status": kStatus, "reason": kReason, "provider_id": kProviderID,
	"provider_timestamp": kProviderTimestamp, "attempt": kAttempt, "send_at": kSendAt, "at": kAt,
	"latency_ms": kLatencyMs, "lateness_ms": kLatenessMs,
}

const requiredKeys = kSchemaVersion | kID | kCampaignID | kCampaignVersion | kBatchID | kApp | kToken | kPlatform | kOutcome | kAttempt | kAt

const (
	intKeys    = kSchemaVersion | kCampaignVersion | kDeviceID | kStatus | kAttempt
	numberKeys = kLatencyMs | kLatenessMs
)

// decodeResultFast returns ok only for an event that result.v1.schema.json
// accepts. It reads the flat object in one pass (internal/flatjson): each
// key exactly as the schema names it and at most once, plain strings,
// integers without fraction or exponent; a null, an escape or anything
// else unusual is left to the schema.
func decodeResultFast(data []byte) (*schemas.Result, bool) {
	r := &schemas.Result{}
	seen, end, ok := flatjson.Object(data, 0, resultKeys, func(bit, i int) (int, bool) {
		switch {
		case bit&intKeys != 0:
			v, next, ok := flatjson.Int(data, i)
			if !ok || v < math.MinInt32 || v > math.MaxInt32 && bit != kDeviceID {
				return i, false
			}
			switch bit {
			case kSchemaVersion:
				r.SchemaVersion = int(v)
			case kCampaignVersion:
				r.CampaignVersion = int(v)
			case kDeviceID:
				r.DeviceID = v
			case kStatus:
				r.Status = int(v)
			case kAttempt:
				r.Attempt = int(v)
			}
			return next, true
		case bit&numberKeys != 0:
			v, next, ok := flatjson.Number(data, i)
			if bit == kLatencyMs {
				r.LatencyMs = v
			} else {
				r.LatenessMs = v
			}
			return next, ok
		default:
			v, next, ok := flatjson.PlainString(data, i)
			return next, ok && setResultString(r, bit, v)
		}
	})
	if !ok || flatjson.SkipSpace(data, end) != len(data) {
		return nil, false
	}
	if seen&requiredKeys != requiredKeys || r.SchemaVersion != schemas.SchemaVersion {
		return nil, false
	}
	// Lengths in bytes bound lengths in code points from above, so these
	// byte checks are at least as strict as the schema's.
	if len(r.ID) < 1 || len(r.ID) > 256 || !campaignIDOK(r.CampaignID) || r.CampaignVersion < 1 ||
		len(r.BatchID) < 1 || len(r.App) < 1 || r.Attempt < 0 || r.DeviceID < 0 || r.LatencyMs < 0 ||
		// The schema's bound is the largest float64, and a number past it
		// that Go rounds down to it is the schema path's to refuse.
		math.Abs(r.LatencyMs) >= math.MaxFloat64 || math.Abs(r.LatenessMs) >= math.MaxFloat64 {
		return nil, false
	}
	return r, true
}

// setResultString stores a plain string value of the key bit, reporting
// false for a value the fast path does not accept (outside an enum, a
// date-time Go does not parse).
func setResultString(r *schemas.Result, bit int, v []byte) bool {
	switch bit {
	case kID:
		r.ID = string(v)
	case kCampaignID:
		r.CampaignID = string(v)
	case kBatchID:
		r.BatchID = string(v)
	case kApp:
		r.App = string(v)
	case kProvider:
		switch string(v) {
		case "apns":
			r.Provider = "apns"
		case "fcm":
			r.Provider = "fcm"
		case "":
		default:
			return false
		}
	case kUserID:
		r.UserID = string(v)
	case kToken:
		r.Token = string(v)
	case kPlatform:
		var ok bool
		if r.Platform, ok = schemas.PlatformOf(v); !ok {
			return false
		}
	case kLocale:
		r.Locale = string(v)
	case kTimezone:
		r.Timezone = string(v)
	case kWave:
		r.Wave = string(v)
	case kOutcome:
		// The enum's own strings: no allocation per result.
		i := slices.Index(schemas.Outcomes, string(v))
		if i < 0 {
			return false
		}
		r.Outcome = schemas.Outcomes[i]
	case kReason:
		r.Reason = string(v)
	case kProviderID:
		r.ProviderID = string(v)
	case kProviderTimestamp, kSendAt, kAt:
		t, ok := parseTime(string(v))
		if !ok {
			return false
		}
		switch bit {
		case kProviderTimestamp:
			r.ProviderTimestamp = t
		case kSendAt:
			r.SendAt = t
		default:
			r.At = t
		}
	default:
		return false
	}
	return true
}

// parseTime accepts RFC 3339 date-times of exactly the shape
// YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM) that Go's parser also accepts:
// within JSON Schema's date-time format (Go alone would take a one-digit
// hour; it rejects a lowercase "t", leap seconds and out-of-range fields).
func parseTime(s string) (time.Time, bool) {
	if !rfc3339Shape(s) {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}

func rfc3339Shape(s string) bool {
	const layout = "dddd-dd-ddTdd:dd:dd"
	if len(s) < len(layout)+1 {
		return false
	}
	for i := range len(layout) {
		if layout[i] == 'd' {
			if s[i] < '0' || s[i] > '9' {
				return false
			}
		} else if s[i] != layout[i] {
			return false
		}
	}
	rest := s[len(layout):]
	if rest[0] == '.' {
		n := 1
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			n++
		}
		if n == 1 {
			return false
		}
		rest = rest[n:]
	}
	if rest == "Z" {
		return true
	}
	return len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && isDigit(rest[1]) && isDigit(rest[2]) &&
		rest[3] == ':' && isDigit(rest[4]) && isDigit(rest[5])
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

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
