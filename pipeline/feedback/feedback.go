package feedback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/internal/service"
	pkafka "github.com/pushlane/pushlane/pipeline/kafka"
	"github.com/pushlane/pushlane/schemas"
)

// Stage is the name used for the consumer group suffix, dead letters and
// logs.
const Stage = "feedback"

// Config tunes the stage.
type Config struct {
	// ResultsTopic, RegistrationsTopic and DeadLetterTopic name the topics.
	// Required.
	ResultsTopic       string
	RegistrationsTopic string
	DeadLetterTopic    string
	// Group is the consumer group. Required; <kafka.group_prefix>-feedback.
	Group string
	// FlushRows and FlushInterval bound a flush: it happens when this many
	// records are buffered or the oldest buffered record is this old.
	// Defaults 5000 and 1s.
	FlushRows     int
	FlushInterval time.Duration
	// MinBackoff and MaxBackoff bound the wait between retries of a failed
	// flush (doubling, with jitter). Defaults 200ms and 10s.
	MinBackoff, MaxBackoff time.Duration
	// DrainTimeout bounds the last flush after ctx is cancelled. Default 30s.
	DrainTimeout time.Duration
}

// ConfigFrom maps the process configuration onto the stage's.
func ConfigFrom(c *config.Config) Config {
	return Config{
		ResultsTopic:       c.Kafka.Topics.Results.Name,
		RegistrationsTopic: c.Kafka.Topics.Registrations.Name,
		DeadLetterTopic:    c.Kafka.Topics.DeadLetter.Name,
		Group:              c.Kafka.GroupPrefix + "-" + Stage,
		FlushRows:          c.Feedback.FlushRows,
		FlushInterval:      c.Feedback.FlushInterval,
	}
}

func (c *Config) setDefaults() {
	if c.FlushRows == 0 {
		c.FlushRows = 5000
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = time.Second
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = 200 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 10 * time.Second
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 30 * time.Second
	}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.ResultsTopic == "":
		return errors.New("feedback: ResultsTopic is required")
	case c.RegistrationsTopic == "":
		return errors.New("feedback: RegistrationsTopic is required")
	case c.DeadLetterTopic == "":
		return errors.New("feedback: DeadLetterTopic is required")
	case c.Group == "":
		return errors.New("feedback: Group is required")
	case c.FlushRows < 1:
		return errors.New("feedback: FlushRows must be at least 1")
	case c.FlushInterval <= 0:
		return errors.New("feedback: FlushInterval must be positive")
	case c.MinBackoff <= 0 || c.MaxBackoff < c.MinBackoff:
		return errors.New("feedback: need 0 < MinBackoff <= MaxBackoff")
	}
	return nil
}

// Deps are the stage's collaborators.
type Deps struct {
	// KafkaOpts connect to the cluster (pipeline/kafka.ClientOpts); the
	// stage adds its group and consumer options.
	KafkaOpts []kgo.Opt
	// Store keeps the device table clean. Required.
	Store Store
	// Sink stores analytics rows (ClickHouseSink, FileSink, Accumulator or
	// a MultiSink). Required.
	Sink    Sink
	Logger  *slog.Logger
	Metrics prometheus.Registerer
	// Ready, if set, gets check "feedback": ready once the group is joined,
	// unready while draining; each flush step has its own check.
	Ready *service.Readiness
}

// Feedback consumes results and registrations and applies them to MySQL and
// the analytics sink. See the package documentation for the rules.
type Feedback struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	m    *metrics
	cl   *kgo.Client
	mu   sync.Mutex // guards buf against the rebalance callbacks
	buf  buffer
	rows []Row // reused by every flush
}

// buffer is what was polled and not yet committed.
type buffer struct {
	records []*kgo.Record
	results []*schemas.Result
	regs    []*schemas.DeviceRegistration
	bad     []badRecord
	started time.Time
	// Steps already done for this buffer, so a retry after another
	// step's failure does not repeat them (a dead letter twice).
	deadLettered, mysqlDone, analyticsDone bool
}

type badRecord struct {
	rec    *kgo.Record
	kind   string
	reason string
	// letter is rec's dead letter once made, as last produced (slimmed
	// if the broker refused it whole); done once it is written or
	// dropped, so a retry of the step writes only the others.
	letter *kgo.Record
	done   bool
}

func (b *buffer) reset() { *b = buffer{} }

