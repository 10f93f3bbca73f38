package dispatcher_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/pushlane/pushlane/pipeline/dispatcher"
	"github.com/pushlane/pushlane/pipeline/dispatcher/dispatchtest"
	"github.com/pushlane/pushlane/providers/fcm"
	"github.com/pushlane/pushlane/providers/fcmsim"
	"github.com/pushlane/pushlane/schemas"
)

// simFCM is a real FCM sender of app against the FCM simulator (its
// default token rules), told about halts through the harness's registry.
func (h *harness) simFCM(app string) (*fcm.Sender, *fcmsim.Server) {
	h.t.Helper()
	acct, err := fcmsim.NewTestServiceAccount(app, "")
	if err != nil {
		h.t.Fatal(err)
	}
	sim, err := fcmsim.New(fcmsim.Config{Accounts: map[string]fcmsim.Account{acct.ClientEmail: acct.Account()}})
	if err != nil {
		h.t.Fatal(err)
	}
	if err := sim.Start("127.0.0.1:0"); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { _ = sim.Close() })
	at, err := sim.IssueAccessToken(acct.ClientEmail)
	if err != nil {
		h.t.Fatal(err)
	}
	s, err := fcm.New(fcm.Config{App: app, ProjectID: app, Endpoint: sim.URL(), RootCAs: sim.CertPool(),
		TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: at, Expiry: time.Now().Add(time.Hour)}),
		Halt:        h.halt}, nil, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { _ = s.Close() })
	return s, sim
}

// apnsKeyRefused gives b's iOS devices tokens the FCM simulator answers
// with THIRD_PARTY_AUTH_ERROR (prefix apnsauth): Apple refusing the APNs
// key of the Firebase project, which every iOS device sent through FCM
// meets and no Android device does.
func apnsKeyRefused(b *schemas.Batch) {
	for i := range b.Devices {
		if b.Devices[i].Platform == schemas.PlatformIOS {
			b.Devices[i].Token = "apnsauth-" + b.Devices[i].Token
		}
	}
}

// An app that sends iOS through FCM, whose Firebase project's APNs key
// Apple refuses (THIRD_PARTY_AUTH_ERROR on every iOS device): a mixed
// batch's Android devices are delivered, each once, and its iOS devices
// held without a result; an Android-only campaign is sent meanwhile;
// through several probe intervals the halt stands, of the app's sends
// through APNs only, and a held batch whose first devices are Android
// probes with its iOS device, so no Android delivery lifts it. Once the
// key works, every device is delivered exactly once. (Before, the refusal
// halted all of the app's FCM: the Android campaign was parked, a probe
// delivered an Android device and lifted the halt, and the next iOS
// device halted the app again, every probe interval.)
func TestDispatchAPNsKeyRefusedThroughFCMHoldsOnlyIOS(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 1, 2, nil)
	s, sim := h.simFCM("app1")
	apps := map[string]dispatcher.App{"app1": {FCM: s, Concurrency: 10}}
	h.start(dispatchtest.UniqueName("disp"), apps, nil)

	mixed := batch("m1", "c1", "app1", 10, time.Now()) // one chunk: 5 iOS, 5 Android
	apnsKeyRefused(&mixed)
	h.write(mixed)
	deadline := time.Now().Add(20 * time.Second)
	for len(h.halt.List()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("app1 not halted after the APNs key was refused")
		}
		time.Sleep(20 * time.Millisecond)
	}
	androidOnly := batch("a1", "c2", "app1", 20, time.Now())
	for i := range androidOnly.Devices {
		androidOnly.Devices[i].Platform = schemas.PlatformAndroid
	}
	h.write(androidOnly)
	heldMixed := batch("p1", "c3", "app1", 4, time.Now()) // Android first, then iOS
	for i := range heldMixed.Devices {
		heldMixed.Devices[i].Platform = schemas.PlatformIOS
		if i < 2 {
			heldMixed.Devices[i].Platform = schemas.PlatformAndroid
		}
	}
	apnsKeyRefused(&heldMixed)
	h.write(heldMixed)

	// Probes run every second (HaltProbeInterval in the harness): read
	// for 3.5 s, through several. Due: the mixed batch's 5 Android devices
	// and the Android campaign's 20, nothing else.
	rs := h.readResults(26, 3500*time.Millisecond)
	if len(rs) != 25 {
		t.Errorf("%d results while the APNs key is refused, want 25 (m1's Android devices and a1's)", len(rs))
	}
	for tok, x := range dispatchtest.ByToken(rs) {
		if strings.HasPrefix(tok, "apnsauth-") || x[0].BatchID == "p1" {
			t.Errorf("%s: %+v while the APNs key is refused, want no result (held)", tok, x)
			continue
		}
		if len(x) != 1 || x[0].Outcome != schemas.OutcomeDelivered || x[0].Platform != schemas.PlatformAndroid {
			t.Errorf("%s: %+v, want delivered once", tok, x)
		}
	}
	if hs, err := h.store.Halts(context.Background()); err != nil || len(hs) != 1 || hs[0].Provider != dispatcher.ProviderFCMviaAPNs {
		t.Fatalf("halts after 3.5 s of probes = %+v, %v; want app1's %s halt", hs, err, dispatcher.ProviderFCMviaAPNs)
	}
	if _, halted := h.halt.Halted("app1", dispatcher.ProviderFCM); halted {
		t.Error("the APNs key's refusal halted all of app1's FCM")
	}
	for _, d := range heldMixed.Devices[:2] {
		if n := sim.AcceptedFor(d.Token); n != 0 {
			t.Errorf("%s (Android, in a held batch) delivered %d times during the halt: a probe on the wrong device", d.Token, n)
		}
	}

	// The key works again: the next probe lifts the halt, and the held
	// devices are sent.
	for _, b := range []schemas.Batch{mixed, heldMixed} {
		for _, d := range b.Devices {
			if d.Platform == schemas.PlatformIOS {
				sim.SetTokenRule(d.Token, fcmsim.Rule{})
			}
		}
	}
	rs = h.readResults(34, 30*time.Second)
	if len(rs) != 34 {
		t.Fatalf("%d results after the APNs key works again, want 34", len(rs))
	}
	for tok, x := range dispatchtest.ByToken(rs) {
		if len(x) != 1 || x[0].Outcome != schemas.OutcomeDelivered || x[0].Provider != dispatcher.ProviderFCM {
			t.Errorf("%s: %+v, want delivered once through FCM", tok, x)
		}
	}
	for _, b := range []schemas.Batch{mixed, androidOnly, heldMixed} {
		for _, d := range b.Devices {
			if n := sim.AcceptedFor(d.Token); n != 1 {
				t.Errorf("%s (%s) accepted %d times by FCM, want 1", d.Token, d.Platform, n)
			}
		}
	}
	if hs, _ := h.store.Halts(context.Background()); len(hs) != 0 {
		t.Errorf("halts after the probe succeeded: %+v", hs)
	}
}
