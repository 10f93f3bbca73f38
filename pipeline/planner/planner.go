package planner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/internal/service"
	"github.com/pushlane/pushlane/pipeline/kafka"
)

// Config tunes a Planner. ConfigFrom fills it from the process config.
type Config struct {
	// Kafka is the connection and the topics (campaigns in; delay tiers,
	// ready, results, dead letters out).
	Kafka config.Kafka
	// DelayTiers names the ladder topics (config.DelayTiers()).
	DelayTiers []string
	// Apps are the known apps: a campaign of another app is dead-lettered.
	// An app with an APNs setup gets APNs token rules for iOS devices.
	Apps map[string]config.App
	// Instance names this planner replica: the transactional id is
	// <group_prefix>-planner-<instance> and the group's static member id is
	// the instance, so it must be unique per replica and stable across its
	// restarts. Required.
	Instance string
	// PageSize is the number of device rows per keyset page. Default 5000.
	PageSize int
	// BatchesPerTransaction is the chunk size: batches per transaction,
	// each chunk committing a checkpoint. Default 200. A chunk also ends
	// after as many devices' worth of work without batches (invalid
	// tokens, expired devices) or a quarter of TransactionTimeout, also
	// when that passes while waiting for a MySQL page.
	BatchesPerTransaction int
	// MaxBatchBytes caps a batch record's value; a batch that would grow
	// past it closes early. Default 900 KiB, under the broker's default
	// 1 MB message limit.
	MaxBatchBytes int
	// TransactionTimeout is the broker-side limit of one transaction.
	// Default 40s (franz-go's default).
	TransactionTimeout time.Duration
	// MaxBufferedBytes bounds produced-but-unacknowledged bytes, and so the
	// planner's memory, whatever the campaign size. Default 8 MiB.
	MaxBufferedBytes int
	// RetryMin and RetryMax bound the backoff between attempts of a
	// campaign after a MySQL or Kafka failure. Defaults 200ms and 30s.
	RetryMin, RetryMax time.Duration
	// ReadParallelism is how many pages of a segment are fetched from
	// MySQL at once, each on its own connection (the ids of the pages are
	// still read in order). Default 2; 1 reads one page at a time.
	ReadParallelism int
	// ControlWait bounds how long a campaign waits for the control view to
	// catch up before planning starts. Default 5s.
	ControlWait time.Duration
	// SessionTimeout is the group session timeout; a replica that dies
	// without restarting holds its partitions this long. Default 45s.
	SessionTimeout time.Duration
}

// ConfigFrom builds the planner's Config from the process config.
func ConfigFrom(c *config.Config, instance string) Config {
	return Config{
		Kafka:                 c.Kafka,
		DelayTiers:            c.DelayTiers(),
		Apps:                  c.Apps,
		Instance:              instance,
		PageSize:              c.Planner.PageSize,
		BatchesPerTransaction: c.Planner.BatchesPerTransaction,
	}
}

func (c *Config) setDefaults() {
	if c.PageSize <= 0 {
		c.PageSize = 5000
	}
	if c.BatchesPerTransaction <= 0 {
		c.BatchesPerTransaction = 200
	}
	if c.MaxBatchBytes <= 0 {
		c.MaxBatchBytes = 900 << 10
	}
	if c.TransactionTimeout <= 0 {
		c.TransactionTimeout = 40 * time.Second
	}
	if c.MaxBufferedBytes <= 0 {
		c.MaxBufferedBytes = 8 << 20
	}
	if c.RetryMin <= 0 {
		c.RetryMin = 200 * time.Millisecond
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 30 * time.Second
	}
	if c.ReadParallelism <= 0 {
		c.ReadParallelism = 2
	}
	if c.ControlWait <= 0 {
		c.ControlWait = 5 * time.Second
	}
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = 45 * time.Second
	}
}

