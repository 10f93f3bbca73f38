package delay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/internal/promset"
	"github.com/pushlane/pushlane/internal/service"
	"github.com/pushlane/pushlane/pipeline/kafka"
)

// Stage is the forwarder's name in dead letters and logs.
const Stage = "delay"

// Cancellations tells the forwarder which campaigns are cancelled; a
// *control.View satisfies it.
type Cancellations interface {
	Cancelled(campaignID string) bool
}

// Config of a Forwarder.
type Config struct {
	// Kafka is the connection.
	Kafka config.Kafka
	// Group is the consumer group, <group_prefix>-delay.
	Group string
	// Ladder is the tiers to consume and the ready topic.
	Ladder Ladder
	// DeadLetterTopic receives tier records without a readable send-at,
	// in their headers or their value.
	DeadLetterTopic string
	// FetchMaxPartitionBytes bounds one partition's fetch, and so what the
	// forwarder holds per partition. Default 1 MiB.
	FetchMaxPartitionBytes int32
	// Prefetch resumes a paused partition this long before its held
	// records can all be forwarded (see releaseAt), so the records behind
	// them are fetched by the time they are due. Default 1s.
	Prefetch time.Duration
	// MaxPollRecords bounds one poll. Default 1000.
	MaxPollRecords int
	// FetchMaxWait bounds an idle fetch; it is also the worst extra delay
	// of a record behind a just-resumed partition. Default 250ms.
	FetchMaxWait time.Duration
	// LagInterval is how often consumer lag is measured. Default 10s.
	LagInterval time.Duration
	// InstanceID, if set, makes this a static group member: a restarted
	// process (even after kill -9) takes its partitions back at once.
	InstanceID string
}

// Deps are a Forwarder's collaborators.
type Deps struct {
	// Control, if set, lets the forwarder send a cancelled campaign's
	// batches straight to ready, where the dispatcher writes their
	// cancelled results, instead of walking them down the ladder.
	Control Cancellations
	Logger  *slog.Logger
	Metrics prometheus.Registerer
	// Ready, if set, gets check "delay": ready once the group is joined,
	// unready while stopping.
	Ready *service.Readiness
}

// Forwarder moves batches down the ladder as they come due. See the
// package documentation.
type Forwarder struct {
	cfg     Config
	log     *slog.Logger
	control Cancellations
	tierOf  map[string]int
	m       forwarderMetrics

	cl    *kgo.Client
	ready *service.Readiness

	// round is held by a round of forwards, and taken by a revoke before
	// it drops and commits. BlockRebalanceOnPoll holds a rebalance back
	// only after a poll that returned records; a round after an empty
	// poll (the usual case when records fall due one after another) ran
	// beside a revoke, which committed without the round's forwards, and
	// the next owner forwarded them again.
	round sync.Mutex

	mu     sync.Mutex // guards held, paused and failing against the rebalance callbacks
	held   map[topicPartition][]*kgo.Record
	paused map[topicPartition]bool
	// failing: partitions whose head record failed to forward, and when
	// to try it again.
	failing map[topicPartition]*headRetry
	// done: records behind a failed head that were forwarded (or
	// dead-lettered) in the same round, by partition and offset. They
	// stay held, since offsets are committed in order, but are not
	// forwarded again once the head goes through.
	done map[topicPartition]map[int64]bool
}

// headRetry is a partition's head record that failed to forward: it is
// tried again, alone, after a growing pause; the partition's later records
// wait behind it (they are committed in order), the other partitions do
// not.
type headRetry struct {
	at       time.Time
	failures int
}

// retryPause is the pause after the n-th failure of a head record.
func retryPause(n int) time.Duration {
	return min(100*time.Millisecond<<min(n-1, 10), 10*time.Second)
}

type topicPartition struct {
	topic     string
	partition int32
}

type forwarderMetrics struct {
	forwarded    *prometheus.CounterVec
	forwardDelay prometheus.Histogram
	hops         prometheus.Histogram
	held         prometheus.Gauge
	paused       prometheus.Gauge
	deadLettered prometheus.Counter
	// deadLettersDropped: letters the dead-letter topic refused even
	// slimmed (kafka.ErrDeadLetterDropped).
	deadLettersDropped prometheus.Counter
	lag                *prometheus.GaugeVec
}

