package providers

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// RegisterCollector registers c with reg and returns it; if an equal
// collector is already registered (a second sender for another app on the
// same registry) it returns that one instead. A nil reg registers nothing.
func RegisterCollector[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

// SenderMetrics counts one sender's results:
// pushlane_provider_sends_total{provider,app,outcome} and
// pushlane_provider_send_seconds{provider,app}.
type SenderMetrics struct {
	byOutcome map[Outcome]prometheus.Counter
	latency   prometheus.Observer
}

// NewSenderMetrics registers (or reuses) the sender metrics on reg and binds
// them to provider and app once, so Observe does no label lookups.
func NewSenderMetrics(reg prometheus.Registerer, provider, app string) (*SenderMetrics, error) {
	sends, err := RegisterCollector(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushlane_provider_sends_total",
		Help: "Sends by provider, app and outcome.",
	}, []string{"provider", "app", "outcome"}))
	if err != nil {
		return nil, err
	}
	lat, err := RegisterCollector(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "pushlane_provider_send_seconds",
		Help:    "Wall time of one send, immediate retries included.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"provider", "app"}))
	if err != nil {
		return nil, err
	}
	m := &SenderMetrics{byOutcome: make(map[Outcome]prometheus.Counter), latency: lat.WithLabelValues(provider, app)}
	for _, o := range AllOutcomes() {
		m.byOutcome[o] = sends.WithLabelValues(provider, app, string(o))
	}
	return m, nil
}

// Observe counts r.
func (m *SenderMetrics) Observe(r *Result) {
	if c, ok := m.byOutcome[r.Outcome]; ok {
		c.Inc()
	}
	m.latency.Observe(float64(r.Latency) / float64(time.Second))
}
