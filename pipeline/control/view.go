// Package control is every process's view of the compacted campaign-control
// topic: which campaigns are cancelled or paused, and how fresh that
// knowledge is.
//
// A View reads the whole topic from the start with a direct consumer (no
// group: every instance needs every campaign), applies each record in
// offset order, and keeps one State per campaign. Cancel is final: a pause
// or resume that follows a cancel is ignored, and a cancel has a key of its
// own (Key), so compaction never leaves a later pause or resume in its
// place. A tombstone (nil value) for either key forgets the campaign, which
// is how an operator retires old entries; retiring a cancelled campaign
// takes a tombstone for each key, or compaction would bring back the other.
//
// A record that is not a control event is skipped by every View and
// dead-lettered once by an Auditor, which the planners run as one consumer
// group.
//
// Freshness. A stage that must honour a cancel within a bound asks
// WaitFresh(ctx, t): it returns once every control record acknowledged
// before t has been applied. The view knows this by asking the cluster
// every RefreshInterval which partitions the topic has (not the client's
// cached metadata, which may be seconds old), listing their end offsets
// and waiting until it has consumed up to them; the time it asked becomes
// FreshAsOf. The dispatcher calls WaitFresh(ctx, now-MaxStaleness) before
// every chunk, so a chunk never starts more than MaxStaleness after a
// cancel was acknowledged.
//
// A partition added to the topic is one the consumer does not read until
// its client's metadata names it, which on its own takes up to the
// client's MetadataMaxAge (5 min): the view asks the client to refresh
// its metadata as soon as a listing names a partition the consumer does
// not read, and is not fresh until it has read what the partition holds
// (an empty one holds nothing acknowledged yet).
//
// Compaction and transaction markers can leave offsets below the end offset
// with no record to read; a partition whose consumed position and end
// offset have both stood still for QuietChecks refreshes, longer than the
// consumer's fetch wait, counts as caught up, but only while its fetches
// succeed, once the consumer, asking the leader the cluster names, has
// fetched that partition with requests sent after the end offset was
// listed and the view has applied what they brought (its own requests:
// a broker answering fetches for other partitions says nothing of it),
// and while no fetch to any broker is overdue or failed in the last
// 2 × (FetchMaxWait + 10 s). Standing still alone says
// nothing while a fetch is slow or hung (an overloaded broker, a
// connection that black-holes: the client gives a fetch up after its wait
// plus 10 s, retrying without a word, and a partition moved meanwhile is
// still asked of its old leader until then) or while the view backs off
// after fetch errors: a cancel acknowledged then would be behind the end
// offset, unread, and the view would call itself caught up. So a view that
// cannot read its leader stays stale for as long as that lasts, and the
// stages wait rather than send a cancelled campaign. A partition whose
// start offset has reached its end (every record deleted) has nothing to
// read.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/internal/promset"
	"github.com/pushlane/pushlane/pipeline/kafka"
	"github.com/pushlane/pushlane/schemas"
)

// State is what the view knows of one campaign.
type State struct {
	Cancelled bool
	Paused    bool
	Reason    string    // of the last applied action
	At        time.Time // of the last applied action
}

// Config of a View.
type Config struct {
	// Kafka is the connection; only brokers, TLS and SASL are used.
	Kafka config.Kafka
	// Topic is the compacted control topic.
	Topic string
	// RefreshInterval is how often the view lists end offsets to move
	// FreshAsOf forward. Default 200ms.
	RefreshInterval time.Duration
	// FetchMaxWait bounds how long an idle fetch waits at the broker.
	// Default 500ms.
	FetchMaxWait time.Duration
	// QuietChecks: see the package doc. Default 5.
	QuietChecks int
}

// Deps are a View's collaborators.
type Deps struct {
	Logger  *slog.Logger
	Metrics prometheus.Registerer // nil registers nothing
}

// View is the campaign-control state of one process. Safe for concurrent
// use; Run must be running for it to move.
type View struct {
	cfg Config
	log *slog.Logger
	cl  *kgo.Client
	adm *kadm.Client

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change of states or freshness
	states  *Campaigns
	applied map[int32]int64 // next offset to apply, per partition
	// fetchFailed: when a fetch of the partition last failed. While its
	// fetches fail, a partition's standing still says nothing about what
	// is left to read, so it is not counted quiet.
	fetchFailed map[int32]time.Time
	// fetches counts, per partition, the fetch requests the consumer has
	// sent for it; polled is that count as of the start of the last poll
	// whose records have been applied.
	fetches *fetchCounts
	polled  map[int32]uint64
	// failedHold: how long after a failed fetch standing still says
	// nothing (see answeredSinceLocked).
	failedHold time.Duration
	freshAsOf  time.Time
	version    uint64 // bumped on every state change

	metrics viewMetrics
}