// New checks cfg and builds a Forwarder; it connects in Run.
func New(cfg Config, deps Deps) (*Forwarder, error) {
	if len(cfg.Ladder.Tiers) == 0 || cfg.Ladder.Ready == "" {
		return nil, errors.New("delay: the ladder needs tiers and a ready topic")
	}
	if cfg.Group == "" {
		return nil, errors.New("delay: group is required")
	}
	if cfg.DeadLetterTopic == "" {
		return nil, errors.New("delay: dead-letter topic is required")
	}
	if cfg.FetchMaxPartitionBytes <= 0 {
		cfg.FetchMaxPartitionBytes = 1 << 20
	}
	if cfg.Prefetch <= 0 {
		cfg.Prefetch = time.Second
	}
	if cfg.MaxPollRecords <= 0 {
		cfg.MaxPollRecords = 1000
	}
	if cfg.FetchMaxWait <= 0 {
		cfg.FetchMaxWait = 250 * time.Millisecond
	}
	if cfg.LagInterval <= 0 {
		cfg.LagInterval = 10 * time.Second
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Forwarder{
		cfg:     cfg,
		log:     log.With("stage", Stage),
		control: deps.Control,
		tierOf:  map[string]int{},
		held:    map[topicPartition][]*kgo.Record{},
		paused:  map[topicPartition]bool{},
		failing: map[topicPartition]*headRetry{},
		done:    map[topicPartition]map[int64]bool{},
		ready:   deps.Ready,
	}
	f.ready.Set(Stage, errors.New("starting"))
	for k, t := range cfg.Ladder.Tiers {
		f.tierOf[t] = k
	}
	if err := f.registerMetrics(deps.Metrics); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *Forwarder) registerMetrics(reg prometheus.Registerer) error {
	var s promset.Set
	f.m = forwarderMetrics{
		forwarded: s.CounterVec("pushlane_delay_forwarded_total", "Batches forwarded by the delay ladder, by source tier and destination topic, and why (due, cancelled, expired).",
			"from", "to", "why"),
		forwardDelay: s.Histogram("pushlane_delay_forward_delay_seconds", "Time from a tier record coming due to its forward being acknowledged.",
			[]float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}),
		hops: s.Histogram("pushlane_delay_hops", "Ladder hops of a batch when it reaches the ready topic.",
			prometheus.LinearBuckets(1, 1, 24)),
		held:               s.Gauge("pushlane_delay_held_records", "Tier records fetched and held until due."),
		paused:             s.Gauge("pushlane_delay_paused_partitions", "Tier partitions paused until their head record is due, or until a head that failed to forward is forwarded."),
		deadLettered:       s.Counter("pushlane_delay_dead_lettered_total", "Tier records dead-lettered (no readable send-at, in headers or value, or refused by the destination topic)."),
		deadLettersDropped: s.Counter("pushlane_delay_dead_letters_dropped_total", "Tier records whose dead letter the dead-letter topic refused even slimmed: dropped, not retried for ever (the record stays on its topic)."),
		lag:                promset.Add(&s, kafka.NewLagGauge("pushlane_delay_consumer_lag", "Records of the tier topics not yet committed by the delay group.")),
	}
	if err := s.Register(reg); err != nil {
		return fmt.Errorf("delay: register metrics: %w", err)
	}
	return nil
}

