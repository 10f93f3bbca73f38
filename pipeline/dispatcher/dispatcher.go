package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/time/rate"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/internal/service"
	"github.com/pushlane/pushlane/pipeline/delay"
	"github.com/pushlane/pushlane/pipeline/kafka"
	"github.com/pushlane/pushlane/providers"
)

// Stage is the dispatcher's name in dead letters and logs.
const Stage = "dispatcher"

// ControlView is what the dispatcher needs of the campaign-control view; a
// *control.View satisfies it.
type ControlView interface {
	Cancelled(campaignID string) bool
	Paused(campaignID string) bool
	// WaitFresh returns once every control record acknowledged before t
	// has been applied.
	WaitFresh(ctx context.Context, t time.Time) error
}

// Config of a Dispatcher. Zero values take the documented defaults.
type Config struct {
	// Kafka is the connection.
	Kafka config.Kafka
	// Group is the consumer group, <group_prefix>-dispatcher.
	Group string
	// Ladder: the dispatcher consumes Ladder.Ready and routes retry
	// batches (and batches that reached ready too early) through the
	// ladder.
	Ladder delay.Ladder
	// ResultsTopic receives one result per device per attempt.
	ResultsTopic string
	// DeadLetterTopic receives malformed batches and batches of unknown
	// apps.
	DeadLetterTopic string
	// ChunkSize is the number of devices sent between checkpoints: the
	// most a hard crash can send twice. Default 100.
	ChunkSize int
	// ResultsLinger is how long the results producer fills a partition's
	// batch before sending it. Default 20ms; negative sends at once.
	//
	// Results are keyed by app/token, so they spread over every partition of
	// the results topic, and the broker's cost is mostly per batch: on the
	// pinned benchmark the broker spent 7.3-8.2 µs per result at 2ms,
	// 4.9-6.7 µs at 10ms and 3.0-4.1 µs at 25ms, on the dispatcher's core
	// (docs/benchmarks.md, Dispatcher, Session 5). The cost of
	// waiting is a chunk's progress checkpoint that much later (its results
	// must be acknowledged first); sends are not delayed.
	ResultsLinger time.Duration
	// MaxAttempts caps sends per device, the first included; a retryable
	// outcome on the last attempt becomes failed. Default providers.MaxAttempts.
	MaxAttempts int
	// Backoff spaces retries; Retry-After always wins. Default
	// providers.DefaultBackoff().
	Backoff providers.BackoffPolicy
	// MaxStaleness: a chunk starts only if the control view has applied
	// every control record acknowledged this long before. Default 1s.
	MaxStaleness time.Duration
	// HaltProbeInterval: while an app is halted, one dispatcher sends one
	// real device this often to learn whether its credentials work again.
	// Default 30s.
	HaltProbeInterval time.Duration
	// ParkInterval is how often parked batches and halts are re-checked.
	// Default 1s.
	ParkInterval time.Duration
	// ProgressRetention keeps finished batch ids this long, so a replay
	// within it is skipped. Default 35 days (a 30-day horizon plus slack).
	ProgressRetention time.Duration
	// QueueRecords: a ready partition is paused while this many of its
	// records wait for its worker. Default 4.
	QueueRecords int
	// PartitionConcurrency is how many batches of one ready partition are
	// sent at once, so a slow batch does not hold up the batches behind
	// it. It is also how many chunks per partition a hard crash may leave
	// in flight. Default 4.
	PartitionConcurrency int
	// PartitionWindow bounds the records of one partition started and not
	// yet committed, those waiting for their send-at (the ladder hands them
	// over up to delay.ReadyWithin early) included: waiting takes no send
	// slot and no decoding, so due batches pass waiting ones. Default 64.
	PartitionWindow int
	// PartitionWindowBytes bounds the same records by size (one record is
	// always allowed). Default 4 MiB.
	PartitionWindowBytes int
	// MaxPollRecords bounds one poll (a record is a whole batch: one poll
	// can put this many into one partition's queue). Default 32.
	MaxPollRecords int
	// FetchMaxWait bounds an idle fetch. Default 250ms.
	FetchMaxWait time.Duration
	// LagInterval is how often consumer lag is measured. Default 10s.
	LagInterval time.Duration
	// InstanceID, if set, makes this a static group member (rolling
	// restarts then move no partitions).
	InstanceID string
	// FinishTimeout bounds how long in-flight work may take to write its
	// results and progress once the dispatcher is stopping, counted from
	// the end of the sends in flight at the stop. Default 30s.
	FinishTimeout time.Duration
}

