package dispatcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/pipeline/delay"
	"github.com/pushlane/pushlane/pipeline/kafka"
	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/schemas"
)

// job is one ready record being dispatched.
type job struct {
	rec  *kgo.Record
	b    *schemas.Batch
	app  App
	lim  *appLimit
	prog Progress
	msgs *messages
	// probe: this batch tests a halted app's credentials with one device.
	probe bool
	// probeUntil: the probe claim this batch holds (probe) lasts until.
	probeUntil time.Time
	// probeKey: the provider of the halt the probe's send tries (set with
	// its device, by nextChunk).
	probeKey string
	// observeLateness: the batch's first send is still to be measured.
	observeLateness bool
	// saveCtx is for writing results and progress: it ends FinishTimeout
	// after the stop and the sends in flight then (see saveContext).
	saveCtx   context.Context
	saveClock *saveClock
}

// saveContext returns the context results and progress are written with,
// and the clock that ends it. Devices already sent must get their results
// and progress, so an outage of Kafka or MySQL is waited out for as long as
// it lasts while the dispatcher runs (giving up would leave the batch
// unfinished and its partition stuck behind it); once stopping, the wait is
// bounded so the stop completes: FinishTimeout, counted from the stop or,
// if the job's sends were in flight then, from when they ended. A send
// takes up to its provider's request timeout, as long as FinishTimeout by
// default; counted from the stop, the answered devices of a chunk whose
// slowest send ended after it had no time left to be written, and the next
// owner sent them again.
func (d *Dispatcher) saveContext(stop context.Context) (context.Context, *saveClock, context.CancelFunc) {
	ctx, cancel := context.WithCancel(d.bg)
	c := &saveClock{wait: d.cfg.FinishTimeout, cancel: cancel}
	unwatch := context.AfterFunc(stop, c.stopped)
	return ctx, c, func() {
		unwatch()
		c.mu.Lock()
		if c.timer != nil {
			c.timer.Stop()
		}
		c.mu.Unlock()
		cancel()
	}
}

// saveClock ends a job's saveCtx FinishTimeout after the stop, not while
// the job's sends are in flight.
type saveClock struct {
	wait   time.Duration
	cancel context.CancelFunc

	mu      sync.Mutex
	stop    bool
	sending bool
	timer   *time.Timer
}

func (c *saveClock) stopped() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stop = true
	c.armLocked()
}

// sendsStart and sendsEnd bracket a chunk's sends.
func (c *saveClock) sendsStart() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sending = true
}

func (c *saveClock) sendsEnd() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sending = false
	c.armLocked()
}

func (c *saveClock) armLocked() {
	if c.stop && !c.sending && c.timer == nil {
		c.timer = time.AfterFunc(c.wait, c.cancel)
	}
}