// Run forwards until ctx ends, then commits what was forwarded and leaves
// the group. Records held but not yet due are simply not committed: the
// next owner fetches them again.
func (f *Forwarder) Run(ctx context.Context) error {
	opts := []kgo.Opt{
		kgo.ConsumerGroup(f.cfg.Group),
		kgo.ConsumeTopics(f.cfg.Ladder.Tiers...),
		// The planner writes batches in transactions; a batch of an aborted
		// chunk must never be forwarded, since its re-plan reuses its id
		// for possibly different devices.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.BlockRebalanceOnPoll(),
		kgo.AutoCommitMarks(),
		kgo.AutoCommitInterval(time.Second),
		kgo.OnPartitionsRevoked(f.onRevoked),
		kgo.OnPartitionsLost(f.onLost),
		kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) { f.ready.Set(Stage, nil) }),
		kgo.FetchMaxPartitionBytes(f.cfg.FetchMaxPartitionBytes),
		kgo.FetchMaxBytes(max(16<<20, f.cfg.FetchMaxPartitionBytes)),
		kgo.FetchMaxWait(f.cfg.FetchMaxWait),
		kgo.ProducerLinger(0),
		// A forward that cannot be delivered in this time fails instead of
		// blocking the poll loop (and with it the group); it stays held and
		// is forwarded again.
		kgo.RecordDeliveryTimeout(30 * time.Second),
	}
	if f.cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(f.cfg.InstanceID))
	}
	cl, err := kafka.NewClient(f.cfg.Kafka, opts...)
	if err != nil {
		return fmt.Errorf("delay: %w", err)
	}
	f.cl = cl
	lagCtx, stopLag := context.WithCancel(context.Background())
	lagDone := make(chan struct{})
	go func() {
		defer close(lagDone)
		kafka.WatchLag(lagCtx, kadm.NewClient(cl), f.cfg.Group, f.cfg.LagInterval, f.m.lag, f.log)
	}()
	defer func() {
		f.ready.Set(Stage, errors.New("stopping"))
		stopLag()
		<-lagDone
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		f.markForwarded(cl, nil)
		if err := cl.CommitMarkedOffsets(cctx); err != nil {
			f.log.Error("final commit failed; forwarded records may be forwarded again", "err", err)
		}
		cl.CloseAllowingRebalance()
	}()
	f.adoptFormerTiers(ctx, cl)
	f.log.Info("delay forwarder started", "group", f.cfg.Group, "tiers", len(f.cfg.Ladder.Tiers), "ready", f.cfg.Ladder.Ready)

	for {
		var fs kgo.Fetches
		if wake := f.nextWake(time.Now()); time.Until(wake) > 0 {
			pollCtx, cancel := context.WithDeadline(ctx, wake)
			fs = cl.PollRecords(pollCtx, f.cfg.MaxPollRecords)
			cancel()
		} else {
			// Something is due now. A poll whose deadline has passed
			// returns at once without the buffered fetches; a nil
			// context takes them without waiting, so a due record never
			// keeps the other partitions from being fetched.
			fs = cl.PollRecords(nil, f.cfg.MaxPollRecords) //nolint:staticcheck // nil: franz-go's "no wait"
		}
		if ctx.Err() != nil {
			return nil
		}
		if fs.IsClientClosed() {
			return errors.New("delay: client closed")
		}
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				f.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
			}
		})
		f.mu.Lock()
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) > 0 {
				tp := topicPartition{p.Topic, p.Partition}
				f.held[tp] = append(f.held[tp], p.Records...)
			}
		})
		f.mu.Unlock()
		f.forwardDue(ctx)
		cl.AllowRebalance()
	}
}

// maxTiers bounds the tier numbers adoptFormerTiers looks for: 2^63 ns is
// the longest time.Duration.
const maxTiers = 34

// adoptFormerTiers also consumes the tier topics above the ladder's top
// that exist on the cluster: a ladder with fewer tiers than before
// (delay.tiers lowered) would otherwise never read the batches waiting
// there, which retention then deleted unsent. Each is read as the tier its
// name says (due at its append time plus 2^k s, never early) and forwarded
// into the ladder as it is now. The topics are found by name: <prefix>.tNN
// beside the ladder's own <prefix>.t00.
func (f *Forwarder) adoptFormerTiers(ctx context.Context, cl *kgo.Client) {
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	topics, err := kadm.NewClient(cl).ListTopics(lctx)
	if err != nil {
		f.log.Error("listing topics for tiers above the ladder failed; batches left on them by a longer ladder wait until the next start", "err", err)
		return
	}
	former := FormerTiers(f.cfg.Ladder, topics.Names())
	if len(former) == 0 {
		return
	}
	extra := make([]string, 0, len(former))
	for name, k := range former {
		f.tierOf[name] = k
		extra = append(extra, name)
	}
	slices.Sort(extra)
	cl.AddConsumeTopics(extra...)
	f.log.Warn("reading tier topics above the ladder's top, left by a ladder with more tiers: their batches are forwarded into this one as they come due",
		"topics", extra, "tiers", len(f.cfg.Ladder.Tiers))
}

// FormerTiers returns, of the topic names existing, the tier topics above
// l's top (<prefix>.tNN beside l's <prefix>.t00, NN from len(l.Tiers) up),
// with their tier numbers: the topics a forwarder of l also reads.
func FormerTiers(l Ladder, existing []string) map[string]int {
	if len(l.Tiers) == 0 {
		return nil
	}
	prefix, ok := strings.CutSuffix(l.Tiers[0], ".t00")
	if !ok {
		return nil
	}
	out := map[string]int{}
	for _, name := range existing {
		n, ok := strings.CutPrefix(name, prefix+".t")
		if !ok || len(n) < 2 {
			continue
		}
		k, err := strconv.Atoi(n)
		if err != nil || k < len(l.Tiers) || k >= maxTiers || fmt.Sprintf("%02d", k) != n {
			continue
		}
		out[name] = k
	}
	return out
}

