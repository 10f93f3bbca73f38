package dispatcher

import (
	"context"
	"maps"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/providers/fcm"
)

// haltedProvider returns the provider whose credentials app's halt is
// about (ProviderFCMviaAPNs for the APNs key in its Firebase project), and
// whether app is halted.
func (d *Dispatcher) haltedProvider(app string) (string, bool) {
	d.haltMu.Lock()
	defer d.haltMu.Unlock()
	h, ok := d.halted[app]
	return h.Provider, ok
}

// heldSet says which of an app's halts hold its sends back.
type heldSet struct{ apns, fcm, fcmViaAPNs bool }

// holds reports whether a send through provider to a device of platform
// must wait: a halt it needs the credentials of (needs) stands.
func (h heldSet) holds(provider, platform string) bool {
	return h.apns && needs(ProviderAPNs, provider, platform) ||
		h.fcm && needs(ProviderFCM, provider, platform) ||
		h.fcmViaAPNs && needs(ProviderFCMviaAPNs, provider, platform)
}

func (h heldSet) any() bool { return h.apns || h.fcm || h.fcmViaAPNs }

// needs reports whether a send through provider to a device of platform
// needs the credentials the halt of provider key is about: so that halt
// holds the send back, and its answer, a probe's, tells whether they work
// again. A send through FCM needs the app's service account, and one to
// an iOS device the APNs key in its Firebase project too
// (ProviderFCMviaAPNs); an Android device needs no APNs key, so its
// delivery says nothing of one: as the probe of that halt it lifted it,
// and the next iOS send halted the app again.
func needs(key, provider, platform string) bool {
	if key == ProviderFCMviaAPNs {
		return provider == ProviderFCM && platform == providers.PlatformIOS
	}
	return provider == key
}

// haltKey is the provider of the halt that the credential failure r of a
// send through provider to a device of platform puts the app under, as
// its sender names it in the registry: FCM refusing the APNs key in the
// Firebase project (THIRD_PARTY_AUTH_ERROR on an iOS device) halts only
// the app's sends through APNs, ProviderFCMviaAPNs (fcm.HaltKey); any
// other refusal halts the provider.
func haltKey(provider, platform string, r *providers.Result) string {
	if provider == ProviderFCM {
		return fcm.HaltKey(platform, r.Reason)
	}
	return provider
}

// refusalClearsProbed reports whether a probe of the halt of provider
// probed, answered with a refusal that halts provider refused, found the
// probed credentials working all the same: FCM refusing the APNs key has
// taken the service account, so an FCM halt is over (its lift, which
// lifts every halt of the app, lets the next iOS send record the APNs
// key's anew). A refused service account says nothing of the APNs key: a
// probe of that halt answered so stays refused.
func refusalClearsProbed(probed, refused string) bool {
	return probed == ProviderFCM && refused == ProviderFCMviaAPNs
}

// held returns the halts that hold app's sends back: the one in this
// instance's view (the store's, one provider per app), and any the
// senders' registry holds for it. The registry is asked too because it
// can know more, and earlier: a sender halts its provider at the
// provider's refusal, before the chunk ends and records it here; and a
// refusal by the app's other provider while the app is halted is kept
// only there (the store keeps the first provider). A provider halted
// there refuses every send but a probe's, so sending to it would only
// loop: it is held like the store's.
func (d *Dispatcher) held(app string) heldSet {
	d.haltMu.Lock()
	h, halted := d.halted[app]
	d.haltMu.Unlock()
	_, apnsHalted := d.halt.Halted(app, ProviderAPNs)
	_, fcmHalted := d.halt.Halted(app, ProviderFCM)
	_, viaAPNsHalted := d.halt.Halted(app, ProviderFCMviaAPNs)
	return heldSet{
		apns:       apnsHalted || halted && h.Provider == ProviderAPNs,
		fcm:        fcmHalted || halted && h.Provider == ProviderFCM,
		fcmViaAPNs: viaAPNsHalted || halted && h.Provider == ProviderFCMviaAPNs,
	}
}

