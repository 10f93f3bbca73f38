package feedback

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/pushlane/pushlane/schemas"
)

// CampaignSummary is what `pushctl stats <campaign>` prints. Every count is
// of distinct result ids, so a replayed results topic does not change it.
type CampaignSummary struct {
	CampaignID string
	// Planned is the number of devices the planner put in batches. It
	// comes from the planner's MySQL campaigns table when AddPlanned found
	// the campaign there (PlannedSource "mysql"); otherwise it is the
	// number of distinct devices with at least one result (PlannedSource
	// "results"), which equals the planned count once every device has a
	// final result.
	Planned       uint64
	PlannedSource string
	// ExpiredAtPlanning is the number of devices the planner left out
	// because their wave or their throttled batch would start at or after
	// expires_at: they have no result (so none of the counts below holds
	// them). From the campaigns table, with Planned; 0 without it.
	ExpiredAtPlanning uint64
	// Devices is the number of distinct (app, token) with a result.
	Devices uint64
	// Results is the number of distinct results (one per device per attempt).
	Results uint64
	// Sent is the number of attempts that reached a provider: results with
	// a provider and the provider's HTTP status. Not sent: expired,
	// cancelled and invalid_token results, devices whose platform the app
	// has no provider for, payloads refused by local validation, transport
	// errors.
	Sent uint64
	// Per-outcome counts of results.
	Delivered         uint64
	TokenDead         uint64
	Suspect           uint64
	Retried           uint64 // results with outcome retryable: a retry was scheduled
	Failed            uint64 // retries exhausted
	Expired           uint64
	Cancelled         uint64
	PayloadRejected   uint64
	CredentialFailure uint64
	InvalidToken      uint64
	// Provider latency and lateness against send-at of the sent attempts,
	// in milliseconds. Quantiles are exact (ClickHouse quantileExact: the
	// element at floor(level*n) of the sorted values); 0 without sends.
	LatencyP50Ms, LatencyP99Ms   float64
	LatenessP50Ms, LatenessP99Ms float64
	// First and Last are the times of the earliest and latest result.
	First, Last time.Time
}

// ErrNoResults is returned by Summary for a campaign without any result.
var ErrNoResults = errors.New("feedback: no results for campaign")

// summaryQuery dedupes by result_id in a subquery, keeping the latest copy
// (a replayed row is identical; a chunk re-sent after a crash writes a
// second, possibly different, copy, and the later send has the higher
// version: Row.version), then aggregates. It uses only functions
// ClickHouse 18.16 has: uniqExact, countIf, quantileExactIf; no FINAL
// needed, so it is correct before and after background merges. sent is
// Row.sent.
const summaryQuery = `SELECT
	uniqExact(app, token),
	count(),
	countIf(sent),
	countIf(outcome = 'delivered'),
	countIf(outcome = 'token_dead'),
	countIf(outcome = 'token_suspect'),
	countIf(outcome = 'retryable'),
	countIf(outcome = 'failed'),
	countIf(outcome = 'expired'),
	countIf(outcome = 'cancelled'),
	countIf(outcome = 'payload_rejected'),
	countIf(outcome = 'credential_failure'),
	countIf(outcome = 'invalid_token'),
	quantileExactIf(0.5)(latency_ms, sent),
	quantileExactIf(0.99)(latency_ms, sent),
	quantileExactIf(0.5)(lateness_ms, sent),
	quantileExactIf(0.99)(lateness_ms, sent),
	toUnixTimestamp(min(at)),
	toUnixTimestamp(max(at))
FROM (
	SELECT result_id, argMax(app, version) AS app, argMax(token, version) AS token, argMax(outcome, version) AS outcome,
		argMax(latency_ms, version) AS latency_ms, argMax(lateness_ms, version) AS lateness_ms, argMax(at, version) AS at,
		argMax(provider, version) AS provider, argMax(status, version) AS status,
		provider != '' AND status != 0 AS sent
	FROM %s.results
	WHERE campaign_id = ?
	GROUP BY result_id
)`