// handle dispatches one ready record. It returns true when the record is
// done with (sent, skipped, parked, dead-lettered, re-routed) and may be
// committed, false when stop interrupted it (its progress is saved; the
// next owner continues it).
//
// A record waits for its send-at before it is decoded and without a send
// slot (the headers carry what the wait needs), so waiting batches cost
// only their record; decoding and sending take one of slots, so at most
// len(slots) batches per partition are decoded at a time. A record replayed
// without headers is decoded first and waits (less than
// delay.ReadyWithin) with its slot; one without a key is first re-keyed
// (rekey).
func (d *Dispatcher) handle(stop context.Context, rec *kgo.Record, slots chan struct{}) bool {
	if len(rec.Key) == 0 {
		if done, ok := d.rekey(stop, rec); done {
			return ok
		}
	}
	if done, ok := d.waitByHeaders(stop, rec); done {
		return ok
	}
	select {
	case slots <- struct{}{}:
		defer func() { <-slots }()
	case <-stop.Done():
		return false
	}
	b, err := decodeBatch(rec.Value)
	if err != nil {
		return d.deadLetter(stop, rec, err.Error())
	}
	app, ok := d.apps[b.App]
	if !ok {
		d.m.batches.WithLabelValues("unknown_app").Inc()
		return d.deadLetter(stop, rec, fmt.Sprintf("app %q is not configured in this dispatcher", b.App))
	}
	j := &job{rec: rec, b: b, app: app, lim: d.limits[b.App]}
	defer func() {
		if j.probe { // claimed, and left before its send (closed out, parked, stopped)
			d.probeUnanswered(j, true)
		}
	}()
	var cancelSave context.CancelFunc
	j.saveCtx, j.saveClock, cancelSave = d.saveContext(stop)
	defer cancelSave()
	if !d.retry(stop, "read progress of "+b.ID, func(ctx context.Context) (err error) {
		j.prog, err = d.store.Progress(ctx, b.ID)
		return err
	}) {
		return false
	}
	if j.prog.Finished {
		d.m.batches.WithLabelValues("duplicate").Inc()
		d.log.Debug("batch already finished; skipped", "batch", b.ID)
		return true
	}

	now := time.Now()
	// Cancelled and expired batches are closed out whenever they arrive
	// (the forwarder sends them here early on purpose).
	switch {
	case d.control.Cancelled(b.CampaignID):
		d.m.batches.WithLabelValues("cancelled").Inc()
		return d.closeOut(j, schemas.OutcomeCancelled, "campaign cancelled")
	case isExpired(b, now):
		d.m.batches.WithLabelValues("expired").Inc()
		return d.closeOut(j, schemas.OutcomeExpired, "expired at "+expiry(b).UTC().Format(time.RFC3339Nano))
	case b.SendAt.Sub(now) >= delay.ReadyWithin:
		// Only a clock disagreement, headers that disagree with the
		// batch, or none (a replay by hand) bring a batch here this
		// early; back to the ladder rather than holding the partition.
		return d.reroute(stop, j, now)
	}
	if done, ok := d.checkBeforeChunk(stop, j); done {
		return ok
	}
	if wait := time.Until(b.SendAt); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-stop.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
	j.msgs = newMessages(b, app)
	// A batch resumed after a stop or crash had its lateness observed
	// by the owner that started it.
	j.observeLateness = j.prog.Done.Count() == 0
	d.m.batchesBusy.Inc()
	defer d.m.batchesBusy.Dec()
	for {
		if !d.pending(j) {
			// Every device has its result (the last chunk ended, or a
			// resumed batch had nothing left): finish it, whatever a
			// pause, halt or stop since says. There is nothing to hold
			// back, and parking it would hold its retry batch and its
			// partition's commit.
			break
		}
		if done, ok := d.checkBeforeChunk(stop, j); done {
			return ok
		}
		idx := d.nextChunk(j)
		if len(idx) == 0 {
			// Devices are pending, so only a probe gets here: the halt
			// was lifted or changed since its claim, and this batch has
			// nothing for the refused provider. It waits, parked (a
			// lifted halt releases it at the next park pass).
			d.probeUnanswered(j, true)
			return d.park(j, ParkHalted)
		}
		started := time.Now()
		c, err := d.sendChunk(stop, j, idx)
		if err != nil {
			return false
		}
		d.m.chunk.Observe(time.Since(started).Seconds())
		if j.probe {
			if c.answered == 0 {
				// A device left without a result was not tried (a stop,
				// or barred since the check); one with a result had no
				// provider for its platform.
				d.probeUnanswered(j, !j.prog.Done.Has(idx[0]))
			} else {
				// A refusal of other credentials than the probed ones
				// may still show that those work (refusalClearsProbed).
				d.probeDone(j, c.refused && !refusalClearsProbed(j.probeKey, c.refusedKey))
			}
		}
		if c.refused {
			return d.park(j, ParkHalted)
		}
		if stop.Err() != nil && d.pending(j) {
			return false
		}
		if c.blocked && !d.waitUnblocked(stop) {
			return false
		}
	}
	d.m.batches.WithLabelValues("sent").Inc()
	return d.finish(j)
}

// rekey writes a ready record that has no key back to the ready topic
// keyed by its batch id, as the planner keys it (delay.Scheduled, which
// restores missing scheduling headers too), and reports it done with: the
// keyed copy lands on the partition of the batch's other copies, where the
// same-key guard keeps it from running beside them. Sent where it was read,
// a keyless copy replayed while its batch was in flight on another
// partition sent the devices again (the finished check cannot see a batch
// still sending). A record with no batch id to key it by is left to
// decoding, which dead-letters it (done false).
func (d *Dispatcher) rekey(stop context.Context, rec *kgo.Record) (done, ok bool) {
	src, err := delay.Scheduled(rec)
	if err != nil || len(src.Key) == 0 {
		return false, false
	}
	// A copy of a finished batch is done with here: written back, it would
	// cost a write per replayed record, and its fresh timestamp would hide
	// the batch's age from pushctl replay's check against the 35 days
	// finished ids are kept.
	id := string(src.Key)
	var prog Progress
	if !d.retry(stop, "read progress of "+id, func(ctx context.Context) (err error) {
		prog, err = d.store.Progress(ctx, id)
		return err
	}) {
		return true, false
	}
	if prog.Finished {
		d.m.batches.WithLabelValues("duplicate").Inc()
		return true, true
	}
	out := &kgo.Record{Topic: d.cfg.Ladder.Ready, Key: src.Key, Value: src.Value, Headers: src.Headers}
	ok, written := d.produce(stop, "re-key "+string(src.Key), out, rec)
	if written {
		d.m.batches.WithLabelValues("rekeyed").Inc()
	}
	return true, ok
}

