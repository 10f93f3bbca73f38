package dispatcher_test

import (
	"context"
	"testing"
	"time"

	"github.com/pushlane/pushlane/pipeline/dispatcher"
	"github.com/pushlane/pushlane/pipeline/dispatcher/dispatchtest"
	"github.com/pushlane/pushlane/schemas"
)

// App shop sends through APNs and FCM; APNs refuses its key and the app is
// halted for APNs. Its iOS batch leaves the parked set (it expires), and
// an Android-only campaign then runs: it is sent through FCM, whose
// credentials were never refused, each device once, while the APNs halt
// stays; an iOS batch is held, probes, and is sent once the key works.
// (Before, every Android batch claimed the probe, found no iOS
// device to probe with and was parked again: no FCM send, ever.)
func TestDispatchHaltHoldsOnlyTheRefusedProvider(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 1, 2, nil)
	ios, android := dispatchtest.NewSender("shop"), dispatchtest.NewSender("shop")
	ios.Halt, android.Halt = h.halt, h.halt
	broken := refuseCredentials(ios)
	apps := map[string]dispatcher.App{"shop": {APNS: ios, FCM: android, Concurrency: 10}}
	r := h.start(dispatchtest.UniqueName("disp"), apps, nil)

	first := batch("ios", "c-ios", "shop", 4, time.Now())
	for i := range first.Devices {
		first.Devices[i].Platform = schemas.PlatformIOS
	}
	first.ExpiresAt = time.Now().Add(3 * time.Second).UTC()
	h.write(first)
	// Refused, parked, then released at its expiry and closed out.
	rs := h.readResults(4, 20*time.Second)
	if len(rs) != 4 {
		t.Fatalf("%d results of the iOS batch, want its 4 expired", len(rs))
	}
	if n := dispatchtest.CountOutcome(t, rs, schemas.OutcomeExpired); n != 4 {
		t.Fatalf("%d of the iOS batch's devices expired, want 4", n)
	}
	if hs, err := h.store.Halts(context.Background()); err != nil || len(hs) != 1 || hs[0].Provider != dispatcher.ProviderAPNs {
		t.Fatalf("halts once the iOS batch expired: %+v, %v; want shop's APNs halt", hs, err)
	}
	iosSends := len(ios.Sends())

	var android1, android2 schemas.Batch
	for k, b := range []*schemas.Batch{&android1, &android2} {
		*b = batch([]string{"and1", "and2"}[k], "c-android", "shop", 20, time.Now())
		for i := range b.Devices {
			b.Devices[i].Platform = schemas.PlatformAndroid
		}
		h.write(*b)
	}
	rs = h.readResults(44, 20*time.Second)
	if len(rs) != 44 {
		t.Fatalf("%d results, want the 4 expired and the Android campaign's 40", len(rs))
	}
	for tok, x := range dispatchtest.ByToken(rs) {
		if x[0].CampaignID != "c-android" {
			continue
		}
		if len(x) != 1 || x[0].Outcome != schemas.OutcomeDelivered || x[0].Provider != dispatcher.ProviderFCM {
			t.Errorf("%s: %+v, want delivered once through FCM", tok, x)
		}
	}
	if d, dup := android.Devices(); d != 40 || dup != 0 {
		t.Errorf("FCM delivered %d devices, %d twice; want 40, 0", d, dup)
	}
	if n := len(ios.Sends()); n != iosSends {
		t.Errorf("%d more sends through APNs during the Android campaign, want none", n-iosSends)
	}
	if v := dispatchtest.WaitMetric(t, r.reg, 5*time.Second, 2, "pushlane_dispatcher_batches_total", "what", "sent"); v != 2 {
		t.Errorf("batches sent: %v, want the 2 Android ones", v)
	}
	// Nothing is held, but APNs still refuses: the halt stays for the
	// next iOS batch to probe.
	if hs, _ := h.store.Halts(context.Background()); len(hs) != 1 || hs[0].Provider != dispatcher.ProviderAPNs {
		t.Errorf("halts after the Android campaign: %+v, want shop's APNs halt", hs)
	}
	if parked, _ := h.store.ListParked(context.Background(), time.Time{}, "", 10); len(parked) != 0 {
		t.Errorf("parked after the Android campaign: %+v", parked)
	}

	// An iOS batch is held again, and probes (refused) while more Android
	// batches are sent beside it; once the key works, its probe lifts the
	// halt and it is sent.
	later := batch("ios2", "c-ios2", "shop", 3, time.Now())
	for i := range later.Devices {
		later.Devices[i].Platform = schemas.PlatformIOS
	}
	h.write(later)
	for k, id := range []string{"and3", "and4"} {
		b := batch(id, "c-android", "shop", 10, time.Now())
		for i := range b.Devices {
			b.Devices[i].Platform = schemas.PlatformAndroid
		}
		h.write(b)
		if k == 0 {
			time.Sleep(2500 * time.Millisecond) // probes every second, refused
		}
	}
	rs = h.readResults(64, 20*time.Second)
	if len(rs) != 64 {
		t.Fatalf("%d results, want 64 (the Android batches beside the held iOS one)", len(rs))
	}
	if n := len(ios.Sends()) - iosSends; n < 1 {
		t.Errorf("%d probes of the held iOS batch in 2.5 s, want some", n)
	}
	for _, x := range rs {
		if x.BatchID == "ios2" {
			t.Fatalf("result of the held iOS batch while APNs refuses: %+v", x)
		}
	}
	broken.Store(false)
	rs = h.readResults(67, 20*time.Second)
	if len(rs) != 67 {
		t.Fatalf("%d results after the APNs key works again, want 67", len(rs))
	}
	for tok, x := range dispatchtest.ByToken(rs) {
		if x[0].BatchID == "ios2" && (len(x) != 1 || x[0].Outcome != schemas.OutcomeDelivered || x[0].Provider != dispatcher.ProviderAPNs) {
			t.Errorf("%s: %+v, want delivered once through APNs", tok, x)
		}
	}
	if d, dup := android.Devices(); d != 60 || dup != 0 {
		t.Errorf("FCM delivered %d devices, %d twice; want 60, 0", d, dup)
	}
	if hs, _ := h.store.Halts(context.Background()); len(hs) != 0 {
		t.Errorf("halts after the probe succeeded: %+v", hs)
	}
}
