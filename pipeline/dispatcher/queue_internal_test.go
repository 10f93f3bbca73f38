package dispatcher

import (
	"fmt"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// fakePauser records what a worker asks of the client.
type fakePauser struct {
	mu              sync.Mutex
	paused          bool
	pauses, resumes int
}

func (f *fakePauser) PauseFetchPartitions(map[string][]int32) map[string][]int32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.paused = true
	f.pauses++
	return nil
}

func (f *fakePauser) ResumeFetchPartitions(map[string][]int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.paused = false
	f.resumes++
}

func (f *fakePauser) state() (paused bool, pauses, resumes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.paused, f.pauses, f.resumes
}

func testWorker(queueRecords int) (*worker, *fakePauser) {
	d := &Dispatcher{cfg: Config{QueueRecords: queueRecords}}
	w := newWorker(d, topicPartition{"ready", 3})
	f := &fakePauser{}
	w.fetch = f
	return w, f
}

func records(from, n int) []*kgo.Record {
	rs := make([]*kgo.Record, n)
	for i := range rs {
		rs[i] = &kgo.Record{Key: fmt.Appendf(nil, "batch-%d", from+i)}
	}
	return rs
}

// A long queue pauses its partition and taking it down to half resumes it.
func TestWorkerPausesLongQueueAndResumesAtHalf(t *testing.T) {
	w, f := testWorker(4)
	w.push(records(0, 3))
	if paused, _, _ := f.state(); paused {
		t.Fatal("3 queued records of 4 paused the partition")
	}
	w.push(records(3, 2))
	if paused, pauses, _ := f.state(); !paused || pauses != 1 {
		t.Fatalf("5 queued records: paused %v after %d pauses, want paused after 1", paused, pauses)
	}
	keys := map[string]int{}
	for i, wantPaused := range []bool{true, true, false, false, false} {
		r := w.take(keys)
		if r == nil || string(r.Key) != fmt.Sprintf("batch-%d", i) {
			t.Fatalf("take %d returned %v, want batch-%d", i, r, i)
		}
		if paused, _, _ := f.state(); paused != wantPaused {
			t.Fatalf("after take %d (%d left): paused %v, want %v", i, 4-i, paused, wantPaused)
		}
	}
	if r := w.take(keys); r != nil {
		t.Fatalf("take from an empty queue returned %s", r.Key)
	}
	if _, pauses, resumes := f.state(); pauses != 1 || resumes != 1 {
		t.Fatalf("%d pauses and %d resumes, want 1 and 1", pauses, resumes)
	}
}

// take alone returns nothing while the head's batch is in flight, rather
// than the records behind it; the worker then sets that copy aside with
// takeCopy (duplicate_internal_test.go), so the queue does not stop.
func TestWorkerTakeWaitsForSameBatchInFlight(t *testing.T) {
	w, _ := testWorker(4)
	w.push(records(0, 1))
	w.push(records(0, 1)) // a second copy of batch-0
	keys := map[string]int{}
	r := w.take(keys)
	keys[string(r.Key)]++
	if r := w.take(keys); r != nil {
		t.Fatalf("took %s while its first copy is in flight", r.Key)
	}
	delete(keys, "batch-0")
	if r := w.take(keys); r == nil || string(r.Key) != "batch-0" {
		t.Fatalf("after the first copy finished, take returned %v, want the second batch-0", r)
	}
}

// The poll loop pushes while the worker takes, concurrently. Whatever the
// interleaving, once every record is taken the partition must be fetching:
// a partition left paused with nothing queued is never resumed, and its
// batches are never sent (a CI run stalled at 75,003 of 100,000 devices
// when push judged the queue's length after the worker had emptied it).
func TestWorkerNeverPausedWithEmptyQueue(t *testing.T) {
	const rounds, pushes = 2000, 4
	for round := range rounds {
		w, f := testWorker(4)
		total := 0
		sizes := make([]int, pushes)
		for i := range sizes {
			sizes[i] = 1 + (round+i)%8
			total += sizes[i]
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			next := 0
			for _, n := range sizes {
				w.push(records(next, n))
				next += n
			}
		})
		taken := 0
		keys := map[string]int{}
		for taken < total {
			if w.take(keys) != nil {
				taken++
				continue
			}
			<-w.wake
		}
		wg.Wait()
		if paused, pauses, resumes := f.state(); paused {
			t.Fatalf("round %d: all %d records taken but the partition is paused (%d pauses, %d resumes)", round, total, pauses, resumes)
		}
	}
}