type viewMetrics struct {
	records   *prometheus.CounterVec
	staleness prometheus.GaugeFunc
	campaigns prometheus.GaugeFunc
}

// New builds a View; it connects lazily, in Run.
func New(cfg Config, deps Deps) (*View, error) {
	if cfg.Topic == "" {
		return nil, errors.New("control: topic is required")
	}
	if cfg.RefreshInterval <= 0 {
		cfg.RefreshInterval = 200 * time.Millisecond
	}
	if cfg.FetchMaxWait <= 0 {
		cfg.FetchMaxWait = 500 * time.Millisecond
	}
	if cfg.QuietChecks <= 0 {
		cfg.QuietChecks = 5
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fetches := &fetchCounts{topic: cfg.Topic, n: map[int32]uint64{}, sent: map[int32]time.Time{}, failed: map[int32]time.Time{}}
	cl, err := kafka.NewClient(cfg.Kafka,
		kgo.WithHooks(fetches),
		// Not to reorder anything: the client calls it with the
		// partitions of every fetch request it sends, which is how the
		// view knows which partitions its consumer reads.
		kgo.ConsumePreferringLagFn(fetches.requested),
		kgo.ConsumeTopics(cfg.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(cfg.FetchMaxWait),
		// A control event of an aborted transaction never happened.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Control markers occupy offsets; keeping them lets the applied
		// position reach the end offset of a transactionally written topic.
		kgo.KeepControlRecords(),
	)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	v := &View{
		cfg:     cfg,
		log:     log.With("component", "control-view"),
		cl:      cl,
		adm:     kadm.NewClient(cl),
		changed: make(chan struct{}),
		states:  NewCampaigns(),
		applied: map[int32]int64{}, fetchFailed: map[int32]time.Time{},
		fetches: fetches, polled: map[int32]uint64{},
		// The client's metadata may be MetadataMinAge (5 s) old and its
		// refresh may first dial the failed broker (10 s): with margin.
		failedHold: 2 * (cfg.FetchMaxWait + 10*time.Second),
	}
	if err := v.registerMetrics(deps.Metrics); err != nil {
		cl.Close()
		return nil, err
	}
	return v, nil
}

func (v *View) registerMetrics(reg prometheus.Registerer) error {
	var s promset.Set
	v.metrics.records = s.CounterVec("pushlane_control_records_total",
		"Campaign-control records applied, by action (invalid: undecodable, skipped).", "action")
	v.metrics.staleness = promset.Add(&s, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pushlane_control_staleness_seconds",
		Help: "How far behind now the view is known to be caught up.",
	}, func() float64 {
		f := v.FreshAsOf()
		if f.IsZero() {
			return -1
		}
		return time.Since(f).Seconds()
	}))
	v.metrics.campaigns = promset.Add(&s, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pushlane_control_campaigns",
		Help: "Campaigns with a control state in the view.",
	}, func() float64 {
		v.mu.Lock()
		defer v.mu.Unlock()
		return float64(v.states.Len())
	}))
	if err := s.Register(reg); err != nil {
		return fmt.Errorf("control: register metrics: %w", err)
	}
	return nil
}

// Run consumes the control topic and keeps freshness until ctx ends, then
// closes the client.
func (v *View) Run(ctx context.Context) error {
	defer v.cl.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		v.refreshLoop(ctx)
	}()
	defer wg.Wait()
	// A fetch error that persists (the topic deleted, no authorisation)
	// comes back from every poll at once: back off, or the loop spins and
	// floods the log.
	failing := 0
	for {
		// Counted before the poll: a request counted here was sent, and
		// what the one before it brought handed to a poll, before this
		// poll began. Polls end at least every two fetch waits, so the
		// count moves while nothing arrives.
		counted := v.fetches.snapshot()
		pctx, cancel := context.WithTimeout(ctx, 2*v.cfg.FetchMaxWait)
		fs := v.cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if fs.IsClientClosed() {
			return fmt.Errorf("control: consume %s: %w", v.cfg.Topic, kgo.ErrClientClosed)
		}
		errs := 0
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				errs++
				v.log.Warn("control topic fetch error", "topic", t, "partition", p, "err", err, "consecutive", failing+1)
				v.mu.Lock()
				v.fetchFailed[p] = time.Now()
				v.mu.Unlock()
			}
		})
		// What the poll brought is applied before any backoff: held through
		// it, a cancel already fetched would wait seconds while the
		// freshness check, which sees nothing move, may call the view
		// caught up.
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) == 0 {
				return
			}
			v.apply(p.Partition, p.Records)
		})
		v.mu.Lock()
		v.polled = counted
		v.mu.Unlock()
		if errs == 0 {
			failing = 0
		} else {
			failing++
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(fetchErrorBackoff(failing)):
			}
		}
	}
}

