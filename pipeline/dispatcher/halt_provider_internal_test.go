package dispatcher

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/pipeline/delay"
	"github.com/pushlane/pushlane/pipeline/dispatcher/dispatchtest"
	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/schemas"
)

// twoProviderDispatcher is testDispatcher with app1's iOS devices going to
// one fake (APNs) and its Android devices to another (FCM), both told
// about halts through the dispatcher's registry, as the real senders are.
func twoProviderDispatcher(t *testing.T, store Store) (d *Dispatcher, ios, android *dispatchtest.Sender, reg *prometheus.Registry) {
	t.Helper()
	d, _, _ = testDispatcher(t, store, &stubControl{})
	ios, android = dispatchtest.NewSender("app1"), dispatchtest.NewSender("app1")
	ios.Halt, android.Halt = d.halt, d.halt
	d.apps["app1"] = App{APNS: ios, FCM: android, Concurrency: 4}
	reg = prometheus.NewRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	d.m = m
	return d, ios, android, reg
}

// platformRecord is batch id of app1 with one device per platform given
// (tokens id-t0, id-t1, ...), due now, at offset of partition 0.
func platformRecord(t *testing.T, id string, offset int64, platforms ...string) *kgo.Record {
	t.Helper()
	b := schemas.Batch{SchemaVersion: schemas.SchemaVersion, ID: id, CampaignID: "c1", CampaignVersion: 1, App: "app1",
		Attempt: 1, SendAt: time.Now().UTC(), Content: schemas.Content{Title: "Hello", Body: "World"}}
	for i, p := range platforms {
		b.Devices = append(b.Devices, schemas.BatchDevice{DeviceID: int64(i + 1), Token: fmt.Sprintf("%s-t%d", id, i), Platform: p})
	}
	v, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	r := delay.BatchRecord("ready", id, b.CampaignID, b.SendAt, time.Time{}, v)
	r.Partition, r.Offset = 0, offset
	return r
}

func repeat(p string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = p
	}
	return out
}

// An app halted because APNs refused its key still sends a batch of
// Android devices only, through FCM, whose credentials nothing refused:
// the batch is finished, not parked, and claims no probe (it has no device
// the probe could try). The APNs halt stays. (Before, every such batch
// claimed the probe, found no iOS device, gave the claim back and was
// parked again, until its expiry or for ever.)
func TestHaltOfOneProviderDoesNotHoldTheOther(t *testing.T) {
	store := NewMemStore()
	d, ios, android, reg := twoProviderDispatcher(t, store)
	haltWithProbeDue(t, d, store)

	if ok := d.handle(context.Background(), platformRecord(t, "A", 0, repeat(schemas.PlatformAndroid, 25)...), make(chan struct{}, 1)); !ok {
		t.Fatal("handle did not report the Android batch done")
	}
	if devices, dup := android.Devices(); devices != 25 || dup != 0 {
		t.Errorf("FCM delivered %d devices, %d twice; want 25, 0", devices, dup)
	}
	if n := len(ios.Sends()); n != 0 {
		t.Errorf("%d sends through APNs, want none", n)
	}
	if p, _ := store.Progress(context.Background(), "A"); !p.Finished || p.Done.Count() != 25 {
		t.Errorf("progress of A: finished %v, %d done; want finished with 25", p.Finished, p.Done.Count())
	}
	if parked, _ := store.ListParked(context.Background(), time.Time{}, "", 10); len(parked) != 0 {
		t.Errorf("parked: %+v, want nothing", parked)
	}
	if v := dispatchtest.MetricValue(t, reg, "pushlane_dispatcher_batches_total", "what", "sent"); v != 1 {
		t.Errorf("batches sent: %v, want 1", v)
	}
	if v := dispatchtest.MetricValue(t, reg, "pushlane_dispatcher_batches_total", "what", "parked"); v != 0 {
		t.Errorf("batches parked: %v, want 0", v)
	}
	if halts, _ := store.Halts(context.Background()); len(halts) != 1 || halts[0].Provider != ProviderAPNs {
		t.Errorf("halts after the Android batch: %+v, want app1's APNs halt", halts)
	}
	if !d.appHalted("app1") {
		t.Error("this dispatcher no longer sees app1 halted")
	}
	// The probe was not taken: it is still due for a batch with an iOS
	// device.
	if ok, _ := store.ClaimProbe(context.Background(), "app1", time.Now(), time.Now().Add(time.Minute)); !ok {
		t.Error("the probe cannot be claimed: the Android batch took it")
	}
}

