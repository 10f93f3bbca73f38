package delay_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pushlane/pushlane/pipeline/delay"
	"github.com/pushlane/pushlane/pipeline/dispatcher/dispatchtest"
	"github.com/pushlane/pushlane/pipeline/kafka"
)

// A head record DueAt holds past the records behind it (here a forwarded
// one, hop 1, whose writer's clock ran ahead: up to MaxForwardedHold) keeps
// its partition paused until it is nearly due, so the records arriving
// behind it wait in Kafka, not in memory; at its due time it goes, never
// early, and the records behind it follow in offset order. Before, the
// partition was paused only by its last held record, which was due: it went
// on fetching, and every fetch was held behind the head (held records grew
// by 20 a second, paused partitions 0).
func TestForwarderPausesBehindAHeadHeldPastTheRecordsBehindIt(t *testing.T) {
	tiers := []string{"t00", "t01", "t02"}
	_, k, cl := stallCluster(t, 1, 1, tiers)
	l := delay.Ladder{Tiers: tiers, Ready: "ready"}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	produce := func(id string, sendAt time.Time, hop string) {
		t.Helper()
		r := delay.BatchRecord(l.Tiers[0], id, "c", sendAt, time.Time{}, make([]byte, 2000))
		kafka.SetHeader(r, kafka.HeaderHop, hop)
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	// Eligible on t00 after 1 s, but its send-at is 12 s away: DueAt
	// holds it until send-at - 1 s (it was forwarded, so up to an hour).
	headAt := start.Add(12 * time.Second)
	headDue := headAt.Add(-delay.TierDelay(0))
	produce("head", headAt, "1")
	const before, behind = 5, 40
	for i := range before {
		produce(fmt.Sprintf("a%02d", i), time.Now().Add(1500*time.Millisecond), "0")
	}
	r := startForwarder(t, k, l, "dlq", "delay-held-head", nil)
	metric := func(name string) float64 { return dispatchtest.MetricValue(t, r.reg, name) }

	// The records behind the head are all written (and fetched) well
	// before the partition may resume, Prefetch before the head is due.
	quiet := headDue.Add(-2 * time.Second)
	for metric("pushlane_delay_held_records") < 1+before {
		if time.Now().After(quiet) {
			t.Fatalf("the forwarder held nothing %v after the first write", time.Since(start).Round(time.Millisecond))
		}
		time.Sleep(20 * time.Millisecond)
	}
	held0 := metric("pushlane_delay_held_records")
	maxHeld := held0
	for i := range behind {
		produce(fmt.Sprintf("b%02d", i), time.Now().Add(1500*time.Millisecond), "0")
		time.Sleep(25 * time.Millisecond)
		maxHeld = max(maxHeld, metric("pushlane_delay_held_records"))
	}
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		maxHeld = max(maxHeld, metric("pushlane_delay_held_records"))
	}
	paused := metric("pushlane_delay_paused_partitions")
	if time.Now().After(quiet) {
		t.Fatalf("the records behind the head took until %v after the first write, too late to tell a paused partition from a resumed one", time.Since(start).Round(time.Millisecond))
	}
	t.Logf("held %v records when the forwarder had fetched, at most %v while %d more were written; paused partitions %v", held0, maxHeld, behind, paused)
	// At most one more fetch may land before the pause; growing with the
	// writes (held0 + 40 before the fix) is the defect.
	if maxHeld > held0+behind/2 {
		t.Errorf("held up to %v records behind the held head (%v once fetched, %d written since), want about one fetch", maxHeld, held0, behind)
	}
	if paused != 1 {
		t.Errorf("paused partitions %v while the head is held, want 1", paused)
	}

	got := k.ReadAll(t, l.Ready, 1+before+behind, 30*time.Second)
	if len(got) != 1+before+behind {
		t.Fatalf("ready holds %d records, want %d", len(got), 1+before+behind)
	}
	// Offset order: nothing behind the head goes before it.
	if string(got[0].Key) != "head" {
		t.Errorf("ready's first record is %s, want the head: the records behind it went first", got[0].Key)
	}
	as := arrivals(t, got)
	for id, a := range as {
		if len(a) != 1 {
			t.Errorf("%s reached ready %d times", id, len(a))
		}
	}
	h := as["head"]
	if len(h) != 1 {
		t.Fatalf("the head reached ready %d times", len(h))
	}
	if early := h[0].sendAt.Sub(h[0].at); early > delay.ReadyWithin { // the header's send-at: milliseconds, as the timestamps
		t.Errorf("the head reached ready %v before its send-at, before DueAt", early)
	}
	t.Logf("the head reached ready %v after its due time", h[0].at.Sub(headDue).Round(time.Millisecond))
}
