package dispatcher_test

import (
	"context"
	"testing"
	"time"

	"github.com/pushlane/pushlane/pipeline/dispatcher"
	"github.com/pushlane/pushlane/pipeline/dispatcher/dispatchtest"
	"github.com/pushlane/pushlane/schemas"
)

// An app whose APNs credentials are refused while FCM works: the probe of
// its halt must be an iOS device. A delivery through FCM says nothing about
// the APNs key; it lifted the halt, and the next iOS send halted the app
// again, every probe interval. Once the key works, the probe lifts it.
func TestDispatchProbeSendsToTheRefusedProvider(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 1, 2, nil)
	ios, android := dispatchtest.NewSender("app1"), dispatchtest.NewSender("app1")
	ios.Halt, android.Halt = h.halt, h.halt
	broken := refuseCredentials(ios)
	apps := map[string]dispatcher.App{"app1": {APNS: ios, FCM: android, Concurrency: 10}}
	h.start(dispatchtest.UniqueName("disp"), apps, nil)

	first := batch("p1", "c1", "app1", 3, time.Now()) // iOS only: halts the app
	for i := range first.Devices {
		first.Devices[i].Platform = schemas.PlatformIOS
	}
	h.write(first)
	deadline := time.Now().Add(20 * time.Second)
	for _, halted := h.halt.Halted("app1", dispatcher.ProviderAPNs); !halted; _, halted = h.halt.Halted("app1", dispatcher.ProviderAPNs) {
		if time.Now().After(deadline) {
			t.Fatal("app1 not halted after its APNs credentials were refused")
		}
		time.Sleep(20 * time.Millisecond)
	}
	mixed := batch("p2", "c1", "app1", 4, time.Now()) // Android first, then iOS
	for i := range mixed.Devices {
		mixed.Devices[i].Platform = schemas.PlatformIOS
		if i < 2 {
			mixed.Devices[i].Platform = schemas.PlatformAndroid
		}
	}
	h.write(mixed)
	// Probes run every second (HaltProbeInterval in the harness); the
	// halt must hold through several of them.
	time.Sleep(3500 * time.Millisecond)
	if hs, err := h.store.Halts(context.Background()); err != nil || len(hs) != 1 || hs[0].Provider == "" {
		t.Fatalf("halts after 3.5 s of probes = %+v, %v; want app1 still halted", hs, err)
	}
	if n := len(android.Sends()); n != 0 {
		t.Errorf("%d sends through FCM while the app was halted (a probe on the wrong provider)", n)
	}

	broken.Store(false)
	rs := h.readResults(7, 30*time.Second)
	if len(rs) != 7 {
		t.Fatalf("%d results after the APNs key works again, want 7", len(rs))
	}
	for tok, x := range dispatchtest.ByToken(rs) {
		if len(x) != 1 || x[0].Outcome != schemas.OutcomeDelivered {
			t.Errorf("%s: %+v", tok, x)
		}
	}
	if hs, _ := h.store.Halts(context.Background()); len(hs) != 0 {
		t.Errorf("halts after the probe succeeded: %+v", hs)
	}
}
