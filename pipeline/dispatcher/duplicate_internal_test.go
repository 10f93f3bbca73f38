package dispatcher

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// fakeRun drives a worker's run with a handle that waits for the test to
// release each record, and records what run starts and marks.
type fakeRun struct {
	t       *testing.T
	w       *worker
	started chan int64          // offsets, as handle is called
	release map[int64]chan bool // by offset: its handle returns what is sent
	marked  chan int64
}

func newFakeRun(t *testing.T, recs ...*kgo.Record) *fakeRun {
	t.Helper()
	cfg := Config{}
	cfg.defaults()
	d := &Dispatcher{cfg: cfg}
	w := newWorker(d, topicPartition{"ready", 0})
	w.fetch = &fakePauser{}
	f := &fakeRun{t: t, w: w, started: make(chan int64, 64), release: map[int64]chan bool{}, marked: make(chan int64, 64)}
	for _, r := range recs {
		f.release[r.Offset] = make(chan bool, 1)
	}
	// As the real handle finishes its chunk after a stop, this one
	// returns only when released.
	w.handle = func(_ context.Context, rec *kgo.Record, _ chan struct{}) bool {
		f.started <- rec.Offset
		return <-f.release[rec.Offset]
	}
	w.mark = func(rs ...*kgo.Record) {
		for _, r := range rs {
			f.marked <- r.Offset
		}
	}
	w.push(recs)
	go w.run()
	t.Cleanup(func() {
		w.stop()
		for _, c := range f.release {
			select {
			case c <- false:
			default:
			}
		}
		select {
		case <-w.done:
		case <-time.After(5 * time.Second):
			t.Error("worker did not stop")
		}
	})
	return f
}

func rec(key string, offset int64) *kgo.Record {
	return &kgo.Record{Key: []byte(key), Offset: offset, Value: []byte("v")}
}

// wantStarted expects the next records started to be offsets, in any order.
func (f *fakeRun) wantStarted(what string, offsets ...int64) {
	f.t.Helper()
	want := map[int64]bool{}
	for _, o := range offsets {
		want[o] = true
	}
	for range offsets {
		select {
		case o := <-f.started:
			if !want[o] {
				f.t.Fatalf("%s: started offset %d, want %v", what, o, offsets)
			}
			delete(want, o)
		case <-time.After(2 * time.Second):
			f.t.Fatalf("%s: offsets %v not started", what, keysOf(want))
		}
	}
}

func (f *fakeRun) wantNoStart(what string) {
	f.t.Helper()
	select {
	case o := <-f.started:
		f.t.Fatalf("%s: started offset %d", what, o)
	case <-time.After(100 * time.Millisecond):
	}
}

func (f *fakeRun) wantMarked(what string, offsets ...int64) {
	f.t.Helper()
	for _, want := range offsets {
		select {
		case o := <-f.marked:
			if o != want {
				f.t.Fatalf("%s: marked offset %d, want %d (of %v, in order)", what, o, want, offsets)
			}
		case <-time.After(2 * time.Second):
			f.t.Fatalf("%s: offset %d not marked", what, want)
		}
	}
	select {
	case o := <-f.marked:
		f.t.Fatalf("%s: marked offset %d too, want only %v", what, o, offsets)
	case <-time.After(100 * time.Millisecond):
	}
}

func keysOf(m map[int64]bool) []int64 {
	var out []int64
	for k := range m {
		out = append(out, k)
	}
	return out
}

// A copy of a batch in flight at the head of the queue is set aside: the
// records behind it start at once, the copy only once its twin finished,
// and offsets are marked in order, the copy's only after it is done,
// though the record behind it finished first.
func TestWorkerSetsAsideCopyOfBatchInFlight(t *testing.T) {
	f := newFakeRun(t, rec("x", 10), rec("x", 11), rec("y", 12), rec("x", 13), rec("z", 14))
	f.wantStarted("x sending, its copies set aside", 10, 12, 14)
	f.wantNoStart("x sending")

	f.release[12] <- true // y finishes first
	f.release[14] <- true
	f.wantMarked("y and z done before x") // none: x (10) is not done
	f.wantNoStart("y and z done, x sending")

	f.release[10] <- true
	f.wantStarted("x done: its first copy", 11)
	f.wantMarked("x done, its copy started", 10)
	f.wantNoStart("first copy running: the second waits for it")

	f.release[11] <- true
	f.wantStarted("first copy done: the second", 13)
	f.wantMarked("first copy done", 11, 12)

	f.release[13] <- true
	f.wantMarked("second copy done", 13, 14)
}

// A stop while a copy is set aside starts nothing more: the copy is
// neither started nor marked, nor is anything behind it, once its twin
// finishes; the next owner reads them again.
func TestWorkerStopLeavesCopySetAside(t *testing.T) {
	f := newFakeRun(t, rec("x", 0), rec("x", 1), rec("y", 2))
	f.wantStarted("x sending", 0, 2)
	f.release[2] <- true
	f.wantMarked("y done, x sending")
	f.w.stop()
	select {
	case <-f.w.done:
		t.Fatal("the worker returned with x still running")
	case <-time.After(100 * time.Millisecond):
	}
	f.release[0] <- true // x finishes its chunk after the stop
	select {
	case <-f.w.done:
	case <-time.After(2 * time.Second):
		t.Fatal("the worker did not return once x finished")
	}
	f.wantNoStart("stopped")
	f.wantMarked("stopped", 0)
}

// Copies set aside count against the window: with PartitionWindow records
// taken, nothing more is taken until the head is marked.
func TestWorkerCopiesSetAsideFillTheWindow(t *testing.T) {
	recs := []*kgo.Record{rec("x", 0)}
	cfg := Config{}
	cfg.defaults()
	for i := 1; i < cfg.PartitionWindow; i++ {
		recs = append(recs, rec("x", int64(i)))
	}
	recs = append(recs, rec("y", int64(cfg.PartitionWindow)))
	f := newFakeRun(t, recs...)
	f.wantStarted("x", 0)
	f.wantNoStart(fmt.Sprintf("%d copies of x fill the window", cfg.PartitionWindow-1))
	f.release[0] <- true
	f.wantStarted("x done: its first copy, and y in the window's free place", 1, int64(cfg.PartitionWindow))
}