// nextWake is when the poll must return to forward the next due record or
// to resume a partition ahead of its tail; at most one second away, so
// shutdown and metrics stay responsive.
func (f *Forwarder) nextWake(now time.Time) time.Time {
	wake := now.Add(time.Second)
	f.mu.Lock()
	defer f.mu.Unlock()
	for tp, q := range f.held {
		if len(q) == 0 {
			continue
		}
		k := f.tierOf[tp.topic]
		head := f.dueAt(q[0], k)
		if r := f.failing[tp]; r != nil {
			// Paused behind its failed head: it is tried again at its
			// retry, but not before it is due. After the wall clock
			// stepped back, a retry already past and a head due later
			// made every poll return at once, spinning until the head
			// was due again.
			if at := later(r.at, head); at.Before(wake) {
				wake = at
			}
			continue
		}
		if head.Before(wake) {
			wake = head
		}
		if f.paused[tp] {
			if r := f.releaseAt(q, k).Add(-f.cfg.Prefetch); r.Before(wake) {
				wake = r
			}
		}
	}
	return wake
}

// releaseAt is when the records held for a partition of tier k, q, can
// all be forwarded, as far as pausing goes: the later of its head's and its
// last record's due times. Records are forwarded in offset order, and DueAt
// can make a record due after the records behind it (up to MaxSkewHold, or
// MaxForwardedHold for a forwarded one): a head held so, with due records
// behind it, kept its partition fetching while nothing could be forwarded
// past it, and every fetch was held on top of the last. A record held so
// further back is found once it is the head, a round later.
func (f *Forwarder) releaseAt(q []*kgo.Record, k int) time.Time {
	return later(f.dueAt(q[0], k), f.dueAt(q[len(q)-1], k))
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Eligible is when a record on tier k comes due: its timestamp (the
// broker's append time on tier topics) plus the tier's delay. Within a tier
// partition it never decreases with the offset.
func Eligible(r *kgo.Record, k int) time.Time {
	return r.Timestamp.Add(TierDelay(k))
}

// MaxSkewHold and MaxForwardedHold bound how long DueAt holds a record
// past Eligible: the clock skew between a forwarder and the broker that is
// tolerated without re-writing records in a loop, and the longest a record
// that does not fit its tier holds up the records behind it. A record a
// forwarder wrote (hop 1 or more) may wait up to an hour, one the planner or
// a dispatcher's retry wrote (hop 0) up to 30 s.
const (
	MaxSkewHold      = 30 * time.Second
	MaxForwardedHold = time.Hour
)

// DueAt is when the forwarder takes a record of tier k (top: the last
// tier): Eligible, or later if by this process's clock its send-at is still
// TierDelay(k) or more away, until it is not, within MaxSkewHold (hop 0)
// or MaxForwardedHold (forwarded). With correct clocks the wait never
// happens: a record enters tier k with less than 2^(k+1) s to go, so at
// Eligible less than 2^k s remain and Route picks a lower tier. But the
// timestamps are the broker's and Route reads the forwarder's clock; a
// forwarder Δ ahead of the broker found tier-k records due as soon as they
// were fetched, with Route still picking tier k, and re-wrote each one at
// the speed of a produce and a fetch until its remaining time fell below
// 2^k (Δ = 5 s: hundreds of rewrites per batch). Waiting instead keeps the
// documented bound of one rewrite per tier; for a record a forwarder wrote,
// the wait is less than its Δ, so forwarders up to an hour ahead never
// loop. A record that would wait longer does not fit its tier at all
// (written by a process whose clock is well ahead, by hand, or to a ladder
// that has grown since: a former top tier's batches are days away):
// waiting for it held every record behind it in its partition, since due
// order is offset order only up to these waits. It is taken at Eligible
// instead, and Route writes it, by this clock, to the tier it fits. The
// planner and a dispatcher's retries write with hop 0 and their own clocks,
// so for them a misfit is anything past MaxSkewHold. The top tier loops on
// itself by design.
func DueAt(r *kgo.Record, k int, top bool) time.Time {
	due := Eligible(r, k)
	if top {
		return due
	}
	sendAt, ok := kafka.TimeHeader(r, kafka.HeaderSendAt)
	if !ok {
		return due
	}
	limit := MaxSkewHold
	if hop, _ := kafka.Header(r, kafka.HeaderHop); hop != "" && hop != "0" {
		limit = MaxForwardedHold
	}
	if lower := sendAt.Add(-TierDelay(k)); lower.After(due) && lower.Sub(due) <= limit {
		due = lower
	}
	return due
}

// dueAt is DueAt on this forwarder's ladder.
func (f *Forwarder) dueAt(r *kgo.Record, k int) time.Time {
	return DueAt(r, k, k == len(f.cfg.Ladder.Tiers)-1)
}

type forward struct {
	tp      topicPartition
	in      *kgo.Record
	out     *kgo.Record // nil: dead-lettered instead
	why     string
	due     time.Time
	err     error
	alone   bool // a head that failed before: produced on its own
	already bool // forwarded in an earlier round behind a failed head
}

// forwardRound bounds how long a round of forwards waits for records that
// cannot be sent: a record already sent waits for its acknowledgement (up to
// the client's delivery timeout), one still buffered fails at this deadline.
const forwardRound = 5 * time.Second

// forwardDue produces every due record, waits for the acknowledgements,
// marks what was acknowledged for commit in offset order, and pauses or
// resumes partitions.
func (f *Forwarder) forwardDue(ctx context.Context) {
	f.round.Lock()
	defer f.round.Unlock()
	now := time.Now()
	var work []*forward
	f.mu.Lock()
	for tp, q := range f.held {
		k := f.tierOf[tp.topic]
		retry := f.failing[tp]
		if retry != nil && retry.at.After(now) {
			continue
		}
		for _, r := range q {
			due := f.dueAt(r, k)
			if due.After(now) {
				break
			}
			if f.done[tp][r.Offset] {
				work = append(work, &forward{tp: tp, in: r, due: due, already: true})
				continue
			}
			w := f.plan(tp, r, due, now)
			// After a failure, only the head, and in a produce of its
			// own: a record the destination refuses fails the whole
			// batch it is in, so it would take its neighbours with it.
			w.alone = retry != nil
			work = append(work, w)
			if w.alone {
				break
			}
		}
	}
	f.mu.Unlock()

	// A record that cannot be sent within the round (its partition has no
	// leader) fails, stays held and is retried with its partition's
	// backoff, instead of holding the poll loop, and with it every other
	// partition's due records, for the client's whole delivery timeout
	// (and, one head after another, for that many times over).
	rctx, cancelRound := context.WithTimeout(context.WithoutCancel(ctx), forwardRound)
	defer cancelRound()
	var wg sync.WaitGroup
	for _, w := range work {
		if w.out == nil {
			continue
		}
		wg.Add(1)
		if !w.alone {
			f.cl.Produce(rctx, w.out, func(_ *kgo.Record, err error) {
				w.err = err
				wg.Done()
			})
			continue
		}
		go func() {
			defer wg.Done()
			w.err = f.cl.ProduceSync(rctx, w.out).FirstErr()
			if w.err != nil && kafka.Refused(w.err) {
				// Refused on its own too: no retry will change that.
				w.why = fmt.Sprintf("%s refuses the record: %v", w.out.Topic, w.err)
				w.out, w.err = nil, nil
			}
		}()
	}
	wg.Wait()
	// No readable send-at, or refused by its destination: the record can
	// never be forwarded, and goes to the dead-letter topic. All of the
	// round's at once and within a round of their own, as the forwards
	// above: one at a time, each waiting out an unreachable dead-letter
	// topic, they held every partition's due records for as many rounds.
	dctx, cancelDead := context.WithTimeout(context.WithoutCancel(ctx), forwardRound)
	defer cancelDead()
	var dead sync.WaitGroup
	for _, w := range work {
		if w.out != nil || w.err != nil || w.already {
			continue
		}
		dead.Go(func() {
			w.err = kafka.DeadLetter(dctx, f.cl, f.cfg.DeadLetterTopic, Stage, w.in, w.why)
			switch {
			case w.err == nil:
				f.m.deadLettered.Inc()
			case errors.Is(w.err, kafka.ErrDeadLetterDropped):
				// Retried, it would hold the partition for good.
				f.m.deadLettersDropped.Inc()
				f.log.Error("tier record's dead letter refused by the dead-letter topic even slimmed; dropped, the record stays on its topic",
					"topic", w.in.Topic, "partition", w.in.Partition, "offset", w.in.Offset, "reason", w.why)
				w.err = nil
			}
		})
	}
	dead.Wait()

	acked := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	byTP := map[topicPartition][]*forward{}
	for _, w := range work {
		byTP[w.tp] = append(byTP[w.tp], w)
	}
	for tp, ws := range byTP {
		q := f.held[tp]
		n := 0
		for i, w := range ws {
			// A revoke may have dropped the partition meanwhile; only
			// the records still at the head are ours to mark.
			if n >= len(q) || q[n] != w.in {
				break
			}
			if w.err != nil {
				r := f.failing[tp]
				if r == nil {
					r = &headRetry{}
					f.failing[tp] = r
				}
				r.failures++
				pause := retryPause(r.failures)
				r.at = acked.Add(pause)
				f.log.Warn("forward failed; it stays held and is retried", "topic", tp.topic, "partition", tp.partition, "offset", w.in.Offset,
					"failures", r.failures, "retry_in", pause, "err", w.err)
				f.rememberDoneLocked(tp, ws[i+1:])
				break
			}
			if n == 0 {
				delete(f.failing, tp)
			}
			f.cl.MarkCommitRecords(w.in)
			if w.already {
				delete(f.done[tp], w.in.Offset)
			} else if w.out != nil {
				f.m.forwarded.WithLabelValues(tp.topic, w.out.Topic, w.why).Inc()
				f.m.forwardDelay.Observe(acked.Sub(w.due).Seconds())
				if w.out.Topic == f.cfg.Ladder.Ready {
					v, _ := kafka.Header(w.out, kafka.HeaderHop)
					hops, _ := strconv.Atoi(v)
					f.m.hops.Observe(float64(hops))
				}
			}
			n++
		}
		f.held[tp] = q[n:]
	}
	f.pauseOrResumeLocked(acked)
}

// rememberDoneLocked records which of ws, a round's forwards of tp after
// the one that failed, went through: they are not forwarded again.
func (f *Forwarder) rememberDoneLocked(tp topicPartition, ws []*forward) {
	for _, w := range ws {
		if w.err != nil || w.already {
			continue
		}
		if f.done[tp] == nil {
			f.done[tp] = map[int64]bool{}
		}
		f.done[tp][w.in.Offset] = true
	}
}

// plan decides where one due record goes. A record replayed without its
// key or headers (kcat, kafka-console-producer) is forwarded with them
// restored from its value (Scheduled), so it is routed, held and keyed as
// the planner wrote it; only one from which neither headers nor value give
// a send-at is dead-lettered.
func (f *Forwarder) plan(tp topicPartition, r *kgo.Record, due, now time.Time) *forward {
	w := &forward{tp: tp, in: r, due: due}
	src, err := Scheduled(r)
	if err != nil {
		w.why = "tier record: " + err.Error()
		return w
	}
	sendAt, _ := kafka.TimeHeader(src, kafka.HeaderSendAt)
	dst, why := f.cfg.Ladder.Route(sendAt, now), "due"
	if exp, ok := kafka.TimeHeader(src, kafka.HeaderExpiresAt); ok && !now.Before(exp) {
		dst, why = f.cfg.Ladder.Ready, "expired"
	} else if f.control != nil {
		if id, ok := kafka.Header(src, kafka.HeaderCampaignID); ok && f.control.Cancelled(id) {
			dst, why = f.cfg.Ladder.Ready, "cancelled"
		}
	}
	w.why = why
	w.out = Forwarded(src, dst)
	return w
}

// Forwarded copies r for topic dst with the hop count incremented. The
// send-at header never changes; the broker stamps the new timestamp.
func Forwarded(r *kgo.Record, dst string) *kgo.Record {
	out := &kgo.Record{Topic: dst, Key: r.Key, Value: r.Value, Headers: make([]kgo.RecordHeader, len(r.Headers))}
	copy(out.Headers, r.Headers)
	hop := 0
	if v, ok := kafka.Header(r, kafka.HeaderHop); ok {
		hop, _ = strconv.Atoi(v)
	}
	kafka.SetHeader(out, kafka.HeaderHop, strconv.Itoa(hop+1))
	return out
}

// pauseOrResumeLocked keeps a partition paused while its held records are
// not close to being forwarded (releaseAt), so the client buffers nothing
// more for it: memory per partition stays at about one fetch.
func (f *Forwarder) pauseOrResumeLocked(now time.Time) {
	pause := map[string][]int32{}
	resume := map[string][]int32{}
	for tp, q := range f.held {
		want := false
		if len(q) > 0 {
			// A partition whose head keeps failing fetches nothing more
			// until it is forwarded: what is held stays bounded.
			want = f.failing[tp] != nil || f.releaseAt(q, f.tierOf[tp.topic]).Sub(now) > f.cfg.Prefetch
		} else {
			delete(f.held, tp)
		}
		if want != f.paused[tp] {
			if want {
				pause[tp.topic] = append(pause[tp.topic], tp.partition)
			} else {
				resume[tp.topic] = append(resume[tp.topic], tp.partition)
			}
			f.paused[tp] = want
		}
	}
	for tp, p := range f.paused {
		if !p {
			delete(f.paused, tp)
		}
	}
	if len(pause) > 0 {
		f.cl.PauseFetchPartitions(pause)
	}
	if len(resume) > 0 {
		f.cl.ResumeFetchPartitions(resume)
	}
	held := 0
	for _, q := range f.held {
		held += len(q)
	}
	f.m.held.Set(float64(held))
	f.m.paused.Set(float64(len(f.paused)))
}

// onRevoked drops what is held for the revoked partitions (the next owner
// fetches it again from the committed offset), un-pauses them so a later
// re-assignment fetches, and commits what was forwarded.
func (f *Forwarder) onRevoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	// The round in flight marks what it forwarded first (at most two
	// forwardRounds), so the commit below includes it.
	f.round.Lock()
	defer f.round.Unlock()
	f.markForwarded(cl, revoked)
	f.drop(cl, revoked)
	if err := cl.CommitMarkedOffsets(ctx); err != nil {
		f.log.Warn("commit on revoke failed; forwarded records may be forwarded again", "err", err)
	}
}

// onLost: not ready until the group is joined again (see the dispatcher's
// onLost).
func (f *Forwarder) onLost(_ context.Context, cl *kgo.Client, lost map[string][]int32) {
	f.ready.Set(Stage, errors.New("group session lost; rejoining"))
	f.drop(cl, lost)
}

// markForwarded marks for commit, of parts (nil: every partition held),
// the records at the head of each partition that were forwarded behind a
// head that failed and has gone through since: they are marked by the next
// round, which a revoke or a stop may not wait for. It stops at the first
// record not forwarded, so nothing unforwarded is ever committed: the
// records forwarded behind a head that is still failing stay uncommitted
// (a partition commits one offset), and the next owner forwards them
// again.
func (f *Forwarder) markForwarded(cl *kgo.Client, parts map[string][]int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for tp, q := range f.held {
		if parts != nil && !slices.Contains(parts[tp.topic], tp.partition) {
			continue
		}
		done := f.done[tp]
		n := 0
		for n < len(q) && done[q[n].Offset] {
			n++
		}
		if n == 0 {
			continue
		}
		cl.MarkCommitRecords(q[n-1]) // marks q[:n]: a mark is an offset
		for _, r := range q[:n] {
			delete(done, r.Offset)
		}
		f.held[tp] = q[n:]
	}
}

func (f *Forwarder) drop(cl *kgo.Client, parts map[string][]int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for t, ps := range parts {
		for _, p := range ps {
			tp := topicPartition{t, p}
			delete(f.held, tp)
			delete(f.paused, tp)
			delete(f.failing, tp)
			delete(f.done, tp)
		}
	}
	cl.ResumeFetchPartitions(parts)
}

// ConfigFrom is the forwarder's Config from the shared configuration:
// group <group_prefix>-delay over cfg.DelayTiers(), forwarding to the
// ready topic.
func ConfigFrom(cfg *config.Config) Config {
	return Config{
		Kafka:           cfg.Kafka,
		Group:           cfg.Kafka.GroupPrefix + "-" + Stage,
		Ladder:          LadderFrom(cfg),
		DeadLetterTopic: cfg.Kafka.Topics.DeadLetter.Name,
	}
}

// LadderFrom is the ladder of cfg: its tier topics and ready topic.
func LadderFrom(cfg *config.Config) Ladder {
	return Ladder{Tiers: cfg.DelayTiers(), Ready: cfg.Kafka.Topics.Ready.Name}
}
