package planner

import (
	"context"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pushlane/pushlane/internal/kfaketest"
	"github.com/pushlane/pushlane/internal/service"
)

// ctxStore is memStore whose read number block behaves like a MySQL query
// in flight at SIGTERM: it returns only when its context ends, with the
// context's error.
type ctxStore struct {
	*memStore
	block int64
	n     atomic.Int64
}

func (s *ctxStore) ReadDevices(ctx context.Context, q AudienceQuery, part int, afterID int64, limit int, page *Page) (int64, bool, error) {
	if s.n.Add(1) == s.block {
		<-ctx.Done()
		return afterID, false, ctx.Err()
	}
	return s.memStore.ReadDevices(ctx, q, part, afterID, limit, page)
}

// stopAtBatch runs the planner, holds it in the hook at batch n, stops it
// (as SIGTERM does), lets the stop settle, releases the hook and waits for
// Run to return.
func stopAtBatch(t *testing.T, h *harness, n int, settle time.Duration) *running {
	t.Helper()
	atHook, release := make(chan struct{}), make(chan struct{})
	r := h.start(func(ev hookEvent) error {
		if ev.batches == n {
			close(atHook)
			<-release
		}
		return nil
	})
	<-atHook
	r.cancel()
	time.Sleep(settle)
	close(release)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	return r
}

// A planner stopped mid-campaign commits its open chunk with a checkpoint,
// also when a MySQL read is in flight at the stop: the reader turns the
// cancellation into a read error, and the planner must take that for the
// stop it is, not for a MySQL failure that aborts the chunk. Twelve runs,
// because the two arrive together and select picks either.
func TestStopDuringAReadCommitsTheOpenChunk(t *testing.T) {
	aborted := 0
	const runs = 12
	for i := range runs {
		h := newKfakeHarness(t)
		mem := h.store.(*memStore)
		seed(mem, "app", 1, 1000)
		h.store = &ctxStore{memStore: mem, block: 3}
		h.cfg.BatchesPerTransaction = 100 // one open chunk for the whole test
		h.publishCampaign(segmentCampaign("c", 10))
		// Batch 7 is inside page 2, while read 3 is in flight; the reader
		// sees its query fail within the 100ms.
		r := stopAtBatch(t, h, 7, 100*time.Millisecond)
		_, ck, found := h.committed(t)
		mysqlRetries := counterValue(t, r.p.m.retries.WithLabelValues("mysql"))
		t.Logf("run %d: checkpoint committed=%v chunks=%d devices=%d, mysql retries=%v", i, found, ck.Chunks, ck.Totals[0], mysqlRetries)
		if !found {
			aborted++
		}
	}
	if aborted > 0 {
		t.Errorf("%d of %d stops aborted the open chunk instead of committing it", aborted, runs)
	}
}

// ctxSaveStore is memStore whose SaveCampaign fails once its context has
// ended, as MySQL's ExecContext does.
type ctxSaveStore struct{ *memStore }

func (s ctxSaveStore) SaveCampaign(ctx context.Context, r CampaignRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.memStore.SaveCampaign(ctx, r)
}

// A stop that lands while the last page is processed may be seen after
// the audience's end: the campaign's final save must not run on the
// cancelled context, fail, and abort the whole last chunk as a MySQL
// failure.
func TestStopAtTheAudienceEndCommits(t *testing.T) {
	lost := 0
	const runs = 12
	for i := range runs {
		h := newKfakeHarness(t)
		mem := h.store.(*memStore)
		seed(mem, "app", 1, 100)
		h.store = ctxSaveStore{mem}
		h.cfg.BatchesPerTransaction = 100
		h.publishCampaign(segmentCampaign("c", 10))
		// Batch 10 is the last: the reader has queued the end already.
		r := stopAtBatch(t, h, 10, 50*time.Millisecond)
		sum, _, checkpointed := h.committed(t)
		_, saved := mem.campaign("c", 1)
		t.Logf("run %d: committed offset sum %d, checkpoint %v, saved %v, mysql retries %v", i, sum, checkpointed, saved,
			counterValue(t, r.p.m.retries.WithLabelValues("mysql")))
		if sum == 0 && !checkpointed { // neither finished nor checkpointed
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d stops committed nothing (chunk aborted)", lost, runs)
	}
}

// While the brokers refuse every produce (a retriable error), a stop still
// ends Run: a chunk's commit waits for its records, and without a delivery
// timeout the client retried them for ever.
func TestStopWhileBrokersRefuseProducesReturns(t *testing.T) {
	cfg, c := kfakeCluster(t)
	cfg.TransactionTimeout = time.Second // End is bounded by 1s+30s
	cfg.BatchesPerTransaction = 1000
	h := newHarness(t, cfg, newMemStore())
	seed(h.store.(*memStore), "app", 1, 1000)
	h.publishCampaign(segmentCampaign("c", 10))

	var failing atomic.Bool
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !failing.Load() {
			return nil, nil, false
		}
		// NotEnoughReplicas: retriable.
		return kfaketest.RefuseProduce(req.(*kmsg.ProduceRequest), kerr.NotEnoughReplicas.Code), nil, true
	})
	stopNow := make(chan struct{})
	r := h.start(func(ev hookEvent) error {
		if ev.batches == 5 {
			failing.Store(true) // the brokers stop acknowledging
			close(stopNow)
		}
		return nil
	})
	<-stopNow
	t0 := time.Now()
	r.cancel() // SIGTERM
	select {
	case <-r.done:
		t.Logf("Run returned after %v: %v", time.Since(t0), r.err)
	case <-time.After(35 * time.Second):
		t.Errorf("Run still running %v after cancel (End alone is bounded by 31s)", time.Since(t0))
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "planner.(*txn).commit") {
				t.Logf("stuck planner goroutine:\n%s", g)
			}
		}
		failing.Store(false) // let it finish so the test can end
	}
}