// waitByHeaders waits, on the record's headers alone, until its send-at:
// the ladder hands batches to the ready topic up to delay.ReadyWithin
// early. A record whose headers say it is far from due (and neither
// cancelled nor expired) goes back to the ladder at once. Without usable
// headers it returns, and the decoded batch decides.
func (d *Dispatcher) waitByHeaders(stop context.Context, rec *kgo.Record) (done, ok bool) {
	sendAt, has := kafka.TimeHeader(rec, kafka.HeaderSendAt)
	if !has {
		return false, false
	}
	now := time.Now()
	if exp, has := kafka.TimeHeader(rec, kafka.HeaderExpiresAt); has && !now.Before(exp) {
		return false, false
	}
	if id, has := kafka.Header(rec, kafka.HeaderCampaignID); has && d.control.Cancelled(id) {
		return false, false
	}
	wait := sendAt.Sub(now)
	switch {
	case wait >= delay.ReadyWithin:
		out := delay.Forwarded(rec, d.cfg.Ladder.Route(sendAt, now))
		ok, written := d.produce(stop, "re-route "+string(rec.Key), out, rec)
		if written {
			d.m.batches.WithLabelValues("rerouted").Inc()
		}
		return true, ok
	case wait > 0:
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-stop.Done():
			return true, false
		case <-t.C:
		}
	}
	return false, false
}

// checkBeforeChunk applies the checks every chunk must pass: the control
// view is fresh, the campaign is neither cancelled nor paused, the batch
// has not expired, the app is not halted. done reports that the record
// needs nothing more (ok: commit it) or that stop interrupted (ok false).
func (d *Dispatcher) checkBeforeChunk(stop context.Context, j *job) (done, ok bool) {
	if err := d.control.WaitFresh(stop, time.Now().Add(-d.cfg.MaxStaleness)); err != nil {
		return true, false
	}
	now := time.Now()
	switch {
	case d.control.Cancelled(j.b.CampaignID):
		d.m.batches.WithLabelValues("cancelled").Inc()
		return true, d.closeOut(j, schemas.OutcomeCancelled, "campaign cancelled")
	case isExpired(j.b, now):
		d.m.batches.WithLabelValues("expired").Inc()
		return true, d.closeOut(j, schemas.OutcomeExpired, "expired at "+expiry(j.b).UTC().Format(time.RFC3339Nano))
	case d.control.Paused(j.b.CampaignID):
		return true, d.park(j, ParkPaused)
	case !j.probe && d.heldByHalt(j):
		// Only a batch with a device the probe can try claims it: one
		// held by a halt kept in the senders' registry alone (see held)
		// would claim, find none and give the claim back.
		if provider, ok := d.haltedProvider(j.b.App); ok && d.pendingFor(j, provider) {
			if until, ok := d.claimProbe(stop, j.b.App); ok {
				j.probe, j.probeUntil = true, until
				return false, false
			}
		}
		return true, d.park(j, ParkHalted)
	}
	return false, false
}

// heldByHalt reports whether j has a device without a result whose send
// a halt of its app holds back (held). Such a batch is held whole:
// parked, or the probe (see the package documentation for why a batch of
// both providers is not split). A halt says nothing of credentials other
// than the refused ones, so a batch whose pending devices need none of
// those is sent as if the app were not halted: an Android-only campaign
// of an app whose APNs key was refused (by Apple, or by FCM for the iOS
// devices it sends through APNs: ProviderFCMviaAPNs) is sent through FCM,
// whose sender the registry, per provider and route, lets through; and
// no probe is claimed for it (it has no device the probe could try).
func (d *Dispatcher) heldByHalt(j *job) bool {
	held := d.held(j.b.App)
	if !held.any() {
		return false
	}
	for i := range j.b.Devices {
		if j.prog.Done.Has(i) {
			continue
		}
		platform := j.b.Devices[i].Platform
		if p, _ := j.app.senderFor(platform); held.holds(p, platform) {
			return true
		}
	}
	return false
}

// pendingFor reports whether j has a device without a result whose send
// needs the credentials of the halt of provider key (needs): one its
// probe can try.
func (d *Dispatcher) pendingFor(j *job, key string) bool {
	for i := range j.b.Devices {
		if j.prog.Done.Has(i) {
			continue
		}
		platform := j.b.Devices[i].Platform
		if p, _ := j.app.senderFor(platform); needs(key, p, platform) {
			return true
		}
	}
	return false
}

// waitUnblocked waits one ParkInterval after a chunk whose every send the
// senders' registry refused. The checks before the chunk and admit hold
// back every provider the registry holds halted, so this takes a halt
// that came between them and the sends (another batch's refusal, in
// flight meanwhile), which the next chunk's check then sees and holds the
// batch for; or a sender that halts under another name than the provider
// it is configured as, which no check here sees: without the wait the
// batch would go round, saving the same progress, as fast as the registry
// refuses. It reports false if stop came first.
func (d *Dispatcher) waitUnblocked(stop context.Context) bool {
	t := time.NewTimer(d.cfg.ParkInterval)
	defer t.Stop()
	select {
	case <-stop.Done():
		return false
	case <-t.C:
		return true
	}
}

// barred reports whether a device of b that has waited for its app's slot
// (behind other batches' devices, or for the app's rate) must not be sent
// after all: its campaign was cancelled or paused, or b expired, since its
// chunk was checked. Without it a cancel waited for the chunks already
// queued: at 20 sends a second, two chunks of 100 went on for 9.5 s.
func (d *Dispatcher) barred(b *schemas.Batch, now time.Time) bool {
	return d.control.Cancelled(b.CampaignID) || d.control.Paused(b.CampaignID) || isExpired(b, now)
}

