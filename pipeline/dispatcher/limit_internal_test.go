package dispatcher

import (
	"strconv"
	"sync"
	"testing"
)

func jobsOf(wg *sync.WaitGroup, tokens ...string) []*sendJob {
	js := make([]*sendJob, len(tokens))
	for i, t := range tokens {
		js[i] = &sendJob{token: t, wg: wg}
	}
	return js
}

func tokensOf(js []*sendJob) []string {
	var ts []string
	for _, j := range js {
		ts = append(ts, j.token)
	}
	return ts
}

// A finished send hands its slot to the next device waiting, in the order
// the chunks submitted them; the slot is freed only when none waits.
func TestAppLimitHandsSlotsOnInSubmitOrder(t *testing.T) {
	l := newAppLimit(2)
	var a, b sync.WaitGroup
	if got := tokensOf(l.submit(jobsOf(&a, "a1", "a2", "a3"))); len(got) != 2 || got[0] != "a1" || got[1] != "a2" {
		t.Fatalf("first submit started %v, want [a1 a2]", got)
	}
	if got := l.submit(jobsOf(&b, "b1", "b2")); len(got) != 0 {
		t.Fatalf("submit with no free slot started %v", tokensOf(got))
	}
	var order []string
	for _, want := range []string{"a3", "b1", "b2"} {
		j := l.next()
		if j == nil {
			t.Fatalf("next returned nil with %s waiting", want)
		}
		order = append(order, j.token)
	}
	if order[0] != "a3" || order[1] != "b1" || order[2] != "b2" {
		t.Errorf("slots went to %v, want [a3 b1 b2]", order)
	}
	if j := l.next(); j != nil {
		t.Errorf("next with nothing waiting returned %s", j.token)
	}
	if l.free != 1 {
		t.Errorf("%d slots free after one was given back, want 1", l.free)
	}
	if j := l.next(); j != nil || l.free != 2 {
		t.Errorf("second give-back: job %v, %d free; want nil, 2", j, l.free)
	}
	if got := tokensOf(l.submit(jobsOf(&a, "c1", "c2", "c3"))); len(got) != 2 || got[0] != "c1" || got[1] != "c2" {
		t.Errorf("submit after the slots came back started %v, want [c1 c2]", got)
	}
}

// A long queue is compacted as it drains, without losing or reordering
// anything.
func TestAppLimitLongQueueKeepsOrder(t *testing.T) {
	l := newAppLimit(1)
	var wg sync.WaitGroup
	const n = 5000
	tokens := make([]string, n)
	for i := range tokens {
		tokens[i] = string(rune('A'+i%26)) + string(rune('0'+i/26%10)) + string(rune('a'+i/260))
	}
	started := l.submit(jobsOf(&wg, tokens[:n/2]...))
	if len(started) != 1 || started[0].token != tokens[0] {
		t.Fatalf("started %v, want [%s]", tokensOf(started), tokens[0])
	}
	for i := 1; i < n; i++ {
		if i == n/4 {
			l.submit(jobsOf(&wg, tokens[n/2:]...)) // arrives while the first half drains
		}
		j := l.next()
		if j == nil || j.token != tokens[i] {
			t.Fatalf("job %d: got %v, want %s", i, j, tokens[i])
		}
	}
	if j := l.next(); j != nil || l.free != 1 || len(l.pending) != 0 {
		t.Errorf("after draining: job %v, %d free, %d pending; want nil, 1, 0", j, l.free, len(l.pending))
	}

	// A queue that never empties (one job in for every one out, a few
	// always waiting) must not grow with the jobs that passed through it:
	// only compaction as it drains keeps its backing array bounded.
	l = newAppLimit(1)
	const backlog, rounds = 10, 100_000
	name := func(i int) string { return "s" + strconv.Itoa(i) }
	if got := l.submit(jobsOf(&wg, name(0))); len(got) != 1 || got[0].token != name(0) {
		t.Fatalf("steady queue: started %v, want [%s]", tokensOf(got), name(0))
	}
	wantNext := 1
	submitted := 1
	for ; submitted <= backlog; submitted++ {
		l.submit(jobsOf(&wg, name(submitted)))
	}
	maxCap := 0
	for range rounds {
		l.submit(jobsOf(&wg, name(submitted)))
		submitted++
		j := l.next()
		if j == nil || j.token != name(wantNext) {
			t.Fatalf("steady queue: got %v, want %s", j, name(wantNext))
		}
		wantNext++
		maxCap = max(maxCap, cap(l.pending))
	}
	if maxCap > 4096 {
		t.Errorf("steady queue of %d waiting: capacity grew to %d over %d jobs, want it bounded (compacted as it drains)", backlog+1, maxCap, rounds)
	}
	for wantNext < submitted {
		if j := l.next(); j == nil || j.token != name(wantNext) {
			t.Fatalf("steady queue drain: got %v, want %s", j, name(wantNext))
		}
		wantNext++
	}
	if j := l.next(); j != nil || l.free != 1 || len(l.pending) != 0 {
		t.Errorf("after the steady queue: job %v, %d free, %d pending; want nil, 1, 0", j, l.free, len(l.pending))
	}
}

// A stopping chunk takes back its queued devices at once, wherever they
// wait; the others keep their order.
func TestAppLimitWithdrawTakesBackOneChunk(t *testing.T) {
	l := newAppLimit(1)
	var a, b, c sync.WaitGroup
	l.submit(jobsOf(&a, "a1", "a2"))
	l.submit(jobsOf(&b, "b1", "b2", "b3"))
	l.submit(jobsOf(&c, "c1"))
	if n := l.withdraw(&b); n != 3 {
		t.Fatalf("withdrew %d, want 3", n)
	}
	if n := l.withdraw(&b); n != 0 {
		t.Errorf("second withdraw took %d, want 0", n)
	}
	var order []string
	for j := l.next(); j != nil; j = l.next() {
		order = append(order, j.token)
	}
	if len(order) != 2 || order[0] != "a2" || order[1] != "c1" {
		t.Errorf("after withdrawing b the slot went to %v, want [a2 c1]", order)
	}
	if l.free != 1 || len(l.pending) != 0 {
		t.Errorf("%d free, %d queued; want 1, 0", l.free, len(l.pending))
	}
}
