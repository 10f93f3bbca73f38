package planner

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// slowPageStore is memStore whose read number block stalls, the first time
// only, until released (or for at most 15 s), as a MySQL failover or a
// lock wait does.
type slowPageStore struct {
	*memStore
	n       atomic.Int64
	block   int64
	once    sync.Once
	stalled chan time.Time // receives when the stalled read begins
	release chan struct{}
}

func (s *slowPageStore) ReadDevices(ctx context.Context, q AudienceQuery, part int, afterID int64, limit int, page *Page) (int64, bool, error) {
	if s.n.Add(1) == s.block {
		stall := false
		s.once.Do(func() { stall = true })
		if stall {
			s.stalled <- time.Now()
			select {
			case <-s.release:
			case <-ctx.Done():
				return afterID, false, ctx.Err()
			case <-time.After(15 * time.Second):
			}
		}
	}
	return s.memStore.ReadDevices(ctx, q, part, afterID, limit, page)
}

// A chunk holding batches must not stay open while the next page takes
// longer than a quarter of the transaction timeout: it is committed with
// a checkpoint during the wait (the broker would otherwise hold the last
// stable offset of the partitions it wrote to, and abort it at its
// timeout). The page read meanwhile belongs to the next chunk, and every
// batch is committed once, also when the planner crashes in that chunk
// and resumes from the checkpoint taken during the wait.
func TestSlowPageCommitsTheOpenChunk(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(fmt.Sprintf("crash after the wait %v", crash), func(t *testing.T) {
			h := newKfakeHarness(t)
			mem := h.store.(*memStore)
			seed(mem, "app", 1, 250)
			store := &slowPageStore{memStore: mem, block: 2, stalled: make(chan time.Time, 1), release: make(chan struct{})}
			h.store = store
			h.cfg.PageSize = 50
			h.cfg.BatchesPerTransaction = 100 // never full by batches: only the time bound ends a chunk
			h.cfg.TransactionTimeout = 2 * time.Second
			bound := h.cfg.TransactionTimeout / 4
			h.publishCampaign(segmentCampaign("c", 10))

			commits := make(chan time.Time, 16)
			first := h.start(func(ev hookEvent) error {
				switch {
				case ev.campaign == "" || ev.sessionStarted:
				case ev.batches == 0:
					commits <- time.Now()
				case crash && ev.chunks == 1 && ev.batches == 2:
					// The second batch of page 2, in the chunk after the
					// one committed during the wait.
					ev.flush()
					return errCrash
				}
				return nil
			})

			var stalledAt time.Time
			select {
			case stalledAt = <-store.stalled:
			case <-time.After(30 * time.Second):
				t.Fatal("the second page was never read")
			}
			select {
			case at := <-commits:
				// The chunk began before page 1 was planned, and the
				// stalled read began about then: the commit is due about
				// bound after it.
				// The margin is the machine's, not the design's: a commit
				// waiting for the page would come only after the stall.
				if took := at.Sub(stalledAt); took > bound+3*time.Second {
					t.Errorf("chunk committed %v into the stalled read, want about %v", took, bound)
				}
			case <-time.After(bound + 6*time.Second):
				t.Fatalf("no chunk committed %v into the stalled read (transaction bound %v)", bound+6*time.Second, bound)
			}
			_, ck, found := h.committed(t)
			if !found || ck.Chunks != 1 || ck.Totals[0] != 50 || ck.Totals[1] != 5 || arrPos(ck.After) != (Position{ID: 50}) {
				t.Fatalf("checkpoint committed during the wait: found %v, %+v; want page 1's 5 batches, after id 50", found, ck)
			}
			if got := h.output().batchesOf("c"); len(got) != 5 {
				t.Fatalf("%d batches readable while page 2 is stalled, want page 1's 5", len(got))
			}
			close(store.release)

			if crash {
				first.waitCrash(t)
				first = h.start(nil)
			}
			h.waitDone(1)
			if err := first.stop(t); err != nil {
				t.Fatal(err)
			}
			o := h.output()
			if len(o.dupBatches) > 0 {
				t.Fatalf("committed duplicates: %v", o.dupBatches)
			}
			got := o.batchesOf("c")
			if len(got) != 25 {
				t.Fatalf("%d batches, want 25", len(got))
			}
			for i, b := range got {
				if b.ID != fmt.Sprintf("c:v1:all:%d", i) || len(b.Devices) != 10 {
					t.Fatalf("batch %d: %s, %d devices", i, b.ID, len(b.Devices))
				}
			}
			equalIDs(t, "c", o.devicesOf("c"), wantIDs(1, 250))
			if rec, _ := mem.campaign("c", 1); rec.Status != StatusPlanned || rec.Devices != 250 || rec.Batches != 25 {
				t.Errorf("recorded %+v", rec)
			}
		})
	}
}