func (c *Config) defaults() {
	if c.ChunkSize <= 0 {
		c.ChunkSize = 100
	}
	switch {
	case c.ResultsLinger == 0:
		c.ResultsLinger = 20 * time.Millisecond
	case c.ResultsLinger < 0:
		c.ResultsLinger = 0
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = providers.MaxAttempts
	}
	if c.Backoff == (providers.BackoffPolicy{}) {
		c.Backoff = providers.DefaultBackoff()
	}
	if c.MaxStaleness <= 0 {
		c.MaxStaleness = time.Second
	}
	if c.HaltProbeInterval <= 0 {
		c.HaltProbeInterval = 30 * time.Second
	}
	if c.ParkInterval <= 0 {
		c.ParkInterval = time.Second
	}
	if c.ProgressRetention <= 0 {
		c.ProgressRetention = 35 * 24 * time.Hour
	}
	if c.QueueRecords <= 0 {
		c.QueueRecords = 4
	}
	if c.PartitionWindowBytes <= 0 {
		c.PartitionWindowBytes = 4 << 20
	}
	if c.PartitionConcurrency <= 0 {
		c.PartitionConcurrency = 4
	}
	if c.PartitionWindow < c.PartitionConcurrency {
		c.PartitionWindow = max(64, c.PartitionConcurrency)
	}
	if c.MaxPollRecords <= 0 {
		c.MaxPollRecords = 32
	}
	if c.FetchMaxWait <= 0 {
		c.FetchMaxWait = 250 * time.Millisecond
	}
	if c.LagInterval <= 0 {
		c.LagInterval = 10 * time.Second
	}
	if c.FinishTimeout <= 0 {
		c.FinishTimeout = 30 * time.Second
	}
}

// Deps are a Dispatcher's collaborators.
type Deps struct {
	// Apps are the senders by app name (see BuildApps).
	Apps map[string]App
	// Control is the campaign-control view; it must be running.
	Control ControlView
	// Store keeps progress, parked batches and halts (MySQLStore).
	Store Store
	// Halt is the registry the senders consult; the dispatcher keeps it
	// in step with the store's halts. Default: a new one.
	Halt    *providers.Halt
	Logger  *slog.Logger
	Metrics prometheus.Registerer
	// Ready, if set, gets check "dispatcher": ready once the group is
	// joined, unready while stopping.
	Ready *service.Readiness
}

// Dispatcher sends ready batches. See the package documentation.
type Dispatcher struct {
	cfg     Config
	apps    map[string]App
	limits  map[string]*appLimit
	control ControlView
	store   Store
	halt    *providers.Halt
	log     *slog.Logger
	m       *metrics

	cl    *kgo.Client
	ready *service.Readiness
	// bg outlives Run's context: finishing in-flight work (results,
	// progress, parking) must not be cut short by the stop that asks for it.
	bg context.Context

	mu      sync.Mutex
	workers map[topicPartition]*worker

	// rebalanceTimeout is the group's: long enough for the longest revoke
	// (revokeBudget).
	rebalanceTimeout time.Duration

	// sends feeds the sender pool the jobs that took a free slot when
	// their chunk was submitted; the pool is as large as the apps'
	// concurrency together, so a send never waits here for a goroutine.
	sends    chan *sendJob
	poolSize int

	haltMu sync.Mutex
	// syncMu orders a park pass's reading and applying of the stored halts
	// against a probe's lifting of one (probeDone).
	syncMu  sync.Mutex
	halted  map[string]Halt      // the store's halts as last read, plus ones seen since
	probing map[string]time.Time // apps this instance probes, until
}

type topicPartition struct {
	topic     string
	partition int32
}

// appLimit bounds one app's sends in this dispatcher: at most its
// concurrency in flight, at most its rate started per second. Devices
// waiting for a slot queue here in the order their chunks submitted them;
// a sender goroutine that finishes a send takes the next one with the same
// slot, so an answer turns into the next request without a hand-off
// through the chunk's goroutine and the pool's channel (on one core, each
// hand-off waits behind every goroutine an answer burst made runnable).
type appLimit struct {
	rate *rate.Limiter // nil: unlimited

	mu      sync.Mutex
	free    int        // slots not in use
	pending []*sendJob // FIFO; pending[head:] wait for a slot
	head    int
}

