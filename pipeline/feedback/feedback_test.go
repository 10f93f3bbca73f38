package feedback

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/internal/service"
	"github.com/pushlane/pushlane/schemas"
)

// fakeStore records every Apply and fails the first failures calls.
type fakeStore struct {
	mu       sync.Mutex
	failures int
	calls    int
	applied  []Changes
}

func (s *fakeStore) Apply(_ context.Context, c Changes) (Applied, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.failures > 0 {
		s.failures--
		return Applied{}, errors.New("mysql: connection refused")
	}
	s.applied = append(s.applied, c)
	return Applied{DeadDeactivated: int64(len(c.Deaths)), Unknown: 1}, nil
}

func (s *fakeStore) deaths() []Death {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Death
	for _, c := range s.applied {
		out = append(out, c.Deaths...)
	}
	return out
}

// flakySink fails the first failures writes, then passes rows on.
type flakySink struct {
	mu       sync.Mutex
	failures int
	writes   int
	rows     []string // result ids of the rows passed on
	next     Sink
}

func (s *flakySink) Write(ctx context.Context, rows []Row) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	if s.failures > 0 {
		s.failures--
		return errors.New("clickhouse: dial tcp 127.0.0.1:9000: connection refused")
	}
	for _, r := range rows {
		s.rows = append(s.rows, r.ResultID)
	}
	return s.next.Write(ctx, rows)
}

type fakeEnv struct {
	brokers                   []string
	results, regs, deadLetter string
}

func newFakeEnv(t *testing.T) fakeEnv {
	t.Helper()
	e := fakeEnv{results: "results", regs: "registrations", deadLetter: "dead-letter"}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, e.results, e.regs, e.deadLetter))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	e.brokers = c.ListenAddrs()
	return e
}