// A batch with devices of both providers is held whole while the refused
// provider's devices wait: parked, nothing sent through either provider,
// when no probe is due (see the package documentation for why it is not
// split). With the probe due it probes with an iOS device.
func TestMixedBatchOfAHaltedAppIsHeldWhole(t *testing.T) {
	store := NewMemStore()
	d, ios, android, _ := twoProviderDispatcher(t, store)
	haltWithProbeDue(t, d, store)
	if _, err := store.ClaimProbe(context.Background(), "app1", time.Now(), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	rec := platformRecord(t, "M", 0, schemas.PlatformAndroid, schemas.PlatformAndroid, schemas.PlatformIOS)
	if ok := d.handle(context.Background(), rec, make(chan struct{}, 1)); !ok {
		t.Fatal("handle did not report the mixed batch done")
	}
	if n := len(ios.Sends()) + len(android.Sends()); n != 0 {
		t.Errorf("%d sends of a held batch, want none", n)
	}
	if parked, _ := store.ListParked(context.Background(), time.Time{}, "", 10); len(parked) != 1 || parked[0].Reason != ParkHalted {
		t.Fatalf("parked: %+v, want M, halted", parked)
	}

	// The probe due again, the APNs key still refused: the probe tries the
	// iOS device only, and the batch stays parked.
	ios.SetRule(refusedKey)
	if err := store.ClearHalt(context.Background(), "app1"); err != nil {
		t.Fatal(err)
	}
	haltWithProbeDue(t, d, store)
	if ok := d.handle(context.Background(), rec, make(chan struct{}, 1)); !ok {
		t.Fatal("handle did not report the probing batch done")
	}
	if sends := ios.Sends(); len(sends) != 1 || sends[0].Token != "M-t2" {
		t.Errorf("APNs sends %+v, want the probe's one, M-t2", sends)
	}
	if n := len(android.Sends()); n != 0 {
		t.Errorf("%d FCM sends of a held batch, want none", n)
	}
	if !d.appHalted("app1") {
		t.Error("app1 not halted after its probe was refused")
	}
}

// A batch of Android devices while the senders' registry holds an APNs
// halt that this instance has not yet recorded (APNs refused another
// batch's send, whose chunk is still finishing) is sent through FCM, and
// not parked: the registry is per provider, and its APNs halt refuses no
// FCM send. (Before, a registry refusal was a credential failure like the
// provider's own, and parked it; then, with the registry per app, the
// batch's sends were refused until the halt was known here and the
// dispatcher opened the registry for them.)
func TestRegistryRefusalOfTheOtherProviderDoesNotPark(t *testing.T) {
	store := NewMemStore()
	d, ios, android, _ := twoProviderDispatcher(t, store)
	d.halt.Halt("app1", ProviderAPNs, "BadCertificate", nil) // the APNs sender's, at its refusal

	if ok := d.handle(context.Background(), platformRecord(t, "R", 0, repeat(schemas.PlatformAndroid, 12)...), make(chan struct{}, 1)); !ok {
		t.Fatal("handle did not report the batch done")
	}
	if parked, _ := store.ListParked(context.Background(), time.Time{}, "", 10); len(parked) != 0 {
		t.Fatalf("parked: %+v, want nothing", parked)
	}
	if devices, dup := android.Devices(); devices != 12 || dup != 0 {
		t.Errorf("FCM delivered %d devices, %d twice; want 12, 0", devices, dup)
	}
	if p, _ := store.Progress(context.Background(), "R"); !p.Finished || p.Done.Count() != 12 {
		t.Errorf("progress of R: finished %v, %d done; want finished with 12", p.Finished, p.Done.Count())
	}
	if n := len(ios.Sends()); n != 0 {
		t.Errorf("%d sends through APNs, want none", n)
	}
	if _, halted := d.halt.Halted("app1", ProviderAPNs); !halted {
		t.Error("the Android batch lifted app1's APNs halt in the senders' registry")
	}
}

// A chunk cut before this instance saw the halt sends none of its devices
// of the refused provider: they keep no result, the other provider's are
// sent, and the batch, holding a device of the refused provider, is
// parked (the probe not being due).
func TestChunkCutBeforeTheHaltWithholdsTheRefusedProvider(t *testing.T) {
	store := NewMemStore()
	d, ios, android, _ := twoProviderDispatcher(t, store)
	rec := platformRecord(t, "W", 0, schemas.PlatformIOS, schemas.PlatformAndroid, schemas.PlatformIOS, schemas.PlatformAndroid)
	b, err := decodeBatch(rec.Value)
	if err != nil {
		t.Fatal(err)
	}
	j := &job{rec: rec, b: b, app: d.apps["app1"], lim: d.limits["app1"], saveCtx: context.Background(), saveClock: &saveClock{}}
	j.msgs = newMessages(b, j.app)
	idx := d.nextChunk(j) // before the halt: all four
	if len(idx) != 4 {
		t.Fatalf("chunk %v, want all 4 devices", idx)
	}
	haltWithProbeDue(t, d, store)
	if c, err := d.sendChunk(context.Background(), j, idx); err != nil || c.refused || c.blocked {
		t.Fatalf("sendChunk: %+v, %v", c, err)
	}
	if n := len(ios.Sends()); n != 0 {
		t.Errorf("%d sends through APNs after its halt, want none", n)
	}
	if devices, _ := android.Devices(); devices != 2 {
		t.Errorf("FCM delivered %d devices, want 2", devices)
	}
	if got := j.prog.Done.Count(); got != 2 || j.prog.Done.Has(0) || j.prog.Done.Has(2) {
		t.Errorf("done %d (iOS t0 %v, t2 %v), want the 2 Android devices only", got, j.prog.Done.Has(0), j.prog.Done.Has(2))
	}
	if !d.heldByHalt(j) {
		t.Error("the batch with its iOS devices pending is not held by the APNs halt")
	}
}

// refusedKey answers every send as APNs answers a refused provider token.
func refusedKey(string, int) providers.Result {
	return providers.Result{Outcome: providers.CredentialFailure, Status: 403, Reason: "InvalidProviderToken"}
}