// Summary computes a campaign's summary from the ClickHouse results table
// in database. Planned is the distinct-device count; call AddPlanned with
// the MySQL store to use the planner's figure instead.
func Summary(ctx context.Context, conn driver.Conn, database, campaignID string) (CampaignSummary, error) {
	if err := checkIdent(database); err != nil {
		return CampaignSummary{}, err
	}
	s := CampaignSummary{CampaignID: campaignID, PlannedSource: "results"}
	var first, last uint32
	err := conn.QueryRow(ctx, fmt.Sprintf(summaryQuery, database), campaignID).Scan(
		&s.Devices, &s.Results, &s.Sent,
		&s.Delivered, &s.TokenDead, &s.Suspect, &s.Retried, &s.Failed, &s.Expired, &s.Cancelled,
		&s.PayloadRejected, &s.CredentialFailure, &s.InvalidToken,
		&s.LatencyP50Ms, &s.LatencyP99Ms, &s.LatenessP50Ms, &s.LatenessP99Ms,
		&first, &last)
	if err != nil {
		return CampaignSummary{}, fmt.Errorf("feedback: summary of %s: %w", campaignID, err)
	}
	if s.Results == 0 {
		return CampaignSummary{}, fmt.Errorf("%w %s", ErrNoResults, campaignID)
	}
	for _, f := range []*float64{&s.LatencyP50Ms, &s.LatencyP99Ms, &s.LatenessP50Ms, &s.LatenessP99Ms} {
		if math.IsNaN(*f) {
			*f = 0 // quantile of no values
		}
	}
	s.Planned = s.Devices
	s.First, s.Last = time.Unix(int64(first), 0).UTC(), time.Unix(int64(last), 0).UTC()
	return s, nil
}

// AddPlanned replaces Planned with the planner's planned_devices of the
// campaign's latest version in the MySQL campaigns table (migration 0002;
// a re-published version re-plans the whole audience, so versions are not
// summed). It leaves s unchanged when the table or the campaign is not
// there.
func (s *CampaignSummary) AddPlanned(ctx context.Context, db *sql.DB) error {
	var planned sql.NullInt64
	var expired uint64
	err := db.QueryRowContext(ctx, `SELECT planned_devices, expired_devices FROM campaigns WHERE id = ? ORDER BY version DESC LIMIT 1`, s.CampaignID).Scan(&planned, &expired)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil && isNoSuchTable(err):
		return nil
	case err != nil:
		return fmt.Errorf("feedback: planned devices of %s: %w", s.CampaignID, err)
	}
	s.ExpiredAtPlanning = expired
	if planned.Valid {
		s.Planned, s.PlannedSource = uint64(planned.Int64), "mysql"
	}
	return nil
}