func (v *View) apply(partition int32, recs []*kgo.Record) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, r := range recs {
		if r.Offset+1 > v.applied[partition] {
			v.applied[partition] = r.Offset + 1
		}
		if r.Attrs.IsControl() {
			continue
		}
		label, err := v.states.Apply(r)
		if err != nil {
			// Every instance reads this topic; dead-lettering from each
			// would multiply the letter, so the view logs and counts it,
			// and the planners' Auditor dead-letters it once.
			v.log.Error("invalid campaign-control record skipped", "partition", partition, "offset", r.Offset, "err", err)
		} else {
			v.version++
		}
		v.metrics.records.WithLabelValues(label).Inc()
	}
	v.notifyLocked()
}

func (v *View) notifyLocked() {
	close(v.changed)
	v.changed = make(chan struct{})
}

// refreshLoop moves FreshAsOf: at t0, ask the cluster which partitions the
// topic has and list their end offsets, wait until applied reaches them,
// then FreshAsOf = t0.
func (v *View) refreshLoop(ctx context.Context) {
	lastEnd := map[int32]int64{}
	lastApplied := map[int32]int64{}
	quiet := map[int32]int{}
	// awaited: per partition standing still, its leader and the count of
	// fetch requests for it the consumer must reach, and the view have
	// polled past, before it can count as quiet (see answeredSinceLocked).
	awaited := map[int32]*awaitedFetch{}
	var forcedAt time.Time
	var forced string
	tick := time.NewTicker(v.cfg.RefreshInterval)
	defer tick.Stop()
	for {
		t0 := time.Now()
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		// The partitions as the cluster names them after t0: a record
		// acknowledged before t0 is in one of them. The client's cached
		// metadata, which kadm lists offsets from, may be MetadataMinAge
		// (5 s) old and leave out a partition added since; this answer
		// refreshes that cache too, and the listings are checked against
		// it below.
		leaders, brokers, err := v.partitions(lctx)
		if err == nil {
			v.fetches.forgetSentTo(brokers)
		}
		// The last stable offset: a read_committed consumer reads up to
		// it, and an event of a transaction still open is not known yet.
		var ends kadm.ListedOffsets
		if err == nil {
			if ends, err = v.adm.ListCommittedOffsets(lctx, v.cfg.Topic); err == nil {
				err = ends.Error()
			}
		}
		// A partition whose records are all gone (tombstones past their
		// retention) starts where it ends: nothing to read.
		var starts kadm.ListedOffsets
		if err == nil {
			if starts, err = v.adm.ListStartOffsets(lctx, v.cfg.Topic); err == nil {
				err = starts.Error()
			}
		}
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			v.log.Warn("control topic: list end offsets", "err", err)
		} else {
			v.mu.Lock()
			caughtUp := true
			var unconsumed []int32
			quietFor := time.Duration(v.cfg.QuietChecks)*v.cfg.RefreshInterval + 2*v.cfg.FetchMaxWait
			for p, leader := range leaders {
				o, endListed := ends.Lookup(v.cfg.Topic, p)
				start, startListed := starts.Lookup(v.cfg.Topic, p)
				if !endListed || !startListed {
					// Listed from metadata older than the answer above
					// (the cache was refreshed since): next time.
					quiet[p] = 0
					delete(awaited, p)
					caughtUp = false
					continue
				}
				a := v.applied[p]
				// Which broker the consumer asks for the partition, as
				// its own metadata says; -1 while it has not loaded the
				// partition, so does not read it at all.
				consumerLeader, _, _ := v.cl.PartitionLeader(v.cfg.Topic, p)
				if consumerLeader < 0 {
					unconsumed = append(unconsumed, p)
				}
				switch {
				case a >= o.Offset || start.Offset >= o.Offset:
					quiet[p] = 0
					delete(awaited, p)
				case consumerLeader < 0:
					// A partition added since the consumer's metadata
					// was fetched (refreshed below): it reads nothing of
					// it, and its standing still says nothing.
					quiet[p] = 0
					delete(awaited, p)
					caughtUp = false
				case t0.Sub(v.fetchFailed[p]) < quietFor:
					// Its fetches fail: standing still is not being
					// done. (A partition the view has read nothing from
					// may hold no record at all, every one compacted or
					// deleted while its start offset stayed: the
					// consumer's fetches of it below say whether it was
					// read.)
					quiet[p] = 0
					delete(awaited, p)
					caughtUp = false
				case lastEnd[p] == o.Offset && lastApplied[p] == a:
					// Nothing arrives and nothing is appended: the
					// offsets below the end may hold no record to read.
					if consumerLeader != leader {
						// The consumer still asks another broker
						// for it: its requests say nothing until its
						// metadata moves it to the leader.
						delete(awaited, p)
					} else if awaited[p] == nil || awaited[p].leader != leader {
						awaited[p] = v.fetches.await(leader, p)
					}
					quiet[p]++
					if quiet[p] < v.cfg.QuietChecks ||
						time.Duration(quiet[p])*v.cfg.RefreshInterval <= 2*v.cfg.FetchMaxWait ||
						!v.answeredSinceLocked(awaited[p], t0) {
						caughtUp = false
					}
				default:
					quiet[p] = 0
					caughtUp = false
					delete(awaited, p)
				}
				lastEnd[p], lastApplied[p] = o.Offset, a
			}
			if caughtUp && t0.After(v.freshAsOf) {
				v.freshAsOf = t0
				v.notifyLocked()
			}
			v.mu.Unlock()
			// The client learns of a partition added to a topic it
			// consumes only at its own metadata refresh, every
			// MetadataMaxAge (5 min): ask for it now, at most every
			// second (the client refreshes at once when asked).
			if len(unconsumed) > 0 && t0.Sub(forcedAt) >= time.Second {
				slices.Sort(unconsumed)
				if s := fmt.Sprint(unconsumed); s != forced {
					forced = s
					v.log.Info("control topic: partitions the consumer does not read yet, refreshing its metadata", "partitions", unconsumed)
				}
				forcedAt = t0
				v.cl.ForceMetadataRefresh()
			} else if len(unconsumed) == 0 {
				forced = ""
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// awaitedFetch: a partition standing still below its end waits for the
// consumer to have sent count fetch requests for it, while its metadata
// names leader, the partition's leader.
type awaitedFetch struct {
	leader    int32
	partition int32
	count     uint64
	cancelled uint64 // fetches the consumer had cancelled when count was set
}

// answeredSinceLocked reports whether the consumer has sent as many fetch
// requests for want's partition as want says, the view has polled past
// them, and no fetch is overdue. The count is three requests after the
// wait began, each naming the partition (a fetch session's incremental
// request too, which leaves an unchanged partition off the wire, and whose
// answer then says it has nothing new): the client asks for a partition in
// one request at a time, and sends the next only once the last was
// answered and what it brought taken by a poll, so the second request
// proves the first, sent after the end offset was listed, was answered;
// the third covers a request the client writes twice (again on a new
// connection when its first write failed before a byte went out). The
// consumer's requests for the partition itself are the proof, not a
// broker's answers to fetches: a broker answering fetches for other
// partitions says nothing of one the consumer does not ask it for.
//
// The requests count only while the consumer's metadata names the leader
// the cluster names now. The client may still ask the old one for the
// partition until its own metadata moves it, and while a fetch is overdue
// (sent more than its wait plus two seconds ago and unanswered: a hung
// connection, which the client gives up only after its wait plus 10 s,
// without a word to the view), or within failedHold of a fetch that failed
// (a reset, a refused connection: the client backs off and asks the same
// broker again until its metadata, at most MetadataMinAge old, is
// refreshed), the partition does not count as quiet, and its requests are
// counted again from when it may. So they are after the consumer cancelled
// a fetch (it ends its fetch session when a leader moves or a partition is
// added): a request cancelled says nothing of the one before it.
func (v *View) answeredSinceLocked(want *awaitedFetch, now time.Time) bool {
	if want == nil || want.leader < 0 {
		return false
	}
	if v.fetches.blocked(now, v.cfg.FetchMaxWait+2*time.Second, v.failedHold) || v.fetches.cancelledSince(want) {
		*want = *v.fetches.await(want.leader, want.partition)
		return false
	}
	return v.polled[want.partition] >= want.count
}

// partitions returns the control topic's partitions with their leaders
// (-1 for a partition the cluster reports an error for) as the cluster
// says now, and the cluster's brokers. Asked directly each time rather
// than read from the client's cache.
func (v *View) partitions(ctx context.Context) (map[int32]int32, map[int32]bool, error) {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(v.cfg.Topic)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, v.cl)
	if err != nil {
		return nil, nil, fmt.Errorf("metadata: %w", err)
	}
	brokers := make(map[int32]bool, len(resp.Brokers))
	for _, b := range resp.Brokers {
		brokers[b.NodeID] = true
	}
	for _, t := range resp.Topics {
		if t.Topic == nil || *t.Topic != v.cfg.Topic {
			continue
		}
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			return nil, brokers, fmt.Errorf("metadata of %s: %w", v.cfg.Topic, err)
		}
		m := make(map[int32]int32, len(t.Partitions))
		for _, p := range t.Partitions {
			if p.ErrorCode == 0 {
				m[p.Partition] = p.Leader
			} else {
				m[p.Partition] = -1
			}
		}
		return m, brokers, nil
	}
	return nil, brokers, fmt.Errorf("metadata: %s not in the answer", v.cfg.Topic)
}

// fetchCounts counts, per partition of topic, the fetch requests the
// consumer sends for it (through requested, the client's PreferLagFn), and
// is a kgo hook keeping when each broker's fetch in flight was sent (the
// client has one at a time per broker) and when its last fetch failed.
type fetchCounts struct {
	topic     string
	mu        sync.Mutex
	n         map[int32]uint64
	cancelled uint64 // fetches the consumer cancelled
	sent      map[int32]time.Time
	failed    map[int32]time.Time
}

// requested is the client's PreferLagFn: the client calls it as it writes
// each fetch request, with every partition the request asks for (those it
// leaves to the fetch session included). It counts them and leaves the
// order as it is.
func (f *fetchCounts) requested(lag map[string]map[int32]int64, _ []string, _ map[string][]int32) ([]string, map[string][]int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for p := range lag[f.topic] {
		f.n[p]++
	}
	return nil, nil
}

func (f *fetchCounts) OnBrokerWrite(meta kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if key != int16(kmsg.Fetch) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case errors.Is(err, context.Canceled):
		f.cancelled++
	case err != nil:
		// The request was counted as it was written: a write that
		// failed is a fetch that failed.
		f.failed[meta.NodeID] = time.Now()
	default:
		if _, ok := f.sent[meta.NodeID]; !ok {
			f.sent[meta.NodeID] = time.Now()
		}
	}
}

