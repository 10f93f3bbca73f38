package planner

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	campaigns *prometheus.CounterVec // by outcome
	devices   prometheus.Counter
	batches   prometheus.Counter
	invalid   *prometheus.CounterVec // by platform
	expired   prometheus.Counter
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

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		campaigns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushlane_planner_campaigns_total",
			Help: "Campaign records finished by the planner, by outcome (planned, cancelled, expired, dead_lettered).",
		}, []string{"outcome"}),
		devices: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushlane_planner_devices_total",
			Help: "Devices put into committed batches.",
		}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushlane_planner_batches_total",
			Help: "Batches in committed transactions.",
		}),
		invalid: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushlane_planner_invalid_tokens_total",
			Help: "Devices reported as invalid_token instead of batched, by platform.",
		}, []string{"platform"}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushlane_planner_expired_devices_total",
			Help: "Devices not batched because their wave expired before it started.",
		}),
		chunks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushlane_planner_transactions_total",
			Help: "Planner transactions, by result (committed, aborted).",
		}, []string{"result"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushlane_planner_retries_total",
			Help: "Campaign attempts abandoned and retried from the last checkpoint, by cause (mysql, kafka, rebalance).",
		}, []string{"cause"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pushlane_planner_planning_seconds",
			Help:    "Time from a campaign's first planning attempt to its last commit.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 16),
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.campaigns, m.devices, m.batches, m.invalid, m.expired, m.chunks, m.retries, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("planner: register metrics: %w", err)
		}
	}
	return m, nil
}