func isExpired(b *schemas.Batch, now time.Time) bool {
	exp := expiry(b)
	return !exp.IsZero() && !now.Before(exp)
}

// nextChunk returns the indexes of the next devices to send: up to
// ChunkSize devices without a result yet. A probe sends one: the first
// waiting device whose send needs the refused credentials (needs; none:
// nil), since only its answer says whether they work again; an Android
// device delivered through FCM lifted an APNs halt, or a halt of the APNs
// key in the Firebase project, and the app was halted again at its next
// iOS send. Any other batch of a halted app that gets here has no pending
// device a halt holds (heldByHalt), unless the halt came after its check:
// sendChunk withholds those (admit).
func (d *Dispatcher) nextChunk(j *job) []int {
	if j.probe {
		key, _ := d.haltedProvider(j.b.App)
		j.probeKey = key
		for i := range j.b.Devices {
			if j.prog.Done.Has(i) {
				continue
			}
			dev := &j.b.Devices[i]
			if p := j.msgs.forDevice(dev); p != nil && needs(key, p.provider, dev.Platform) {
				return []int{i}
			}
		}
		return nil
	}
	n := d.cfg.ChunkSize
	var idx []int
	for i := range j.b.Devices {
		if !j.prog.Done.Has(i) {
			idx = append(idx, i)
			if len(idx) == n {
				break
			}
		}
	}
	return idx
}

// pending reports whether some device of j has no result yet.
func (d *Dispatcher) pending(j *job) bool { return j.prog.Done.Count() < len(j.b.Devices) }

// providerAnswered reports whether r came from the provider itself: an
// HTTP answer, or its refusal of the credentials on the connection. A
// result decided locally (a payload refused before sending, a token that
// cannot be one, a transport error, the senders' own halt registry) says
// nothing about the credentials, so it does not end a probe.
func providerAnswered(r *providers.Result) bool {
	return r.Status != 0 || r.Outcome == providers.CredentialFailure && !errors.Is(r.Err, providers.ErrHalted)
}

// sendJob is one device's send, run by the dispatcher's pool of senders.
type sendJob struct {
	p       *prepared
	token   string
	attempt int
	out     *sent
	lim     *appLimit
	// stop: a job that comes up after it is not started (its device
	// stays without a result, for the next owner).
	stop context.Context
	// probe: the send is a halt probe's, let through the halt of its
	// provider (providers.WithProbe).
	probe bool
	wg    *sync.WaitGroup // the chunk's
	b     *schemas.Batch  // checked once more when the job comes up
}

// sendLoop runs sends until jobs is closed, and after each send the next
// device waiting for its app's slot. The pool's goroutines live as long as
// the dispatcher: a goroutine per send would grow (copy) its stack through
// the HTTP/2 client on every send, a tenth of the CPU per send.
func (d *Dispatcher) sendLoop(jobs <-chan *sendJob) {
	for j := range jobs {
		for j != nil {
			d.runSend(j)
			j = j.lim.next()
		}
	}
}

func (d *Dispatcher) runSend(j *sendJob) {
	defer j.wg.Done()
	if j.stop.Err() != nil {
		return
	}
	// A barred device is not sent and gets no result here: the chunk's
	// next check closes the batch out (cancelled, expired) or parks it
	// (paused). Checked before the app's rate too, so barred devices take
	// none of it, and while and after waiting for it.
	if d.barred(j.b, time.Now()) {
		return
	}
	if j.lim.rate != nil && !d.waitRate(j) {
		return
	}
	ctx := j.p.ctx
	if j.probe {
		ctx = providers.WithProbe(ctx)
	}
	d.m.inflight.Inc()
	start := time.Now()
	r := j.p.send(ctx, j.token, j.attempt)
	d.m.inflight.Dec()
	if r.Err != nil && errors.Is(r.Err, providers.ErrWithdrawn) {
		// Its gate closed while it waited in the sender: like a device
		// barred here, not sent and without a result (see sendGate).
		return
	}
	*j.out = sent{provider: j.p.provider, res: r, ok: true, start: start}
}

// Why sendGate withdraws a send.
var (
	errStopping   = errors.New("dispatcher stopping")
	errBarred     = errors.New("campaign cancelled or paused, or batch expired")
	errHaltStands = errors.New("the app is halted for the provider")
)

