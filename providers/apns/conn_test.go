package apns_test

import (
	"context"
	"testing"
	"time"

	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/providers/apns"
	"github.com/pushlane/pushlane/providers/apnssim"
	"github.com/pushlane/pushlane/providers/internal/sendtest"
)

// load sends n distinct tokens from workers goroutines, calling during(i)
// before send i, and returns the results that were not delivered.
func load(t *testing.T, s *apns.Sender, n, workers int, during func(i int)) []providers.Result {
	t.Helper()
	p, err := s.Prepare(alert())
	if err != nil {
		t.Fatal(err)
	}
	return sendtest.Load(t, p, n, workers, func(i int) string { return tok("c", i) }, during)
}

func TestGoAwayMidLoadLosesAndDuplicatesNothing(t *testing.T) {
	sim, key := startSim(t, func(c *apnssim.Config) { c.Record = false })
	s, _ := newSender(t, sim, key, func(c *apns.Config) { c.Connections = 2 })
	// Every connection is told to go away after 150 requests, and on top of
	// that everything live gets a GOAWAY every 700 sends.
	sim.SetFault(apnssim.Fault{GoAwayAfter: 150})
	const n = 3000
	failed := load(t, s, n, 64, func(i int) {
		if i%700 == 350 {
			sim.GoAwayAll()
		}
	})
	if len(failed) > 0 {
		t.Fatalf("%d sends failed, first: %+v", len(failed), failed[0])
	}
	c := sim.Counts()
	if c.Accepted != n || c.Devices != n || c.Duplicates != 0 {
		t.Fatalf("counts = %+v, want %d accepted exactly once", c, n)
	}
	if c.GoAways < 10 || c.Conns < 10 {
		t.Fatalf("only %d GOAWAYs over %d connections; the test proves nothing", c.GoAways, c.Conns)
	}
	for tok, k := range sim.Duplicates() {
		t.Errorf("token %s accepted %d times", tok, k)
	}
}

func TestDeadConnectionsAreReSentNotDropped(t *testing.T) {
	sim, key := startSim(t, func(c *apnssim.Config) { c.Record = false })
	s, _ := newSender(t, sim, key, nil)
	const n = 1000
	failed := load(t, s, n, 32, func(i int) {
		if i%250 == 125 {
			sim.DropAll()
		}
	})
	if len(failed) > 0 {
		t.Fatalf("%d sends failed, first: %+v", len(failed), failed[0])
	}
	// A request lost with its connection may already have been accepted, so
	// a re-send can duplicate; what must never happen is a device missed.
	c := sim.Counts()
	if c.Devices != n {
		t.Fatalf("%d of %d devices reached", c.Devices, n)
	}
	if c.Conns < 4 {
		t.Fatalf("connections = %d; drops did not happen", c.Conns)
	}
	t.Logf("drops: %d connections, %d duplicates", c.Conns, c.Duplicates)
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
