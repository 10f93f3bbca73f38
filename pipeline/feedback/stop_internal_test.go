package feedback

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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