func newAppLimit(concurrency int) *appLimit { return &appLimit{free: concurrency} }

// submit queues jobs behind those already waiting and returns the ones
// that take a free slot now; the caller starts those.
func (l *appLimit) submit(jobs []*sendJob) (start []*sendJob) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pending = append(l.pending, jobs...)
	for l.free > 0 && l.head < len(l.pending) {
		start = append(start, l.popLocked())
		l.free--
	}
	return start
}

// next is called with a slot that just finished its send: it returns the
// next waiting job, which keeps the slot, or nil after freeing it.
func (l *appLimit) next() *sendJob {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.head < len(l.pending) {
		return l.popLocked()
	}
	l.free++
	return nil
}

// withdraw takes the jobs of the chunk counted by wg that have not started
// out of the queue and returns how many it took.
func (l *appLimit) withdraw(wg *sync.WaitGroup) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	kept := l.pending[:l.head]
	for _, j := range l.pending[l.head:] {
		if j.wg != wg {
			kept = append(kept, j)
		}
	}
	n := len(l.pending) - len(kept)
	clear(l.pending[len(kept):])
	l.pending = kept
	if l.head == len(l.pending) {
		l.pending, l.head = l.pending[:0], 0
	}
	return n
}

func (l *appLimit) popLocked() *sendJob {
	j := l.pending[l.head]
	l.pending[l.head] = nil
	l.head++
	if l.head == len(l.pending) {
		l.pending, l.head = l.pending[:0], 0
	} else if l.head >= 1024 && l.head*2 >= len(l.pending) {
		n := copy(l.pending, l.pending[l.head:])
		clear(l.pending[n:])
		l.pending, l.head = l.pending[:n], 0
	}
	return j
}