// admit returns the sends of a chunk of j to make: those a halt of the
// app holds back (heldSet.holds) are withheld (their devices keep no
// result, and the batch is held at its next check). Only a chunk cut
// before this instance saw the halt has any. The halted provider's sender
// would refuse them too, but as credential failures that the send metrics
// count and the chunk's bookkeeping must tell from the provider's own
// refusals; withheld, they are simply not sent. The other provider's
// sends go as usual: its credentials were not refused, and the senders'
// registry, per provider, lets them through while the halt stands; so do
// FCM's sends to Android devices while only its sends through APNs are
// halted (ProviderFCMviaAPNs), which need no APNs key. A probe's one send
// is its halted provider's, let through the halt by its context (runSend).
func (d *Dispatcher) admit(j *job, jobs []*sendJob) []*sendJob {
	if j.probe {
		return jobs
	}
	held := d.held(j.b.App)
	if !held.any() {
		return jobs
	}
	kept := jobs[:0]
	for _, sj := range jobs {
		if !held.holds(sj.p.provider, sj.p.msg.Platform) {
			kept = append(kept, sj)
		}
	}
	return kept
}

// resumeApp lifts every provider of app in the senders' registry, once
// the app's halt is lifted (its probe succeeded, here or elsewhere, or an
// operator deleted its dispatch_halts row). The store keeps one provider
// per app, so a refusal by the app's other provider while it was halted
// is kept only in this registry, with nothing to probe it (a probe tries
// the stored provider) and nothing to lift it: kept past the stored halt,
// it would park that provider's batches until a restart. Lifted, the
// provider's next send asks it again, and a refusal then halts the app
// anew, recorded in the store this time.
func (d *Dispatcher) resumeApp(app string) {
	for _, h := range d.halt.List() {
		if h.App == app {
			d.halt.Resume(app, h.Provider)
		}
	}
}

// haltApp records a credential failure: the senders' registry (so the
// rest of the chunk fails fast without calling the provider), this
// instance's view, and the store (so every instance parks the app).
func (d *Dispatcher) haltApp(app, provider string, r *providers.Result) {
	now := time.Now()
	h := Halt{App: app, Provider: provider, Reason: r.Reason, Since: now, ProbeAt: now.Add(d.cfg.HaltProbeInterval)}
	if h.Reason == "" && r.Err != nil {
		h.Reason = r.Err.Error()
	}
	d.halt.Halt(app, provider, h.Reason, r.Err)
	d.haltMu.Lock()
	if _, ok := d.halted[app]; !ok {
		d.halted[app] = h
	}
	delete(d.probing, app)
	d.haltMu.Unlock()
	ctx, cancel := context.WithTimeout(d.bg, d.cfg.FinishTimeout)
	defer cancel()
	d.retry(ctx, "record halt of "+app, func(ctx context.Context) error { return d.store.SetHalt(ctx, h) })
}

// claimProbe tries to make the calling batch the probe of halted app: at
// most one dispatcher probes per HaltProbeInterval (the store arbitrates).
// The probe sends one device, its send marked as the probe's
// (providers.WithProbe): the halted provider's sender lets that one send
// through, and the halt stands meanwhile, in the registry and its gauge,
// for every other send.
func (d *Dispatcher) claimProbe(ctx context.Context, app string) (until time.Time, ok bool) {
	now := time.Now()
	until = now.Add(d.cfg.HaltProbeInterval)
	ok, err := d.store.ClaimProbe(ctx, app, now, until)
	if err != nil {
		d.log.Warn("halt probe not claimed", "app", app, "err", err)
		return time.Time{}, false
	}
	if !ok {
		return time.Time{}, false
	}
	d.haltMu.Lock()
	d.probing[app] = until
	d.haltMu.Unlock()
	d.log.Info("probing a halted app with one send", "app", app)
	return until, true
}

// endProbeLocked forgets j's probe claim in this instance's view, unless
// it is not j's any more (it lapsed and another batch claimed since): it
// reports whether it was j's.
func (d *Dispatcher) endProbeLocked(j *job) bool {
	j.probe = false
	if until, ok := d.probing[j.b.App]; !ok || !until.Equal(j.probeUntil) {
		return false
	}
	delete(d.probing, j.b.App)
	return true
}

