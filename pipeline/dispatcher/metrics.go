package dispatcher

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushlane/pushlane/internal/promset"
	"github.com/pushlane/pushlane/pipeline/kafka"
)

type metrics struct {
	sends       *prometheus.CounterVec   // app, provider, outcome
	sendLatency *prometheus.HistogramVec // app, provider
	results     *prometheus.CounterVec   // outcome
	batches     *prometheus.CounterVec   // what
	lateness    prometheus.Histogram
	chunk       prometheus.Histogram
	inflight    prometheus.Gauge
	batchesBusy prometheus.Gauge
	parked      *prometheus.GaugeVec // reason
	retries     prometheus.Counter
	lag         *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	var s promset.Set
	m := &metrics{
		sends: s.CounterVec("pushlane_dispatcher_sends_total", "Provider sends by app, provider and outcome.",
			"app", "provider", "outcome"),
		sendLatency: s.HistogramVec("pushlane_dispatcher_send_seconds", "Latency of one provider send, by app and provider.",
			[]float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}, "app", "provider"),
		results: s.CounterVec("pushlane_dispatcher_results_total", "Result events written, by outcome (including expired, cancelled and failed, which send nothing).",
			"outcome"),
		batches: s.CounterVec("pushlane_dispatcher_batches_total", "Ready records handled, by what happened: sent, duplicate (already finished), cancelled, expired, parked, rerouted (not due yet), rekeyed (replayed without a key: written back keyed by batch id), dead_lettered, dead_letter_dropped (its letter refused by the dead-letter topic even slimmed), unknown_app.",
			"what"),
		lateness: s.Histogram("pushlane_dispatcher_lateness_seconds", "Start of a batch's first send minus its send-at.",
			[]float64{.01, .025, .05, .1, .25, .5, .75, 1, 1.5, 2, 5, 10, 30, 60, 300}),
		chunk: s.Histogram("pushlane_dispatcher_chunk_seconds", "One chunk: sends, results acknowledged, progress saved.",
			[]float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}),
		inflight:    s.Gauge("pushlane_dispatcher_inflight_sends", "Provider sends in flight."),
		batchesBusy: s.Gauge("pushlane_dispatcher_inflight_batches", "Batches being sent (at most 4 per assigned ready partition)."),
		parked: s.GaugeVec("pushlane_dispatcher_parked_batches", "Batches parked (all instances), by reason: paused campaign or halted app.",
			"reason"),
		retries: s.Counter("pushlane_dispatcher_retry_batches_total", "Retry batches written to the delay ladder."),
		lag:     promset.Add(&s, kafka.NewLagGauge("pushlane_dispatcher_consumer_lag", "Records of the ready topic not yet committed by the dispatcher group.")),
	}
	if err := s.Register(reg); err != nil {
		return nil, fmt.Errorf("dispatcher: register metrics: %w", err)
	}
	return m, nil
}