// New checks cfg and deps and builds a Dispatcher; it connects in Run.
func New(cfg Config, deps Deps) (*Dispatcher, error) {
	cfg.defaults()
	var problems []error
	if cfg.Group == "" {
		problems = append(problems, errors.New("group is required"))
	}
	if cfg.Ladder.Ready == "" {
		problems = append(problems, errors.New("ladder: the ready topic is required"))
	}
	if cfg.ResultsTopic == "" {
		problems = append(problems, errors.New("results topic is required"))
	}
	if cfg.DeadLetterTopic == "" {
		problems = append(problems, errors.New("dead-letter topic is required"))
	}
	if deps.Control == nil {
		problems = append(problems, errors.New("deps: Control is required"))
	}
	if deps.Store == nil {
		problems = append(problems, errors.New("deps: Store is required"))
	}
	if len(deps.Apps) == 0 {
		problems = append(problems, errors.New("deps: at least one app is required"))
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("dispatcher: %w", errors.Join(problems...))
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	halt := deps.Halt
	if halt == nil {
		var err error
		if halt, err = providers.NewHalt(log, nil); err != nil {
			return nil, err
		}
	}
	m, err := newMetrics(deps.Metrics)
	if err != nil {
		return nil, err
	}
	d := &Dispatcher{
		cfg: cfg, apps: deps.Apps, limits: map[string]*appLimit{}, control: deps.Control, store: deps.Store,
		halt: halt, log: log.With("stage", Stage), m: m, ready: deps.Ready,
		workers: map[topicPartition]*worker{}, halted: map[string]Halt{}, probing: map[string]time.Time{},
	}
	d.rebalanceTimeout = revokeBudget(cfg, deps.Apps) + rebalanceMargin
	d.ready.Set(Stage, errors.New("starting"))
	for name, a := range deps.Apps {
		c := a.Concurrency
		if c <= 0 {
			c = 200
		}
		d.poolSize += c
		l := newAppLimit(c)
		if a.RatePerSecond > 0 {
			// One token at a time at the full rate: no one-second window
			// holds more than the rate, and the rate is sustained. A
			// burst of a tenth of a second on top of the full refill let
			// an idle app's first second send 1.1 times it; taken out of
			// the refill, it cost a tenth of the rate for good.
			l.rate = rate.NewLimiter(rate.Limit(a.RatePerSecond), 1)
		}
		d.limits[name] = l
	}
	return d, nil
}

// commitTimeout bounds the commit of the marked offsets at a revoke and
// at the stop.
const commitTimeout = 10 * time.Second

// defaultSendTime is the longest a send goes on once its gate closed
// (providers.SendTimeBound) for a sender that does not say, or has no
// request timeout: the providers' default request timeout, 30 s, and the
// sixteenth their shared deadlines add.
const defaultSendTime = 30*time.Second + 30*time.Second/16

// rebalanceMargin is the group's rebalance timeout beyond revokeBudget:
// the time the revoke's start takes to reach the member (a heartbeat, 3 s
// apart) and the rejoin's round trip.
const rebalanceMargin = 5 * time.Second

// revokeBudget is the longest a revoke of partitions takes (onRevoked):
// the sends in flight end within the longest send of the apps' senders
// (their request timeout, 17/16 of it as deadlines are shared; the sends
// still waiting inside a sender, for its concurrency or the quota, are
// withdrawn by their gate, see sendGate), the chunks' results and progress
// are written within FinishTimeout after that (saveContext), and the
// commit within commitTimeout. A stop takes as long (Run).
func revokeBudget(cfg Config, apps map[string]App) time.Duration {
	send := time.Duration(0)
	for _, a := range apps {
		for _, s := range []providers.Sender{a.APNS, a.FCM} {
			if s == nil {
				continue
			}
			t := defaultSendTime
			if b, ok := s.(providers.SendTimeBound); ok && b.MaxSendTime() > 0 {
				t = b.MaxSendTime()
			}
			send = max(send, t)
		}
	}
	if send == 0 {
		send = defaultSendTime
	}
	return send + cfg.FinishTimeout + commitTimeout
}

// Run dispatches until ctx ends, then lets every batch in flight finish its
// chunk (results acknowledged, progress saved), commits, and leaves the
// group: a graceful stop sends nothing twice.
func (d *Dispatcher) Run(ctx context.Context) error {
	d.bg = context.WithoutCancel(ctx)
	opts := []kgo.Opt{
		kgo.ConsumerGroup(d.cfg.Group),
		kgo.ConsumeTopics(d.cfg.Ladder.Ready),
		// The planner writes due batches straight to the ready topic in
		// transactions: a batch of an aborted chunk is re-planned under the
		// same id, possibly with other devices (the audience changed in
		// between), so sending the aborted one would lose and duplicate
		// devices once the finished-batch record skips the re-plan.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.BlockRebalanceOnPoll(),
		kgo.AutoCommitMarks(),
		kgo.AutoCommitInterval(time.Second),
		kgo.OnPartitionsRevoked(d.onRevoked),
		// A revoke lets the chunks in flight finish and saves them before
		// the partitions move (onRevoked): with the default request
		// timeout and FinishTimeout, up to 30 s × 17/16 + 30 s + the
		// commit, more than franz-go's default of 60 s. A member that
		// has not rejoined within the rebalance timeout is evicted, its
		// partitions go to the next owner while its last chunks are
		// still unsaved, and the next owner sends their answered devices
		// again: a graceful rebalance with duplicates. So it is derived
		// from what the revoke may take (revokeBudget).
		kgo.RebalanceTimeout(d.rebalanceTimeout),
		kgo.OnPartitionsLost(d.onLost),
		kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) { d.ready.Set(Stage, nil) }),
		kgo.FetchMaxWait(d.cfg.FetchMaxWait),
		// Bounded fetch buffers: partitions are paused while their
		// workers have a backlog, so this is most of what is buffered.
		kgo.FetchMaxBytes(16 << 20),
		kgo.FetchMaxPartitionBytes(1 << 20),
		kgo.ProducerLinger(d.cfg.ResultsLinger),
	}
	if d.cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(d.cfg.InstanceID))
	}
	cl, err := kafka.NewClient(d.cfg.Kafka, opts...)
	if err != nil {
		return fmt.Errorf("dispatcher: %w", err)
	}
	d.cl = cl
	d.sends = make(chan *sendJob, d.poolSize)
	var pool sync.WaitGroup
	for range d.poolSize {
		pool.Go(func() { d.sendLoop(d.sends) })
	}
	defer func() {
		close(d.sends)
		pool.Wait()
	}()

	bgCtx, stopBg := context.WithCancel(d.bg)
	var bgWG sync.WaitGroup
	bgWG.Add(3)
	go func() {
		defer bgWG.Done()
		kafka.WatchLag(bgCtx, kadm.NewClient(cl), d.cfg.Group, d.cfg.LagInterval, d.m.lag, d.log)
	}()
	go func() {
		defer bgWG.Done()
		d.parkLoop(bgCtx)
	}()
	go func() {
		defer bgWG.Done()
		d.cleanupLoop(bgCtx)
	}()
	d.log.Info("dispatcher started", "group", d.cfg.Group, "ready", d.cfg.Ladder.Ready, "results", d.cfg.ResultsTopic, "apps", len(d.apps),
		"rebalance_timeout", d.rebalanceTimeout)

	var runErr error
	for {
		fs := cl.PollRecords(ctx, d.cfg.MaxPollRecords)
		if ctx.Err() != nil {
			break
		}
		if fs.IsClientClosed() {
			runErr = errors.New("dispatcher: client closed")
			break
		}
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				d.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
			}
		})
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) > 0 {
				d.enqueue(topicPartition{p.Topic, p.Partition}, p.Records)
			}
		})
		cl.AllowRebalance()
	}

	d.ready.Set(Stage, errors.New("stopping"))
	d.log.Info("dispatcher stopping: finishing the chunks in flight")
	d.stopAllWorkers()
	cctx, cancel := context.WithTimeout(d.bg, commitTimeout)
	if err := cl.CommitMarkedOffsets(cctx); err != nil {
		// Nothing is sent twice (finished batches are skipped when read
		// again), but the stop did not do all it should, and the exit
		// status says so.
		d.log.Error("final commit failed; finished batches will be skipped when read again", "err", err)
		runErr = errors.Join(runErr, fmt.Errorf("dispatcher: final commit: %w", err))
	}
	cancel()
	stopBg()
	bgWG.Wait()
	cl.CloseAllowingRebalance()
	d.log.Info("dispatcher stopped")
	return runErr
}

