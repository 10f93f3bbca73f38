package dispatcher

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushlane/pushlane/pipeline/dispatcher/dispatchtest"
	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/schemas"
)

// lockedBuffer is a bytes.Buffer that senders' goroutines and the test
// may use at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// registryDispatcher is twoProviderDispatcher with a senders' registry
// that logs to the returned buffer and registers its gauge on the
// returned registry.
func registryDispatcher(t *testing.T, store Store) (d *Dispatcher, ios, android *dispatchtest.Sender, logs *lockedBuffer, reg *prometheus.Registry) {
	t.Helper()
	d, ios, android, _ = twoProviderDispatcher(t, store)
	logs = &lockedBuffer{}
	reg = prometheus.NewRegistry()
	halt, err := providers.NewHalt(slog.New(slog.NewJSONHandler(logs, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	d.halt, ios.Halt, android.Halt = halt, halt, halt
	return d, ios, android, logs, reg
}

// haltedGauge returns the sum of pushlane_provider_app_halted over the
// series of app, and whether there is one. It reports through its result,
// not t: the sampling goroutine calls it.
func haltedGauge(reg prometheus.Gatherer, app string) (float64, error) {
	mfs, err := reg.Gather()
	if err != nil {
		return 0, err
	}
	var sum float64
	seen := false
	for _, mf := range mfs {
		if mf.GetName() != "pushlane_provider_app_halted" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "app" && l.GetValue() == app {
					sum += m.GetGauge().GetValue()
					seen = true
				}
			}
		}
	}
	if !seen {
		return 0, errors.New("no pushlane_provider_app_halted series of " + app)
	}
	return sum, nil
}

// sampleGauge reads app's halted gauge every millisecond until the
// returned stop is called, which returns the lowest value read and how
// many reads there were.
func sampleGauge(t *testing.T, reg prometheus.Gatherer, app string) (stop func() (low float64, reads int)) {
	t.Helper()
	done := make(chan struct{})
	var wg sync.WaitGroup
	low, reads := 1e9, 0
	var firstErr error
	wg.Go(func() {
		for {
			v, err := haltedGauge(reg, app)
			if err != nil && firstErr == nil {
				firstErr = err
			}
			low, reads = min(low, v), reads+1
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
		}
	})
	return func() (float64, int) {
		close(done)
		wg.Wait()
		if firstErr != nil {
			t.Error(firstErr)
		}
		return low, reads
	}
}

// makeProbeDue makes app's probe due now in store.
func makeProbeDue(t *testing.T, store Store, app string) {
	t.Helper()
	if ok, err := store.ClaimProbe(context.Background(), app, time.Now().Add(24*time.Hour), time.Now().Add(-time.Second)); err != nil || !ok {
		t.Fatalf("probe of %s not made due: %v %v", app, ok, err)
	}
}

// App app1 is halted because APNs refused its key. For the whole halt,
// and through its probes, the halt stands where operators and the APNs
// sender look: pushlane_provider_app_halted of app1 reads 1, the APNs
// sender refuses without asking Apple, and nothing logs "app resumed";
// meanwhile app1's Android batch is sent through FCM, and a refused probe
// raises no second alert. Only the probe that APNs answers lifts it.
// (Before, the registry was per app: to let the FCM sends through, the
// dispatcher opened it, so the gauge read 0, "app resumed" was logged
// with nothing fixed, and the APNs sender sent again; each probe opened
// it too, and alerted again when refused.)
func TestHaltOfAPNsStandsWhileFCMSends(t *testing.T) {
	store := NewMemStore()
	d, ios, android, logs, reg := registryDispatcher(t, store)
	ctx := context.Background()
	ios.SetRule(refusedKey)

	iosRec := platformRecord(t, "I", 0, repeat(schemas.PlatformIOS, 3)...)
	if ok := d.handle(ctx, iosRec, make(chan struct{}, 1)); !ok {
		t.Fatal("handle did not report the refused iOS batch done")
	}
	if parked, _ := store.ListParked(ctx, time.Time{}, "", 10); len(parked) != 1 || parked[0].Reason != ParkHalted {
		t.Fatalf("parked: %+v, want I, halted", parked)
	}
	if halts, _ := store.Halts(ctx); len(halts) != 1 || halts[0].Provider != ProviderAPNs {
		t.Fatalf("halts: %+v, want app1's APNs halt", halts)
	}
	refusedByApple := len(ios.Sends())
	stopSampling := sampleGauge(t, reg, "app1")

	// The Android batch, in three chunks, and a park pass's sync of the
	// halts meanwhile (it must not halt or lift anything).
	if ok := d.handle(ctx, platformRecord(t, "A", 1, repeat(schemas.PlatformAndroid, 25)...), make(chan struct{}, 1)); !ok {
		t.Fatal("handle did not report the Android batch done")
	}
	d.syncHalts(ctx)
	if devices, dup := android.Devices(); devices != 25 || dup != 0 {
		t.Errorf("FCM delivered %d devices, %d twice; want 25, 0", devices, dup)
	}
	if p, _ := store.Progress(ctx, "A"); !p.Finished {
		t.Error("the Android batch is not finished")
	}
	// The APNs sender itself refuses app1's sends, without asking Apple.
	r := ios.Send(ctx, &providers.Message{Token: "direct", Platform: providers.PlatformIOS}, 1)
	if !errors.Is(r.Err, providers.ErrHalted) || len(ios.Sends()) != refusedByApple {
		t.Errorf("APNs send during the halt: %+v, %d sends reached Apple (want %d)", r, len(ios.Sends()), refusedByApple)
	}

	// A probe, refused: the halt stands, with no second alert.
	makeProbeDue(t, store, "app1")
	beforeProbe := len(ios.Sends())
	if ok := d.handle(ctx, iosRec, make(chan struct{}, 1)); !ok {
		t.Fatal("handle did not report the probing batch done")
	}
	if n := len(ios.Sends()) - beforeProbe; n != 1 {
		t.Errorf("%d sends reached Apple during the probe, want its one", n)
	}
	low, reads := stopSampling()
	if low != 1 {
		t.Errorf("pushlane_provider_app_halted of app1 fell to %v during the halt (%d reads), want 1 throughout", low, reads)
	}
	if v := dispatchtest.MetricValue(t, reg, "pushlane_provider_app_halted", "app", "app1", "provider", ProviderAPNs); v != 1 {
		t.Errorf("pushlane_provider_app_halted{app1,apns} = %v, want 1", v)
	}
	if n := strings.Count(logs.String(), `"msg":"app resumed"`); n != 0 {
		t.Errorf("%d \"app resumed\" lines while app1 stays halted:\n%s", n, logs)
	}
	if n := strings.Count(logs.String(), `"level":"ERROR+4"`); n != 1 {
		t.Errorf("%d alert lines, want the first refusal's 1:\n%s", n, logs)
	}

	// APNs takes the key again: the next probe lifts the halt, and the
	// batch is sent.
	ios.SetRule(nil)
	makeProbeDue(t, store, "app1")
	if ok := d.handle(ctx, iosRec, make(chan struct{}, 1)); !ok {
		t.Fatal("handle did not report the lifted batch done")
	}
	if p, _ := store.Progress(ctx, "I"); !p.Finished || p.Done.Count() != 3 {
		t.Errorf("progress of I: finished %v, %d done; want finished with 3", p.Finished, p.Done.Count())
	}
	if v, _ := haltedGauge(reg, "app1"); v != 0 {
		t.Errorf("pushlane_provider_app_halted of app1 = %v after the probe succeeded, want 0", v)
	}
	if n := strings.Count(logs.String(), `"msg":"app resumed"`); n != 1 || !strings.Contains(logs.String(), `"provider":"apns"`) {
		t.Errorf("want one \"app resumed\" line, of APNs:\n%s", logs)
	}
}

// A halt another instance recorded is read into the senders' registry by
// a park pass and held there through the following ones, whatever this
// instance sends through the app's other provider meanwhile; when the
// row is deleted (an operator lifts the halt), the next pass lifts it.
func TestSyncedHaltStandsUntilItsRowGoes(t *testing.T) {
	store := NewMemStore()
	d, _, android, logs, reg := registryDispatcher(t, store)
	ctx := context.Background()
	past := time.Now().Add(-time.Minute)
	if err := store.SetHalt(ctx, Halt{App: "app1", Provider: ProviderAPNs, Reason: "BadCertificate", Since: past, ProbeAt: past.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	d.syncHalts(ctx)
	if _, halted := d.halt.Halted("app1", ProviderAPNs); !halted {
		t.Fatal("the stored APNs halt is not in the senders' registry")
	}
	if _, halted := d.halt.Halted("app1", ProviderFCM); halted {
		t.Fatal("the stored APNs halt halted FCM in the senders' registry")
	}
	for k := range 3 {
		if ok := d.handle(ctx, platformRecord(t, "A"+string(rune('0'+k)), int64(k), repeat(schemas.PlatformAndroid, 5)...), make(chan struct{}, 1)); !ok {
			t.Fatal("handle did not report the Android batch done")
		}
		d.syncHalts(ctx)
		if v := dispatchtest.MetricValue(t, reg, "pushlane_provider_app_halted", "app", "app1", "provider", ProviderAPNs); v != 1 {
			t.Fatalf("pushlane_provider_app_halted{app1,apns} = %v after Android batch %d, want 1", v, k)
		}
	}
	if devices, _ := android.Devices(); devices != 15 {
		t.Errorf("FCM delivered %d devices, want 15", devices)
	}
	if strings.Contains(logs.String(), "app resumed") {
		t.Errorf("\"app resumed\" while the row stands:\n%s", logs)
	}
	if err := store.ClearHalt(ctx, "app1"); err != nil {
		t.Fatal(err)
	}
	d.syncHalts(ctx)
	if l := d.halt.List(); len(l) != 0 {
		t.Errorf("registry after the row was deleted: %+v", l)
	}
	if d.appHalted("app1") {
		t.Error("this dispatcher still sees app1 halted")
	}
	if v := dispatchtest.MetricValue(t, reg, "pushlane_provider_app_halted", "app", "app1", "provider", ProviderAPNs); v != 0 {
		t.Errorf("pushlane_provider_app_halted{app1,apns} = %v after the lift, want 0", v)
	}
}

// App app1 is halted for APNs, and FCM refuses its service account too.
// That refusal halts FCM in this instance's registry only (the store keeps
// the first provider per app): the app's Android batches are then parked
// without a send, and claim no probe (the probe tries APNs). The APNs
// probe that succeeds lifts both: nothing would ever probe or lift the
// FCM halt otherwise, and FCM's next refusal records it anew.
func TestRefusalOfTheOtherProviderIsLiftedWithTheHalt(t *testing.T) {
	store := NewMemStore()
	d, ios, android, _, _ := registryDispatcher(t, store)
	ctx := context.Background()
	haltWithProbeDue(t, d, store)
	if _, err := store.ClaimProbe(ctx, "app1", time.Now(), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err) // not due: the Android batches must not probe
	}
	var fcmBroken atomic.Bool
	fcmBroken.Store(true)
	android.SetRule(func(string, int) providers.Result {
		if fcmBroken.Load() {
			return providers.Result{Outcome: providers.CredentialFailure, Status: 403, Reason: "PERMISSION_DENIED"}
		}
		return providers.Result{Outcome: providers.Delivered, Status: 200}
	})

	a1 := platformRecord(t, "A1", 0, repeat(schemas.PlatformAndroid, 4)...)
	if ok := d.handle(ctx, a1, make(chan struct{}, 1)); !ok {
		t.Fatal("handle did not report A1 done")
	}
	if _, halted := d.halt.Halted("app1", ProviderFCM); !halted {
		t.Fatal("FCM's refusal did not halt FCM in the registry")
	}
	if halts, _ := store.Halts(ctx); len(halts) != 1 || halts[0].Provider != ProviderAPNs {
		t.Fatalf("halts: %+v, want app1's APNs halt, kept", halts)
	}
	sent := len(android.Sends())
	a2 := platformRecord(t, "A2", 1, repeat(schemas.PlatformAndroid, 4)...)
	if ok := d.handle(ctx, a2, make(chan struct{}, 1)); !ok {
		t.Fatal("handle did not report A2 done")
	}
	if n := len(android.Sends()); n != sent {
		t.Errorf("%d sends of A2 reached FCM while FCM is halted here, want none", n-sent)
	}
	if parked, _ := store.ListParked(ctx, time.Time{}, "", 10); len(parked) != 2 {
		t.Fatalf("parked: %+v, want A1 and A2", parked)
	}
	if _, probing := d.probing["app1"]; probing {
		t.Error("an Android batch claimed the APNs halt's probe")
	}

	// APNs and FCM work again; the APNs probe lifts both halts.
	fcmBroken.Store(false)
	makeProbeDue(t, store, "app1")
	if ok := d.handle(ctx, platformRecord(t, "I", 2, schemas.PlatformIOS), make(chan struct{}, 1)); !ok {
		t.Fatal("handle did not report the probing batch done")
	}
	if devices, _ := ios.Devices(); devices != 1 {
		t.Fatalf("APNs delivered %d devices, want the probe's 1", devices)
	}
	if l := d.halt.List(); len(l) != 0 {
		t.Errorf("registry after the probe succeeded: %+v", l)
	}
	for _, rec := range []struct {
		id  string
		off int64
	}{{"A1", 0}, {"A2", 1}} {
		if ok := d.handle(ctx, platformRecord(t, rec.id, rec.off, repeat(schemas.PlatformAndroid, 4)...), make(chan struct{}, 1)); !ok {
			t.Fatalf("handle did not report %s done", rec.id)
		}
	}
	if devices, dup := android.Devices(); devices != 8 || dup != 0 {
		t.Errorf("FCM delivered %d devices, %d twice; want 8, 0", devices, dup)
	}
}

// blockingHalts is a store whose Halts, once armed, says it is reading and
// waits for release before it answers (with what the store held when asked).
type blockingHalts struct {
	Store
	armed            atomic.Bool
	reading, release chan struct{}
}

func (b *blockingHalts) Halts(ctx context.Context) ([]Halt, error) {
	hs, err := b.Store.Halts(ctx)
	if b.armed.CompareAndSwap(true, false) {
		close(b.reading)
		<-b.release
	}
	return hs, err
}

// A park pass that read the halt's row just before a probe here lifted it
// applied the row after the lift: the registry halted again, with the row
// gone and the halt forgotten here, so nothing lifted it ever after and the
// app's sends through that provider were refused for good. The lift now
// waits for the pass in flight.
func TestProbeLiftIsNotUndoneByAParkPassInFlight(t *testing.T) {
	store := &blockingHalts{Store: NewMemStore(), reading: make(chan struct{}), release: make(chan struct{})}
	d, _, _, _, reg := registryDispatcher(t, store)
	ctx := context.Background()
	haltWithProbeDue(t, d, store)
	until, ok := d.claimProbe(ctx, "app1")
	if !ok {
		t.Fatal("no probe claim")
	}
	j := &job{b: &schemas.Batch{App: "app1"}, probe: true, probeUntil: until}

	store.armed.Store(true)
	passDone := make(chan struct{})
	go func() { d.syncHalts(ctx); close(passDone) }()
	<-store.reading // the pass has read the row
	probeDone := make(chan struct{})
	go func() { d.probeDone(j, false); close(probeDone) }()
	time.Sleep(100 * time.Millisecond) // the probe's lift, unless it waits for the pass
	close(store.release)
	<-passDone
	<-probeDone

	if l := d.halt.List(); len(l) != 0 {
		t.Errorf("registry after the probe succeeded: %+v, want empty", l)
	}
	if v := dispatchtest.MetricValue(t, reg, "pushlane_provider_app_halted", "app", "app1", "provider", ProviderAPNs); v != 0 {
		t.Errorf("pushlane_provider_app_halted{app1,apns} = %v, want 0", v)
	}
	if d.appHalted("app1") {
		t.Error("this dispatcher still sees app1 halted")
	}
	if hs, _ := store.Store.Halts(ctx); len(hs) != 0 {
		t.Errorf("stored halts after the probe: %+v", hs)
	}
}
