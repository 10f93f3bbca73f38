package feedback

import (
	"time"

	"github.com/pushlane/pushlane/schemas"
)

// Row is one result as an analytics row: one per result event, whatever
// its outcome (invalid_token, expired and cancelled included). ResultID is
// the dedupe key everywhere: a replayed result has the same ResultID and
// the same content.
type Row struct {
	ResultID          string    `json:"result_id"`
	At                time.Time `json:"at"`
	App               string    `json:"app"`
	CampaignID        string    `json:"campaign_id"`
	CampaignVersion   uint32    `json:"campaign_version"`
	BatchID           string    `json:"batch_id"`
	DeviceID          uint64    `json:"device_id,omitempty"`
	UserID            string    `json:"user_id,omitempty"`
	Token             string    `json:"token"`
	Platform          string    `json:"platform"`
	Provider          string    `json:"provider,omitempty"`
	Outcome           string    `json:"outcome"`
	Status            uint16    `json:"status,omitempty"`
	Reason            string    `json:"reason,omitempty"`
	Attempt           uint16    `json:"attempt"`
	SendAt            time.Time `json:"send_at,omitzero"`
	LatencyMs         float64   `json:"latency_ms,omitempty"`
	LatenessMs        float64   `json:"lateness_ms,omitempty"`
	Locale            string    `json:"locale,omitempty"`
	Timezone          string    `json:"timezone,omitempty"`
	Wave              string    `json:"wave,omitempty"` // timezone group of local-time campaigns
	ProviderTimestamp time.Time `json:"provider_timestamp,omitzero"`
}

// RowFromResult flattens a result into its analytics row.
func RowFromResult(r *schemas.Result) Row {
	return Row{
		ResultID:          r.ID,
		At:                r.At.UTC(),
		App:               r.App,
		CampaignID:        r.CampaignID,
		CampaignVersion:   uint32(max(r.CampaignVersion, 0)),
		BatchID:           r.BatchID,
		DeviceID:          uint64(max(r.DeviceID, 0)),
		UserID:            r.UserID,
		Token:             r.Token,
		Platform:          r.Platform,
		Provider:          r.Provider,
		Outcome:           r.Outcome,
		Status:            uint16(min(max(r.Status, 0), 65535)),
		Reason:            r.Reason,
		Attempt:           uint16(min(max(r.Attempt, 0), 65535)),
		SendAt:            r.SendAt.UTC(),
		LatencyMs:         r.LatencyMs,
		LatenessMs:        r.LatenessMs,
		Locale:            r.Locale,
		Timezone:          r.Timezone,
		Wave:              r.Wave,
		ProviderTimestamp: r.ProviderTimestamp.UTC(),
	}
}

// sent reports whether the row is an attempt that reached a provider, as
// opposed to a result the pipeline decided without sending.
func (r Row) sent() bool {
	switch r.Outcome {
	case schemas.OutcomeExpired, schemas.OutcomeCancelled, schemas.OutcomeInvalidToken:
		return false
	}
	return true
}