// sendGate is the late gate (providers.WithSendGate) of j's sends of p,
// which its sender asks after every wait of its own and right before it
// writes each request. runSend checks a send before handing it to the
// sender; the sender may then hold it long: behind the sends of its own
// concurrency (FCM's apps.<name>.fcm.concurrency is independent of the
// app's, so with an app concurrency of 1000 and 200 at FCM, 800 sends
// wait in FCM's sender, each behind requests of up to 30 s), the
// project's quota, an access token. The gate withdraws a send whose
// reason to go ended meanwhile, as runSend and waitRate do before it:
// its campaign was cancelled or paused or its batch expired (barred), the
// dispatcher is stopping (stop), or a halt of the app holds its provider
// (the senders' registry, as held reads it; a probe's send excepted). A
// withdrawn send sends nothing and gets no result: its device stays
// pending, and the batch's next check closes it out or parks it, or, at a
// stop, leaves it to the next owner. Without the gate, a cancelled
// campaign's queued devices were delivered after the cancel, and a stop
// waited for them (five requests in turn per slot at the numbers above:
// past the group's rebalance timeout, so the member was evicted and the
// next owner sent again devices whose results were not saved); sends
// queued behind a credential refusal still reached the provider. A
// request already written is never cut short: its result is recorded.
//
// One gate per job and message, made by the first chunk that sends it:
// nothing is allocated per send. j.probe is read by the sends of a chunk
// and written only between chunks.
func (d *Dispatcher) sendGate(stop context.Context, j *job, p *prepared) func() error {
	b, app := j.b, j.b.App
	keys := haltKeysOf(p.provider, p.msg.Platform)
	return func() error {
		if stop.Err() != nil {
			return errStopping
		}
		if d.barred(b, time.Now()) {
			return errBarred
		}
		if !j.probe {
			for _, k := range keys {
				if _, halted := d.halt.Halted(app, k); halted {
					return errHaltStands
				}
			}
		}
		return nil
	}
}

// haltKeysOf lists the halts that hold back a send through provider to a
// device of platform (needs): its provider's, and for FCM's sends to iOS
// devices, ProviderFCMviaAPNs's.
func haltKeysOf(provider, platform string) []string {
	var keys []string
	for _, k := range []string{ProviderAPNs, ProviderFCM, ProviderFCMviaAPNs} {
		if needs(k, provider, platform) {
			keys = append(keys, k)
		}
	}
	return keys
}

// rateRecheck: a device waiting for its app's rate is checked again this
// often. Every sender of a rate-limited app reserves its next token at
// once, so with concurrency C and rate R a reservation can be C/R ahead (50
// at 10 a second: 5 s); a cancel, a pause or the expiry now frees the slot
// and gives the token back within rateRecheck instead.
const rateRecheck = 100 * time.Millisecond

// waitRate waits for j's token of its app's rate, j having been checked
// just before. It reports false, with the token given back, if the
// dispatcher stops or j is barred meanwhile; each pause ends with a check,
// so a token that is due at once costs no second one.
func (d *Dispatcher) waitRate(j *sendJob) bool {
	r := j.lim.rate.Reserve()
	for wait := r.Delay(); wait > 0; wait = r.Delay() {
		t := time.NewTimer(min(wait, rateRecheck))
		select {
		case <-j.stop.Done():
			t.Stop()
			r.Cancel()
			return false
		case <-t.C:
		}
		if d.barred(j.b, time.Now()) {
			r.Cancel()
			return false
		}
	}
	return true
}

// yieldEvery: a chunk's bookkeeping (its results, their records, its
// progress) yields the core after each yieldEvery devices. The last answer
// of a chunk wakes the chunk's goroutine, and Go runs the goroutine woken
// last first: without the yields, 0.25-0.6 ms of bookkeeping ran ahead of
// the senders holding the other answers of the same burst, whose next
// requests then waited. The simulator, given nothing meanwhile, answered
// in fewer, larger bursts. Interleaved on the pinned benchmark, the
// yields were faster in 11 of 14 pairs of whole runs (means 23.8k against
// 22.5k sends/s).
const yieldEvery = 20

// yieldAfter yields the core after every yieldEvery items of a
// bookkeeping loop; k is the item's index.
func yieldAfter(k int) {
	if k%yieldEvery == yieldEvery-1 {
		runtime.Gosched()
	}
}

type sent struct {
	provider string
	res      providers.Result
	ok       bool      // a send was made (or refused locally)
	start    time.Time // the send's start: its lateness is measured here
}

// chunkSent is what sendChunk reports of a chunk.
type chunkSent struct {
	// answered counts the sends the provider answered (providerAnswered).
	answered int
	// refused: a provider refused the app's credentials (haltApp ran,
	// with refusedKey).
	refused bool
	// refusedKey is the provider of the halt the refusal put the app
	// under (haltKey).
	refusedKey string
	// blocked: the senders' registry refused every send the chunk tried
	// (their provider is halted for the app; see waitUnblocked), so none
	// got a result.
	blocked bool
}

