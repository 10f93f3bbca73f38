package fcm_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/providers/fcm"
	"github.com/pushlane/pushlane/providers/fcmsim"
)

// haltedGauge returns pushlane_provider_app_halted{app,provider} on reg,
// and whether the series exists.
func haltedGauge(t *testing.T, reg prometheus.Gatherer, app, provider string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "pushlane_provider_app_halted" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["app"] == app && labels["provider"] == provider {
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

// App shop is halted because APNs refused its key. Its FCM sender, whose
// service account nothing refused, sends every message to Google, while
// the APNs halt stands untouched: halted, its gauge at 1 after every send,
// nothing logged as resumed. (Before, the registry was per app: the FCM
// sender refused every send of an app halted for APNs.)
func TestHaltOfAPNsLetsFCMSend(t *testing.T) {
	sim, acct := startSim(t, nil)
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	halt, err := providers.NewHalt(slog.New(slog.NewJSONHandler(&logs, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	halt.Halt("shop", "apns", "InvalidProviderToken", errors.New("403 InvalidProviderToken")) // as the APNs sender does
	s := newSender(t, sim, acct, func(c *fcm.Config) { c.Halt = halt; c.App = "shop" })
	for i := range 20 {
		m := note()
		m.Token = fmt.Sprintf("t%d", i)
		if r := s.Send(context.Background(), m, 1); r.Outcome != providers.Delivered {
			t.Fatalf("FCM send %d of an app halted for APNs: %+v", i, r)
		}
		if v, ok := haltedGauge(t, reg, "shop", "apns"); v != 1 || !ok {
			t.Fatalf("pushlane_provider_app_halted{shop,apns} = %v (%v) after FCM send %d, want 1", v, ok, i)
		}
	}
	if n := sim.Counts().Requests; n != 20 {
		t.Errorf("simulator saw %d sends, want 20", n)
	}
	if _, halted := halt.Halted("shop", "apns"); !halted {
		t.Error("shop's APNs halt was lifted by FCM sends")
	}
	if _, halted := halt.Halted("shop", "fcm"); halted {
		t.Error("shop's FCM halted")
	}
	if v, _ := haltedGauge(t, reg, "shop", "fcm"); v != 0 {
		t.Errorf("pushlane_provider_app_halted{shop,fcm} = %v, want 0", v)
	}
	if strings.Contains(logs.String(), "app resumed") {
		t.Errorf("\"app resumed\" logged with nothing fixed:\n%s", logs.String())
	}
}

// Google refusing the service account halts the app's FCM only; a
// probe's send (providers.WithProbe) passes that halt to ask Google again,
// and every other send is refused without a request.
func TestRefusedServiceAccountHaltsFCMOnly(t *testing.T) {
	sim, _ := startSim(t, nil)
	stranger, err := fcmsim.NewTestServiceAccount(project, sim.TokenURL()) // a key the simulator does not know
	if err != nil {
		t.Fatal(err)
	}
	halt, err := providers.NewHalt(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := newSender(t, sim, stranger, func(c *fcm.Config) { c.Halt = halt; c.App = "shop" })
	m := note()
	m.Token = "t"
	if r := s.Send(context.Background(), m, 1); r.Outcome != providers.CredentialFailure || errors.Is(r.Err, providers.ErrHalted) {
		t.Fatalf("first send: %+v", r)
	}
	if info, halted := halt.Halted("shop", "fcm"); !halted || info.Provider != "fcm" {
		t.Fatalf("shop's FCM: %+v %v", info, halted)
	}
	if _, halted := halt.Halted("shop", "apns"); halted {
		t.Fatal("FCM's refusal halted the app's APNs")
	}
	r := s.Send(providers.WithProbe(context.Background()), m, 1)
	if r.Outcome != providers.CredentialFailure || errors.Is(r.Err, providers.ErrHalted) {
		t.Fatalf("probe: %+v, want Google's refusal", r)
	}
	if r := s.Send(context.Background(), m, 1); !errors.Is(r.Err, providers.ErrHalted) {
		t.Fatalf("send after the probe: %+v, want refused by the halt", r)
	}
	if n := sim.TokenRequests(); n != 2 {
		t.Errorf("%d token requests, want 2: the first send's and the probe's", n)
	}
}
