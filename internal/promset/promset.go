// Package promset declares a stage's Prometheus collectors and registers
// them together: each collector is declared once, by name, help, labels
// and buckets, and registering takes every collector declared, so none can
// be declared and forgotten.
package promset

import "github.com/prometheus/client_golang/prometheus"

// Set is the collectors declared so far, in declaration order. The zero
// value is empty and ready to use.
type Set struct {
	collectors []prometheus.Collector
}

// Add declares c, a collector built elsewhere (such as kafka.NewLagGauge's),
// and returns it.
func Add[C prometheus.Collector](s *Set, c C) C {
	s.collectors = append(s.collectors, c)
	return c
}

// Counter declares a counter without labels.
func (s *Set) Counter(name, help string) prometheus.Counter {
	return Add(s, prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help}))
}

// CounterVec declares a counter with the given labels.
func (s *Set) CounterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return Add(s, prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels))
}

// Gauge declares a gauge without labels.
func (s *Set) Gauge(name, help string) prometheus.Gauge {
	return Add(s, prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help}))
}

// GaugeVec declares a gauge with the given labels.
func (s *Set) GaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	return Add(s, prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels))
}

// Histogram declares a histogram without labels.
func (s *Set) Histogram(name, help string, buckets []float64) prometheus.Histogram {
	return Add(s, prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}))
}

// HistogramVec declares a histogram with the given labels.
func (s *Set) HistogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	return Add(s, prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels))
}

// Register registers the declared collectors with reg in declaration order
// and stops at the first error, which it returns. A nil reg registers
// nothing: the collectors still count, unexported (tests, embedded use).
func (s *Set) Register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for _, c := range s.collectors {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