// sendChunk sends devices idx with the app's concurrency, writes their
// results, and saves progress. A stop lets the sends in flight finish but
// starts no more. A device refused by the senders' registry rather than by
// its provider (its provider was halted for the app meanwhile, by another
// batch's refusal) gets no result and stays pending, like one not sent,
// and so does one its sender withdrew after a wait of its own (sendGate).
// An error means stop interrupted before anything could be saved.
func (d *Dispatcher) sendChunk(stop context.Context, j *job, idx []int) (c chunkSent, err error) {
	out := make([]sent, len(idx))
	jobs := make([]sendJob, 0, len(idx))
	var wg sync.WaitGroup
	for k, i := range idx {
		dev := &j.b.Devices[i]
		p := j.msgs.forDevice(dev)
		if p == nil {
			out[k] = sent{ok: true, res: providers.Result{Err: fmt.Errorf("app %s has no provider for platform %s", j.b.App, dev.Platform)}}
			continue
		}
		if p.ctx == nil {
			p.ctx = providers.WithSendGate(d.bg, d.sendGate(stop, j, p))
		}
		jobs = append(jobs, sendJob{p: p, token: dev.Token, attempt: j.b.Attempt, out: &out[k], lim: j.lim, stop: stop, probe: j.probe, wg: &wg, b: j.b})
	}
	queued := make([]*sendJob, len(jobs))
	for k := range jobs {
		queued[k] = &jobs[k]
	}
	queued = d.admit(j, queued)
	j.saveClock.sendsStart()
	wg.Add(len(queued))
	for _, sj := range j.lim.submit(queued) {
		d.sends <- sj
	}
	// A stop starts no more of them: the ones still queued are taken back
	// at once (other chunks' devices may be queued ahead of them), and one
	// a sender has just taken is passed over; the ones in flight finish.
	unwatch := context.AfterFunc(stop, func() {
		for range j.lim.withdraw(&wg) {
			wg.Done()
		}
	})
	wg.Wait()
	unwatch()
	j.saveClock.sendsEnd()
	// The rest is bookkeeping; see yieldEvery.
	runtime.Gosched()
	if j.observeLateness {
		var first time.Time
		for k := range out {
			if st := out[k].start; !st.IsZero() && (first.IsZero() || st.Before(first)) {
				first = st
			}
		}
		if !first.IsZero() {
			d.m.lateness.Observe(first.Sub(j.b.SendAt).Seconds())
			j.observeLateness = false
		}
	}

	now := time.Now()
	results := make([]schemas.Result, 0, len(idx))
	var halt *providers.Result
	haltProvider := ""
	blocked := 0
	for k, i := range idx {
		yieldAfter(k)
		s := out[k]
		if !s.ok {
			continue
		}
		dev := &j.b.Devices[i]
		if s.provider == "" {
			r := newResult(j.b, dev, schemas.OutcomeFailed, now)
			r.Reason = s.res.Err.Error()
			results = append(results, r)
			j.prog.Done = j.prog.Done.Set(i)
			continue
		}
		if providerAnswered(&s.res) {
			c.answered++
		}
		d.m.sends.WithLabelValues(j.b.App, s.provider, string(s.res.Outcome)).Inc()
		d.m.sendLatency.WithLabelValues(j.b.App, s.provider).Observe(s.res.Latency.Seconds())
		outcome := string(s.res.Outcome)
		switch s.res.Outcome {
		case providers.CredentialFailure:
			// Not a result: the device is sent again once the app's
			// credentials work; its result is written then. The
			// provider's own refusal is the one to record, not the
			// registry's refusals of the sends it made fail fast.
			if halt == nil || errors.Is(halt.Err, providers.ErrHalted) && !errors.Is(s.res.Err, providers.ErrHalted) {
				r := s.res
				halt, haltProvider = &r, haltKey(s.provider, dev.Platform, &r)
			}
			if errors.Is(s.res.Err, providers.ErrHalted) {
				blocked++
			} else {
				c.refused = true
			}
			continue
		case providers.PayloadRejected:
			// Checked before the send, the batch had not expired; the
			// provider found it had by the request (the send waited for a
			// connection, the quota or a token). Its content is fine.
			if errors.Is(s.res.Err, providers.ErrExpired) {
				outcome = schemas.OutcomeExpired
			}
		case providers.Retryable:
			if j.b.Attempt >= d.cfg.MaxAttempts {
				outcome = schemas.OutcomeFailed
			} else {
				j.prog.Retry = j.prog.Retry.Set(i)
				j.prog.RetryAfter = max(j.prog.RetryAfter, s.res.RetryAfter)
			}
		case "":
			outcome = schemas.OutcomeFailed
		}
		results = append(results, sentResult(j.b, dev, s.provider, &s.res, outcome, s.start, now))
		j.prog.Done = j.prog.Done.Set(i)
	}
	if halt != nil && !errors.Is(halt.Err, providers.ErrHalted) {
		// The senders' registry refusing a send is this app's halt
		// already recorded, not a new refusal by the provider: writing it
		// again would re-halt an app a probe has just cleared.
		d.haltApp(j.b.App, haltProvider, halt)
		c.refusedKey = haltProvider
	}
	c.blocked = blocked > 0 && len(results) == 0
	if !d.writeResults(j.saveCtx, results) {
		return c, errors.New("results not written")
	}
	if !d.saveProgress(j) {
		return c, errors.New("progress not saved")
	}
	return c, nil
}

// closeOut gives every device still without a result the outcome (expired,
// cancelled) without sending, then finishes the batch.
func (d *Dispatcher) closeOut(j *job, outcome, reason string) bool {
	now := time.Now()
	var results []schemas.Result
	for i := range j.b.Devices {
		if j.prog.Done.Has(i) {
			continue
		}
		r := newResult(j.b, &j.b.Devices[i], outcome, now)
		r.Reason = reason
		results = append(results, r)
		j.prog.Done = j.prog.Done.Set(i)
	}
	if len(results) > 0 {
		if !d.writeResults(j.saveCtx, results) || !d.saveProgress(j) {
			return false
		}
	}
	return d.finish(j)
}