// enqueue hands polled records to their partition's worker, which pauses
// the partition while it has a backlog so the poll never blocks.
func (d *Dispatcher) enqueue(tp topicPartition, recs []*kgo.Record) {
	d.mu.Lock()
	w := d.workers[tp]
	if w == nil {
		w = newWorker(d, tp)
		d.workers[tp] = w
		go w.run()
	}
	d.mu.Unlock()
	w.push(recs)
}

// onRevoked lets the revoked partitions' workers finish their chunk, then
// commits: what was finished is committed, the rest is read again by the
// next owner, which skips what the progress store says is done.
func (d *Dispatcher) onRevoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	d.stopWorkers(revoked)
	// Bounded, so the revoke stays within the rebalance timeout.
	ctx, cancel := context.WithTimeout(ctx, commitTimeout)
	defer cancel()
	if err := cl.CommitMarkedOffsets(ctx); err != nil {
		d.log.Warn("commit on revoke failed; finished batches will be skipped when read again", "err", err)
	}
}

// onLost: the session is gone (fenced, or the broker unreachable past the
// session timeout); until the group is joined again (franz-go calls
// OnPartitionsAssigned after every join, with partitions or not) the
// instance sends nothing, and says so.
func (d *Dispatcher) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	d.ready.Set(Stage, errLostSession)
	d.stopWorkers(lost)
}

// errLostSession is a stage's readiness between a lost group session and
// the next join.
var errLostSession = errors.New("group session lost; rejoining")

// stopWorkers stops the workers of parts after their current chunk and
// waits for them. No parts stops none: franz-go's cooperative balancer
// ends every group session with a revoke callback that may name nothing,
// and a worker stopped then would drop its queued batches while its
// partition, still ours, reads on past them.
func (d *Dispatcher) stopWorkers(parts map[string][]int32) {
	d.stopMatching(func(tp topicPartition) bool { return contains(parts[tp.topic], tp.partition) })
}

// stopAllWorkers stops every worker after its current chunk and waits.
func (d *Dispatcher) stopAllWorkers() { d.stopMatching(func(topicPartition) bool { return true }) }

func (d *Dispatcher) stopMatching(match func(topicPartition) bool) {
	d.mu.Lock()
	var stopping []*worker
	for tp, w := range d.workers {
		if !match(tp) {
			continue
		}
		delete(d.workers, tp)
		stopping = append(stopping, w)
	}
	d.mu.Unlock()
	resume := map[string][]int32{}
	for _, w := range stopping {
		w.stop()
	}
	for _, w := range stopping {
		<-w.done
		resume[w.tp.topic] = append(resume[w.tp.topic], w.tp.partition)
	}
	if len(resume) > 0 {
		// A pause outlives the assignment; a later re-assignment must fetch.
		d.cl.ResumeFetchPartitions(resume)
	}
}

