package simcore

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// Every snapshot taken while sends are being accepted is consistent:
// Accepted is the sum of the per-token counts (here one per device, so
// Devices), never a count ahead of them.
func TestCounterSnapshotIsConsistent(t *testing.T) {
	c := NewCounter(false)
	var wg sync.WaitGroup
	var done atomic.Bool
	for w := range 4 {
		wg.Go(func() {
			for i := range 20000 {
				c.Request()
				c.Accept(strconv.Itoa(w)+"-"+strconv.Itoa(i), nil, nil)
			}
		})
	}
	var bad atomic.Int64
	var checker sync.WaitGroup
	checker.Go(func() {
		for !done.Load() {
			if s := c.Snapshot(); s.Accepted != int64(s.Devices) {
				bad.Add(1)
			}
		}
	})
	wg.Wait()
	done.Store(true)
	checker.Wait()
	if n := bad.Load(); n > 0 {
		t.Fatalf("%d snapshots had Accepted different from the per-token counts", n)
	}
	if s := c.Snapshot(); s.Accepted != 80000 || s.Devices != 80000 || s.Requests != 80000 || s.Duplicates != 0 {
		t.Fatalf("final snapshot %+v", s)
	}
	c.Reject("x")
	c.Reset()
	if s := c.Snapshot(); s.Accepted != 0 || s.Devices != 0 || s.Requests != 0 || len(s.Rejected) != 0 {
		t.Fatalf("after Reset %+v", s)
	}
}