// probeDone ends a probe: refused again, the app stays halted (haltApp ran
// already); otherwise the halt is lifted everywhere.
func (d *Dispatcher) probeDone(j *job, refused bool) {
	app := j.b.App
	if !refused {
		// A park pass reading the row meanwhile would apply it after the
		// lift below and re-halt the registry for good (the row gone,
		// nothing here to lift it again): the lift waits for the pass,
		// and a pass after it reads no row.
		d.syncMu.Lock()
		defer d.syncMu.Unlock()
		// The senders' registry first: a batch that starts once the halt
		// is gone from this instance's view must find its sends let
		// through, not refused by a registry still halted.
		d.resumeApp(app)
	}
	d.haltMu.Lock()
	d.endProbeLocked(j)
	if !refused {
		delete(d.halted, app)
	}
	d.haltMu.Unlock()
	if refused {
		d.log.Warn("halt probe refused again; app stays halted", "app", app)
		return
	}
	ctx, cancel := context.WithTimeout(d.bg, d.cfg.FinishTimeout)
	defer cancel()
	d.retry(ctx, "clear halt of "+app, func(ctx context.Context) error { return d.store.ClearHalt(ctx, app) })
	d.log.Info("halt probe succeeded; app resumed", "app", app)
}

// probeUnanswered ends a probe whose send the provider never answered: a
// stop came first, its campaign was cancelled or paused or its batch
// expired meanwhile, or its device had no provider. That says nothing of
// the credentials, so the app stays halted. With giveBack (the device was
// not tried) the claim goes back to the store, so the next probe (this
// owner's or another's) need not wait HaltProbeInterval for nothing; a
// device without a provider keeps it, so a batch of such devices does not
// claim, alert and give back once for each.
func (d *Dispatcher) probeUnanswered(j *job, giveBack bool) {
	app := j.b.App
	d.haltMu.Lock()
	d.endProbeLocked(j)
	d.haltMu.Unlock()
	if giveBack {
		// ClaimProbe moves ProbeAt back to now only while it is still
		// this claim's: no claim after it can end before until plus
		// HaltProbeInterval. The millisecond covers a column that rounds
		// until's digits up.
		ctx, cancel := context.WithTimeout(d.bg, 5*time.Second)
		if _, err := d.store.ClaimProbe(ctx, app, j.probeUntil.Add(time.Millisecond), time.Now()); err != nil {
			d.log.Warn("halt probe claim not given back; the next probe waits for it", "app", app, "err", err)
		}
		cancel()
	}
	d.log.Info("halt probe ended before its send; app stays halted", "app", app)
}

// parkLoop keeps this instance's halts in step with the store, and writes
// parked batches back to the ready topic once their reason clears (or they
// expire, or their campaign is cancelled: the dispatcher then writes their
// results). A halted app with a probe due gets one batch written back, for
// some dispatcher to probe with.
func (d *Dispatcher) parkLoop(ctx context.Context) {
	t := time.NewTicker(d.cfg.ParkInterval)
	defer t.Stop()
	lastProbeRelease := map[string]time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d.parkPass(ctx, lastProbeRelease)
	}
}

// parkedPage is how many parked batches one query lists.
const parkedPage = 1000

// parkPass looks at every parked batch once, a page at a time (a paused
// campaign of a million devices parks a thousand batches, and the ones
// parked after it must still be seen), and releases those whose reason
// cleared.
func (d *Dispatcher) parkPass(ctx context.Context, lastProbeRelease map[string]time.Time) {
	halts := d.syncHalts(ctx)
	counts := map[string]float64{ParkPaused: 0, ParkHalted: 0}
	probeReleased := map[string]bool{}
	checkedFresh, fresh := false, false
	var afterAt time.Time
	var afterID string
	for {
		parked, err := d.store.ListParked(ctx, afterAt, afterID, parkedPage)
		if err != nil {
			if ctx.Err() == nil {
				d.log.Warn("parked batches not listed", "err", err)
			}
			return
		}
		if len(parked) > 0 && !checkedFresh {
			// Decisions on pause and cancel need a view that is caught up.
			fctx, cancel := context.WithTimeout(ctx, d.cfg.ParkInterval)
			fresh = d.control.WaitFresh(fctx, time.Now().Add(-d.cfg.MaxStaleness)) == nil
			cancel()
			checkedFresh = true
		}
		now := time.Now()
		for _, p := range parked {
			counts[p.Reason]++
			release := false
			switch {
			case !p.ExpiresAt.IsZero() && !now.Before(p.ExpiresAt):
				release = true
			case !fresh:
			case d.control.Cancelled(p.CampaignID):
				release = true
			case p.Reason == ParkPaused:
				release = !d.control.Paused(p.CampaignID)
			case p.Reason == ParkHalted:
				h, halted := halts[p.App]
				switch {
				case !halted:
					release = true
				case !h.ProbeAt.After(now) && !probeReleased[p.App] &&
					now.Sub(lastProbeRelease[p.App]) >= d.cfg.HaltProbeInterval:
					release, probeReleased[p.App] = true, true
					lastProbeRelease[p.App] = now
				}
			}
			if release {
				d.release(ctx, p.BatchID)
			}
		}
		if len(parked) < parkedPage {
			break
		}
		last := parked[len(parked)-1]
		afterAt, afterID = last.ParkedAt, last.BatchID
	}
	for r, n := range counts {
		d.m.parked.WithLabelValues(r).Set(n)
	}
}