// New builds the stage and its Kafka client; Run starts consuming.
func New(cfg Config, deps Deps) (*Feedback, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Store == nil || deps.Sink == nil {
		return nil, errors.New("feedback: Deps.Store and Deps.Sink are required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Metrics == nil {
		deps.Metrics = prometheus.NewRegistry()
	}
	m, err := newMetrics(deps.Metrics)
	if err != nil {
		return nil, fmt.Errorf("feedback: metrics: %w", err)
	}
	f := &Feedback{cfg: cfg, deps: deps, log: deps.Logger, m: m}
	opts := append([]kgo.Opt{}, deps.KafkaOpts...)
	opts = append(opts,
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.ResultsTopic, cfg.RegistrationsTopic),
		// The planner's invalid-token results are written in its
		// transactions; those of an aborted chunk must not count.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		// Rebalance callbacks run only between polls, after AllowRebalance,
		// which Run calls only with an empty (flushed and committed)
		// buffer: a revoked partition never has uncommitted work here.
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsRevoked(f.onRevoked),
		kgo.OnPartitionsLost(f.onLost),
		// Ready once the group is joined (whatever it assigned), not when
		// Run starts: a member that cannot reach the brokers is not.
		kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) { f.deps.Ready.Set(Stage, nil) }),
		kgo.FetchMaxWait(250*time.Millisecond),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("feedback: kafka client: %w", err)
	}
	f.cl = cl
	deps.Ready.Set(Stage, errors.New("starting"))
	return f, nil
}

// Run consumes until ctx is cancelled, then flushes and commits what it
// holds (within DrainTimeout), leaves the group and returns. A flush that
// fails is retried with backoff and never skipped: the offsets of its
// records are committed only after the dead letters, the MySQL changes and
// the analytics rows are all stored.
func (f *Feedback) Run(ctx context.Context) error {
	defer func() {
		// The buffer is empty (drained or given up): let the leave-group
		// rebalance run its callbacks.
		f.cl.AllowRebalance()
		f.cl.Close()
	}()
	f.log.Info("feedback consuming", "results", f.cfg.ResultsTopic, "registrations", f.cfg.RegistrationsTopic, "group", f.cfg.Group)
	for ctx.Err() == nil {
		deadline := time.Now().Add(f.cfg.FlushInterval)
		f.mu.Lock()
		if len(f.buf.records) > 0 {
			deadline = f.buf.started.Add(f.cfg.FlushInterval)
		}
		room := f.cfg.FlushRows - len(f.buf.records)
		f.mu.Unlock()
		pctx, cancel := context.WithDeadline(ctx, deadline)
		fetches := f.cl.PollRecords(pctx, room)
		cancel()
		if fetches.IsClientClosed() {
			return errors.New("feedback: kafka client closed")
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return
			}
			f.log.Warn("fetch error", "topic", topic, "partition", p, "err", err)
		})
		f.mu.Lock()
		fetches.EachRecord(f.add)
		due := len(f.buf.records) >= f.cfg.FlushRows ||
			(len(f.buf.records) > 0 && !time.Now().Before(f.buf.started.Add(f.cfg.FlushInterval)))
		if due {
			if err := f.flushLocked(ctx); err != nil {
				f.mu.Unlock()
				break // ctx cancelled during retries
			}
		}
		empty := len(f.buf.records) == 0
		f.mu.Unlock()
		if empty {
			f.cl.AllowRebalance()
		}
	}
	return f.drain(ctx)
}

// drain flushes and commits the buffer after ctx ended.
func (f *Feedback) drain(ctx context.Context) error {
	f.deps.Ready.Set(Stage, errors.New("draining"))
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.cfg.DrainTimeout)
	defer cancel()
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.buf.records)
	if n == 0 {
		return nil
	}
	if err := f.flushLocked(dctx); err != nil {
		// Nothing is lost: the records stay uncommitted and the next
		// member of the group reads them again. But the stop did not
		// finish its work, and the exit status says so.
		f.buf.reset()
		return fmt.Errorf("feedback: stopped with %d records uncommitted (the group will consume them again): %w", n, err)
	}
	f.log.Info("drained", "records", n)
	return nil
}

// add decodes one record into the buffer. Called with f.mu held.
func (f *Feedback) add(r *kgo.Record) {
	if len(f.buf.records) == 0 {
		f.buf.started = time.Now()
	}
	f.buf.records = append(f.buf.records, r)
	switch r.Topic {
	case f.cfg.ResultsTopic:
		res, err := DecodeResult(r.Value)
		if err == nil {
			err = checkResult(res)
		}
		if err != nil {
			f.buf.bad = append(f.buf.bad, badRecord{rec: r, kind: schemas.KindResult, reason: err.Error()})
			return
		}
		f.m.result(res.Outcome).Inc()
		f.buf.results = append(f.buf.results, res)
	case f.cfg.RegistrationsTopic:
		reg, err := schemas.DecodeDeviceRegistration(r.Value)
		if err == nil {
			err = CheckRegistration(reg, time.Now())
		}
		if err != nil {
			f.buf.bad = append(f.buf.bad, badRecord{rec: r, kind: schemas.KindDeviceRegistration, reason: err.Error()})
			return
		}
		kind := "register"
		if reg.Unregister {
			kind = "unregister"
		}
		f.m.registrations.WithLabelValues(kind).Inc()
		f.buf.regs = append(f.buf.regs, reg)
	}
}

