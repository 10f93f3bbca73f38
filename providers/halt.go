package providers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// LevelAlert is the slog level of lines that must page someone: a halted app.
const LevelAlert = slog.LevelError + 4

// FCMviaAPNs is the halt key of an app's FCM sends to Apple devices, which
// Google hands to APNs with the APNs key (or certificate) uploaded to the
// Firebase project. FCM refuses that key with THIRD_PARTY_AUTH_ERROR (or
// the older APNS_AUTH_ERROR) on the iOS devices alone: the service
// account was accepted, and the app's Android devices are delivered as
// usual. Halted under "fcm", as it was, an app whose Firebase project had
// a bad APNs key had its Android sends parked too, and a probe answered
// by an Android device lifted the halt, so the next iOS send halted it
// again, every probe interval. The name is what the halt's gauge label
// and the dispatcher's halts table (provider VARCHAR(16)) show.
const FCMviaAPNs = "fcm-via-apns"

// HaltInfo says why and since when a provider of an app is halted.
type HaltInfo struct {
	App string
	// Provider is the halt's key: "apns", "fcm" (the service account) or
	// FCMviaAPNs (the APNs key in the Firebase project).
	Provider string
	Reason   string // the provider's reason, e.g. InvalidProviderToken, THIRD_PARTY_AUTH_ERROR
	Err      error
	Since    time.Time
}

// haltKey is one provider of one app (or FCMviaAPNs): the unit a halt
// applies to.
type haltKey struct{ app, provider string }

// Halt is the registry of the apps whose credentials a provider refused,
// per app and provider. The dispatcher parks the batches that need a
// halted provider instead of burning through the campaign; senders given
// a Halt refuse to send for their app while their own provider of it is
// halted, without calling the provider. A halt is per provider because
// the credentials are: an app whose APNs key Apple refused has an FCM
// service account nothing refused, and its FCM sends go on. FCM's sends
// to Apple devices need a second credential, the APNs key in the Firebase
// project, halted on its own (FCMviaAPNs): its refusal holds back only
// those sends, and the FCM sender refuses them under either halt. Safe
// for concurrent use; Halted is lock-free because every send asks it.
type Halt struct {
	mu     sync.Mutex // serialises writers; readers use halts
	halts  atomic.Pointer[map[haltKey]HaltInfo]
	gauge  *prometheus.GaugeVec
	logger *slog.Logger
	now    func() time.Time
}

// NewHalt returns an empty registry. It registers the gauge
// pushlane_provider_app_halted{app,provider} (1 while that provider of
// the app is halted) with reg; a nil reg registers nothing, a nil logger
// logs nothing.
func NewHalt(logger *slog.Logger, reg prometheus.Registerer) (*Halt, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "pushlane_provider_app_halted",
		Help: "1 while the app's sends through the provider are halted because the provider refused its credentials.",
	}, []string{"app", "provider"})
	g, err := RegisterCollector(reg, g)
	if err != nil {
		return nil, fmt.Errorf("providers: halt gauge: %w", err)
	}
	h := &Halt{gauge: g, logger: logger, now: time.Now}
	empty := map[haltKey]HaltInfo{}
	h.halts.Store(&empty)
	return h, nil
}

// Halt halts provider (a halt key: "apns", "fcm" or FCMviaAPNs) for app.
// It returns true if that provider of the app was running until now; only
// that first call logs the alert, so a thousand in-flight sends failing at
// once raise one alert, and so does a halt the dispatcher learns again
// from its store.
func (h *Halt) Halt(app, provider, reason string, err error) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := haltKey{app, provider}
	cur := *h.halts.Load()
	if _, ok := cur[k]; ok {
		return false
	}
	next := make(map[haltKey]HaltInfo, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	next[k] = HaltInfo{App: app, Provider: provider, Reason: reason, Err: err, Since: h.now()}
	h.halts.Store(&next)
	h.gauge.WithLabelValues(app, provider).Set(1)
	errText := ""
	if err != nil {
		errText = err.Error()
	}
	h.logger.Log(context.Background(), LevelAlert, "provider refused the app's credentials; app halted",
		slog.String("app", app), slog.String("provider", provider), slog.String("reason", reason),
		slog.String("error", errText), slog.Bool("alert", true))
	return true
}

// Halted reports whether provider is halted for app, and why. A sender
// asks it for its own provider, so a halt of the app's other provider
// never refuses its sends.
func (h *Halt) Halted(app, provider string) (HaltInfo, bool) {
	info, ok := (*h.halts.Load())[haltKey{app, provider}]
	return info, ok
}

// Resume lets app send through provider again (its credentials were
// fixed, as a probe showed, or an operator lifted the halt). It returns
// false if that provider of the app was not halted.
func (h *Halt) Resume(app, provider string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := haltKey{app, provider}
	cur := *h.halts.Load()
	if _, ok := cur[k]; !ok {
		return false
	}
	next := make(map[haltKey]HaltInfo, len(cur))
	for kk, v := range cur {
		if kk != k {
			next[kk] = v
		}
	}
	h.halts.Store(&next)
	h.gauge.WithLabelValues(app, provider).Set(0)
	h.logger.Info("app resumed", slog.String("app", app), slog.String("provider", provider))
	return true
}

// List returns the halts sorted by app, then provider.
func (h *Halt) List() []HaltInfo {
	cur := *h.halts.Load()
	out := make([]HaltInfo, 0, len(cur))
	for _, v := range cur {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b HaltInfo) int {
		return cmp.Or(cmp.Compare(a.App, b.App), cmp.Compare(a.Provider, b.Provider))
	})
	return out
}

// probeKey marks a context as a halt probe's (WithProbe).
type probeKey struct{}

// WithProbe returns ctx marked as the context of a halt probe: the one
// send the dispatcher makes to a halted provider of an app to learn
// whether its credentials work again. A sender lets such a send through
// its halt (IsProbe). The mark travels with the one send rather than
// opening the registry for it: opened, the registry let every send of the
// app through for as long as the probe lasted, and read (gauge, log) as
// if the halt had been lifted while nothing had been fixed.
func WithProbe(ctx context.Context) context.Context {
	return context.WithValue(ctx, probeKey{}, true)
}

// IsProbe reports whether ctx is a halt probe's (WithProbe). Senders ask
// it only once Halted said yes, so sends of an app not halted pay nothing
// for it.
func IsProbe(ctx context.Context) bool {
	probe, _ := ctx.Value(probeKey{}).(bool)
	return probe
}

// ErrHalted is the error of a Result refused because the provider is
// halted for the app.
var ErrHalted = errors.New("app halted after a credential failure")
