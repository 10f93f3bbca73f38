package dispatcher

import (
	"cmp"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/providers/apns"
	"github.com/pushlane/pushlane/providers/fcm"
)

// Provider names, as in results and metrics.
const (
	ProviderAPNs = "apns"
	ProviderFCM  = "fcm"
)

// ProviderFCMviaAPNs is the provider of a halt (Halt.Provider, the halts
// table, the halted gauge) of an app's FCM sends to iOS devices alone,
// which Google delivers through APNs with the APNs key in the Firebase
// project: FCM refused that key (providers.FCMviaAPNs). No result names
// it; those sends are FCM's.
const ProviderFCMviaAPNs = providers.FCMviaAPNs

// App is one app's senders and sending limits. iOS devices go to APNS when
// it is set, otherwise to FCM; Android devices go to FCM.
type App struct {
	APNS providers.Sender // nil: not configured
	FCM  providers.Sender // nil: not configured
	// Concurrency caps the app's sends in flight in this dispatcher.
	// Default 200.
	Concurrency int
	// RatePerSecond caps the app's sends per second in this dispatcher;
	// 0 is unlimited.
	RatePerSecond int
}

// senderFor picks the provider of a device's platform.
func (a App) senderFor(platform string) (string, providers.Sender) {
	switch platform {
	case providers.PlatformIOS:
		if a.APNS != nil {
			return ProviderAPNs, a.APNS
		}
		if a.FCM != nil {
			return ProviderFCM, a.FCM
		}
	case providers.PlatformAndroid:
		if a.FCM != nil {
			return ProviderFCM, a.FCM
		}
	}
	return "", nil
}

// BuildApps builds the APNs and FCM senders of every configured app, each
// told about credential failures through halt. The returned close function
// closes them all.
func BuildApps(apps map[string]config.App, halt *providers.Halt, log *slog.Logger, reg prometheus.Registerer) (map[string]App, func() error, error) {
	out := map[string]App{}
	var closers []providers.Sender
	closeAll := func() error {
		var errs []error
		for _, s := range closers {
			errs = append(errs, s.Close())
		}
		return errors.Join(errs...)
	}
	// One APNs provider token per key: Apple allows one refresh per 20
	// minutes per key, so apps sharing a key share its token.
	tokens := map[string]*apns.ProviderToken{}
	// One FCM quota bucket per Firebase project: Google counts the
	// project's messages, whichever app sends them.
	type projectQuota struct {
		q   *fcm.Quota
		app string
	}
	quotas := map[string]projectQuota{}
	names := make([]string, 0, len(apps))
	for n := range apps {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		ac := apps[name]
		a := App{Concurrency: ac.Concurrency, RatePerSecond: ac.RatePerSecond}
		if c := ac.APNS; c != nil {
			pool, err := caPool(c.CAFile)
			if err != nil {
				_ = closeAll()
				return nil, nil, fmt.Errorf("apps.%s.apns.ca_file: %w", name, err)
			}
			sc := apns.Config{
				App: name, Environment: c.Environment, Topic: c.Topic,
				KeyFile: c.KeyFile, KeyID: c.KeyID, TeamID: c.TeamID,
				CertFile: c.CertFile, CertPassword: c.CertPassword,
				Endpoint: c.Endpoint, RootCAs: pool, Connections: c.Connections,
				Concurrency: max(ac.Concurrency, 1), Halt: halt,
			}
			tokenKey := c.KeyFile + "\x00" + c.KeyID + "\x00" + c.TeamID
			if c.KeyFile != "" {
				sc.Token = tokens[tokenKey]
			}
			s, err := apns.New(sc, log, reg)
			if err != nil {
				_ = closeAll()
				return nil, nil, fmt.Errorf("apps.%s.apns: %w", name, err)
			}
			if c.KeyFile != "" && tokens[tokenKey] == nil {
				tokens[tokenKey] = s.Token()
			}
			a.APNS = s
			closers = append(closers, s)
		}
		if c := ac.FCM; c != nil {
			pool, err := caPool(c.CAFile)
			if err != nil {
				_ = closeAll()
				return nil, nil, fmt.Errorf("apps.%s.fcm.ca_file: %w", name, err)
			}
			shared, found := quotas[c.ProjectID]
			if found && shared.q.PerMinute() != cmp.Or(c.QuotaPerMinute, fcm.DefaultQuotaPerMinute) {
				_ = closeAll()
				return nil, nil, fmt.Errorf("apps.%s.fcm.quota_per_minute: %d, but apps.%s.fcm.quota_per_minute is %d for the same project %s: the apps share its one quota, so give them the same value",
					name, c.QuotaPerMinute, shared.app, shared.q.PerMinute(), c.ProjectID)
			}
			s, err := fcm.New(fcm.Config{
				App: name, ProjectID: c.ProjectID, ServiceAccountFile: c.ServiceAccountFile,
				// The config documents the endpoint with its /v1, the
				// sender appends /v1 itself.
				Endpoint: strings.TrimSuffix(strings.TrimSuffix(c.Endpoint, "/"), "/v1"),
				RootCAs:  pool, Concurrency: c.Concurrency, QuotaPerMinute: c.QuotaPerMinute, Quota: shared.q, Halt: halt,
			}, log, reg)
			if err != nil {
				_ = closeAll()
				return nil, nil, fmt.Errorf("apps.%s.fcm: %w", name, err)
			}
			if !found {
				quotas[c.ProjectID] = projectQuota{q: s.Quota(), app: name}
			}
			a.FCM = s
			closers = append(closers, s)
		}
		out[name] = a
	}
	return out, closeAll, nil
}

func caPool(path string) (*x509.CertPool, error) {
	if path == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no PEM certificates in %s", path)
	}
	return pool, nil
}