// The planner is unready from the stop on, while it commits what it holds.
func TestStopMakesThePlannerUnready(t *testing.T) {
	cfg, _ := kfakeCluster(t)
	ready := service.NewReadiness("planner")
	p, err := New(cfg, Deps{Store: newMemStore(), Logger: testLogger(t), Metrics: prometheus.NewRegistry(), Ready: ready})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for ready.Err() != nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := ready.Err(); err != nil {
		t.Fatalf("not ready 10 s after start: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := ready.Err(); err == nil || err.Error() != "planner: draining" {
		t.Errorf("stopped: readiness %v, want planner: draining", err)
	}
}

// pauses records the planner's pauses (and takes them).
type pauses struct {
	mu sync.Mutex
	d  []time.Duration
}

func (ps *pauses) sleep(ctx context.Context, d time.Duration) bool {
	ps.mu.Lock()
	ps.d = append(ps.d, d)
	ps.mu.Unlock()
	return sleep(ctx, d)
}

func (ps *pauses) taken() []time.Duration {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return slices.Clone(ps.d)
}

// refuseTxnCommits has kfake answer the TxnOffsetCommits for which refuse
// says so with UNKNOWN_SERVER_ERROR, which End reports as an abort, like a
// rebalance.
func refuseTxnCommits(c *kfake.Cluster, refuse func() bool) {
	c.ControlKey(int16(kmsg.TxnOffsetCommit), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !refuse() {
			return nil, nil, false
		}
		return kfaketest.RefuseTxnOffsetCommit(req.(*kmsg.TxnOffsetCommitRequest), kerr.UnknownServerError.Code), nil, true
	})
}

// The group coordinator turning every offset commit away has the chunk
// planned again after a growing pause, not in a loop (re-planning at once
// made 444 attempts in 2 s); once it answers, the campaign completes
// exactly once.
func TestRepeatedAbortsBackOff(t *testing.T) {
	cfg, c := kfakeCluster(t)
	cfg.RetryMin, cfg.RetryMax = 20*time.Millisecond, 160*time.Millisecond
	h := newHarness(t, cfg, newMemStore())
	ps := &pauses{}
	h.sleep = ps.sleep
	seed(h.store.(*memStore), "app", 1, 300)
	h.publishCampaign(segmentCampaign("c", 10))
	refuseTxnCommits(c, func() bool { return len(ps.taken()) < 6 })
	r := h.start(nil)
	h.waitDone(1)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	// The first abort is planned again at once, then 20 ms doubling to 160.
	ms := time.Millisecond
	if got, want := ps.taken(), []time.Duration{20 * ms, 40 * ms, 80 * ms, 160 * ms, 160 * ms, 160 * ms}; !slices.Equal(got, want) {
		t.Errorf("pauses %v, want %v", got, want)
	}
	o := h.output()
	if len(o.dupBatches) > 0 || len(o.batchesOf("c")) != 30 {
		t.Fatalf("%d batches, duplicates %v", len(o.batchesOf("c")), o.dupBatches)
	}
	equalIDs(t, "c", o.devicesOf("c"), wantIDs(1, 300))
}

