package apns_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/providers/apns"
	"github.com/pushlane/pushlane/providers/apnssim"
)

// refusedKeySender is an APNs sender of app "shop" whose key the
// simulator does not know, with a halt registry logging to logs and its
// gauge on reg, and an alert prepared with it.
func refusedKeySender(t *testing.T) (*apnssim.Server, *providers.Halt, *prometheus.Registry, *bytes.Buffer, providers.Prepared) {
	t.Helper()
	sim, _ := startSim(t, nil)
	other, err := apnssim.NewTestKey() // a key Apple does not know
	if err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	reg := prometheus.NewRegistry()
	halt, err := providers.NewHalt(slog.New(slog.NewJSONHandler(logs, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := apns.New(apns.Config{
		App: "shop", Environment: apns.Development, Topic: topic, KeyPEM: other.PEM, KeyID: other.KeyID,
		TeamID: other.TeamID, Endpoint: sim.URL(), RootCAs: sim.CertPool(), Halt: halt,
	}, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	p, err := s.Prepare(alert())
	if err != nil {
		t.Fatal(err)
	}
	return sim, halt, reg, logs, p
}

func TestCredentialFailureHaltsTheApp(t *testing.T) {
	sim, halt, reg, logs, p := refusedKeySender(t)
	r := p.Send(context.Background(), tok("a", 1), 1)
	if r.Outcome != providers.CredentialFailure || r.Reason != "InvalidProviderToken" || r.Status != 403 {
		t.Fatalf("first send: %+v", r)
	}
	info, halted := halt.Halted("shop", "apns")
	if !halted || info.Reason != "InvalidProviderToken" || info.Provider != "apns" {
		t.Fatalf("halt registry: %+v %v", info, halted)
	}
	// The rest of the campaign does not reach Apple.
	for i := range 50 {
		r := p.Send(context.Background(), tok("a", 2+i), 1)
		if r.Outcome != providers.CredentialFailure || !errors.Is(r.Err, providers.ErrHalted) {
			t.Fatalf("send while halted: %+v", r)
		}
	}
	if n := sim.Counts().Requests; n != 1 {
		t.Fatalf("simulator saw %d requests, want 1", n)
	}
	if got := gaugeValue(t, reg, "pushlane_provider_app_halted", "shop", "apns"); got != 1 {
		t.Fatalf("pushlane_provider_app_halted{app=shop,provider=apns} = %v", got)
	}
	if _, halted := halt.Halted("shop", "fcm"); halted {
		t.Fatal("APNs's refusal halted the app's FCM sends")
	}
	if n := strings.Count(logs.String(), `"level":"ERROR+4"`); n != 1 || !strings.Contains(logs.String(), `"reason":"InvalidProviderToken"`) {
		t.Fatalf("want one alert-level line, got:\n%s", logs.String())
	}
	if !halt.Resume("shop", "apns") {
		t.Fatal("resume")
	}
	if got := gaugeValue(t, reg, "pushlane_provider_app_halted", "shop", "apns"); got != 0 {
		t.Fatalf("gauge after resume = %v", got)
	}
}

// A halt probe's send (providers.WithProbe) reaches Apple although the app
// is halted for APNs; refused again, it leaves the halt as it was: still
// halted, the gauge at 1, no second alert, nothing logged as resumed.
// Every other send is still refused without a request. (Before, the
// dispatcher opened the registry for the probe: for as long as it lasted
// every send of the app went through, and the gauge read 0.)
func TestProbeSendPassesTheHaltAndLeavesIt(t *testing.T) {
	sim, halt, reg, logs, p := refusedKeySender(t)
	if r := p.Send(context.Background(), tok("a", 1), 1); r.Outcome != providers.CredentialFailure || r.Status != 403 {
		t.Fatalf("first send: %+v", r)
	}
	probe := providers.WithProbe(context.Background())
	for i := range 2 {
		r := p.Send(probe, tok("a", 2+i), 1)
		if r.Outcome != providers.CredentialFailure || r.Status != 403 || errors.Is(r.Err, providers.ErrHalted) {
			t.Fatalf("probe %d: %+v, want Apple's refusal", i, r)
		}
		if r := p.Send(context.Background(), tok("b", i), 1); !errors.Is(r.Err, providers.ErrHalted) {
			t.Fatalf("send after probe %d: %+v, want refused by the halt", i, r)
		}
	}
	if n := sim.Counts().Requests; n != 3 {
		t.Fatalf("simulator saw %d requests, want 3: the first send and the 2 probes", n)
	}
	if _, halted := halt.Halted("shop", "apns"); !halted {
		t.Fatal("shop's APNs not halted after its refused probes")
	}
	if got := gaugeValue(t, reg, "pushlane_provider_app_halted", "shop", "apns"); got != 1 {
		t.Fatalf("pushlane_provider_app_halted{app=shop,provider=apns} = %v, want 1", got)
	}
	if n := strings.Count(logs.String(), `"level":"ERROR+4"`); n != 1 || strings.Contains(logs.String(), "app resumed") {
		t.Fatalf("want the first refusal's alert only, got:\n%s", logs.String())
	}
}

// An app's FCM halt leaves its APNs sends alone.
func TestHaltOfFCMDoesNotRefuseAPNs(t *testing.T) {
	sim, key := startSim(t, nil)
	halt, err := providers.NewHalt(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	halt.Halt("shop", "fcm", "THIRD_PARTY_AUTH_ERROR", nil) // as the FCM sender does at its refusal
	s, _ := newSender(t, sim, key, func(c *apns.Config) { c.App, c.Halt = "shop", halt })
	m := alert()
	m.Token = tok("a", 1)
	if r := s.Send(context.Background(), m, 1); r.Outcome != providers.Delivered {
		t.Fatalf("APNs send of an app halted for FCM: %+v", r)
	}
	if _, halted := halt.Halted("shop", "apns"); halted {
		t.Fatal("shop's APNs halted")
	}
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name, app, provider string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["app"] == app && labels["provider"] == provider {
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no %s{app=%q,provider=%q}", name, app, provider)
	return 0
}

func TestCertificateAuth(t *testing.T) {
	ca, err := apnssim.NewTestCA()
	if err != nil {
		t.Fatal(err)
	}
	sim, _ := startSim(t, func(c *apnssim.Config) { c.ClientCAs = ca.Pool })
	send := func(certPEM []byte) providers.Result {
		t.Helper()
		s, err := apns.New(apns.Config{App: "c", Environment: apns.Development, Topic: topic, CertPEM: certPEM,
			Endpoint: sim.URL(), RootCAs: sim.CertPool()}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		m := alert()
		m.Token = tok("a", 1)
		return s.Send(context.Background(), m, 1)
	}
	good, _ := ca.Issue(topic, "development")
	if r := send(good); r.Outcome != providers.Delivered {
		t.Fatalf("development certificate: %+v", r)
	}
	prod, _ := ca.Issue(topic, "production")
	if r := send(prod); r.Outcome != providers.CredentialFailure || r.Reason != "BadCertificateEnvironment" {
		t.Fatalf("production certificate on the sandbox: %+v", r)
	}
	otherApp, _ := ca.Issue("com.example.other", "development")
	if r := send(otherApp); r.Outcome != providers.CredentialFailure || r.Reason != "TopicDisallowed" {
		t.Fatalf("certificate of another app: %+v", r)
	}
}

func TestCertificateAuthFromP12File(t *testing.T) {
	caPEM, err := os.ReadFile("testdata/ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("testdata/ca.pem holds no certificate")
	}
	sim, _ := startSim(t, func(c *apnssim.Config) { c.ClientCAs = pool })
	s, err := apns.New(apns.Config{App: "p12", Environment: apns.Development, Topic: topic,
		CertFile: "testdata/push-dev.p12", CertPassword: "secret", Endpoint: sim.URL(), RootCAs: sim.CertPool()}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := alert()
	m.Token = tok("a", 1)
	if r := s.Send(context.Background(), m, 1); r.Outcome != providers.Delivered {
		t.Fatalf("p12 certificate: %+v", r)
	}
	_, err = apns.New(apns.Config{App: "p12", Environment: apns.Development, Topic: topic,
		CertFile: "testdata/push-dev.p12", CertPassword: "wrong"}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "config CertFile") {
		t.Fatalf("wrong password: %v", err)
	}
}
