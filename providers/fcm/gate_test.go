package fcm_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/providers/fcm"
	"github.com/pushlane/pushlane/providers/fcmsim"
)

// closableGate is a send gate that refuses once closed, counting its calls.
type closableGate struct {
	closed atomic.Bool
	calls  atomic.Int64
}

var errGateClosed = errors.New("gate closed")

func (g *closableGate) gate() error {
	g.calls.Add(1)
	if g.closed.Load() {
		return errGateClosed
	}
	return nil
}

// sendAll sends one message to each token at once with ctx and returns the
// results in token order.
func sendAll(ctx context.Context, s *fcm.Sender, m *providers.Message, tokens []string) []providers.Result {
	out := make([]providers.Result, len(tokens))
	var wg sync.WaitGroup
	for i, tok := range tokens {
		wg.Go(func() {
			mm := *m
			mm.Token = tok
			out[i] = s.Send(ctx, &mm, 1)
		})
	}
	wg.Wait()
	return out
}

func waitRequests(t *testing.T, sim *fcmsim.Server, n int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for sim.Counts().Requests < n {
		if time.Now().After(deadline) {
			t.Fatalf("the simulator saw %d requests in 5 s, want %d", sim.Counts().Requests, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// Sends waiting for a slot of the sender's Concurrency when their gate
// closes (the dispatcher's campaign cancelled, or it is stopping) send
// nothing: they come back withdrawn, counted nowhere, and only the request
// already written goes on to its answer. (Before, the sender checked
// nothing after that wait: every send queued in it reached Google after
// the cancel.)
func TestGateWithdrawsSendsQueuedForASlot(t *testing.T) {
	sim, acct := startSim(t, nil)
	sim.SetFault(fcmsim.Fault{Latency: 300 * time.Millisecond})
	reg := prometheus.NewRegistry()
	s, err := fcm.New(fcm.Config{App: "demo", ServiceAccountJSON: acct.JSON, Endpoint: sim.URL(), RootCAs: sim.CertPool(), Concurrency: 1}, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	var g closableGate
	ctx := providers.WithSendGate(context.Background(), g.gate)
	tokens := []string{"q0", "q1", "q2", "q3", "q4", "q5"}
	done := make(chan []providers.Result)
	go func() { done <- sendAll(ctx, s, note(), tokens) }()
	waitRequests(t, sim, 1)
	g.closed.Store(true)
	rs := <-done
	delivered := 0
	for i, r := range rs {
		switch {
		case r.Outcome == providers.Delivered:
			delivered++
		case errors.Is(r.Err, providers.ErrWithdrawn) && errors.Is(r.Err, errGateClosed):
			if r.Status != 0 || r.Outcome != providers.Retryable {
				t.Errorf("%s: withdrawn as %+v, want retryable with no status", tokens[i], r)
			}
		default:
			t.Errorf("%s: %+v, want delivered (the one in flight) or withdrawn", tokens[i], r)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if n := sim.Counts().Requests; delivered != 1 || n != 1 {
		t.Errorf("%d delivered, %d requests at the simulator; want the one written before the gate closed", delivered, n)
	}
	if n := sendsCounted(t, reg); n != 1 {
		t.Errorf("%v sends counted, want 1 (withdrawn sends are none)", n)
	}
}

// sendsCounted is pushlane_provider_sends_total on reg, all outcomes.
func sendsCounted(t *testing.T, reg prometheus.Gatherer) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "pushlane_provider_sends_total" {
			for _, m := range mf.GetMetric() {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

// A gate that is closed when the request is due withdraws it, with no
// wait before: it is asked right before every request.
func TestGateAskedBeforeTheRequest(t *testing.T) {
	sim, acct := startSim(t, nil)
	s := newSender(t, sim, acct, nil)
	var g closableGate
	g.closed.Store(true)
	m := note()
	m.Token = "t0"
	r := s.Send(providers.WithSendGate(context.Background(), g.gate), m, 3)
	if !errors.Is(r.Err, providers.ErrWithdrawn) || r.Attempt != 3 {
		t.Fatalf("%+v, want withdrawn, attempt 3", r)
	}
	if n := sim.Counts().Requests; n != 0 {
		t.Errorf("%d requests at the simulator, want none", n)
	}
	// Open, it lets the send through; a probe's mark on top of the gate
	// leaves it in force.
	g.closed.Store(false)
	if r := s.Send(providers.WithProbe(providers.WithSendGate(context.Background(), g.gate)), m, 1); r.Outcome != providers.Delivered {
		t.Fatalf("%+v, want delivered", r)
	}
	g.closed.Store(true)
	if r := s.Send(providers.WithProbe(providers.WithSendGate(context.Background(), g.gate)), m, 1); !errors.Is(r.Err, providers.ErrWithdrawn) {
		t.Fatalf("probe's send with its gate closed: %+v, want withdrawn", r)
	}
}

// A send waiting for the project's quota asks its gate every tenth of a
// second: withdrawn, it ends then, not when the quota would have let it
// go, and sends nothing.
func TestGateWithdrawsSendWaitingForQuota(t *testing.T) {
	sim, acct := startSim(t, nil)
	// One send at once, then about one a second.
	s := newSender(t, sim, acct, func(c *fcm.Config) { c.QuotaPerMinute = 60 })
	var g closableGate
	ctx := providers.WithSendGate(context.Background(), g.gate)
	m := note()
	m.Token = "first"
	if r := s.Send(ctx, m, 1); r.Outcome != providers.Delivered {
		t.Fatalf("first send: %+v", r)
	}
	time.AfterFunc(150*time.Millisecond, func() { g.closed.Store(true) })
	start := time.Now()
	m.Token = "second"
	r := s.Send(ctx, m, 1)
	// About 250 ms (the close, then the next 100 ms look); a quota wait
	// not given up would take a second. The bound leaves the difference
	// room on a loaded machine.
	if took := time.Since(start); !errors.Is(r.Err, providers.ErrWithdrawn) || took > 900*time.Millisecond {
		t.Fatalf("second send: %+v after %v, want withdrawn within about 250 ms, before the quota's second", r, took)
	}
	if n := sim.Counts().Requests; n != 1 {
		t.Errorf("%d requests at the simulator, want 1", n)
	}
}

// Sends of an iOS device waiting for a slot behind one that FCM answers
// THIRD_PARTY_AUTH_ERROR (the APNs key in the Firebase project refused)
// see the halt it makes, taken before its slot is freed, and do not reach
// Google. (Before, the halt was asked before the wait only: every send
// queued behind the refusal was sent, and refused, too.)
func TestSendsQueuedBehindARefusalSeeItsHalt(t *testing.T) {
	sim, acct := startSim(t, nil)
	sim.SetFault(fcmsim.Fault{Latency: 200 * time.Millisecond})
	halt, err := providers.NewHalt(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := newSender(t, sim, acct, func(c *fcm.Config) { c.Concurrency = 1; c.Halt = halt })
	var tokens []string
	for i := range 5 {
		tokens = append(tokens, fmt.Sprintf("apnsauth-%d", i))
	}
	rs := sendAll(context.Background(), s, &providers.Message{Platform: providers.PlatformIOS, Title: "Hi"}, tokens)
	refused, held := 0, 0
	for i, r := range rs {
		switch {
		case r.Outcome == providers.CredentialFailure && errors.Is(r.Err, providers.ErrHalted):
			held++
		case r.Outcome == providers.CredentialFailure && r.Reason == "THIRD_PARTY_AUTH_ERROR":
			refused++
		default:
			t.Errorf("%s: %+v", tokens[i], r)
		}
	}
	if n := sim.Counts().Requests; refused != 1 || held != 4 || n != 1 {
		t.Errorf("%d refused by FCM, %d by the halt, %d requests; want 1, 4, 1", refused, held, n)
	}
	if _, halted := halt.Halted("demo", providers.FCMviaAPNs); !halted {
		t.Error("not halted")
	}
}
