package kafka

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
)

// NewLagGauge returns the gauge WatchLag sets: <name>{topic,partition}.
func NewLagGauge(name, help string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{"topic", "partition"})
}

// WatchLag sets gauge{topic,partition} to group's lag (end offset minus
// committed offset) every interval until ctx ends. Partitions the group no
// longer has are dropped from the gauge. Errors are logged, not returned:
// lag is a metric, and a broker hiccup must not stop a stage.
func WatchLag(ctx context.Context, adm *kadm.Client, group string, interval time.Duration, gauge *prometheus.GaugeVec, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		// The first measurement waits an interval: a group just started
		// has nothing to describe yet.
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		lctx, cancel := context.WithTimeout(ctx, interval)
		lags, err := adm.Lag(lctx, group)
		cancel()
		if err == nil {
			err = lags.Error()
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn("consumer lag not measured", "group", group, "err", err)
		} else {
			gauge.Reset()
			lags.Each(func(l kadm.DescribedGroupLag) {
				for _, m := range l.Lag.Sorted() {
					if m.Err == nil {
						gauge.WithLabelValues(m.Topic, strconv.Itoa(int(m.Partition))).Set(float64(m.Lag))
					}
				}
			})
		}
	}
}