func (f *fetchCounts) OnBrokerRead(meta kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if key != int16(kmsg.Fetch) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.sent, meta.NodeID)
	switch {
	case errors.Is(err, context.Canceled):
		// The consumer ended its fetch session (a leader moved, a
		// partition was added): not the broker failing.
		f.cancelled++
	case err != nil:
		// A reset, a closed connection, a read timeout: the fetch
		// connection's own error, whichever of the broker's connections
		// goes (a disconnect hook would not say which).
		f.failed[meta.NodeID] = time.Now()
	default:
		delete(f.failed, meta.NodeID)
	}
}

// forgetSentTo forgets the fetches in flight to brokers not in brokers
// (the cluster's, from a metadata answer): the client stops a broker that
// left, and its write hook may run after the stop, with no read to
// follow. A failure is kept: it ages out after failedHold, and a broker
// killed leaves the metadata as its partitions move, which is when the
// client may still ask it for one.
func (f *fetchCounts) forgetSentTo(brokers map[int32]bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for node := range f.sent {
		if !brokers[node] {
			delete(f.sent, node)
		}
	}
}

// await is what partition, led by leader, waits for from now on (see
// answeredSinceLocked).
func (f *fetchCounts) await(leader, partition int32) *awaitedFetch {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &awaitedFetch{leader: leader, partition: partition, count: f.n[partition] + 3, cancelled: f.cancelled}
}

