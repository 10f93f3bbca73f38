package planner

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushlane/pushlane/internal/promset"
)

type metrics struct {
	campaigns *prometheus.CounterVec // by outcome
	devices   prometheus.Counter
	batches   prometheus.Counter
	invalid   *prometheus.CounterVec // by platform
	unstored  prometheus.Counter
	expired   prometheus.Counter
	replays   *prometheus.CounterVec // by reason
	chunks    *prometheus.CounterVec // by result
	retries   *prometheus.CounterVec // by cause
	duration  prometheus.Histogram
}

// Campaign outcomes, the label of pushlane_planner_campaigns_total.
const (
	outcomePlanned      = StatusPlanned
	outcomeCancelled    = StatusCancelled
	outcomeExpired      = StatusExpired
	outcomeDeadLettered = "dead_lettered"
)

// Why a replayed campaign record is skipped, the label of
// pushlane_planner_replays_skipped_total.
const (
	replayFinished   = "finished"   // its version was planned, cancelled or expired
	replaySuperseded = "superseded" // a newer version of the campaign has a row
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	var s promset.Set
	m := &metrics{
		campaigns: s.CounterVec("pushlane_planner_campaigns_total", "Campaign records finished by the planner, by outcome (planned, cancelled, expired, dead_lettered).",
			"outcome"),
		devices: s.Counter("pushlane_planner_devices_total", "Devices put into committed batches."),
		batches: s.Counter("pushlane_planner_batches_total", "Batches in committed transactions."),
		invalid: s.CounterVec("pushlane_planner_invalid_tokens_total", "Devices reported as invalid_token instead of batched, by platform.",
			"platform"),
		unstored: s.Counter("pushlane_planner_unstored_tokens_total",
			"Tokens of token-list audiences that cannot name a stored device (not ASCII, or over 512 bytes), left out of the audience query and logged; no invalid_token result, which needs a platform."),
		expired: s.Counter("pushlane_planner_expired_devices_total", "Devices not batched because they would be sent at or after the campaign's expires_at: their wave starts then, or their throttled batch would be due then."),
		replays: s.CounterVec("pushlane_planner_replays_skipped_total", "Campaign records skipped unplanned because MySQL records their version as finished (planned, cancelled, expired) or a newer version of the campaign, by reason (finished, superseded).",
			"reason"),
		chunks: s.CounterVec("pushlane_planner_transactions_total", "Planner transactions, by result (committed, aborted).",
			"result"),
		retries: s.CounterVec("pushlane_planner_retries_total", "Campaign attempts abandoned and retried from the last checkpoint, by cause (mysql, kafka, rebalance).",
			"cause"),
		duration: s.Histogram("pushlane_planner_planning_seconds", "Time from a campaign's first planning attempt to its last commit.",
			prometheus.ExponentialBuckets(0.01, 2, 16)),
	}
	if err := s.Register(reg); err != nil {
		return nil, fmt.Errorf("planner: register metrics: %w", err)
	}
	return m, nil
}
