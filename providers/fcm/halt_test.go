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

// iosNote is note() for an Apple device, which FCM delivers through APNs.
func iosNote() *providers.Message {
	m := note()
	m.Platform = providers.PlatformIOS
	return m
}

// THIRD_PARTY_AUTH_ERROR (and APNS_AUTH_ERROR, its older name) on an iOS
// device is Apple refusing the APNs key in the Firebase project: it halts
// the app's FCM sends to Apple devices only (providers.FCMviaAPNs). The
// same sender then sends to Android devices as usual, refuses iOS devices
// without a request (a probe's excepted), and leaves "fcm" unhalted.
// (Before, it halted all of the app's FCM: its Android devices were held
// too, and a probe answered by one lifted the halt for the next iOS send
// to halt again.)
func TestAPNsKeyRefusedHaltsOnlyFCMSendsToApple(t *testing.T) {
	for _, code := range []string{"THIRD_PARTY_AUTH_ERROR", "APNS_AUTH_ERROR"} {
		t.Run(code, func(t *testing.T) {
			sim, acct := startSim(t, nil)
			reg := prometheus.NewRegistry()
			halt, err := providers.NewHalt(nil, reg)
			if err != nil {
				t.Fatal(err)
			}
			s := newSender(t, sim, acct, func(c *fcm.Config) { c.Halt = halt; c.App = "shop" })
			sim.SetTokenRule("ios-refused", fcmsim.Rule{Status: 401, Code: code, Message: "Auth error from APNS or Web Push Service"})
			m := iosNote()
			m.Token = "ios-refused"
			if r := s.Send(context.Background(), m, 1); r.Outcome != providers.CredentialFailure || r.Reason != code || errors.Is(r.Err, providers.ErrHalted) {
				t.Fatalf("iOS send refused by Apple: %+v", r)
			}
			if info, halted := halt.Halted("shop", providers.FCMviaAPNs); !halted || info.Reason != code {
				t.Fatalf("shop's FCM sends through APNs: %+v %v, want halted for %s", info, halted, code)
			}
			if info, halted := halt.Halted("shop", "fcm"); halted {
				t.Fatalf("the APNs key's refusal halted all of shop's FCM: %+v", info)
			}
			if v, ok := haltedGauge(t, reg, "shop", providers.FCMviaAPNs); v != 1 || !ok {
				t.Errorf("pushlane_provider_app_halted{shop,%s} = %v (%v), want 1", providers.FCMviaAPNs, v, ok)
			}
			if v, _ := haltedGauge(t, reg, "shop", "fcm"); v != 0 {
				t.Errorf("pushlane_provider_app_halted{shop,fcm} = %v, want 0", v)
			}

			requests := sim.Counts().Requests
			a := note()
			a.Token = "android-1"
			if r := s.Send(context.Background(), a, 1); r.Outcome != providers.Delivered {
				t.Fatalf("Android send while the APNs key is refused: %+v", r)
			}
			if n := sim.AcceptedFor("android-1"); n != 1 {
				t.Errorf("android-1 accepted %d times, want 1", n)
			}
			i := iosNote()
			i.Token = "ios-2"
			r := s.Send(context.Background(), i, 1)
			if r.Outcome != providers.CredentialFailure || !errors.Is(r.Err, providers.ErrHalted) || !strings.Contains(r.Err.Error(), providers.FCMviaAPNs) {
				t.Fatalf("iOS send during the halt: %+v, want refused by the halt of FCM through APNs", r)
			}
			if n := sim.Counts().Requests - requests; n != 1 {
				t.Errorf("%d requests reached FCM after the halt, want the Android send's 1", n)
			}
			// A probe's send goes to Google; it leaves the halt as it is.
			if r := s.Send(providers.WithProbe(context.Background()), i, 1); r.Outcome != providers.Delivered {
				t.Fatalf("probe to ios-2: %+v, want delivered", r)
			}
			if _, halted := halt.Halted("shop", providers.FCMviaAPNs); !halted {
				t.Error("the sender lifted the halt itself")
			}
		})
	}
}

// A refused service account is refused for every device, an iOS one
// included: it halts all of the app's FCM ("fcm"), not only its sends
// through APNs, and the app's Android sends are then refused too.
func TestServiceAccountRefusedOnAnIOSDeviceHaltsAllFCM(t *testing.T) {
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
	m := iosNote()
	m.Token = "ios-1"
	if r := s.Send(context.Background(), m, 1); r.Outcome != providers.CredentialFailure || errors.Is(r.Err, providers.ErrHalted) {
		t.Fatalf("iOS send with a refused service account: %+v", r)
	}
	if _, halted := halt.Halted("shop", "fcm"); !halted {
		t.Fatal("a refused service account did not halt shop's FCM")
	}
	if _, halted := halt.Halted("shop", providers.FCMviaAPNs); halted {
		t.Error("a refused service account halted shop's sends through APNs as if the APNs key were refused")
	}
	a := note()
	a.Token = "android-1"
	if r := s.Send(context.Background(), a, 1); !errors.Is(r.Err, providers.ErrHalted) {
		t.Fatalf("Android send while the service account is refused: %+v, want refused by the halt", r)
	}
}

func TestHaltKey(t *testing.T) {
	for _, c := range []struct {
		platform, reason, want string
	}{
		{providers.PlatformIOS, "THIRD_PARTY_AUTH_ERROR", providers.FCMviaAPNs},
		{providers.PlatformIOS, "APNS_AUTH_ERROR", providers.FCMviaAPNs},
		{providers.PlatformIOS, "UNAUTHENTICATED", "fcm"},
		{providers.PlatformIOS, "PERMISSION_DENIED", "fcm"},
		{providers.PlatformIOS, "oauth:invalid_grant", "fcm"},
		{providers.PlatformAndroid, "THIRD_PARTY_AUTH_ERROR", "fcm"},
		{providers.PlatformWeb, "THIRD_PARTY_AUTH_ERROR", "fcm"},
		{providers.PlatformAndroid, "PERMISSION_DENIED", "fcm"},
	} {
		if got := fcm.HaltKey(c.platform, c.reason); got != c.want {
			t.Errorf("HaltKey(%s, %s) = %q, want %q", c.platform, c.reason, got, c.want)
		}
	}
}
