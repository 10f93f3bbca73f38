package feedback

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/schemas"
)

// ackAtCancelSink acknowledges its first write at the moment Run's ctx is
// cancelled (a ClickHouse insert whose ack arrives with SIGTERM).
type ackAtCancelSink struct {
	entered chan struct{}
	acc     *Accumulator
	first   bool
}

func (s *ackAtCancelSink) Write(ctx context.Context, rows []Row) error {
	if !s.first {
		s.first = true
		close(s.entered)
		<-ctx.Done()
	}
	return s.acc.Write(context.Background(), rows)
}

// On a stop, Run commits what it stored: a flush whose stores succeeded as
// the stop came must not lose its commit (a commit with the cancelled
// context fails) and leave the records to be consumed and counted again.
func TestStopCommitsWhatTheFlushStored(t *testing.T) {
	e := newFakeEnv(t)
	var values [][]byte
	for i := range 20 {
		values = append(values, encode(t, result(fmt.Sprintf("r%03d", i), "a", fmt.Sprintf("t%03d", i), schemas.OutcomeDelivered, "", t0)))
	}
	e.produce(t, e.results, values...)
	sink := &ackAtCancelSink{entered: make(chan struct{}), acc: NewAccumulator()}
	stop := e.start(t, &fakeStore{}, sink, prometheus.NewRegistry())
	select {
	case <-sink.entered:
	case <-time.After(20 * time.Second):
		t.Fatal("no flush")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	s, _ := sink.acc.Summary("c1")
	got := committedTotal(t, e.brokers, "feedback-test", e.results, e.regs)
	t.Logf("rows stored %d, offsets committed %d", s.Results, got)
	if s.Results != 20 || got != 20 {
		t.Errorf("%d of 20 results stored and %d offsets committed; want 20 and 20", s.Results, got)
	}
}

type downSink struct{}

func (downSink) Write(context.Context, []Row) error { return errors.New("analytics store down") }

// A stop that cannot store and commit its buffer within DrainTimeout
// returns an error, so the process exits non-zero: before, it logged a
// warning and exited 0, as a clean drain does. Nothing is lost: the
// records are left uncommitted for the group.
func TestStopThatCannotDrainFails(t *testing.T) {
	e := newFakeEnv(t)
	var values [][]byte
	for i := range 5 {
		values = append(values, encode(t, result(fmt.Sprintf("r%03d", i), "a", fmt.Sprintf("t%03d", i), schemas.OutcomeDelivered, "", t0)))
	}
	e.produce(t, e.results, values...)
	reg := prometheus.NewRegistry()
	f, err := New(Config{ResultsTopic: e.results, RegistrationsTopic: e.regs, DeadLetterTopic: e.deadLetter, Group: "feedback-test",
		FlushRows: 100, FlushInterval: 50 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		DrainTimeout: 300 * time.Millisecond},
		Deps{Store: &fakeStore{}, Sink: downSink{}, Metrics: reg, KafkaOpts: []kgo.Opt{kgo.SeedBrokers(e.brokers...)}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	waitFor(t, "a failing flush", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.buf.records) == 5
	})
	time.Sleep(200 * time.Millisecond) // a few failed attempts
	cancel()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "stopped with 5 records uncommitted") || !strings.Contains(err.Error(), "analytics store down") {
			t.Errorf("Run = %v; want the uncommitted records and the store's error", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if got := committedTotal(t, e.brokers, "feedback-test", e.results, e.regs); got != 0 {
		t.Errorf("%d offsets committed, want 0", got)
	}
}
