package dispatchtest

import (
	"time"

	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// MetricValue sums the counter, gauge or histogram-count values of name on
// reg whose labels include every pair of labels ("k1", "v1", "k2", "v2"...).
func MetricValue(t testing.TB, reg prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			case m.Histogram != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

// WaitMetric polls MetricValue until it equals want or timeout passes, and
// returns the last value seen. Metrics are updated after the effect they
// count is visible elsewhere, so tests wait for them.
func WaitMetric(t testing.TB, reg prometheus.Gatherer, timeout time.Duration, want float64, name string, labels ...string) float64 {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v := MetricValue(t, reg, name, labels...)
		if v == want || time.Now().After(deadline) {
			return v
		}
		time.Sleep(20 * time.Millisecond)
	}
}