func contains(ps []int32, p int32) bool {
	for _, x := range ps {
		if x == p {
			return true
		}
	}
	return false
}

// worker sends one ready partition's batches: up to PartitionWindow
// started (PartitionConcurrency of them sending) at a time, in offset order, marked for commit only as a
// contiguous prefix (so a committed offset never skips an unfinished
// batch). Two records with the same key (the same batch id; a record
// replayed without a key counts as keyed by its batch id, see guardKey)
// are never in flight together. A copy of a batch in flight (the forwarder
// re-forwards after a crash or a lost session, a parked batch may be
// released twice) is set aside: it keeps its place in the window, so nothing at or after
// its offset is committed before it is done, but takes no send slot, and
// the records behind it start as usual. Once its twin finishes it starts
// like any record, and the finished-id check skips it. Waiting in the
// queue instead, it held every batch behind it, other apps' due ones too,
// until its twin finished: a whole throttled batch (500 devices at 10/s,
// 50 s).
type worker struct {
	d  *Dispatcher
	tp topicPartition

	// fetch pauses and resumes the partition (the dispatcher's client).
	fetch partitionPauser
	// handle handles one record (Dispatcher.handle) and mark marks records
	// for commit (the client's MarkCommitRecords); tests replace them.
	handle func(stop context.Context, rec *kgo.Record, slots chan struct{}) bool
	mark   func(...*kgo.Record)

	mu     sync.Mutex
	queue  []*queued // not started yet
	paused bool      // fetching paused; changed only with mu held
	wake   chan struct{}

	stopCtx context.Context // cancelled to stop after the current chunks
	cancel  context.CancelFunc
	done    chan struct{}
	sending chan struct{} // a slot per batch sending
}

func newWorker(d *Dispatcher, tp topicPartition) *worker {
	ctx, cancel := context.WithCancel(context.Background())
	return &worker{d: d, tp: tp, fetch: d.cl, handle: d.handle, mark: d.cl.MarkCommitRecords,
		wake: make(chan struct{}, 1), stopCtx: ctx, cancel: cancel, done: make(chan struct{}),
		sending: make(chan struct{}, d.cfg.PartitionConcurrency)}
}

// partitionPauser is what a worker needs of *kgo.Client.
type partitionPauser interface {
	PauseFetchPartitions(map[string][]int32) map[string][]int32
	ResumeFetchPartitions(map[string][]int32)
}

// push queues polled records and pauses the partition once the queue holds
// QueueRecords. The length is judged under the same lock take resumes
// under: judged after unlocking, the worker could empty the queue in
// between, and a partition paused with nothing queued is never resumed
// (take is what resumes it). That race stalled a CI run with a quarter of
// a campaign unsent.
func (w *worker) push(recs []*kgo.Record) {
	qs := make([]*queued, len(recs))
	for i, r := range recs {
		qs[i] = &queued{Record: r, key: guardKey(r)}
	}
	w.mu.Lock()
	w.queue = append(w.queue, qs...)
	if len(w.queue) >= w.d.cfg.QueueRecords {
		w.setPausedLocked(true)
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *worker) setPausedLocked(p bool) {
	if w.paused == p {
		return
	}
	w.paused = p
	parts := map[string][]int32{w.tp.topic: {w.tp.partition}}
	if p {
		w.fetch.PauseFetchPartitions(parts)
	} else {
		w.fetch.ResumeFetchPartitions(parts)
	}
}

func (w *worker) stop() { w.cancel() }

// take removes the next record to start, unless a record with its key is
// in flight (keys counts those: see takeCopy), and resumes fetching once
// the queue is down to half of QueueRecords.
func (w *worker) take(keys map[string]int) *queued {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.queue) == 0 || keys[w.queue[0].key] > 0 {
		return nil
	}
	return w.popLocked()
}

// takeCopy removes the next record if a record with its key is in flight
// (the one take leaves): a copy of a batch being handled, which run sets
// aside rather than letting it hold up the records behind it.
func (w *worker) takeCopy(keys map[string]int) *queued {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.queue) == 0 || keys[w.queue[0].key] == 0 {
		return nil
	}
	return w.popLocked()
}

