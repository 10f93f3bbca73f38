package feedback

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushlane/pushlane/internal/promset"
	"github.com/pushlane/pushlane/schemas"
)

// metrics are the stage's pushlane_feedback_* series.
type metrics struct {
	results       *prometheus.CounterVec // by outcome
	registrations *prometheus.CounterVec // by kind: register, unregister
	deactivated   *prometheus.CounterVec // by kind: token_dead, suspect_strikes, unregistered_by_app
	strikes       prometheus.Counter
	unknown       prometheus.Counter
	deadLetters   *prometheus.CounterVec // by topic kind: result, registration
	rows          prometheus.Counter
	flushSeconds  prometheus.Histogram
	flushRecords  prometheus.Histogram
	retries       *prometheus.CounterVec // by step: dead_letter, mysql, analytics
	byOutcome     map[string]prometheus.Counter

	deadLettersDropped *prometheus.CounterVec // by topic kind, as deadLetters
}

// result is the results counter of outcome, without a label lookup per
// record for the known outcomes.
func (m *metrics) result(outcome string) prometheus.Counter {
	if c, ok := m.byOutcome[outcome]; ok {
		return c
	}
	return m.results.WithLabelValues(outcome)
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	var s promset.Set
	m := &metrics{
		results: s.CounterVec("pushlane_feedback_results_total",
			"Result events consumed, by outcome (replays included).", "outcome"),
		registrations: s.CounterVec("pushlane_feedback_registrations_total",
			"Device registration events consumed, by kind (register, unregister).", "kind"),
		deactivated: s.CounterVec("pushlane_feedback_tokens_deactivated_total",
			"Devices deactivated, by kind (token_dead, suspect_strikes, unregistered_by_app); the provider reason is in devices.deactivation_reason.", "kind"),
		strikes: s.Counter("pushlane_feedback_suspect_strikes_total",
			"Suspect-token strikes recorded for the first time."),
		unknown: s.Counter("pushlane_feedback_unknown_devices_total",
			"Dead, suspect or unregistered tokens that name no device in MySQL."),
		deadLetters: s.CounterVec("pushlane_feedback_dead_letters_total",
			"Malformed events sent to the dead-letter topic, by event kind.", "kind"),
		deadLettersDropped: s.CounterVec("pushlane_feedback_dead_letters_dropped_total",
			"Malformed events whose dead letter the broker refused even at its smallest, by event kind (logged with their position; the event stays on its topic only).", "kind"),
		rows: s.Counter("pushlane_feedback_rows_inserted_total",
			"Analytics rows written (a retried flush counts again)."),
		flushSeconds: s.Histogram("pushlane_feedback_flush_seconds",
			"Time of a successful flush: dead letters, MySQL, analytics and the offset commit, retries included.", prometheus.ExponentialBuckets(0.005, 2, 14)),
		flushRecords: s.Histogram("pushlane_feedback_flush_records",
			"Kafka records per flush.", prometheus.ExponentialBuckets(1, 4, 9)),
		retries: s.CounterVec("pushlane_feedback_retries_total",
			"Failed flush steps that were retried after a backoff, by step (dead_letter, mysql, analytics).", "step"),
	}
	if err := s.Register(reg); err != nil {
		return nil, err
	}
	// Pre-create the labelled series so dashboards see zeros, not gaps.
	m.byOutcome = make(map[string]prometheus.Counter, len(schemas.Outcomes))
	for _, o := range schemas.Outcomes {
		m.byOutcome[o] = m.results.WithLabelValues(o)
	}
	for _, k := range []string{"token_dead", ReasonSuspectStrikes, ReasonUnregisteredByApp} {
		m.deactivated.WithLabelValues(k)
	}
	for _, k := range []string{schemas.KindResult, schemas.KindDeviceRegistration} {
		m.deadLettersDropped.WithLabelValues(k)
	}
	for _, s := range []string{stepDeadLetter, stepMySQL, stepAnalytics} {
		m.retries.WithLabelValues(s)
	}
	return m, nil
}

// Flush steps, as retried and labelled.
const (
	stepDeadLetter = "dead_letter"
	stepMySQL      = "mysql"
	stepAnalytics  = "analytics"
)
