// Package sendtest is test support for the senders: load from many
// goroutines while the test breaks connections underneath.
package sendtest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pushlane/pushlane/providers"
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