// finish writes the retry batch of the devices that asked for one, then
// records the batch as finished. Like results and progress, with the job's
// saveCtx: a batch whose last chunk completes during a stop or a revoke is
// finished and committed, not left for the next owner to re-read, check
// and finish (its retry batch waiting until then).
func (d *Dispatcher) finish(j *job) bool {
	if n := j.prog.Retry.Count(); n > 0 {
		rec, err := d.retryRecord(j)
		if err != nil {
			d.log.Error("retry batch not built", "batch", j.b.ID, "err", err)
			return false
		}
		ok, written := d.produce(j.saveCtx, "retry batch "+string(rec.Key), rec, rec)
		if !ok {
			return false
		}
		if written {
			d.m.retries.Inc()
		}
	}
	return d.retry(j.saveCtx, "finish "+j.b.ID, func(ctx context.Context) error {
		return d.store.Finish(ctx, j.b.ID, time.Now())
	})
}

// retryRecord builds the next attempt of the devices marked for retry,
// due after the backoff (never before what a provider's Retry-After asked),
// routed through the delay ladder. Its id is deterministic, so writing it
// twice (a crash before Finish) sends it once.
//
// A retry that would be due at or after the batch's expiry can never be
// sent: it is made due at the expiry instead, so it reaches the ready
// topic then and its devices get their expired results (attempt+1, in the
// retry batch, as any expired batch's) at the expiry. Due at the backoff's
// time, it sat in the ladder past the expiry: the forwarder looks at
// expires-at only when a record comes due in its tier, so expiry in 20 s
// with a Retry-After of 300 s (the 256 s tier) gave the expired results
// some 4 minutes late. The send-at itself changes, not only the topic:
// the forwarder routes and holds a record by its send-at header. The
// expiry is an absolute ExpiresAt here, so the earlier send-at does not
// move a TTL.
func (d *Dispatcher) retryRecord(j *job) (*kgo.Record, error) {
	b := *j.b
	b.ID = RetryBatchID(j.b.ID, j.b.Attempt+1)
	b.Attempt = j.b.Attempt + 1
	b.ExpiresAt = expiry(j.b)
	now := time.Now()
	b.SendAt = now.Add(d.cfg.Backoff.Delay(j.b.Attempt, j.prog.RetryAfter, jitter(b.ID))).UTC()
	if !b.ExpiresAt.IsZero() && !b.SendAt.Before(b.ExpiresAt) {
		b.SendAt = b.ExpiresAt.UTC()
	}
	b.Devices = nil
	for i := range j.b.Devices {
		if j.prog.Retry.Has(i) {
			b.Devices = append(b.Devices, j.b.Devices[i])
		}
	}
	v, err := json.Marshal(&b)
	if err != nil {
		return nil, err
	}
	topic := d.cfg.Ladder.Route(b.SendAt, now)
	if d.control.Cancelled(b.CampaignID) || isExpired(&b, now) {
		topic = d.cfg.Ladder.Ready // its cancelled/expired results are due now
	}
	return delay.BatchRecord(topic, b.ID, b.CampaignID, b.SendAt, b.ExpiresAt, v), nil
}

// jitter is a stable pseudo-random fraction for a batch id, so a retry
// batch rebuilt after a crash gets the same send-at.
func jitter(id string) float64 {
	var h uint64 = 14695981039346656037
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= 1099511628211
	}
	return float64(h>>11) / float64(1<<53)
}

// scheduled is j's record with the key and scheduling headers the planner
// gives a batch record, from the decoded batch where the record lacks them
// (replayed by hand): what it is parked and re-routed as. Without them a
// re-routed record was dead-lettered by the forwarder, and a parked one
// had no key for the store (record_key NOT NULL), which refused it for
// ever with its partition held behind it.
func (j *job) scheduled() *kgo.Record {
	return delay.WithSchedule(j.rec, delay.Schedule{BatchID: j.b.ID, CampaignID: j.b.CampaignID, SendAt: j.b.SendAt, ExpiresAt: expiry(j.b)})
}

// reroute sends a batch that reached ready too early back to the ladder.
func (d *Dispatcher) reroute(stop context.Context, j *job, now time.Time) bool {
	out := delay.Forwarded(j.scheduled(), d.cfg.Ladder.Route(j.b.SendAt, now))
	ok, written := d.produce(stop, "re-route "+j.b.ID, out, j.rec)
	if written {
		d.m.batches.WithLabelValues("rerouted").Inc()
	}
	return ok
}

// park sets the batch aside in the store, with its record, and lets the
// ready record be committed; with the job's saveCtx, as finish.
func (d *Dispatcher) park(j *job, reason string) bool {
	rec := j.scheduled()
	p := Parked{
		BatchID: j.b.ID, App: j.b.App, CampaignID: j.b.CampaignID, Reason: reason,
		SendAt: j.b.SendAt, ExpiresAt: expiry(j.b), Key: rec.Key, Value: rec.Value,
		Headers: map[string]string{}, ParkedAt: time.Now().UTC().Truncate(time.Millisecond),
	}
	for _, h := range rec.Headers {
		p.Headers[h.Key] = string(h.Value)
	}
	if !d.retry(j.saveCtx, "park "+j.b.ID, func(ctx context.Context) error { return d.store.Park(ctx, p) }) {
		return false
	}
	d.m.batches.WithLabelValues("parked").Inc()
	d.log.Info("batch parked", "batch", j.b.ID, "campaign", j.b.CampaignID, "app", j.b.App, "reason", reason)
	return true
}

