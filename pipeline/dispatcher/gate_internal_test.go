package dispatcher

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/pipeline/delay"
	"github.com/pushlane/pushlane/pipeline/dispatcher/dispatchtest"
	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/providers/fcm"
	"github.com/pushlane/pushlane/providers/fcmsim"
	"github.com/pushlane/pushlane/schemas"
)

// switchControl is a control view whose campaigns are cancelled or paused
// from when a test says so.
type switchControl struct{ cancelled, paused atomic.Bool }

func (c *switchControl) Cancelled(string) bool                      { return c.cancelled.Load() }
func (c *switchControl) Paused(string) bool                         { return c.paused.Load() }
func (c *switchControl) WaitFresh(context.Context, time.Time) error { return nil }

// Sends queued in the FCM sender: the app's concurrency (40) is above its
// FCM sender's own (fcm.concurrency, 2), as with the defaults' 1000 and
// 200, so of a chunk of 40 Android devices 38 wait inside the sender,
// behind requests the simulator answers after latency.
const (
	queuedAppConcurrency = 40
	queuedFCMConcurrency = 2
)

// queuedFCMDispatcher is a dispatcher on kfake with app1 sending through a
// real FCM sender (Concurrency queuedFCMConcurrency) to the FCM simulator,
// answering after latency; the app's concurrency and the chunk are
// queuedAppConcurrency. told says whether the sender is given the halt
// registry.
func queuedFCMDispatcher(t *testing.T, ctrl ControlView, store Store, latency time.Duration, told bool) (*Dispatcher, *fcmsim.Server, *kfake.Cluster) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "ready", "results", "dlq"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	halt, err := providers.NewHalt(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, sim := dispatchtest.FCMSender(t, "app1", fcmsim.Fault{Latency: latency}, func(fc *fcm.Config) {
		fc.Concurrency = queuedFCMConcurrency
		if told {
			fc.Halt = halt
		}
	})
	cfg := Config{Group: "g", Ladder: delay.Ladder{Ready: "ready"}, ResultsTopic: "results", DeadLetterTopic: "dlq",
		ChunkSize: queuedAppConcurrency, FinishTimeout: 5 * time.Second, ResultsLinger: -1, ParkInterval: 50 * time.Millisecond}
	d, err := New(cfg, Deps{Apps: map[string]App{"app1": {FCM: s, Concurrency: queuedAppConcurrency}}, Control: ctrl, Store: store,
		Halt: halt, Metrics: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	startSendPool(t, d, c)
	return d, sim, c
}

// androidRecord is batch id of n Android devices (tokens id-a00, ...) of
// campaign c1, due now, at offset of partition 0.
func androidRecord(t *testing.T, id string, n int, offset int64) (*kgo.Record, []string) {
	t.Helper()
	var devs []device
	var tokens []string
	for i := range n {
		tok := fmt.Sprintf("%s-a%02d", id, i)
		devs = append(devs, device{tok, schemas.PlatformAndroid})
		tokens = append(tokens, tok)
	}
	return tokenRecord(t, id, offset, devs...), tokens
}

// waitSimRequests waits until the simulator has seen n requests.
func waitSimRequests(t *testing.T, sim *fcmsim.Server, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for sim.Counts().Requests < n {
		if time.Now().After(deadline) {
			t.Fatalf("the simulator saw %d requests in 10 s, want %d", sim.Counts().Requests, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// kfakeResults reads the results topic until n results or timeout, by
// token.
func kfakeResults(t *testing.T, c *kfake.Cluster, n int, timeout time.Duration) map[string][]schemas.Result {
	t.Helper()
	var rs []schemas.Result
	for _, r := range (dispatchtest.Kafka{Brokers: c.ListenAddrs()}).ReadAll(t, "results", n, timeout) {
		var res schemas.Result
		if err := json.Unmarshal(r.Value, &res); err != nil {
			t.Errorf("result %s: %v", r.Value, err)
			continue
		}
		rs = append(rs, res)
	}
	return dispatchtest.ByToken(rs)
}

// A campaign cancelled (or paused) while most of a chunk's devices wait
// inside the FCM sender, behind its own concurrency: no request is written
// after the cancel took effect but those of the sends already past the
// sender's gate (at most its concurrency), and every device not delivered
// gets cancelled (paused: stays without a result, the batch parked).
// Before, the dispatcher checked the cancel only before handing a send to
// the sender, so all 40 devices were delivered after the cancel.
func TestCancelOrPauseWithdrawsSendsQueuedInTheSender(t *testing.T) {
	for _, action := range []string{schemas.ControlCancel, schemas.ControlPause} {
		t.Run(action, func(t *testing.T) {
			ctrl := &switchControl{}
			store := NewMemStore()
			d, sim, c := queuedFCMDispatcher(t, ctrl, store, 300*time.Millisecond, true)
			rec, tokens := androidRecord(t, "C", queuedAppConcurrency, 0)
			done := make(chan bool, 1)
			go func() { done <- d.handle(context.Background(), rec, make(chan struct{}, 1)) }()
			waitSimRequests(t, sim, queuedFCMConcurrency)
			if action == schemas.ControlCancel {
				ctrl.cancelled.Store(true)
			} else {
				ctrl.paused.Store(true)
			}
			written := sim.Counts().Requests // and at most the sends holding a slot, past the gate
			var ok bool
			select {
			case ok = <-done:
			case <-time.After(15 * time.Second):
				t.Fatal("handle still running 15 s after the cancel")
			}
			if !ok {
				t.Fatal("handle did not report the batch done")
			}
			time.Sleep(100 * time.Millisecond)
			total := sim.Counts().Requests
			if total > written+queuedFCMConcurrency {
				t.Errorf("%d requests at the simulator, %d of them after the %s took effect; want at most the %d past the sender's gate then",
					total, total-written, action, queuedFCMConcurrency)
			}
			delivered := 0
			for _, tok := range tokens {
				delivered += sim.AcceptedFor(tok)
			}
			want := len(tokens) // cancel: every device its one result
			if action == schemas.ControlPause {
				want = delivered // pause: the rest wait, without one
			}
			rs := kfakeResults(t, c, want, 5*time.Second)
			for _, tok := range tokens {
				got := rs[tok]
				switch n := sim.AcceptedFor(tok); {
				case n > 1:
					t.Errorf("%s delivered %d times", tok, n)
				case n == 1 && (len(got) != 1 || got[0].Outcome != schemas.OutcomeDelivered):
					t.Errorf("%s delivered, results %+v; want one, delivered", tok, got)
				case n == 0 && action == schemas.ControlCancel && (len(got) != 1 || got[0].Outcome != schemas.OutcomeCancelled):
					t.Errorf("%s not delivered, results %+v; want one, cancelled", tok, got)
				case n == 0 && action == schemas.ControlPause && len(got) != 0:
					t.Errorf("%s not delivered, results %+v; want none while paused", tok, got)
				}
			}
			p, _ := store.Progress(context.Background(), "C")
			switch action {
			case schemas.ControlCancel:
				if !p.Finished || p.Done.Count() != len(tokens) {
					t.Errorf("progress: finished %v, %d done; want finished, all done", p.Finished, p.Done.Count())
				}
			case schemas.ControlPause:
				if parked, _ := store.ListParked(context.Background(), time.Time{}, "", 10); len(parked) != 1 || parked[0].Reason != ParkPaused {
					t.Errorf("parked: %+v, want C, paused", parked)
				}
				if p.Done.Count() != delivered {
					t.Errorf("progress: %d done, want the %d delivered", p.Done.Count(), delivered)
				}
			}
		})
	}
}

// A stop while most of a chunk's devices wait inside the FCM sender ends
// once the requests already written are answered: the queued sends are
// withdrawn, not sent one slot after another (here 20 rounds of a second;
// in production up to five of the 30 s request timeout, past the group's
// rebalance timeout). Nothing is written after the stop but what was past
// the sender's gate, the sent devices' results and progress are saved, and
// the next owner sends the rest, each device once.
func TestStopDoesNotWaitForSendsQueuedInTheSender(t *testing.T) {
	store := NewMemStore()
	d, sim, c := queuedFCMDispatcher(t, &stubControl{}, store, time.Second, true)
	rec, tokens := androidRecord(t, "S", queuedAppConcurrency, 0)
	stop, stopNow := context.WithCancel(context.Background())
	defer stopNow()
	done := make(chan bool, 1)
	go func() { done <- d.handle(stop, rec, make(chan struct{}, 1)) }()
	waitSimRequests(t, sim, queuedFCMConcurrency)
	stopped := time.Now()
	stopNow()
	written := sim.Counts().Requests
	select {
	case ok := <-done:
		if ok {
			t.Fatal("handle reported the batch done, with devices unsent")
		}
	case <-time.After(15 * time.Second):
		t.Fatal("handle still running 15 s after the stop")
	}
	// The requests in flight take up to a second, and their results and
	// progress are written.
	if took := time.Since(stopped); took > 3*time.Second {
		t.Errorf("the stop took %v, want little more than the 1 s of the requests in flight", took)
	}
	total := sim.Counts().Requests
	if total > written+queuedFCMConcurrency || total >= int64(len(tokens)) {
		t.Errorf("%d requests at the simulator, %d after the stop; want at most the %d past the sender's gate then", total, total-written, queuedFCMConcurrency)
	}
	p, _ := store.Progress(context.Background(), "S")
	if p.Finished || p.Done.Count() != int(total) {
		t.Errorf("progress: finished %v, %d done; want the %d sent done, unfinished", p.Finished, p.Done.Count(), total)
	}

	// The next owner.
	sim.SetFault(fcmsim.Fault{})
	if ok := d.handle(context.Background(), rec, make(chan struct{}, 1)); !ok {
		t.Fatal("the next owner did not finish the batch")
	}
	rs := kfakeResults(t, c, len(tokens), 5*time.Second)
	for _, tok := range tokens {
		if n, got := sim.AcceptedFor(tok), rs[tok]; n != 1 || len(got) != 1 || got[0].Outcome != schemas.OutcomeDelivered {
			t.Errorf("%s delivered %d times, results %+v; want once, one delivered", tok, n, got)
		}
	}
}

// A halt of the app's FCM that comes while a chunk's devices wait inside
// the FCM sender (another batch's refusal; here the sender is not told
// about halts, so only the dispatcher's gate, asking the registry, holds
// them back) keeps them from being sent: the batch is parked for the
// halt, its sent devices with their results, the rest without.
func TestHaltWithdrawsSendsQueuedInTheSender(t *testing.T) {
	store := NewMemStore()
	d, sim, _ := queuedFCMDispatcher(t, &stubControl{}, store, 300*time.Millisecond, false)
	rec, tokens := androidRecord(t, "H", queuedAppConcurrency, 0)
	done := make(chan bool, 1)
	go func() { done <- d.handle(context.Background(), rec, make(chan struct{}, 1)) }()
	waitSimRequests(t, sim, queuedFCMConcurrency)
	d.halt.Halt("app1", ProviderFCM, "PERMISSION_DENIED", nil)
	written := sim.Counts().Requests
	select {
	case ok := <-done:
		if !ok {
			t.Fatal("handle did not report the batch done (parked)")
		}
	case <-time.After(15 * time.Second):
		t.Fatal("handle still running 15 s after the halt")
	}
	time.Sleep(100 * time.Millisecond)
	total := sim.Counts().Requests
	if total > written+queuedFCMConcurrency || total >= int64(len(tokens)) {
		t.Errorf("%d requests at the simulator, %d after the halt; want at most the %d past the sender's gate then", total, total-written, queuedFCMConcurrency)
	}
	if parked, _ := store.ListParked(context.Background(), time.Time{}, "", 10); len(parked) != 1 || parked[0].Reason != ParkHalted {
		t.Errorf("parked: %+v, want H, halted", parked)
	}
	if p, _ := store.Progress(context.Background(), "H"); p.Done.Count() != int(total) {
		t.Errorf("progress: %d done, want the %d sent", p.Done.Count(), total)
	}
}

// The group's rebalance timeout covers the longest revoke: the senders'
// request timeout × 17/16 for the sends in flight, then FinishTimeout
// for their results and progress, then the commit. franz-go's default, 60
// s, is less than that with the defaults (30 s × 17/16 + 30 s + 10 s): a
// member still saving its last chunks was evicted, and the next owner
// sent their devices again.
func TestRebalanceTimeoutCoversTheRevoke(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "ready", "results", "dlq"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	joins := make(chan int32, 4)
	c.ControlKey(int16(kmsg.JoinGroup), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if req, ok := kreq.(*kmsg.JoinGroupRequest); ok {
			select {
			case joins <- req.RebalanceTimeoutMillis:
			default:
			}
		}
		return nil, nil, false
	})
	acct, err := fcmsim.NewTestServiceAccount("app1", "")
	if err != nil {
		t.Fatal(err)
	}
	s, err := fcm.New(fcm.Config{App: "app1", ServiceAccountJSON: acct.JSON, Endpoint: "https://127.0.0.1:1"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	d, err := New(Config{Kafka: config.Kafka{Brokers: c.ListenAddrs()}, Group: "g", Ladder: delay.Ladder{Ready: "ready"}, ResultsTopic: "results", DeadLetterTopic: "dlq"},
		Deps{Apps: map[string]App{"app1": {FCM: s}}, Control: &stubControl{}, Store: NewMemStore(), Metrics: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	select {
	case got := <-joins:
		revoke := 30*time.Second*17/16 + 30*time.Second + 10*time.Second // the defaults
		if time.Duration(got)*time.Millisecond < revoke {
			t.Errorf("rebalance timeout %v, want at least the longest revoke, %v", time.Duration(got)*time.Millisecond, revoke)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no JoinGroup in 10 s")
	}
}