// cancelledSince reports whether the consumer cancelled a fetch since want
// was set.
func (f *fetchCounts) cancelledSince(want *awaitedFetch) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cancelled != want.cancelled
}

// blocked reports whether a fetch sent more than overdue ago is
// unanswered, or one failed less than hold ago.
func (f *fetchCounts) blocked(now time.Time, overdue, hold time.Duration) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, at := range f.sent {
		if now.Sub(at) > overdue {
			return true
		}
	}
	for _, at := range f.failed {
		if now.Sub(at) < hold {
			return true
		}
	}
	return false
}

func (f *fetchCounts) snapshot() map[int32]uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.n)
}

// Cancelled reports whether campaign id is cancelled.
func (v *View) Cancelled(id string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	st, _ := v.states.State(id)
	return st.Cancelled
}

// Paused reports whether campaign id is paused (and not cancelled).
func (v *View) Paused(id string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	st, _ := v.states.State(id)
	return st.Paused
}

// State returns campaign id's state and whether the view has one.
func (v *View) State(id string) (State, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.states.State(id)
}

// Version changes whenever a campaign's state changes; a poller compares
// it to skip work when nothing changed.
func (v *View) Version() uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.version
}

// Changed returns a channel closed at the next change of state or
// freshness.
func (v *View) Changed() <-chan struct{} {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.changed
}