// WriteSummary prints s as the text `pushctl stats` shows: one figure per
// line, name left, value right. Delivered, token dead and suspect are
// answers of a provider, so their shares are of sent; retried, failed,
// payload rejected and credential failure also count attempts that never
// reached one (a transport error, a payload refused before sending), so
// theirs are of all results: of sent, they read over 100% in an outage.
func WriteSummary(w io.Writer, s CampaignSummary) error {
	var b strings.Builder
	line := func(name, value, note string) {
		b.WriteString(strings.TrimRight(fmt.Sprintf("%-20s %14s  %s", name, value, note), " "))
		b.WriteByte('\n')
	}
	share := func(name string, n, of uint64, ofName string) {
		note := ""
		if of > 0 {
			note = fmt.Sprintf("%6.2f%% of %s", 100*float64(n)/float64(of), ofName)
		}
		line(name, strconv.FormatUint(n, 10), note)
	}
	count := func(name string, n uint64) { share(name, n, s.Sent, "sent") }
	countAll := func(name string, n uint64) { share(name, n, s.Results, "results") }
	line("campaign", s.CampaignID, "")
	line("planned", strconv.FormatUint(s.Planned, 10), "("+s.PlannedSource+")")
	line("devices with result", strconv.FormatUint(s.Devices, 10), "")
	line("sent", strconv.FormatUint(s.Sent, 10), "")
	count("delivered", s.Delivered)
	count("token dead", s.TokenDead)
	count("suspect", s.Suspect)
	countAll("retried", s.Retried)
	countAll("failed", s.Failed)
	countAll("payload rejected", s.PayloadRejected)
	countAll("credential failure", s.CredentialFailure)
	line("expired", strconv.FormatUint(s.Expired, 10), "")
	if s.ExpiredAtPlanning > 0 {
		line("expired at planning", strconv.FormatUint(s.ExpiredAtPlanning, 10), "(not planned: due at or after expires_at; no result)")
	}
	line("cancelled", strconv.FormatUint(s.Cancelled, 10), "")
	line("invalid token", strconv.FormatUint(s.InvalidToken, 10), "")
	line("latency p50/p99", fmt.Sprintf("%.1f/%.1f", s.LatencyP50Ms, s.LatencyP99Ms), "ms")
	line("lateness p50/p99", fmt.Sprintf("%.1f/%.1f", s.LatenessP50Ms, s.LatenessP99Ms), "ms")
	if !s.First.IsZero() {
		line("first result", s.First.Format(time.RFC3339), "")
		line("last result", s.Last.Format(time.RFC3339), "")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Accumulator is an in-memory Sink that keeps what a campaign summary
// needs: one entry per result id, the copy with the highest version
// (Row.version), as ClickHouse's summary does, whatever order the copies
// were written in. The embedded demo uses it instead of ClickHouse, and
// pushctl status over the results topic; it holds every result id of a
// campaign in memory, so it is for one campaign's worth at a time.
type Accumulator struct {
	mu        sync.Mutex
	campaigns map[string]map[string]accRow // campaign id → result id → latest copy
}

// accRow is what a summary reads of one result.
type accRow struct {
	app, token, outcome string
	at                  time.Time
	latency, lateness   float64
	sent                bool
	version             uint64
}

// NewAccumulator returns an empty accumulator.
func NewAccumulator() *Accumulator {
	return &Accumulator{campaigns: map[string]map[string]accRow{}}
}

// Write adds rows; a row whose result id was written before replaces it
// unless the copy already held has a higher version. A replay writes the
// same copy again; a chunk re-sent after a crash writes a copy of the later
// send (retryable, then delivered), and that one counts even when it was
// written first, as a rows file or a lagging feedback member can write
// them. On equal versions the later write wins, as a merge keeps the last
// inserted row.
func (a *Accumulator) Write(_ context.Context, rows []Row) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := range rows {
		r := &rows[i]
		c := a.campaigns[r.CampaignID]
		if c == nil {
			c = map[string]accRow{}
			a.campaigns[r.CampaignID] = c
		}
		v := r.version()
		if held, ok := c[r.ResultID]; ok && held.version > v {
			continue
		}
		c[r.ResultID] = accRow{app: r.App, token: r.Token, outcome: r.Outcome, at: r.At,
			latency: r.LatencyMs, lateness: r.LatenessMs, sent: r.sent(), version: v}
	}
	return nil
}

// Summary returns the summary of campaignID, or ErrNoResults.
func (a *Accumulator) Summary(campaignID string) (CampaignSummary, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.campaigns[campaignID]
	if len(c) == 0 {
		return CampaignSummary{}, fmt.Errorf("%w %s", ErrNoResults, campaignID)
	}
	s := CampaignSummary{CampaignID: campaignID, PlannedSource: "results"}
	devices := make(map[[2]string]struct{}, len(c))
	var latency, lateness []float64
	for _, r := range c {
		s.Results++
		devices[[2]string{r.app, r.token}] = struct{}{}
		if s.First.IsZero() || r.at.Before(s.First) {
			s.First = r.at
		}
		if r.at.After(s.Last) {
			s.Last = r.at
		}
		if r.sent {
			s.Sent++
			latency = append(latency, r.latency)
			lateness = append(lateness, r.lateness)
		}
		switch r.outcome {
		case schemas.OutcomeDelivered:
			s.Delivered++
		case schemas.OutcomeTokenDead:
			s.TokenDead++
		case schemas.OutcomeTokenSuspect:
			s.Suspect++
		case schemas.OutcomeRetryable:
			s.Retried++
		case schemas.OutcomeFailed:
			s.Failed++
		case schemas.OutcomeExpired:
			s.Expired++
		case schemas.OutcomeCancelled:
			s.Cancelled++
		case schemas.OutcomePayloadRejected:
			s.PayloadRejected++
		case schemas.OutcomeCredentialFailure:
			s.CredentialFailure++
		case schemas.OutcomeInvalidToken:
			s.InvalidToken++
		}
	}
	s.Devices = uint64(len(devices))
	s.Planned = s.Devices
	s.LatencyP50Ms, s.LatencyP99Ms = quantileExact(latency, 0.5), quantileExact(latency, 0.99)
	s.LatenessP50Ms, s.LatenessP99Ms = quantileExact(lateness, 0.5), quantileExact(lateness, 0.99)
	s.First, s.Last = s.First.Truncate(time.Second), s.Last.Truncate(time.Second) // as stored in ClickHouse
	return s, nil
}

// Campaigns lists the campaigns with results, sorted.
func (a *Accumulator) Campaigns() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, 0, len(a.campaigns))
	for id := range a.campaigns {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// quantileExact matches ClickHouse's quantileExact: the element at
// floor(level*n) of the sorted values.
func quantileExact(v []float64, level float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	i := int(level * float64(len(s)))
	return s[min(i, len(s)-1)]
}
