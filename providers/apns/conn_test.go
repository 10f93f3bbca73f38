package apns_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/providers/apns"
	"github.com/pushlane/pushlane/providers/apnssim"
	"github.com/pushlane/pushlane/providers/internal/sendtest"
)

// prepared is the alert prepared once, as the dispatcher sends it.
func prepared(t *testing.T, s *apns.Sender) providers.Prepared {
	t.Helper()
	p, err := s.Prepare(alert())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func loadToken(i int) string { return tok("c", i) }

func TestGoAwayMidLoadLosesAndDuplicatesNothing(t *testing.T) {
	sim, key := startSim(t, func(c *apnssim.Config) { c.Record = false })
	s, _ := newSender(t, sim, key, func(c *apns.Config) { c.Connections = 2 })
	// Every connection is told to go away after 150 requests, and on top of
	// that everything live gets a GOAWAY every 700 sends.
	sim.SetFault(apnssim.Fault{GoAwayAfter: 150})
	sendtest.GoAwayMidLoad(t, sim, prepared(t, s), loadToken, 3000, 64)
}

func TestDeadConnectionsAreReSentNotDropped(t *testing.T) {
	sim, key := startSim(t, func(c *apnssim.Config) { c.Record = false })
	s, _ := newSender(t, sim, key, nil)
	sendtest.DropsMidLoad(t, sim, prepared(t, s), loadToken, 1000, 32, 250)
}

func TestUnreachableEndpointIsRetryableTransportError(t *testing.T) {
	sim, key := startSim(t, nil)
	s, _ := newSender(t, sim, key, func(c *apns.Config) { c.Endpoint = "https://127.0.0.1:1" })
	m := alert()
	m.Token = tok("a", 1)
	r := s.Send(context.Background(), m, 5)
	if r.Outcome != providers.Retryable || r.Reason != "TransportError" || r.Attempt != 5 || r.Err == nil {
		t.Fatalf("result = %+v", r)
	}
}

// Without a deadline of the caller's, Config.RequestTimeout ends a send the
// server does not answer, and sends close together share one deadline.
func TestRequestTimeout(t *testing.T) {
	sim, key := startSim(t, nil)
	s, _ := newSender(t, sim, key, func(c *apns.Config) { c.RequestTimeout = 200 * time.Millisecond })
	m := alert()
	m.Token = tok("a", 1)
	// Open the connection first: on a slow machine (-race) that alone can
	// take longer than RequestTimeout.
	if r := s.Send(context.Background(), m, 1); r.Outcome != providers.Delivered {
		t.Fatal(r)
	}
	sim.SetFault(apnssim.Fault{Latency: 3 * time.Second})
	start := time.Now()
	var wg sync.WaitGroup
	results := make([]providers.Result, 5)
	for i := range results {
		wg.Go(func() {
			m := alert()
			m.Token = tok("c", i)
			results[i] = s.Send(context.Background(), m, 1)
		})
	}
	wg.Wait()
	took := time.Since(start)
	for i, r := range results {
		if r.Outcome != providers.Retryable || r.Reason != "Canceled" || r.Err == nil || !strings.Contains(r.Err.Error(), "deadline exceeded") {
			t.Errorf("send %d: %+v", i, r)
		}
	}
	// Between RequestTimeout and 17/16 of it, plus scheduling; far below
	// the 3 s the server takes.
	if took < 200*time.Millisecond || took > 2*time.Second {
		t.Errorf("five sends ended after %s, want 200ms–2s", took)
	}
}

func TestCanceledContext(t *testing.T) {
	sim, key := startSim(t, nil)
	s, _ := newSender(t, sim, key, nil)
	sim.SetFault(apnssim.Fault{Latency: 300 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	m := alert()
	m.Token = tok("a", 1)
	r := s.Send(ctx, m, 1)
	if r.Outcome != providers.Retryable || r.Reason != "Canceled" {
		t.Fatalf("result = %+v", r)
	}
}

// A header list over what the server accepts is the message's fault, not
// the connection's or the token's: payload_rejected at once, nothing sent,
// no re-send on other connections.
func TestHeaderListOverTheServersLimitIsPayloadRejected(t *testing.T) {
	sim, key := startSim(t, func(c *apnssim.Config) { c.MaxHeaderBytes = 64 }) // advertised: 384 bytes
	s, _ := newSender(t, sim, key, nil)
	m := alert()
	m.Token = tok("a", 1)
	r := s.Send(context.Background(), m, 1)
	if r.Outcome != providers.PayloadRejected || r.Reason != "HeaderListTooLarge" ||
		!strings.Contains(r.Err.Error(), "exceeds the server's limit of 384") {
		t.Fatalf("result %+v (%v), want payload_rejected HeaderListTooLarge", r, r.Err)
	}
	if c := sim.Counts(); c.Requests != 0 || c.Conns != 1 {
		t.Errorf("simulator saw %d requests on %d connections, want 0 on 1", c.Requests, c.Conns)
	}
}