// Validate reports what is missing, naming each key.
func (c Config) Validate() error {
	var p []string
	t := c.Kafka.Topics
	topics := map[string]string{"campaigns": t.Campaigns.Name, "ready": t.Ready.Name, "results": t.Results.Name, "dead_letter": t.DeadLetter.Name}
	for _, name := range slices.Sorted(maps.Keys(topics)) {
		if topics[name] == "" {
			p = append(p, "kafka.topics."+name+".name: required")
		}
	}
	if c.Instance == "" {
		p = append(p, "instance: required")
	}
	if len(c.Apps) == 0 {
		p = append(p, "apps: at least one app is required")
	}
	if len(p) > 0 {
		return fmt.Errorf("planner: config: %s", strings.Join(p, "; "))
	}
	return nil
}

// Controls is the campaign-control state the planner consults; a
// *control.View is one.
type Controls interface {
	// Cancelled reports whether the campaign was cancelled.
	Cancelled(campaignID string) bool
	// WaitFresh returns once every control event acknowledged before t
	// has been applied.
	WaitFresh(ctx context.Context, t time.Time) error
}

// Deps are the Planner's collaborators.
type Deps struct {
	Store Store
	// Controls may be nil: no cancellation by the planner (later stages
	// still drop cancelled batches).
	Controls Controls
	Logger   *slog.Logger
	Metrics  prometheus.Registerer
	// Ready, if set, gets check "planner" cleared once the planner has
	// joined its group, and set again while a failed session is replaced.
	Ready *service.Readiness
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Planner consumes campaigns and produces their batches.
type Planner struct {
	cfg      Config
	store    Store
	controls Controls
	log      *slog.Logger
	m        *metrics
	ready    *service.Readiness
	now      func() time.Time
	group    string
	txnID    string

	// committed is what the group has committed per campaign partition,
	// with its metadata: filled from the offset fetch of every assignment
	// and updated by this planner's own commits.
	mu        sync.Mutex
	committed map[int32]commitPoint
	chunks    uint64 // chunks this planner committed, so the loop can tell a run of aborts from aborts between commits

	// sleep pauses between attempts; tests replace it to see the pauses.
	sleep func(ctx context.Context, d time.Duration) bool

	// testHook, if set, runs after each committed chunk and after each
	// produced batch; an error it returns ends Run at once, without ending
	// the open transaction, as a crash would.
	values valuePool

	testHook func(ev hookEvent) error
	crashed  *kgo.GroupTransactSession
}

type commitPoint struct {
	offset int64
	meta   string
}

type hookEvent struct {
	campaign string
	chunks   int  // chunks committed in this attempt
	batches  int  // batches produced in the open chunk; 0 right after a commit
	final    bool // the chunk with the last batches was just committed
	flush    func()

	sessionStarted bool // a Kafka session was just created
	planner        *Planner
}

// errCrash is returned by Run when a test hook simulated a crash.
var errCrash = errors.New("planner: simulated crash")

// New builds a Planner.
func New(cfg Config, deps Deps) (*Planner, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Store == nil {
		return nil, errors.New("planner: deps: Store is required")
	}
	m, err := newMetrics(deps.Metrics)
	if err != nil {
		return nil, err
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	prefix := cfg.Kafka.GroupPrefix
	if prefix == "" {
		prefix = "pushlane"
	}
	return &Planner{
		cfg:       cfg,
		store:     deps.Store,
		controls:  deps.Controls,
		log:       log,
		m:         m,
		ready:     deps.Ready,
		now:       now,
		group:     prefix + "-planner",
		txnID:     prefix + "-planner-" + cfg.Instance,
		committed: map[int32]commitPoint{},
		sleep:     sleep,
	}, nil
}

// DefaultInstance is the host name, the natural replica name of a
// StatefulSet pod or a VM.
func DefaultInstance() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "planner"
	}
	return h
}