func (d *Dispatcher) deadLetter(stop context.Context, rec *kgo.Record, reason string) bool {
	return d.deadLetterRecord(stop, rec, reason, true)
}

// deadLetterRecord is deadLetter; onTopic false says rec is a record of
// the dispatcher's own (a retry batch) on no topic: its letter is the only
// place its devices are, so it is retried, not dropped, when the
// dead-letter topic refuses it even slimmed.
func (d *Dispatcher) deadLetterRecord(stop context.Context, rec *kgo.Record, reason string, onTopic bool) bool {
	dropped := false
	ok := d.retry(stop, "dead-letter", func(ctx context.Context) error {
		err := kafka.DeadLetter(ctx, d.cl, d.cfg.DeadLetterTopic, Stage, rec, reason)
		if onTopic && errors.Is(err, kafka.ErrDeadLetterDropped) {
			// Retried, it would hold the partition for good.
			dropped = true
			return nil
		}
		return err
	})
	if ok && dropped {
		d.m.batches.WithLabelValues("dead_letter_dropped").Inc()
		d.log.Error("ready record's dead letter refused by the dead-letter topic even slimmed; dropped, the record stays on its topic",
			"topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "reason", reason)
		return true
	}
	if ok {
		d.m.batches.WithLabelValues("dead_lettered").Inc()
		d.log.Warn("ready record dead-lettered", "partition", rec.Partition, "offset", rec.Offset, "reason", reason)
	}
	return ok
}

// writeResults produces results and waits until every one is
// acknowledged, trying until ctx (a job's saveCtx) ends.
func (d *Dispatcher) writeResults(ctx context.Context, results []schemas.Result) bool {
	if len(results) == 0 {
		return true
	}
	if !d.produceAll(ctx, resultRecords(d.cfg.ResultsTopic, results)) {
		return false
	}
	for i := range results {
		d.m.results.WithLabelValues(results[i].Outcome).Inc()
	}
	return true
}

// produceAll produces recs and waits for all of them, re-producing the
// ones that failed, until ctx ends. The records carry ctx: the client
// retries a record without limit, and only a cancelled context fails one
// it cannot deliver (when failing it is safe for the idempotent producer).
func (d *Dispatcher) produceAll(ctx context.Context, recs []*kgo.Record) bool {
	for len(recs) > 0 {
		var (
			wg     sync.WaitGroup
			mu     sync.Mutex
			failed []*kgo.Record
			first  error
		)
		wg.Add(len(recs))
		for k, r := range recs {
			yieldAfter(k)
			d.cl.Produce(ctx, r, func(r *kgo.Record, err error) {
				if err != nil {
					mu.Lock()
					failed = append(failed, r)
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
				wg.Done()
			})
		}
		wg.Wait()
		if len(failed) == 0 {
			return true
		}
		if ctx.Err() != nil {
			d.log.Error("records not written; their batch is left for the next owner", "records", len(failed), "err", first)
			return false
		}
		d.log.Warn("produce failed; retrying", "records", len(failed), "err", first)
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
		recs = failed
	}
	return true
}

// produce writes r, retrying until it is acknowledged or stop ends. A
// record the destination refuses outright is not retried: source (the
// record r stands for) is dead-lettered with the broker's reason instead,
// and written is false, so the caller does not count as written what went
// to the dead letters. ok reports that source is done with either way.
func (d *Dispatcher) produce(stop context.Context, what string, r, source *kgo.Record) (ok, written bool) {
	var refused error
	ok = d.retry(stop, what, func(ctx context.Context) error {
		err := d.cl.ProduceSync(ctx, r).FirstErr()
		if kafka.Refused(err) {
			refused = err
			return nil
		}
		return err
	})
	if !ok || refused == nil {
		return ok, ok
	}
	// source == r: a record of the dispatcher's own (a retry batch).
	return d.deadLetterRecord(stop, source, fmt.Sprintf("%s: %s refuses the record: %v", what, r.Topic, refused), source != r), false
}

func (d *Dispatcher) saveProgress(j *job) bool {
	p := j.prog
	return d.retry(j.saveCtx, "save progress of "+j.b.ID, func(ctx context.Context) error {
		return d.store.SaveProgress(ctx, j.b.ID, p)
	})
}

// retry runs fn until it succeeds or ctx ends, with a growing pause; it
// reports success.
func (d *Dispatcher) retry(ctx context.Context, what string, fn func(context.Context) error) bool {
	wait := 100 * time.Millisecond
	for {
		opCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := fn(opCtx)
		cancel()
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		d.log.Warn("retrying", "what", what, "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}
