package delay

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/pipeline/kafka"
)

// testForwarder is a Forwarder on a three-tier ladder with a client that
// never connects: enough for the decisions made under f.mu.
func testForwarder(t *testing.T) *Forwarder {
	t.Helper()
	f, err := New(Config{Group: "g", Ladder: Ladder{Tiers: []string{"t00", "t01", "t02"}, Ready: "ready"}, DeadLetterTopic: "dlq"}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	f.cl = cl
	return f
}

// tierRecord is a t00 record at offset off, appended at ts, for sendAt,
// written with hop.
func tierRecord(off int64, ts, sendAt time.Time, hop string) *kgo.Record {
	r := BatchRecord("t00", fmt.Sprint("b", off), "c", sendAt, time.Time{}, []byte(`{}`))
	kafka.SetHeader(r, kafka.HeaderHop, hop)
	r.Partition, r.Offset, r.Timestamp = 0, off, ts
	return r
}

// A partition whose head failed is woken at its retry, but not before its
// head is due: after the wall clock stepped back, the retry time has passed
// while the head is due again only later, and forwardDue takes nothing
// before it is due. nextWake returned the past retry time, so every poll
// returned at once and the forwarder spun at full CPU until the head was
// due.
func TestNextWakeOfAFailingPartitionWaitsForItsHead(t *testing.T) {
	now := time.Now().Truncate(time.Millisecond)
	tp := topicPartition{"t00", 0}
	for _, c := range []struct {
		name    string
		headDue time.Duration // from now
		retry   time.Duration // from now
		want    time.Duration // from now
	}{
		{name: "clock stepped back: retry past, head due later", headDue: 400 * time.Millisecond, retry: -2 * time.Second, want: 400 * time.Millisecond},
		{name: "head due far: the one-second cap", headDue: 5 * time.Second, retry: -2 * time.Second, want: time.Second},
		{name: "head due, retry later", headDue: -time.Second, retry: 300 * time.Millisecond, want: 300 * time.Millisecond},
		{name: "head due, retry later than its due time", headDue: 200 * time.Millisecond, retry: 600 * time.Millisecond, want: 600 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := testForwarder(t)
			// Tier 0: due one second after its append time.
			head := tierRecord(0, now.Add(c.headDue-TierDelay(0)), now.Add(c.headDue), "0")
			if got := f.dueAt(head, 0); !got.Equal(now.Add(c.headDue)) {
				t.Fatalf("head due %v from now, want %v", got.Sub(now), c.headDue)
			}
			f.held[tp] = []*kgo.Record{head, tierRecord(1, now.Add(-2*time.Second), now.Add(-time.Second), "0")}
			f.failing[tp] = &headRetry{at: now.Add(c.retry), failures: 3}
			f.paused[tp] = true
			if got := f.nextWake(now).Sub(now); got != c.want {
				t.Errorf("nextWake in %v, want %v", got, c.want)
			}
		})
	}
}

// A partition is paused while its head is held (DueAt) more than Prefetch
// past the due records behind it, and nextWake resumes it Prefetch before
// the head is due; it was paused only by its last held record, so it went
// on fetching while nothing could be forwarded past the head.
func TestAPartitionIsPausedWhileItsHeadIsHeld(t *testing.T) {
	now := time.Now().Truncate(time.Millisecond)
	tp := topicPartition{"t00", 0}
	f := testForwarder(t)
	// A forwarded record whose send-at is 14 s away, appended 1 s ago:
	// eligible now, held until send-at - 1 s.
	headDue := now.Add(13 * time.Second)
	head := tierRecord(0, now.Add(-time.Second), headDue.Add(TierDelay(0)), "1")
	if got := f.dueAt(head, 0); !got.Equal(headDue) {
		t.Fatalf("head due %v from now, want 13s", got.Sub(now))
	}
	q := []*kgo.Record{head}
	for i := range 5 {
		q = append(q, tierRecord(int64(1+i), now.Add(-time.Second), now.Add(500*time.Millisecond), "0"))
	}
	f.held[tp] = q

	f.mu.Lock()
	f.pauseOrResumeLocked(now)
	f.mu.Unlock()
	if !f.paused[tp] {
		t.Fatal("not paused while its head is held 13 s behind due records")
	}
	// Woken within the one-second cap: the head is not due, nor is it time
	// to resume.
	if got := f.nextWake(now).Sub(now); got != time.Second {
		t.Errorf("nextWake in %v, want the 1s cap", got)
	}
	resumeAt := headDue.Add(-f.cfg.Prefetch)
	if got := f.nextWake(resumeAt.Add(-500 * time.Millisecond)); !got.Equal(resumeAt) {
		t.Errorf("nextWake %v before the head is due, want Prefetch (%v) before", headDue.Sub(got), f.cfg.Prefetch)
	}
	f.mu.Lock()
	f.pauseOrResumeLocked(resumeAt.Add(-time.Millisecond))
	stillPaused := f.paused[tp]
	f.pauseOrResumeLocked(resumeAt)
	resumed := !f.paused[tp]
	f.mu.Unlock()
	if !stillPaused || !resumed {
		t.Errorf("paused just before head due - Prefetch: %v, resumed at it: %v; want both", stillPaused, resumed)
	}
}

// On a revoke, the records forwarded behind a head that failed and has
// since gone through are marked with what was forwarded before them, up to
// the first record not forwarded; behind a head that still fails, nothing
// is marked (the partition's commit is one offset), and the next owner
// forwards them again.
func TestRevokeMarksTheForwardedPrefixOnly(t *testing.T) {
	now := time.Now()
	f := testForwarder(t)
	through := topicPartition{"t00", 0} // head went through: 10, 11 forwarded behind it, 12 not
	failing := topicPartition{"t00", 1} // head still failing: 21 forwarded behind it
	rec := func(tp topicPartition, off int64) *kgo.Record {
		r := tierRecord(off, now, now, "0")
		r.Partition = tp.partition
		return r
	}
	f.held[through] = []*kgo.Record{rec(through, 10), rec(through, 11), rec(through, 12)}
	f.done[through] = map[int64]bool{10: true, 11: true}
	f.held[failing] = []*kgo.Record{rec(failing, 20), rec(failing, 21)}
	f.done[failing] = map[int64]bool{21: true}
	f.failing[failing] = &headRetry{at: now.Add(time.Second), failures: 1}

	f.markForwarded(f.cl, map[string][]int32{"t00": {0, 1}})
	var offsets []int64
	for _, r := range f.held[through] {
		offsets = append(offsets, r.Offset)
	}
	if len(offsets) != 1 || offsets[0] != 12 || len(f.done[through]) != 0 {
		t.Errorf("behind a head gone through: held offsets %v, done %v; want [12], none done", offsets, f.done[through])
	}
	if q := f.held[failing]; len(q) != 2 || !f.done[failing][21] {
		t.Errorf("behind a failing head: held %d records, done %v; want both held, 21 done", len(q), f.done[failing])
	}
}