// Run plans campaigns until ctx ends. A campaign in progress when ctx ends
// commits its current chunk and checkpoint first, so the next start
// resumes it. A failed Kafka session is replaced after a backoff.
func (p *Planner) Run(ctx context.Context) error {
	// Unready from the stop on, while the open chunk is committed.
	defer context.AfterFunc(ctx, func() { p.ready.Set("planner", errors.New("draining")) })()
	failures := 0
	for {
		err := p.session(ctx)
		if errors.Is(err, errCrash) {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		failures++
		d := p.backoff(failures)
		p.log.Error("planner: kafka session failed; starting a new one", "err", err, "retry_in", d)
		p.ready.Set("planner", fmt.Errorf("kafka session failed: %w", err))
		p.m.retries.WithLabelValues("kafka").Inc()
		if !p.sleep(ctx, d) {
			return nil
		}
	}
}

func (p *Planner) backoff(failures int) time.Duration {
	d := p.cfg.RetryMin
	for i := 1; i < failures && d < p.cfg.RetryMax; i++ {
		d *= 2
	}
	return min(d, p.cfg.RetryMax)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (p *Planner) sessionOpts() ([]kgo.Opt, error) {
	opts, err := kafka.ClientOpts(p.cfg.Kafka)
	if err != nil {
		return nil, err
	}
	return append(opts,
		kgo.TransactionalID(p.txnID),
		kgo.TransactionTimeout(p.cfg.TransactionTimeout),
		kgo.ConsumerGroup(p.group),
		kgo.ConsumeTopics(p.cfg.Kafka.Topics.Campaigns.Name),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Static membership: a restarted replica takes its partitions
		// back at once instead of waiting out a rebalance, and its
		// transactional id fences the transaction it left open.
		kgo.InstanceID(p.cfg.Instance),
		kgo.SessionTimeout(p.cfg.SessionTimeout),
		kgo.OnOffsetsFetched(p.onOffsetsFetched),
		// Ready once the group is joined, whatever it assigned: a member
		// with no campaigns partition (more replicas than partitions) or
		// one waiting for the first campaign is serving.
		kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) {
			p.ready.Set("planner", nil)
		}),
		kgo.MaxBufferedBytes(p.cfg.MaxBufferedBytes),
		kgo.RecordDeliveryTimeout(p.cfg.TransactionTimeout),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.WithLogger(kgoLogger{p.log}),
	), nil
}

// onOffsetsFetched records the committed offsets and metadata of newly
// assigned partitions: the metadata is the checkpoint of a campaign in
// progress. The planner consumes one topic, so partitions suffice as keys
// (OffsetFetch v10 answers with topic ids, not names).
func (p *Planner) onOffsetsFetched(_ context.Context, _ *kgo.Client, resp *kmsg.OffsetFetchResponse) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	put := func(partition int32, offset int64, meta *string) {
		cp := commitPoint{offset: offset}
		if meta != nil {
			cp.meta = *meta
		}
		p.committed[partition] = cp
	}
	for _, t := range resp.Topics {
		for _, pt := range t.Partitions {
			put(pt.Partition, pt.Offset, pt.Metadata)
		}
	}
	for _, g := range resp.Groups {
		for _, t := range g.Topics {
			for _, pt := range t.Partitions {
				put(pt.Partition, pt.Offset, pt.Metadata)
			}
		}
	}
	return nil
}

func (p *Planner) committedAt(partition int32) commitPoint {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.committed[partition]
}

func (p *Planner) setCommitted(partition int32, cp commitPoint) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.committed[partition] = cp
	p.chunks++
}

func (p *Planner) chunksCommitted() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.chunks
}

