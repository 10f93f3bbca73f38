package providers

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// LevelAlert is the slog level of lines that must page someone: a halted app.
const LevelAlert = slog.LevelError + 4

// HaltInfo says why and since when an app is halted.
type HaltInfo struct {
	App      string
	Provider string // "apns" or "fcm"
	Reason   string // the provider's reason, e.g. InvalidProviderToken, THIRD_PARTY_AUTH_ERROR
	Err      error
	Since    time.Time
}

// Halt is the registry of apps whose credentials a provider refused. The
// dispatcher parks a halted app's batches instead of burning through the
// campaign; senders given a Halt refuse to send for a halted app without
// calling the provider. Safe for concurrent use; Halted is lock-free because
// every send asks it.
type Halt struct {
	mu     sync.Mutex // serialises writers; readers use apps
	apps   atomic.Pointer[map[string]HaltInfo]
	gauge  *prometheus.GaugeVec
	logger *slog.Logger
	now    func() time.Time
}

// NewHalt returns an empty registry. It registers the gauge
// pushlane_provider_app_halted{app} (1 while halted) with reg; a nil reg
// registers nothing, a nil logger logs nothing.
func NewHalt(logger *slog.Logger, reg prometheus.Registerer) (*Halt, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "pushlane_provider_app_halted",
		Help: "1 while the app is halted because the provider refused its credentials.",
	}, []string{"app"})
	g, err := RegisterCollector(reg, g)
	if err != nil {
		return nil, err
	}
	h := &Halt{gauge: g, logger: logger, now: time.Now}
	empty := map[string]HaltInfo{}
	h.apps.Store(&empty)
	return h, nil
}

// Halt parks app. It returns true if the app was running until now; only
// that first call logs the alert, so a thousand in-flight sends failing at
// once raise one alert.
func (h *Halt) Halt(app, provider, reason string, err error) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	cur := *h.apps.Load()
	if _, ok := cur[app]; ok {
		return false
	}
	next := make(map[string]HaltInfo, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	info := HaltInfo{App: app, Provider: provider, Reason: reason, Err: err, Since: h.now()}
	next[app] = info
	h.apps.Store(&next)
	h.gauge.WithLabelValues(app).Set(1)
	errText := ""
	if err != nil {
		errText = err.Error()
	}
	h.logger.Log(context.Background(), LevelAlert, "provider refused the app's credentials; app halted",
		slog.String("app", app), slog.String("provider", provider), slog.String("reason", reason),
		slog.String("error", errText), slog.Bool("alert", true))
	return true
}

// Halted reports whether app is halted, and why.
func (h *Halt) Halted(app string) (HaltInfo, bool) {
	info, ok := (*h.apps.Load())[app]
	return info, ok
}

// Resume lets app send again (after its credentials were fixed). It returns
// false if the app was not halted.
func (h *Halt) Resume(app string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	cur := *h.apps.Load()
	if _, ok := cur[app]; !ok {
		return false
	}
	next := make(map[string]HaltInfo, len(cur))
	for k, v := range cur {
		if k != app {
			next[k] = v
		}
	}
	h.apps.Store(&next)
	h.gauge.WithLabelValues(app).Set(0)
	h.logger.Info("app resumed", slog.String("app", app))
	return true
}

// List returns the halted apps sorted by name.
func (h *Halt) List() []HaltInfo {
	cur := *h.apps.Load()
	out := make([]HaltInfo, 0, len(cur))
	for _, v := range cur {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b HaltInfo) int {
		switch {
		case a.App < b.App:
			return -1
		case a.App > b.App:
			return 1
		}
		return 0
	})
	return out
}

// ErrHalted is the error of a Result refused because the app is halted.
var ErrHalted = errors.New("app halted after a credential failure")
