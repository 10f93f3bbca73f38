package dispatcher

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/pipeline/delay"
	"github.com/pushlane/pushlane/pipeline/dispatcher/dispatchtest"
	"github.com/pushlane/pushlane/providers/fcm"
	"github.com/pushlane/pushlane/providers/fcmsim"
	"github.com/pushlane/pushlane/schemas"
)

// fcmOnlyDispatcher is testDispatcher with app1 sending every device, iOS
// included, through a real FCM sender against the FCM simulator, told
// about halts through the dispatcher's registry.
func fcmOnlyDispatcher(t *testing.T, store Store) (*Dispatcher, *fcmsim.Server) {
	t.Helper()
	d, _, _ := testDispatcher(t, store, &stubControl{})
	s, sim := dispatchtest.FCMSender(t, "app1", fcmsim.Fault{}, func(c *fcm.Config) { c.Halt = d.halt })
	d.apps["app1"] = App{FCM: s, Concurrency: 4}
	return d, sim
}

// device is one device of tokenRecord's batch.
type device struct{ token, platform string }

// tokenRecord is batch id of app1 with devices, due now, at offset of
// partition 0.
func tokenRecord(t *testing.T, id string, offset int64, devices ...device) *kgo.Record {
	t.Helper()
	b := schemas.Batch{SchemaVersion: schemas.SchemaVersion, ID: id, CampaignID: "c1", CampaignVersion: 1, App: "app1",
		Attempt: 1, SendAt: time.Now().UTC(), Content: schemas.Content{Title: "Hello", Body: "World"}}
	for i, dev := range devices {
		b.Devices = append(b.Devices, schemas.BatchDevice{DeviceID: int64(i + 1), Token: dev.token, Platform: dev.platform})
	}
	v, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	r := delay.BatchRecord("ready", id, b.CampaignID, b.SendAt, time.Time{}, v)
	r.Partition, r.Offset = 0, offset
	return r
}

// An app sending iOS through FCM whose Firebase project's APNs key Apple
// refuses (THIRD_PARTY_AUTH_ERROR, on the iOS devices alone): only its
// FCM sends to iOS devices are halted (ProviderFCMviaAPNs). The refusing
// batch's Android devices are delivered and its iOS ones held (parked,
// without a result); an Android-only batch is sent and claims no probe;
// the probe tries an iOS device, never an Android one, however the held
// batch is ordered, so an Android delivery does not lift the halt. Once
// the key works, the probe lifts it and every device has been delivered
// exactly once. (Before, the refusal halted all of the app's FCM: the
// Android batch was parked too, and the probe sent the held batch's first
// FCM device, an Android one, whose delivery lifted the halt until the
// next iOS send halted the app again.)
func TestAPNsKeyRefusedThroughFCMHoldsOnlyIOSDevices(t *testing.T) {
	store := NewMemStore()
	d, sim := fcmOnlyDispatcher(t, store)
	ctx := context.Background()
	ios, android := schemas.PlatformIOS, schemas.PlatformAndroid
	first := []device{{"m-a0", android}, {"apnsauth-m-i0", ios}, {"m-a1", android}, {"apnsauth-m-i1", ios}, {"m-a2", android}, {"apnsauth-m-i2", ios}}
	mRec := tokenRecord(t, "M", 0, first...)
	if ok := d.handle(ctx, mRec, make(chan struct{}, 1)); !ok {
		t.Fatal("handle did not report the refused batch done")
	}
	for _, dev := range first {
		want := 0
		if dev.platform == android {
			want = 1
		}
		if n := sim.AcceptedFor(dev.token); n != want {
			t.Errorf("%s (%s) delivered %d times while the APNs key is refused, want %d", dev.token, dev.platform, n, want)
		}
	}
	if halts, _ := store.Halts(ctx); len(halts) != 1 || halts[0].Provider != ProviderFCMviaAPNs || halts[0].Reason != "THIRD_PARTY_AUTH_ERROR" {
		t.Fatalf("halts: %+v, want app1's %s halt for THIRD_PARTY_AUTH_ERROR", halts, ProviderFCMviaAPNs)
	}
	if _, halted := d.halt.Halted("app1", ProviderFCM); halted {
		t.Fatal("the APNs key's refusal halted all of app1's FCM in the senders' registry")
	}
	if parked, _ := store.ListParked(ctx, time.Time{}, "", 10); len(parked) != 1 || parked[0].BatchID != "M" || parked[0].Reason != ParkHalted {
		t.Fatalf("parked: %+v, want M, halted", parked)
	}
	if p, _ := store.Progress(ctx, "M"); p.Finished || p.Done.Count() != 3 {
		t.Errorf("progress of M: finished %v, %d done; want its 3 Android devices done, its iOS ones pending", p.Finished, p.Done.Count())
	}

	// An Android-only batch while the halt stands: sent, not parked, and
	// the probe, due, is left for a batch with an iOS device.
	makeProbeDue(t, store, "app1")
	var androidOnly []device
	for i := range 25 {
		androidOnly = append(androidOnly, device{"a-" + string(rune('a'+i)), android})
	}
	if ok := d.handle(ctx, tokenRecord(t, "A", 1, androidOnly...), make(chan struct{}, 1)); !ok {
		t.Fatal("handle did not report the Android batch done")
	}
	if p, _ := store.Progress(ctx, "A"); !p.Finished || p.Done.Count() != 25 {
		t.Errorf("progress of A: finished %v, %d done; want finished with 25", p.Finished, p.Done.Count())
	}
	for _, dev := range androidOnly {
		if n := sim.AcceptedFor(dev.token); n != 1 {
			t.Errorf("%s delivered %d times, want 1", dev.token, n)
		}
	}
	if _, probing := d.probing["app1"]; probing {
		t.Error("the Android batch claimed the probe")
	}

	// A held batch whose first device is Android probes with its iOS
	// device: refused again, the halt stands, and its Android devices
	// wait with it (held whole).
	held := []device{{"p-a0", android}, {"p-a1", android}, {"apnsauth-p-i0", ios}}
	pRec := tokenRecord(t, "P", 2, held...)
	if ok := d.handle(ctx, pRec, make(chan struct{}, 1)); !ok {
		t.Fatal("handle did not report the probing batch done")
	}
	if n := sim.AcceptedFor("p-a0") + sim.AcceptedFor("p-a1"); n != 0 {
		t.Errorf("%d Android devices of the held batch delivered during the halt, want none (the probe is an iOS device's)", n)
	}
	if halts, _ := store.Halts(ctx); len(halts) != 1 || halts[0].Provider != ProviderFCMviaAPNs {
		t.Fatalf("halts after the refused probe: %+v, want app1's %s halt", halts, ProviderFCMviaAPNs)
	}
	if parked, _ := store.ListParked(ctx, time.Time{}, "", 10); len(parked) != 2 {
		t.Fatalf("parked: %+v, want M and P", parked)
	}

	// The key works again: the next probe lifts the halt, and the held
	// batches are sent.
	for _, dev := range append(first, held...) {
		if dev.platform == ios {
			sim.SetTokenRule(dev.token, fcmsim.Rule{})
		}
	}
	makeProbeDue(t, store, "app1")
	if ok := d.handle(ctx, pRec, make(chan struct{}, 1)); !ok {
		t.Fatal("handle did not report P done")
	}
	if halts, _ := store.Halts(ctx); len(halts) != 0 {
		t.Fatalf("halts after the probe succeeded: %+v", halts)
	}
	if l := d.halt.List(); len(l) != 0 {
		t.Fatalf("registry after the probe succeeded: %+v", l)
	}
	if ok := d.handle(ctx, mRec, make(chan struct{}, 1)); !ok {
		t.Fatal("handle did not report M done")
	}
	for _, id := range []string{"M", "P"} {
		if p, _ := store.Progress(ctx, id); !p.Finished {
			t.Errorf("%s not finished", id)
		}
	}
	for _, dev := range append(append(first, held...), androidOnly...) {
		if n := sim.AcceptedFor(dev.token); n != 1 {
			t.Errorf("%s (%s) delivered %d times, want once", dev.token, dev.platform, n)
		}
	}
	if dup := sim.Duplicates(); len(dup) != 0 {
		t.Errorf("delivered more than once: %v", dup)
	}
}