// checkResult rejects what the schema allows but the stores cannot hold,
// so such an event is dead-lettered instead of failing every retry.
func checkResult(r *schemas.Result) error {
	// ClickHouse's DateTime holds 1970 to 2105.
	inRange := func(t time.Time) bool {
		return !t.Before(time.Unix(0, 0)) && t.Before(time.Date(2105, 12, 31, 0, 0, 0, 0, time.UTC))
	}
	switch {
	case !inRange(r.At):
		return fmt.Errorf("invalid result: /at: %s is outside 1970..2105", r.At.Format(time.RFC3339))
	case !r.SendAt.IsZero() && !inRange(r.SendAt):
		return fmt.Errorf("invalid result: /send_at: %s is outside 1970..2105", r.SendAt.Format(time.RFC3339))
	case !r.ProviderTimestamp.IsZero() && !inRange(r.ProviderTimestamp):
		return fmt.Errorf("invalid result: /provider_timestamp: %s is outside 1970..2105", r.ProviderTimestamp.Format(time.RFC3339))
	}
	return nil
}

// flushLocked stores the buffer and commits its offsets, retrying each
// failed step with backoff until it succeeds or ctx ends. Called with f.mu
// held; on success the buffer is empty.
func (f *Feedback) flushLocked(ctx context.Context) error {
	b := &f.buf
	if len(b.records) == 0 {
		return nil
	}
	start := time.Now()
	retry := func(step string, do func(context.Context) error) error {
		backoff := f.cfg.MinBackoff
		for attempt := 1; ; attempt++ {
			err := do(ctx)
			if err == nil {
				if attempt > 1 {
					f.log.Info("flush step recovered", "step", step, "attempts", attempt)
					f.setStepReady(step, nil)
				}
				return nil
			}
			// Ended, the step reports why it never succeeded, not only
			// that time ran out.
			if ctx.Err() != nil {
				return fmt.Errorf("%s: %w (last attempt: %v)", step, ctx.Err(), err)
			}
			f.m.retries.WithLabelValues(step).Inc()
			f.setStepReady(step, err)
			f.log.Warn("flush step failed, retrying", "step", step, "attempt", attempt, "backoff", backoff, "records", len(b.records), "err", err)
			wait := backoff/2 + rand.N(backoff/2+1)
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s: %w (last attempt: %v)", step, ctx.Err(), err)
			case <-time.After(wait):
			}
			backoff = min(2*backoff, f.cfg.MaxBackoff)
		}
	}

	// The three stores are independent and each is idempotent, so they
	// are written at once: a flush takes as long as the slowest, not the
	// sum. Each step retries on its own; one that succeeded is not
	// repeated when another is still failing.
	rows := f.rows[:0]
	for _, r := range b.results {
		rows = append(rows, RowFromResult(r))
	}
	f.rows = rows
	steps := []struct {
		name string
		done *bool
		do   func(context.Context) error
	}{
		{stepDeadLetter, &b.deadLettered, f.deadLetter},
		{stepMySQL, &b.mysqlDone, f.applyMySQL},
		{stepAnalytics, &b.analyticsDone, func(ctx context.Context) error {
			if len(rows) == 0 {
				return nil
			}
			if err := f.deps.Sink.Write(ctx, rows); err != nil {
				return err
			}
			f.m.rows.Add(float64(len(rows)))
			return nil
		}},
	}
	var wg sync.WaitGroup
	errs := make([]error, len(steps))
	for i, st := range steps {
		if *st.done {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = retry(st.name, st.do); errs[i] == nil {
				*st.done = true
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// A failed commit loses nothing: the records are read again (by us or
	// the partition's next owner) and every store ignores the replay.
	if err := f.cl.CommitRecords(ctx, b.records...); err != nil {
		if ctx.Err() != nil {
			// Stopping: keep the buffer (every step is marked done) so
			// drain commits it with its own context.
			return ctx.Err()
		}
		f.log.Warn("offset commit failed; records will be consumed again", "records", len(b.records), "err", err)
	}
	f.m.flushSeconds.Observe(time.Since(start).Seconds())
	f.m.flushRecords.Observe(float64(len(b.records)))
	b.reset()
	return nil
}

// applyMySQL applies the buffer's token hygiene and registrations.
func (f *Feedback) applyMySQL(ctx context.Context) error {
	changes := Collect(f.buf.results, f.buf.regs)
	if changes.Empty() {
		return nil
	}
	applied, err := f.deps.Store.Apply(ctx, changes)
	if err != nil {
		return err
	}
	f.m.deactivated.WithLabelValues("token_dead").Add(float64(applied.DeadDeactivated))
	f.m.deactivated.WithLabelValues(ReasonSuspectStrikes).Add(float64(applied.SuspectDeactivated))
	f.m.deactivated.WithLabelValues(ReasonUnregisteredByApp).Add(float64(applied.Unregistered))
	f.m.strikes.Add(float64(applied.NewStrikes))
	f.m.unknown.Add(float64(applied.Unknown))
	if applied.Unknown > 0 {
		f.log.Debug("results for unknown devices", "count", applied.Unknown)
	}
	return nil
}

// deadLetter produces the dead letters of the buffer's malformed records
// that are not written yet. One the broker refuses outright is written
// slimmed or, refused even at its smallest, dropped (counted and logged):
// retried, it would hold the group's partitions for good. One that failed
// otherwise fails the step, whose retry writes only those: the others are
// written, and writing them again would duplicate them.
func (f *Feedback) deadLetter(ctx context.Context) error {
	var pending []*badRecord
	var letters []*kgo.Record
	for i := range f.buf.bad {
		bad := &f.buf.bad[i]
		if bad.done {
			continue
		}
		if bad.letter == nil {
			dl, err := pkafka.DeadLetterRecord(f.cfg.DeadLetterTopic, Stage, bad.rec, bad.reason, time.Now())
			if err != nil {
				return fmt.Errorf("feedback: dead letter for %s/%d@%d: %w", bad.rec.Topic, bad.rec.Partition, bad.rec.Offset, err)
			}
			bad.letter = dl
		}
		pending = append(pending, bad)
		letters = append(letters, bad.letter)
	}
	if len(pending) == 0 {
		return nil
	}
	var failed int
	var first error
	for i, w := range pkafka.WriteDeadLetters(ctx, f.cl, letters) {
		bad := pending[i]
		bad.letter = w.Letter
		switch {
		case w.Err == nil:
			bad.done = true
			f.m.deadLetters.WithLabelValues(bad.kind).Inc()
			slim, _ := pkafka.Header(w.Letter, pkafka.HeaderDeadLetterSlim)
			f.log.Warn("dead-lettered malformed event", "topic", bad.rec.Topic, "partition", bad.rec.Partition, "offset", bad.rec.Offset,
				"reason", bad.reason, "slim", slim)
		case w.Dropped:
			bad.done = true
			f.m.deadLettersDropped.WithLabelValues(bad.kind).Inc()
			f.log.Error("dead letter refused even at its smallest and dropped; the malformed event stays on its topic only",
				"topic", bad.rec.Topic, "partition", bad.rec.Partition, "offset", bad.rec.Offset, "letter_bytes", len(w.Letter.Value),
				"reason", bad.reason, "err", w.Err)
		default:
			failed++
			if first == nil {
				first = w.Err
			}
		}
	}
	if failed > 0 {
		return fmt.Errorf("feedback: produce %d of %d dead letters: %w", failed, len(pending), first)
	}
	return nil
}

// onRevoked flushes and commits anything still buffered before the
// partitions go. With BlockRebalanceOnPoll the buffer is normally empty
// here; this covers the client closing with records held.
func (f *Feedback) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.buf.records) == 0 {
		return
	}
	if err := f.flushLocked(ctx); err != nil {
		f.log.Warn("partitions revoked before the flush succeeded; records will be consumed again", "revoked", revoked, "err", err)
		f.buf.reset()
	}
}

// onLost drops the buffer: the partitions are someone else's now, and
// committing for them would fail. The new owner reads the records again.
//
// Not ready until the group is joined again (OnPartitionsAssigned follows
// every join, with partitions or not).
func (f *Feedback) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	f.deps.Ready.Set(Stage, errors.New("group session lost; rejoining"))
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := len(f.buf.records); n > 0 {
		f.log.Warn("partitions lost with buffered records; they will be consumed again", "lost", lost, "records", n)
		f.buf.reset()
	}
}

// setStepReady reports one flush step's health as its own check, so the
// steps, which run at once, do not clear each other's failures.
func (f *Feedback) setStepReady(step string, err error) {
	f.deps.Ready.Set(Stage+" "+step, err)
}