func (w *worker) popLocked() *queued {
	r := w.queue[0]
	w.queue[0] = nil
	w.queue = w.queue[1:]
	if len(w.queue) <= w.d.cfg.QueueRecords/2 {
		w.setPausedLocked(false)
	}
	return r
}

// queued is a polled record with its key for the same-key guard.
type queued struct {
	*kgo.Record
	key string
}

// guardKey is the key the same-key guard knows rec by: its own, or for a
// record replayed without one (kcat without -K, kafka-console-producer
// without parse.key), the batch id it is keyed by once re-keyed (see
// rekey). Known by its empty key, every keyless record of a partition was
// set aside behind the one in flight: one held up by a park the store
// refused held them all.
func guardKey(rec *kgo.Record) string {
	if len(rec.Key) == 0 {
		if src, err := delay.Scheduled(rec); err == nil {
			return string(src.Key)
		}
	}
	return string(rec.Key)
}

type slot struct {
	rec      *kgo.Record
	key      string
	finished bool
	ok       bool
}

func (w *worker) run() {
	defer close(w.done)
	// window: the records taken and not yet marked, in offset order;
	// started or set aside, each holds its place in the commit order.
	var window []*slot
	finished := make(chan *slot, w.d.cfg.PartitionWindow)
	keys := map[string]int{}      // records started and not finished, by key (at most 1 each)
	aside := map[string][]*slot{} // copies set aside while their key is in flight, in offset order
	running := 0
	windowBytes := 0
	stopping := false
	stopCh := w.stopCtx.Done()
	start := func(s *slot) {
		keys[s.key]++
		running++
		go func() {
			s.ok = w.handle(w.stopCtx, s.rec, w.sending)
			finished <- s
		}()
	}
	for {
		for !stopping && len(window) < w.d.cfg.PartitionWindow && (len(window) == 0 || windowBytes < w.d.cfg.PartitionWindowBytes) {
			q, copied := w.take(keys), false
			if q == nil {
				if q = w.takeCopy(keys); q == nil {
					break
				}
				copied = true
			}
			s := &slot{rec: q.Record, key: q.key}
			window = append(window, s)
			windowBytes += len(s.rec.Value)
			if copied {
				aside[s.key] = append(aside[s.key], s)
				continue
			}
			start(s)
		}
		if stopping && running == 0 {
			// Copies still set aside are neither started nor marked:
			// the next owner reads them again (and skips them).
			return
		}
		select {
		case s := <-finished:
			running--
			s.finished = true
			key := s.key
			if keys[key]--; keys[key] == 0 {
				delete(keys, key)
			}
			if !s.ok {
				// Stop interrupted it: its progress is saved; it and
				// everything after it are read again by the next owner.
				stopping = true
			}
			if copies := aside[key]; len(copies) > 0 && !stopping {
				// Its twin is done: the first copy set aside starts
				// (one at a time, so copies never run together either).
				c := copies[0]
				copies[0] = nil
				if copies = copies[1:]; len(copies) == 0 {
					delete(aside, key)
				} else {
					aside[key] = copies
				}
				start(c)
			}
			for len(window) > 0 && window[0].finished && window[0].ok {
				w.mark(window[0].rec)
				windowBytes -= len(window[0].rec.Value)
				window[0] = nil
				window = window[1:]
			}
		case <-w.wake:
		case <-stopCh:
			stopping, stopCh = true, nil
		}
	}
}

// ConfigFrom is the dispatcher's Config from the shared configuration:
// group <group_prefix>-dispatcher on the ready topic, dispatcher.chunk_size,
// dispatcher.results_linger and dispatcher.max_attempts; the rest takes the
// defaults.
func ConfigFrom(cfg *config.Config) Config {
	return Config{
		Kafka:           cfg.Kafka,
		Group:           cfg.Kafka.GroupPrefix + "-" + Stage,
		Ladder:          delay.LadderFrom(cfg),
		ResultsTopic:    cfg.Kafka.Topics.Results.Name,
		DeadLetterTopic: cfg.Kafka.Topics.DeadLetter.Name,
		ChunkSize:       cfg.Dispatcher.ChunkSize,
		ResultsLinger:   resultsLinger(cfg.Dispatcher.ResultsLinger),
		MaxAttempts:     cfg.Dispatcher.MaxAttempts,
	}
}

// resultsLinger maps the config's 0 (send at once) to Config's negative,
// where 0 means the default.
func resultsLinger(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