// FreshAsOf is the latest time t such that every control record
// acknowledged before t has been applied; zero until the first catch-up.
func (v *View) FreshAsOf() time.Time {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.freshAsOf
}

// WaitFresh blocks until FreshAsOf is at or after t, or ctx ends.
func (v *View) WaitFresh(ctx context.Context, t time.Time) error {
	for {
		v.mu.Lock()
		ok, ch := !v.freshAsOf.Before(t), v.changed
		v.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("control: waiting for the view to catch up to %s: %w", t.Format(time.RFC3339Nano), ctx.Err())
		case <-ch:
		}
	}
}

// WaitCaughtUp blocks until the view has applied everything written before
// the call.
func (v *View) WaitCaughtUp(ctx context.Context) error {
	return v.WaitFresh(ctx, time.Now())
}

// cancelKeySuffix: a cancel is keyed by the campaign id and this suffix
// (which no campaign id can contain), pause and resume by the id alone.
// Compaction keeps the latest record per key; with one key, a pause or
// resume written after a cancel (by a racing operator, or any producer)
// would have replaced it, and every view started after the compaction would
// send the cancelled campaign again.
const cancelKeySuffix = "/cancel"

// Key is the record key of c: the campaign id, with "/cancel" for a cancel.
func Key(c schemas.CampaignControl) string {
	if c.Action == schemas.ControlCancel {
		return c.CampaignID + cancelKeySuffix
	}
	return c.CampaignID
}

// Record builds the record of c, keyed by Key: compaction keeps the latest
// pause or resume of a campaign, and its cancel.
func Record(topic string, c schemas.CampaignControl) (*kgo.Record, error) {
	if c.SchemaVersion == 0 {
		c.SchemaVersion = schemas.SchemaVersion
	}
	if c.At.IsZero() {
		c.At = time.Now()
	}
	c.At = c.At.UTC()
	raw, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("control: encode: %w", err)
	}
	if _, err := schemas.DecodeCampaignControl(raw); err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	return &kgo.Record{
		Topic:   topic,
		Key:     []byte(Key(c)),
		Value:   raw,
		Headers: []kgo.RecordHeader{{Key: kafka.HeaderSchema, Value: []byte("campaign-control.v1")}, {Key: kafka.HeaderCampaignID, Value: []byte(c.CampaignID)}},
	}, nil
}

// Publish writes c to the control topic and returns once the broker has
// acknowledged it; from then on, WaitFresh(ctx, time.Now()) on any view
// returns only after c is applied.
func Publish(ctx context.Context, cl *kgo.Client, topic string, c schemas.CampaignControl) error {
	r, err := Record(topic, c)
	if err != nil {
		return err
	}
	if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		return fmt.Errorf("control: publish %s %s: %w", c.Action, c.CampaignID, err)
	}
	return nil
}

// fetchErrorBackoff is the pause after the n-th poll in a row that failed:
// 100 ms doubling to 5 s.
func fetchErrorBackoff(n int) time.Duration {
	d := 100 * time.Millisecond
	for i := 1; i < n && d < 5*time.Second; i++ {
		d *= 2
	}
	return min(d, 5*time.Second)
}
