package apns_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/providers/apns"
	"github.com/pushlane/pushlane/providers/apnssim"
)

var errGateClosed = errors.New("gate closed")

// A send's gate (providers.WithSendGate) is asked right before its
// request: closed, the send sends nothing, comes back withdrawn and is
// counted nowhere; sends that waited for a slot of Concurrency ask it
// when they get one, so only the request already written when the gate
// closed reaches Apple.
func TestGateWithdrawsSendsBeforeTheirRequest(t *testing.T) {
	sim, key := startSim(t, nil)
	s, reg := newSender(t, sim, key, func(c *apns.Config) { c.Concurrency = 1 })
	var closed atomic.Bool
	ctx := providers.WithSendGate(context.Background(), func() error {
		if closed.Load() {
			return errGateClosed
		}
		return nil
	})

	closed.Store(true)
	m := alert()
	m.Token = tok("a", 0)
	if r := s.Send(ctx, m, 2); !errors.Is(r.Err, providers.ErrWithdrawn) || r.Attempt != 2 || r.Status != 0 {
		t.Fatalf("send with its gate closed: %+v, want withdrawn", r)
	}
	if n := sim.Counts().Requests; n != 0 {
		t.Fatalf("%d requests at the simulator, want none", n)
	}

	closed.Store(false)
	sim.SetFault(apnssim.Fault{Latency: 300 * time.Millisecond})
	rs := make([]providers.Result, 5)
	var wg sync.WaitGroup
	for i := range rs {
		wg.Go(func() {
			mm := *m
			mm.Token = tok("b", i)
			rs[i] = s.Send(ctx, &mm, 1)
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for sim.Counts().Requests < 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	closed.Store(true)
	wg.Wait()
	delivered, withdrawn := 0, 0
	for _, r := range rs {
		switch {
		case r.Outcome == providers.Delivered:
			delivered++
		case errors.Is(r.Err, providers.ErrWithdrawn):
			withdrawn++
		default:
			t.Errorf("%+v, want delivered or withdrawn", r)
		}
	}
	if n := sim.Counts().Requests; delivered != 1 || withdrawn != 4 || n != 1 {
		t.Errorf("%d delivered, %d withdrawn, %d requests; want 1, 4, 1", delivered, withdrawn, n)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "pushlane_provider_sends_total" {
			total := 0.0
			for _, m := range mf.GetMetric() {
				total += m.GetCounter().GetValue()
			}
			if total != 1 {
				t.Errorf("%v sends counted, want 1 (withdrawn sends are none)", total)
			}
		}
	}
}