// While an app's FCM is halted for its service account, a probe that
// tries an iOS device and meets THIRD_PARTY_AUTH_ERROR has been let in
// with the service account: the FCM halt is lifted (not kept until the
// APNs key works too, with the app's Android batches parked meanwhile),
// and the next iOS send halts the app's sends through APNs alone.
func TestFCMProbeAnsweredByTheAPNsKeyLiftsTheFCMHalt(t *testing.T) {
	store := NewMemStore()
	d, sim := fcmOnlyDispatcher(t, store)
	ctx := context.Background()
	past := time.Now().Add(-time.Minute)
	h := Halt{App: "app1", Provider: ProviderFCM, Reason: "PERMISSION_DENIED", Since: past, ProbeAt: past}
	if err := store.SetHalt(ctx, h); err != nil {
		t.Fatal(err)
	}
	d.halted["app1"] = h
	d.halt.Halt("app1", ProviderFCM, h.Reason, nil)

	rec := tokenRecord(t, "I", 0, device{"apnsauth-i0", schemas.PlatformIOS}, device{"i-a0", schemas.PlatformAndroid})
	if ok := d.handle(ctx, rec, make(chan struct{}, 1)); !ok {
		t.Fatal("handle did not report the probing batch done")
	}
	if _, halted := d.halt.Halted("app1", ProviderFCM); halted {
		t.Error("the FCM halt stands after FCM took the service account")
	}
	if n := sim.AcceptedFor("i-a0"); n != 0 {
		t.Errorf("i-a0 delivered %d times by the probe, want 0 (the probe is one device)", n)
	}
	// Released (nothing holds it in the store now), the batch's iOS send
	// halts the app's sends through APNs, recorded; its Android device goes.
	if ok := d.handle(ctx, rec, make(chan struct{}, 1)); !ok {
		t.Fatal("handle did not report the batch done")
	}
	if halts, _ := store.Halts(ctx); len(halts) != 1 || halts[0].Provider != ProviderFCMviaAPNs {
		t.Fatalf("halts: %+v, want app1's %s halt", halts, ProviderFCMviaAPNs)
	}
	if n := sim.AcceptedFor("i-a0"); n != 1 {
		t.Errorf("i-a0 delivered %d times, want 1", n)
	}
	if _, halted := d.halt.Halted("app1", ProviderFCM); halted {
		t.Error("app1's FCM halted again")
	}
}
