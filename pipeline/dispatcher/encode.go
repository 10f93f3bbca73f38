package dispatcher

import (
	"strconv"
	"time"

	"github.com/pushlane/pushlane/internal/flatjson"
	"github.com/pushlane/pushlane/schemas"
)

// appendResult appends r as JSON: the fields, names and omission rules of
// schemas.Result's encoding/json form, written without reflection (one
// result per send makes encoding/json a visible share of a send's CPU).
// TestAppendResultMatchesEncodingJSON holds it to encoding/json.
func appendResult(b []byte, r *schemas.Result) []byte {
	b = append(b, `{"schema_version":`...)
	b = strconv.AppendInt(b, int64(r.SchemaVersion), 10)
	b = appendField(b, "id", r.ID)
	b = appendField(b, "campaign_id", r.CampaignID)
	b = append(b, `,"campaign_version":`...)
	b = strconv.AppendInt(b, int64(r.CampaignVersion), 10)
	b = appendField(b, "batch_id", r.BatchID)
	b = appendField(b, "app", r.App)
	b = appendOptField(b, "provider", r.Provider)
	if r.DeviceID != 0 {
		b = append(b, `,"device_id":`...)
		b = strconv.AppendInt(b, r.DeviceID, 10)
	}
	b = appendOptField(b, "user_id", r.UserID)
	b = appendField(b, "token", r.Token)
	b = appendField(b, "platform", r.Platform)
	b = appendOptField(b, "locale", r.Locale)
	b = appendOptField(b, "timezone", r.Timezone)
	b = appendOptField(b, "wave", r.Wave)
	b = appendField(b, "outcome", r.Outcome)
	if r.Status != 0 {
		b = append(b, `,"status":`...)
		b = strconv.AppendInt(b, int64(r.Status), 10)
	}
	b = appendOptField(b, "reason", r.Reason)
	b = appendOptField(b, "provider_id", r.ProviderID)
	if !r.ProviderTimestamp.IsZero() {
		b = appendTime(b, "provider_timestamp", r.ProviderTimestamp)
	}
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(r.Attempt), 10)
	if !r.SendAt.IsZero() {
		b = appendTime(b, "send_at", r.SendAt)
	}
	b = appendTime(b, "at", r.At)
	if r.LatencyMs != 0 {
		b = append(b, `,"latency_ms":`...)
		b = strconv.AppendFloat(b, r.LatencyMs, 'f', -1, 64)
	}
	if r.LatenessMs != 0 {
		b = append(b, `,"lateness_ms":`...)
		b = strconv.AppendFloat(b, r.LatenessMs, 'f', -1, 64)
	}
	return append(b, '}')
}

func appendField(b []byte, name, v string) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return flatjson.AppendString(b, v)
}

func appendOptField(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	return appendField(b, name, v)
}

func appendTime(b []byte, name string, t time.Time) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, `":"`...)
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}
