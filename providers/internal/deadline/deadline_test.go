package deadline

import (
	"context"
	"testing"
	"time"
)

// A context type == cannot compare: comparing two of them panics.
type uncomparableCtx struct {
	context.Context
	f func()
}

func TestDeadlinesShareOneContextPerSlotAndCaller(t *testing.T) {
	const d = 16 * time.Second
	ds := New(d)
	parent, stop := context.WithCancel(context.Background())
	defer stop()
	t0 := time.Now()

	first, cancel := ds.Context(parent, t0)
	defer cancel()
	dl, ok := first.Deadline()
	if !ok || dl.Sub(t0) < d || dl.Sub(t0) > d+d/16 {
		t.Fatalf("deadline %v after start, want within [%v, %v]", dl.Sub(t0), d, d+d/16)
	}
	for _, at := range []time.Duration{0, time.Millisecond, d/16 - time.Nanosecond} {
		c, cancel := ds.Context(parent, t0.Add(at))
		cancel()
		if c != first {
			t.Fatalf("send %v later got its own context", at)
		}
		if dl, _ := c.Deadline(); dl.Sub(t0.Add(at)) < d {
			t.Fatalf("send %v later has only %v", at, dl.Sub(t0.Add(at)))
		}
	}
	// The next slot: a new shared context, again at least d.
	next, cancel2 := ds.Context(parent, t0.Add(d/16))
	defer cancel2()
	if next == first {
		t.Fatal("context reused past its slot")
	}
	if dl, _ := next.Deadline(); dl.Sub(t0.Add(d/16)) < d {
		t.Fatal("next slot's deadline too early")
	}
	// Another caller context in the slot: its own timeout, cancelled by the
	// send's end.
	other, stopOther := context.WithCancel(context.Background())
	defer stopOther()
	own, cancelOwn := ds.Context(other, t0.Add(d/16))
	if own == next {
		t.Fatal("another caller's send shared the context")
	}
	cancelOwn()
	if own.Err() == nil {
		t.Fatal("a send's own context outlives the send")
	}
	// A caller deadline within RequestTimeout is kept as it is.
	short, cancelShort := context.WithTimeout(parent, time.Second)
	defer cancelShort()
	if c, cancel := ds.Context(short, time.Now()); c != short {
		cancel()
		t.Fatal("caller's earlier deadline replaced")
	}
	// Cancelling the caller cancels the shared context.
	stop()
	if next.Err() == nil {
		t.Fatal("shared context survives its caller's cancellation")
	}
	// Contexts that cannot be compared are not shared, and do not panic.
	u := uncomparableCtx{Context: context.Background(), f: func() {}}
	ds2 := New(d)
	a, ca := ds2.Context(u, t0)
	b, cb := ds2.Context(u, t0)
	ca()
	cb()
	if a == b {
		t.Fatal("uncomparable caller contexts shared a context")
	}
	// RequestTimeout off: the caller's context as it is.
	if c, _ := New(-1).Context(parent, t0); c != parent {
		t.Fatal("negative RequestTimeout wrapped the context")
	}
}

// Max bounds the deadline of every context Context hands out: a send that
// takes a shared deadline at the start of its slot has the whole timeout
// plus the slot.
func TestMaxBoundsTheContextsDeadline(t *testing.T) {
	if got := New(0).Max(); got != 0 {
		t.Errorf("no timeout: Max %v, want 0", got)
	}
	ds := New(32 * time.Second)
	if got := ds.Max(); got != 34*time.Second {
		t.Errorf("Max %v, want 34s", got)
	}
	now := time.Now()
	ctx, cancel := ds.Context(context.Background(), now)
	defer cancel()
	if dl, _ := ctx.Deadline(); dl.Sub(now) > ds.Max() {
		t.Errorf("a context's deadline is %v away, past Max %v", dl.Sub(now), ds.Max())
	}
}
