package planner

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// readyRecords counts the committed batch records of campaign by id,
// duplicates included: a replay the dispatcher no longer recognises is a
// second record of an id, or an id it never saw.
func readyRecords(o *output, campaign string) map[string]int {
	n := map[string]int{}
	for _, rec := range o.raw {
		if strings.HasPrefix(string(rec.Key), campaign+":") {
			n[string(rec.Key)]++
		}
	}
	return n
}

// A campaign record replayed after its version was planned sends nothing
// and rewrites nothing. Before, it was planned again from scratch with
// start = now: past the dispatcher's ProgressRetention (35 days) to every
// device again, and within it, with the audience grown by 500 devices
// since, to them as batch seqs the dispatcher never saw, and the row took
// the replay's started_at, counts and send-ats. A newer version is a new
// plan; an older one replayed after it plans nothing either.
func TestLoopReplayOfAFinishedVersionSendsNothing(t *testing.T) {
	h := newKfakeHarness(t)
	store := h.store.(*memStore)
	seed(store, "app", 1, 95)
	c := segmentCampaign("c", 10)
	c.Schedule.SendAt = time.Now().Add(-time.Hour) // due now; no TTL, no expires_at
	h.publishCampaign(c)
	r := h.start(nil)
	h.waitDone(1)
	planned, ok := store.campaign("c", 1)
	if !ok || planned.Status != StatusPlanned || planned.Devices != 95 || planned.Batches != 10 {
		t.Fatalf("first plan recorded %+v (%v)", planned, ok)
	}
	saves := store.saves

	seed(store, "app", 96, 595) // the audience grows
	h.publishCampaign(c)        // the same record, at a later offset
	h.waitDone(2)
	o := h.output()
	if got := readyRecords(o, "c"); len(got) != 10 {
		t.Errorf("after the replay: %d batch ids, want the 10 of the plan", len(got))
	} else {
		for id, n := range got {
			if n != 1 {
				t.Errorf("batch %s committed %d times", id, n)
			}
		}
	}
	if rec, _ := store.campaign("c", 1); !reflect.DeepEqual(rec, planned) || store.saves != saves {
		t.Errorf("the replay rewrote the row (%d saves, %d before): %+v, was %+v", store.saves, saves, rec, planned)
	}
	if n := counterValue(t, r.p.m.replays.WithLabelValues(replayFinished)); n != 1 {
		t.Errorf("skipped replays metric %v, want 1", n)
	}

	// Version 2 is a new plan, of the audience as it is now.
	c2 := *c
	c2.Version = 2
	h.publishCampaign(&c2)
	h.waitDone(3)
	if rec, ok := store.campaign("c", 2); !ok || rec.Status != StatusPlanned || rec.Devices != 595 || rec.Batches != 60 {
		t.Fatalf("version 2 recorded %+v (%v)", rec, ok)
	}
	// Version 1 replayed after it, and version 2 again: nothing.
	h.publishCampaign(c)
	h.publishCampaign(&c2)
	h.waitDone(5)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	o = h.output()
	if len(o.dupBatches) > 0 {
		t.Errorf("committed duplicates %v", o.dupBatches)
	}
	if v1, v2 := len(readyRecords(o, "c:v1")), len(readyRecords(o, "c:v2")); v1 != 10 || v2 != 60 {
		t.Errorf("%d batches of v1 and %d of v2, want 10 and 60", v1, v2)
	}
	if rec, _ := store.campaign("c", 1); !reflect.DeepEqual(rec, planned) {
		t.Errorf("v1 replayed after v2 rewrote its row: %+v, was %+v", rec, planned)
	}
	for reason, want := range map[string]float64{replayFinished: 2, replaySuperseded: 1} {
		if n := counterValue(t, r.p.m.replays.WithLabelValues(reason)); n != want {
			t.Errorf("skipped replays (%s) %v, want %v", reason, n, want)
		}
	}
	if n := counterValue(t, r.p.m.campaigns.WithLabelValues(outcomePlanned)); n != 2 {
		t.Errorf("planned campaigns metric %v, want 2 (v1 and v2 once each)", n)
	}
}

// The row that makes a replay skip is written only after the plan's last
// batches are committed. A plan interrupted anywhere before (a crash
// mid-campaign, a crash once the last batches are committed, a row
// write that failed after writing, a failed read of the row) still
// finishes, every batch once, and the replay queued behind it is skipped.
// Written in the last chunk before its commit, as before, a write that
// reported failure after writing aborted that chunk, and the record,
// polled again, was skipped as finished with its batches never sent.
func TestLoopReplayAfterAnInterruptedPlan(t *testing.T) {
	for _, tc := range []struct {
		name     string
		devices  int64
		crash    func(hookEvent) bool
		failRow  int // row writes that write and fail
		failRead int // reads of the row that fail
	}{
		{name: "crash mid-campaign", devices: 1000, crash: func(ev hookEvent) bool { return ev.chunks == 3 && ev.batches == 2 }},
		{name: "crash after the last batches", devices: 1000, crash: func(ev hookEvent) bool { return ev.final }},
		{name: "crash after the only chunk", devices: 30, crash: func(ev hookEvent) bool { return ev.final }},
		{name: "row write fails after writing", devices: 30, failRow: 1},
		{name: "row read fails", devices: 30, failRead: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newKfakeHarness(t)
			store := h.store.(*memStore)
			seed(store, "app", 1, tc.devices)
			store.failWritten, store.failLatest = tc.failRow, tc.failRead
			h.cfg.BatchesPerTransaction = 5
			c := segmentCampaign("c", 10)
			c.Schedule.SendAt = time.Now().Add(-time.Hour)
			h.publishCampaign(c)
			h.publishCampaign(c) // the replay, behind it on the same partition
			if tc.crash != nil {
				first := h.start(func(ev hookEvent) error {
					if ev.campaign == "c" && tc.crash(ev) {
						if ev.flush != nil {
							ev.flush()
						}
						return errCrash
					}
					return nil
				})
				first.waitCrash(t)
			}
			r := h.start(nil)
			h.waitDone(2)
			if err := r.stop(t); err != nil {
				t.Fatal(err)
			}
			o := h.output()
			if len(o.dupBatches) > 0 {
				t.Fatalf("committed duplicates %v", o.dupBatches)
			}
			wantBatches := int(tc.devices / 10)
			if got := o.batchesOf("c"); len(got) != wantBatches {
				t.Fatalf("%d batches, want %d", len(got), wantBatches)
			}
			for i, b := range o.batchesOf("c") {
				if b.ID != fmt.Sprintf("c:v1:all:%d", i) {
					t.Fatalf("batch %d is %s", i, b.ID)
				}
			}
			equalIDs(t, "c", o.devicesOf("c"), wantIDs(1, tc.devices))
			if rec, _ := store.campaign("c", 1); rec.Status != StatusPlanned || rec.Devices != tc.devices || rec.Batches != int64(wantBatches) {
				t.Errorf("recorded %+v", rec)
			}
			if n := counterValue(t, r.p.m.replays.WithLabelValues(replayFinished)); n != 1 {
				t.Errorf("skipped replays %v, want 1", n)
			}
		})
	}
}