// session runs one Kafka session: poll campaigns, plan each in one or more
// transactions. It returns nil when ctx ends, an error when the session is
// unusable.
func (p *Planner) session(ctx context.Context) (err error) {
	opts, err := p.sessionOpts()
	if err != nil {
		return err
	}
	// Forget the last session's view before the client exists: it joins the
	// group at once, and onOffsetsFetched may fill the map before
	// NewGroupTransactSession even returns.
	p.mu.Lock()
	clear(p.committed)
	p.mu.Unlock()
	sess, err := kgo.NewGroupTransactSession(opts...)
	if err != nil {
		return fmt.Errorf("planner: kafka session: %w", err)
	}
	if p.testHook != nil {
		if err := p.testHook(hookEvent{sessionStarted: true, planner: p}); err != nil {
			sess.Close()
			return err
		}
	}
	defer func() {
		if errors.Is(err, errCrash) {
			// A crashed process ends nothing: its open transaction stays
			// open until the restarted instance fences it. The test that
			// set the hook closes the client.
			p.crashed = sess
			return
		}
		sess.Close()
	}()
	failures := 0
	fetchFailures := 0
	// Aborts that are not failures of ours: a rebalance, or the group
	// coordinator turning the offset commit away (moving, loading, busy
	// with another transaction), which End also reports as an abort. The
	// first is re-polled at once; a run of them, with no chunk committed
	// in between, backs off, so a coordinator that stays away does not
	// have the same chunk planned, produced and aborted in a loop.
	aborts := 0
	var chunksAtAbort uint64
	for {
		fs := sess.PollRecords(ctx, 64)
		if ctx.Err() != nil {
			return nil
		}
		if fs.IsClientClosed() {
			return kgo.ErrClientClosed
		}
		var fatal error
		errs := 0
		fs.EachError(func(t string, part int32, ferr error) {
			if errors.Is(ferr, context.Canceled) {
				return
			}
			errs++
			p.log.Warn("planner: fetch error", "topic", t, "partition", part, "err", ferr, "consecutive", fetchFailures+1)
			var ke *kgo.ErrGroupSession
			if errors.As(ferr, &ke) {
				fatal = ferr
			}
		})
		if fatal != nil {
			return fatal
		}
		if errs == 0 {
			fetchFailures = 0
		} else if len(fs.Records()) == 0 {
			// A persistent fetch error (the topic deleted, access
			// revoked) returns from every poll at once: back off instead
			// of spinning on it.
			fetchFailures++
			if !p.sleep(ctx, p.backoff(fetchFailures)) {
				return nil
			}
			continue
		}
		for _, r := range fs.Records() {
			// A stop starts no new campaign: the rest of the poll is
			// the next owner's. Started anyway, it began a transaction
			// and committed an empty checkpoint, and a campaign that
			// expired meanwhile was then planned instead of recorded
			// as expired.
			if ctx.Err() != nil {
				return nil
			}
			res, herr := p.handle(ctx, sess, r)
			if herr != nil {
				return herr
			}
			if res == resultStopped {
				return nil
			}
			if res == resultRetry {
				failures++
				d := p.backoff(failures)
				p.log.Info("planner: campaign attempt abandoned; retrying from its last checkpoint", "retry_in", d)
				if !p.sleep(ctx, d) {
					return nil
				}
				break // the abort rewound to the committed offsets: poll again
			}
			if res == resultAgain {
				if n := p.chunksCommitted(); n != chunksAtAbort {
					aborts, chunksAtAbort = 0, n // progress since the last one: a new run
				}
				if aborts++; aborts > 1 {
					if !p.sleep(ctx, p.backoff(aborts-1)) {
						return nil
					}
				}
				break
			}
			failures, aborts = 0, 0
		}
	}
}

// result says how handling one campaign record ended.
type result int

const (
	resultDone    result = iota // committed: the record is finished
	resultRetry                 // aborted on a failure: back off, re-poll, resume from the checkpoint
	resultAgain                 // aborted, not for a failure of ours (rebalance, cancellation): re-poll now, back off if it repeats
	resultStopped               // ctx ended; the open chunk was committed, or nothing had been begun
)

// valuePool recycles batch values. sync.Pool drops idle buffers at GC, so
// a planner between campaigns holds none.
type valuePool struct{ p sync.Pool }

func (v *valuePool) get(n int) []byte {
	if b, ok := v.p.Get().(*[]byte); ok && cap(*b) >= n {
		return (*b)[:0]
	}
	return make([]byte, 0, n)
}

func (v *valuePool) put(b []byte) {
	b = b[:0]
	v.p.Put(&b)
}