// Aborts with committed chunks between them are not a run: each is
// planned again at once, however many a long campaign meets.
func TestAbortsBetweenCommitsDoNotBackOff(t *testing.T) {
	cfg, c := kfakeCluster(t)
	cfg.BatchesPerTransaction = 2
	h := newHarness(t, cfg, newMemStore())
	ps := &pauses{}
	h.sleep = ps.sleep
	seed(h.store.(*memStore), "app", 1, 300)
	h.publishCampaign(segmentCampaign("c", 10))
	var n atomic.Int64
	refuseTxnCommits(c, func() bool { return n.Add(1)%2 == 1 }) // each chunk's first commit
	r := h.start(nil)
	h.waitDone(1)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if got := ps.taken(); len(got) != 0 {
		t.Errorf("pauses %v, want none", got)
	}
	if got := n.Load(); got < 30 {
		t.Errorf("%d offset commits, want at least 30 (15 chunks, each refused once)", got)
	}
	o := h.output()
	if len(o.dupBatches) > 0 || len(o.batchesOf("c")) != 30 {
		t.Fatalf("%d batches, duplicates %v", len(o.batchesOf("c")), o.dupBatches)
	}
	equalIDs(t, "c", o.devicesOf("c"), wantIDs(1, 300))
}

// stallStore is memStore whose first call of the stalled operation
// ("latest": LatestCampaign, "read": ReadDevices) closes waiting and then
// waits for its context to end, as a query in flight at SIGTERM does.
type stallStore struct {
	*memStore
	stall   string
	waiting chan struct{}
	once    sync.Once
}

func (s *stallStore) held(ctx context.Context, op string) bool {
	if op != s.stall {
		return false
	}
	held := false
	s.once.Do(func() {
		close(s.waiting)
		held = true
		<-ctx.Done()
	})
	return held
}

func (s *stallStore) LatestCampaign(ctx context.Context, id string, version int) (StoredCampaign, bool, error) {
	if s.held(ctx, "latest") {
		// The query was answered as the stop came: no row.
		return StoredCampaign{}, false, nil
	}
	return s.memStore.LatestCampaign(ctx, id, version)
}

func (s *stallStore) ReadDevices(ctx context.Context, q AudienceQuery, part int, afterID int64, limit int, page *Page) (int64, bool, error) {
	if s.held(ctx, "read") {
		return afterID, false, ctx.Err()
	}
	return s.memStore.ReadDevices(ctx, q, part, afterID, limit, page)
}

// stallControls is a control view that has not caught up: WaitFresh
// returns only when its context ends, as the real view's does until its
// next refresh (200 ms, up to 5 s).
type stallControls struct{ waiting chan struct{} }

func (s stallControls) Cancelled(string) bool { return false }

func (s stallControls) WaitFresh(ctx context.Context, _ time.Time) error {
	close(s.waiting)
	<-ctx.Done()
	return ctx.Err()
}

// A stop that comes while a new campaign waits before its plan (for the
// control view, the replay check or its first page) commits nothing, and
// the restart plans the campaign from its own start. Before, the plan went
// on and committed a checkpoint of nothing whose start the restart, an
// hour later, kept: a campaign that had expired meanwhile was planned,
// its batches all expired, instead of being recorded as expired.
func TestStopBeforeTheFirstPageCommitsNothing(t *testing.T) {
	for _, stall := range []string{"control view", "latest", "read"} {
		t.Run(stall, func(t *testing.T) {
			cfg, _ := kfakeCluster(t)
			waiting := make(chan struct{})
			store := &stallStore{memStore: newMemStore(), stall: stall, waiting: waiting}
			seed(store.memStore, "app", 1, 30)
			h := newHarness(t, cfg, store)
			if stall == "control view" {
				h.controls = stallControls{waiting: waiting}
			}
			t0 := time.Now().UTC().Truncate(time.Millisecond)
			h.now = func() time.Time { return t0 }
			c := segmentCampaign("c", 10)
			c.Schedule.ExpiresAt = t0.Add(10 * time.Minute)
			h.publishCampaign(c)

			r := h.start(nil)
			<-waiting
			if err := r.stop(t); err != nil {
				t.Fatal(err)
			}
			if offsets, ck, found := h.committed(t); offsets != 0 || found {
				t.Fatalf("stopped before the plan: committed offsets %d, checkpoint %v %+v; want nothing", offsets, found, ck)
			}
			if _, saved := store.campaign("c", 1); saved {
				t.Fatal("stopped before the plan: the campaign has a row")
			}

			// An hour later the campaign has expired.
			h.controls = nil
			h.now = func() time.Time { return t0.Add(time.Hour) }
			r = h.start(nil)
			h.waitDone(1)
			if err := r.stop(t); err != nil {
				t.Fatal(err)
			}
			rec, ok := store.campaign("c", 1)
			if !ok || rec.Status != StatusExpired || rec.Devices != 0 || rec.Batches != 0 || !rec.StartedAt.Equal(t0.Add(time.Hour)) {
				t.Errorf("restarted an hour later: recorded %+v, want expired with no batch, started %s", rec, t0.Add(time.Hour))
			}
			if n := len(h.output().batchesOf("c")); n != 0 {
				t.Errorf("%d batches committed, want none", n)
			}
		})
	}
}
