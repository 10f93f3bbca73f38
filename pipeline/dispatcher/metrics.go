package dispatcher

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

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
	m := &metrics{
		sends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushlane_dispatcher_sends_total",
			Help: "Provider sends by app, provider and outcome.",
		}, []string{"app", "provider", "outcome"}),
		sendLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pushlane_dispatcher_send_seconds",
			Help:    "Latency of one provider send, by app and provider.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"app", "provider"}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushlane_dispatcher_results_total",
			Help: "Result events written, by outcome (including expired, cancelled and failed, which send nothing).",
		}, []string{"outcome"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushlane_dispatcher_batches_total",
			Help: "Ready records handled, by what happened: sent, duplicate (already finished), cancelled, expired, parked, rerouted (not due yet), dead_lettered, unknown_app.",
		}, []string{"what"}),
		lateness: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pushlane_dispatcher_lateness_seconds",
			Help:    "Start of a batch's first send minus its send-at.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, .75, 1, 1.5, 2, 5, 10, 30, 60, 300},
		}),
		chunk: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pushlane_dispatcher_chunk_seconds",
			Help:    "One chunk: sends, results acknowledged, progress saved.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushlane_dispatcher_inflight_sends",
			Help: "Provider sends in flight.",
		}),
		batchesBusy: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushlane_dispatcher_inflight_batches",
			Help: "Batches being sent (at most one per ready partition).",
		}),
		parked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pushlane_dispatcher_parked_batches",
			Help: "Batches parked (all instances), by reason: paused campaign or halted app.",
		}, []string{"reason"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushlane_dispatcher_retry_batches_total",
			Help: "Retry batches written to the delay ladder.",
		}),
		lag: kafka.NewLagGauge("pushlane_dispatcher_consumer_lag", "Records of the ready topic not yet committed by the dispatcher group."),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.sends, m.sendLatency, m.results, m.batches, m.lateness, m.chunk, m.inflight, m.batchesBusy, m.parked, m.retries, m.lag} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("dispatcher: register metrics: %w", err)
		}
	}
	return m, nil
}