func (e fakeEnv) produce(t *testing.T, topic string, values ...[]byte) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, len(values))
	for i, v := range values {
		recs[i] = &kgo.Record{Topic: topic, Key: []byte(fmt.Sprint(i)), Value: v}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func encode(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (e fakeEnv) start(t *testing.T, store Store, sink Sink, reg prometheus.Registerer) (stop func() error) {
	t.Helper()
	return e.startReady(t, store, sink, reg, nil)
}

// startReady is start with a readiness to report to.
func (e fakeEnv) startReady(t *testing.T, store Store, sink Sink, reg prometheus.Registerer, ready *service.Readiness) (stop func() error) {
	t.Helper()
	return e.startDeps(t, Deps{Store: store, Sink: sink, Metrics: reg, Ready: ready})
}

// startDeps is start with deps (their KafkaOpts set here).
func (e fakeEnv) startDeps(t *testing.T, deps Deps) (stop func() error) {
	t.Helper()
	deps.KafkaOpts = []kgo.Opt{kgo.SeedBrokers(e.brokers...)}
	f, err := New(Config{ResultsTopic: e.results, RegistrationsTopic: e.regs, DeadLetterTopic: e.deadLetter, Group: "feedback-test",
		FlushRows: 100, FlushInterval: 100 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}, deps)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	return func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(20 * time.Second):
			t.Fatal("Run did not return after cancel")
			return nil
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRunRetriesFailedStoresCommitsAfterAndDeadLetters drives the consume
// loop on kfake: a malformed result and an unstorable registration go to
// the dead-letter topic; MySQL and the analytics sink each fail before
// succeeding, and nothing is lost or committed early; a second run with the
// same group reads nothing again.
func TestRunRetriesFailedStoresCommitsAfterAndDeadLetters(t *testing.T) {
	e := newFakeEnv(t)
	var values [][]byte
	for i := range 250 {
		r := result(fmt.Sprintf("r%03d", i), "a", fmt.Sprintf("t%03d", i), schemas.OutcomeDelivered, "", t0)
		if i%50 == 0 {
			r.Outcome, r.Reason = schemas.OutcomeTokenDead, "Unregistered"
		}
		values = append(values, encode(t, r))
	}
	values = append(values, values[:10]...) // a replayed stretch
	values = append(values, []byte(`{"schema_version":1,"id":"bad"}`))
	e.produce(t, e.results, values...)
	e.produce(t, e.regs,
		encode(t, schemas.DeviceRegistration{SchemaVersion: 1, App: "a", Token: "t900", Platform: "ios", RegisteredAt: t0}),
		// Valid by the schema, but a time in year 10000 in UTC, which
		// MySQL cannot hold.
		encode(t, schemas.DeviceRegistration{SchemaVersion: 1, App: "a", Token: "tok-future", Platform: "ios",
			RegisteredAt: time.Date(9999, 12, 31, 23, 30, 0, 0, time.FixedZone("", -3600))}))

	store := &fakeStore{failures: 2}
	acc := NewAccumulator()
	sink := &flakySink{failures: 2, next: acc}
	reg := prometheus.NewRegistry()
	stop := e.start(t, store, sink, reg)
	waitFor(t, "all results in the accumulator", func() bool {
		s, err := acc.Summary("c1")
		return err == nil && s.Results == 250
	})
	// Wait for the commit that follows the last write.
	waitFor(t, "offsets committed to the end", func() bool { return committedTotal(t, e.brokers, "feedback-test", e.results, e.regs) == 263 })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	s, _ := acc.Summary("c1")
	if s.Delivered != 245 || s.TokenDead != 5 || s.Results != 250 {
		t.Errorf("summary = %+v, want 245 delivered, 5 dead, 250 results", s)
	}
	if d := store.deaths(); len(d) < 5 {
		t.Errorf("store saw %d deaths, want at least 5 (replays may repeat)", len(d))
	}
	if got := counterValue(t, reg, "pushlane_feedback_retries_total", "mysql"); got != 2 {
		t.Errorf("mysql retries = %v, want 2", got)
	}
	if got := counterValue(t, reg, "pushlane_feedback_retries_total", "analytics"); got != 2 {
		t.Errorf("analytics retries = %v, want 2", got)
	}

	// Dead letters: exactly the two bad records, with their reasons.
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ConsumeTopics(e.deadLetter), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var dls []*schemas.DeadLetter
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for len(dls) < 2 && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			dl, err := schemas.DecodeDeadLetter(r.Value)
			if err != nil {
				t.Errorf("dead letter does not decode: %v", err)
				return
			}
			dls = append(dls, dl)
		})
	}
	if len(dls) != 2 {
		t.Fatalf("dead letters = %d, want 2", len(dls))
	}
	reasons := dls[0].Reason + " | " + dls[1].Reason
	for _, want := range []string{"invalid result:", "registered_at: 9999-12-31T23:30:00-01:00 is out of range"} {
		if !strings.Contains(reasons, want) {
			t.Errorf("dead-letter reasons %q lack %q", reasons, want)
		}
	}
	for _, dl := range dls {
		if dl.Stage != Stage {
			t.Errorf("dead letter stage = %q", dl.Stage)
		}
	}

	// A second member of the same group starts after the commit: nothing
	// is read again. Once it has joined, one new record goes to every
	// partition of both topics; when they are committed, the member has
	// read each partition from its committed offset to the end, and it
	// must have handled those new records and nothing else.
	snapshot := func() (rows []string, applied []Changes) {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		store.mu.Lock()
		defer store.mu.Unlock()
		return append([]string(nil), sink.rows...), append([]Changes(nil), store.applied...)
	}
	rowsBefore, appliedBefore := snapshot()
	ready := service.NewReadiness()
	stop = e.startReady(t, store, sink, prometheus.NewRegistry(), ready)
	waitFor(t, "the second member joined", func() bool { return ready.Err() == nil })
	const partitions = 3 // newFakeEnv seeds every topic with 3
	pcl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer pcl.Close()
	var fresh []*kgo.Record
	for p := range int32(partitions) {
		r := result(fmt.Sprintf("fresh%d", p), "a", fmt.Sprintf("fresh%d", p), schemas.OutcomeDelivered, "", t0)
		r.CampaignID = "c-fresh"
		fresh = append(fresh,
			&kgo.Record{Topic: e.results, Partition: p, Value: encode(t, r)},
			&kgo.Record{Topic: e.regs, Partition: p, Value: encode(t, schemas.DeviceRegistration{SchemaVersion: 1, App: "a", Token: fmt.Sprintf("fresh%d", p), Platform: "ios", RegisteredAt: t0})})
	}
	if err := pcl.ProduceSync(context.Background(), fresh...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new records committed", func() bool {
		return committedTotal(t, e.brokers, "feedback-test", e.results, e.regs) == 263+2*partitions
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	rowsAfter, appliedAfter := snapshot()
	newRows := rowsAfter[len(rowsBefore):]
	var newRegs, newDeaths []string
	for _, c := range appliedAfter[len(appliedBefore):] {
		for _, g := range c.Registrations {
			newRegs = append(newRegs, g.Token)
		}
		for _, d := range c.Deaths {
			newDeaths = append(newDeaths, d.Token)
		}
	}
	onlyFresh := func(ids []string) bool {
		for _, id := range ids {
			if !strings.HasPrefix(id, "fresh") {
				return false
			}
		}
		return len(ids) == partitions
	}
	if !onlyFresh(newRows) || !onlyFresh(newRegs) || len(newDeaths) != 0 {
		t.Errorf("restart re-read committed records: after the commit, rows %v, registrations %v, deaths %v; want only the %d new results and registrations", newRows, newRegs, newDeaths, partitions)
	}
}

// counterValue reads counter name with label value label ("" for an
// unlabelled counter).
func counterValue(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" && len(m.GetLabel()) == 0 {
				return m.GetCounter().GetValue()
			}
			for _, lp := range m.GetLabel() {
				if lp.GetValue() == label {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("metric %s{%s} not found", name, label)
	return 0
}

// committedTotal sums group's committed offsets over the partitions of
// topics (only those: a group name reused by an earlier or concurrent run
// may hold commits on other topics), or returns -1 if they cannot be read.
func committedTotal(t testing.TB, brokers []string, group string, topics ...string) int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	defer adm.Close()
	offs, err := adm.FetchOffsetsForTopics(context.Background(), group, topics...)
	if err != nil {
		return -1
	}
	var total int64
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Err == nil {
			total += max(o.At, 0)
		}
	})
	return total
}