// syncHalts reads the store's halts into this instance's view and the
// senders' registry, and returns them by app.
func (d *Dispatcher) syncHalts(ctx context.Context) map[string]Halt {
	d.syncMu.Lock() // see probeDone
	defer d.syncMu.Unlock()
	start := time.Now()
	// Bounded: a probe that succeeded waits for this pass (syncMu), and a
	// stop or a rebalance waits for that probe's worker; a read hung on a
	// black-holed connection held them until the TCP timeout.
	rctx, cancel := context.WithTimeout(ctx, d.cfg.FinishTimeout)
	list, err := d.store.Halts(rctx)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			d.log.Warn("halts not read", "err", err)
		}
		d.haltMu.Lock()
		defer d.haltMu.Unlock()
		return maps.Clone(d.halted)
	}
	stored := make(map[string]Halt, len(list))
	for _, h := range list {
		stored[h.App] = h
	}
	d.haltMu.Lock()
	defer d.haltMu.Unlock()
	for app, until := range d.probing {
		if start.After(until) {
			delete(d.probing, app)
		}
	}
	// A halt seen here moments ago may not have been readable yet.
	settled := start.Add(-2 * d.cfg.ParkInterval)
	for app, h := range stored {
		if old, known := d.halted[app]; known && old.Provider != h.Provider && old.Since.Before(settled) {
			// The halt known here was lifted since, and the app halted
			// again for its other provider: the first provider's halt is
			// over (its probe succeeded, or an operator lifted it).
			d.halt.Resume(app, old.Provider)
		}
		d.halted[app] = h
		// Every send through the halted provider but a probe's is
		// refused for as long as the halt stands: a halt new here
		// (another instance's, or read at start) halts the registry, one
		// already there is left as it is (Halt does nothing, and does not
		// alert again).
		d.halt.Halt(app, h.Provider, h.Reason, nil)
	}
	for app, h := range d.halted {
		if _, ok := stored[app]; !ok && h.Since.Before(settled) {
			delete(d.halted, app)
			d.resumeApp(app)
		}
	}
	return stored
}

// release writes a parked batch back, routed by its send-at (the ready
// topic: it was there already), and then forgets it. Written twice (two
// instances, or a crash before the delete), it is still sent once: the
// progress store skips what is done.
func (d *Dispatcher) release(ctx context.Context, batchID string) {
	p, ok, err := d.store.LoadParked(ctx, batchID)
	if err != nil || !ok {
		if err != nil {
			d.log.Warn("parked batch not loaded", "batch", batchID, "err", err)
		}
		return
	}
	r := &kgo.Record{Topic: d.cfg.Ladder.Route(p.SendAt, time.Now()), Key: p.Key, Value: p.Value}
	for k, v := range p.Headers {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
	}
	if err := d.cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		d.log.Warn("parked batch not written back", "batch", batchID, "err", err)
		return
	}
	if err := d.store.Unpark(ctx, batchID, p.ParkedAt); err != nil {
		d.log.Warn("released batch still listed as parked", "batch", batchID, "err", err)
		return
	}
	d.log.Info("parked batch released", "batch", batchID, "reason", p.Reason, "app", p.App, "campaign", p.CampaignID)
}

// cleanupLoop forgets finished batch ids older than ProgressRetention.
func (d *Dispatcher) cleanupLoop(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		n, err := d.store.DeleteFinishedBefore(ctx, time.Now().Add(-d.cfg.ProgressRetention))
		if err != nil && ctx.Err() == nil {
			d.log.Warn("old progress not deleted", "err", err)
		} else if n > 0 {
			d.log.Info("old progress deleted", "batches", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
