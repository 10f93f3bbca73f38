package feedback

import (
	"math"
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

// sent reports whether the row is an attempt that reached a provider: one
// the provider answered with an HTTP status (providers.Result.Status is 0
// when a send never reached it). A device whose platform has no provider
// (failed, no provider), a payload refused by local validation or a
// transport error has no status, and latency or lateness of those would
// only pull the quantiles of real sends towards 0.
func (r Row) sent() bool {
	return r.Provider != "" && r.Status != 0
}

// version orders the copies of one result id so that every reader keeps
// the same one whatever order they were written in: the ClickHouse version
// column (ReplacingMergeTree merges and the queries' argMax) and the
// Accumulator. A copy whose provider answer ended the device's attempt
// (sent, and not retryable) outranks one that records no such answer: after
// a crash between a chunk's results and its saved progress, the next owner
// closes the batch out if it was cancelled or expired meanwhile, writing
// cancelled or expired copies, later in time, for devices the chunk had
// sent; by time alone they replaced the real delivered or token_dead
// results in every count. A retryable copy is not flagged: its retry was
// in the unsaved progress, so the close-out is what ended the device. Among copies alike in
// that, a chunk re-sent after a crash writes a second copy with the
// outcome of the later send, whose time is later: the result's own time in
// milliseconds decides, so an old feedback member inserting the earlier
// copy after the later one (an outage, then a rebalance) cannot win. Within
// one millisecond a hash of the copy's content breaks the tie in the last
// three decimal digits; a replayed copy is identical and gets the same
// version. Results are dead-lettered outside 1970..2105, so at fits: at
// most 4.3e15, below bit 52; the sent flag is bit 62.
func (r *Row) version() uint64 {
	h := fnv64(14695981039346656037) // FNV-1a offset basis
	h.str(r.Outcome)
	h.str(r.Provider)
	h.num(uint64(r.Status))
	h.str(r.Reason)
	h.num(math.Float64bits(r.LatencyMs))
	h.num(math.Float64bits(r.LatenessMs))
	for _, t := range [...]time.Time{r.At, r.ProviderTimestamp} {
		h.num(uint64(t.Unix()))
		h.num(uint64(t.Nanosecond()))
	}
	v := uint64(max(r.At.UnixMilli(), 0))*1000 + uint64(h)%1000
	if r.sent() && r.Outcome != schemas.OutcomeRetryable {
		v |= sentVersion
	}
	return v
}

// sentVersion is the bit of version that ranks a copy the provider
// answered above every copy that records no send.
const sentVersion = uint64(1) << 62

// fnv64 is FNV-1a, inline so that versioning a flush allocates nothing.
type fnv64 uint64

func (f *fnv64) byte(c byte) { *f = (*f ^ fnv64(c)) * 1099511628211 }

func (f *fnv64) num(v uint64) {
	for range 8 {
		f.byte(byte(v))
		v >>= 8
	}
}

// str hashes the length too, so ("ab", "c") and ("a", "bc") differ.
func (f *fnv64) str(s string) {
	f.num(uint64(len(s)))
	for i := 0; i < len(s); i++ {
		f.byte(s[i])
	}
}