// Feedback is ready once its group is joined, not when Run starts: with
// the brokers unreachable it stays "starting"; joined, it is ready; stopped,
// it is draining.
func TestReadyOnceTheGroupIsJoined(t *testing.T) {
	for _, reachable := range []bool{false, true} {
		e := newFakeEnv(t)
		brokers := e.brokers
		if !reachable {
			brokers = []string{"127.0.0.1:1"}
		}
		ready := service.NewReadiness()
		f, err := New(Config{ResultsTopic: e.results, RegistrationsTopic: e.regs, DeadLetterTopic: e.deadLetter, Group: "feedback-ready"},
			Deps{KafkaOpts: []kgo.Opt{kgo.SeedBrokers(brokers...)}, Store: &fakeStore{}, Sink: NewAccumulator(), Metrics: prometheus.NewRegistry(), Ready: ready})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- f.Run(ctx) }()
		if reachable {
			waitFor(t, "feedback ready", func() bool { return ready.Err() == nil })
		} else {
			time.Sleep(1500 * time.Millisecond)
			if err := ready.Err(); err == nil || err.Error() != "feedback: starting" {
				t.Errorf("brokers unreachable for 1.5 s: readiness %v, want feedback: starting", err)
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if reachable {
			if err := ready.Err(); err == nil || err.Error() != "feedback: draining" {
				t.Errorf("stopped: readiness %v, want feedback: draining", err)
			}
		}
	}
}
