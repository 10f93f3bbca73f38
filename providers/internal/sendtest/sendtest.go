// Package sendtest is test support for the senders: load from many
// goroutines while the simulator breaks connections underneath, and what
// must hold afterwards.
package sendtest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/providers/internal/simcore"
)

// Load sends p to n devices, token(i) for i in 0..n-1, from workers
// goroutines, calling during(i) (if not nil) before send i, and returns
// the results that were not delivered.
func Load(t testing.TB, p providers.Prepared, n, workers int, token func(i int) string, during func(i int)) []providers.Result {
	t.Helper()
	var next atomic.Int64
	var mu sync.Mutex
	var failed []providers.Result
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if during != nil {
					during(i)
				}
				if r := p.Send(context.Background(), token(i), 1); r.Outcome != providers.Delivered {
					mu.Lock()
					failed = append(failed, r)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return failed
}

// Sim is what the connection tests need of either simulator.
type Sim interface {
	GoAwayAll() int
	DropAll() int
	Counts() simcore.Counts
	Duplicates() map[string]int
}

// GoAwayMidLoad sends p to n devices from workers goroutines while every
// live connection gets a graceful GOAWAY every 700 sends (the caller may
// set the simulator's own GoAwayAfter on top). Requests the server did not
// take are re-sent and none it took is: every device exactly once.
func GoAwayMidLoad(t testing.TB, sim Sim, p providers.Prepared, token func(i int) string, n, workers int) {
	t.Helper()
	failed := Load(t, p, n, workers, token, func(i int) {
		if i%700 == 350 {
			sim.GoAwayAll()
		}
	})
	if len(failed) > 0 {
		t.Fatalf("%d sends failed, first: %+v", len(failed), failed[0])
	}
	c := sim.Counts()
	if c.Accepted != int64(n) || c.Devices != n || c.Duplicates != 0 {
		t.Fatalf("counts = %+v, want %d accepted exactly once", c, n)
	}
	if c.GoAways < 10 || c.Conns < 10 {
		t.Fatalf("only %d GOAWAYs over %d connections; the test proves nothing", c.GoAways, c.Conns)
	}
	for tok, k := range sim.Duplicates() {
		t.Errorf("token %s accepted %d times", tok, k)
	}
}

// DropsMidLoad sends p to n devices from workers goroutines while every
// connection is dropped (closed without a GOAWAY) every `every` sends. A
// request lost with its connection may already have been accepted, so a
// re-send can duplicate; what must never happen is a device missed.
func DropsMidLoad(t testing.TB, sim Sim, p providers.Prepared, token func(i int) string, n, workers, every int) {
	t.Helper()
	failed := Load(t, p, n, workers, token, func(i int) {
		if i%every == every/2 {
			sim.DropAll()
		}
	})
	if len(failed) > 0 {
		t.Fatalf("%d sends failed, first: %+v", len(failed), failed[0])
	}
	c := sim.Counts()
	if c.Devices != n {
		t.Fatalf("%d of %d devices reached", c.Devices, n)
	}
	if c.Conns < 4 {
		t.Fatalf("connections = %d; drops did not happen", c.Conns)
	}
	t.Logf("drops: %d connections, %d duplicates", c.Conns, c.Duplicates)
}
