package feedback

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushlane/pushlane/schemas"
)

// campaignRows is a small campaign: 6 devices, one retried then delivered,
// with known latencies, and one row of another campaign.
func campaignRows() []Row {
	status := map[string]int{schemas.OutcomeDelivered: 200, schemas.OutcomeRetryable: 503, schemas.OutcomeTokenDead: 410,
		schemas.OutcomeTokenSuspect: 400}
	mk := func(id, token, outcome string, latency, lateness float64, at time.Time) Row {
		r := &schemas.Result{ID: id, CampaignID: "c1", CampaignVersion: 1, BatchID: "b", App: "a", Token: token,
			Platform: "ios", Outcome: outcome, Attempt: 1, At: at, LatencyMs: latency, LatenessMs: lateness}
		if r.Status = status[outcome]; r.Status != 0 {
			r.Provider = "apns"
		}
		return RowFromResult(r)
	}
	return []Row{
		mk("r1", "t1", schemas.OutcomeDelivered, 10, 100, t0),
		mk("r2", "t2", schemas.OutcomeDelivered, 20, 200, t0.Add(time.Second)),
		mk("r3", "t3", schemas.OutcomeRetryable, 30, 300, t0.Add(2*time.Second)),
		mk("r3b", "t3", schemas.OutcomeDelivered, 40, 400, t0.Add(3*time.Second)),
		mk("r4", "t4", schemas.OutcomeTokenDead, 50, 500, t0.Add(4*time.Second)),
		mk("r5", "t5", schemas.OutcomeExpired, 0, 9000, t0.Add(5*time.Second+500*time.Millisecond)),
		mk("r6", "t6", schemas.OutcomeTokenSuspect, 60, 600, t0.Add(6*time.Second+700*time.Millisecond)),
		{ResultID: "x1", CampaignID: "c2", App: "a", Token: "t1", Outcome: schemas.OutcomeDelivered, At: t0},
	}
}

// wantC1 is the summary of campaignRows' c1: sent = 6 (all but expired);
// latencies 10..60 → p50 = sorted[3] = 40, p99 = sorted[5] = 60.
var wantC1 = CampaignSummary{
	CampaignID: "c1", Planned: 6, PlannedSource: "results", Devices: 6, Results: 7, Sent: 6,
	Delivered: 3, TokenDead: 1, Suspect: 1, Retried: 1, Expired: 1,
	LatencyP50Ms: 40, LatencyP99Ms: 60, LatenessP50Ms: 400, LatenessP99Ms: 600,
	First: t0, Last: t0.Add(6 * time.Second), // seconds, as ClickHouse stores them
}

func TestAccumulatorCountsEachResultOnce(t *testing.T) {
	acc := NewAccumulator()
	rows := campaignRows()
	for range 3 { // the same rows three times: a replay
		if err := acc.Write(context.Background(), rows); err != nil {
			t.Fatal(err)
		}
	}
	got, err := acc.Summary("c1")
	if err != nil {
		t.Fatal(err)
	}
	if got != wantC1 {
		t.Errorf("summary =\n%+v\nwant\n%+v", got, wantC1)
	}
	if _, err := acc.Summary("nope"); !errors.Is(err, ErrNoResults) {
		t.Errorf("unknown campaign err = %v", err)
	}
	if got := acc.Campaigns(); len(got) != 2 || got[0] != "c1" || got[1] != "c2" {
		t.Errorf("campaigns = %v", got)
	}
}

func TestFileSinkRoundTripsThroughTheAccumulator(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rows.jsonl")
	fs, err := NewFileSink(path)
	if err != nil {
		t.Fatal(err)
	}
	rows := campaignRows()
	if err := fs.Write(context.Background(), rows); err != nil {
		t.Fatal(err)
	}
	if err := fs.Write(context.Background(), rows[:3]); err != nil { // replayed part
		t.Fatal(err)
	}
	if err := fs.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(raw, []byte("\n")); n != len(rows)+3 {
		t.Errorf("file has %d lines, want %d", n, len(rows)+3)
	}
	acc := NewAccumulator()
	if err := ReadRows(bytes.NewReader(raw), acc); err != nil {
		t.Fatal(err)
	}
	got, err := acc.Summary("c1")
	if err != nil {
		t.Fatal(err)
	}
	if got != wantC1 {
		t.Errorf("summary from file =\n%+v\nwant\n%+v", got, wantC1)
	}
	err = ReadRows(strings.NewReader("{\"result_id\":\"a\"}\nnot json\n"), NewAccumulator())
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("bad file err = %v, want line 2", err)
	}
}

func TestWriteSummary(t *testing.T) {
	var b bytes.Buffer
	if err := WriteSummary(&b, wantC1); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"campaign  c1", "planned  6  (results)", "sent  6", "delivered  3  50.00% of sent",
		"token dead  1  16.67% of sent", "expired  1", "latency p50/p99  40.0/60.0  ms", "first result  2026-03-01T12:00:00Z"} {
		if !strings.Contains(collapseSpaces(out), want) {
			t.Errorf("summary text lacks %q:\n%s", want, out)
		}
	}
}

func collapseSpaces(s string) string {
	var b strings.Builder
	spaces := 0
	for _, r := range s {
		if r == ' ' {
			spaces++
			continue
		}
		if spaces > 0 {
			if spaces > 1 {
				b.WriteString("  ")
			} else {
				b.WriteString(" ")
			}
			spaces = 0
		}
		b.WriteRune(r)
	}
	return b.String()
}

func TestQuantileExactMatchesClickHouse(t *testing.T) {
	for _, tc := range []struct {
		v     []float64
		level float64
		want  float64
	}{
		{nil, 0.5, 0},
		{[]float64{10, 30}, 0.5, 30}, // ClickHouse: quantileExact(0.5)([10,30]) = 30
		{[]float64{10, 30}, 0.99, 30},
		{[]float64{5, 1, 3}, 0.5, 3},
		{[]float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0.99, 10},
		{[]float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0.5, 6},
	} {
		if got := quantileExact(tc.v, tc.level); got != tc.want {
			t.Errorf("quantileExact(%v, %v) = %v, want %v", tc.v, tc.level, got, tc.want)
		}
	}
}

// Sent is what reached a provider: a device whose platform has no provider
// (the dispatcher's failed result without a provider), a payload refused
// before sending and a transport error are neither sent nor in the
// latency and lateness quantiles.
func TestAccumulatorSentIsWhatReachedAProvider(t *testing.T) {
	rows := campaignRows()
	mk := func(id, provider, outcome string, latency float64) Row {
		return RowFromResult(&schemas.Result{ID: id, CampaignID: "c1", CampaignVersion: 1, BatchID: "b", App: "a", Token: "t" + id,
			Platform: "ios", Provider: provider, Outcome: outcome, Attempt: 1, At: t0, LatencyMs: latency})
	}
	rows = append(rows,
		mk("n1", "", schemas.OutcomeFailed, 0),
		mk("n2", "", schemas.OutcomeFailed, 0),
		mk("n3", "apns", schemas.OutcomePayloadRejected, 0),
		mk("n4", "apns", schemas.OutcomeRetryable, 0))
	acc := NewAccumulator()
	if err := acc.Write(context.Background(), rows); err != nil {
		t.Fatal(err)
	}
	got, err := acc.Summary("c1")
	if err != nil {
		t.Fatal(err)
	}
	want := wantC1
	want.Planned, want.Devices, want.Results = 10, 10, 11
	want.Failed, want.PayloadRejected, want.Retried = 2, 1, 2
	if got != want {
		t.Errorf("summary =\n%+v\nwant\n%+v", got, want)
	}
}

// The copy of a result's later send wins whatever order its copies were
// written in, in one Write or in several, and a rows file read back keeps
// the same one.
func TestAccumulatorKeepsTheLaterSendWhateverTheWriteOrder(t *testing.T) {
	mk := func(outcome string, status int, at time.Time) Row {
		return RowFromResult(&schemas.Result{ID: "r1", CampaignID: "c1", CampaignVersion: 1, BatchID: "b", App: "a", Token: "t1",
			Platform: "ios", Provider: "apns", Outcome: outcome, Status: status, Attempt: 1, At: at, LatencyMs: 5})
	}
	first := mk(schemas.OutcomeRetryable, 503, t0.Add(123*time.Millisecond))
	later := mk(schemas.OutcomeDelivered, 200, t0.Add(124*time.Millisecond))
	// Two sends in the same millisecond: not ordered by time, but every
	// reader must keep the same copy.
	sameA := mk(schemas.OutcomeRetryable, 503, t0.Add(124*time.Millisecond))
	sameB := mk(schemas.OutcomeDelivered, 200, t0.Add(124*time.Millisecond+300*time.Microsecond))
	if first.version() >= later.version() {
		t.Errorf("version of the earlier send %d >= the later's %d", first.version(), later.version())
	}
	if a, b := sameA.version(), sameB.version(); a == b {
		t.Errorf("copies of one millisecond with different content share version %d", a)
	}
	if again := mk(schemas.OutcomeDelivered, 200, t0.Add(124*time.Millisecond)); again.version() != later.version() {
		t.Errorf("a replayed copy has version %d, the original %d", again.version(), later.version())
	}
	outcome := func(writes ...[]Row) string {
		t.Helper()
		acc := NewAccumulator()
		for _, w := range writes {
			if err := acc.Write(context.Background(), w); err != nil {
				t.Fatal(err)
			}
		}
		s, err := acc.Summary("c1")
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case s.Results != 1:
			return fmt.Sprintf("%d results", s.Results)
		case s.Delivered == 1:
			return schemas.OutcomeDelivered
		case s.Retried == 1:
			return schemas.OutcomeRetryable
		}
		return fmt.Sprintf("%+v", s)
	}
	for name, writes := range map[string][][]Row{
		"in order":           {{first}, {later}},
		"later send first":   {{later}, {first}},
		"one write":          {{first, later}},
		"one write reversed": {{later, first}},
		"replayed":           {{later}, {first}, {later}, {first}},
	} {
		if got := outcome(writes...); got != schemas.OutcomeDelivered {
			t.Errorf("%s: kept %s, want the later send's delivered", name, got)
		}
	}
	if ab, ba := outcome([]Row{sameA, sameB}), outcome([]Row{sameB}, []Row{sameA}); ab != ba {
		t.Errorf("copies of one millisecond: written A, B kept %s; B, A kept %s", ab, ba)
	}

	path := filepath.Join(t.TempDir(), "rows.jsonl")
	fs, err := NewFileSink(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []Row{later, first} {
		if err := fs.Write(context.Background(), []Row{r}); err != nil {
			t.Fatal(err)
		}
	}
	if err := fs.Close(); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	acc := NewAccumulator()
	if err := ReadRows(bytes.NewReader(raw), acc); err != nil {
		t.Fatal(err)
	}
	if s, err := acc.Summary("c1"); err != nil || s.Delivered != 1 || s.Results != 1 {
		t.Errorf("rows file summary = %+v, %v; want the later send's delivered", s, err)
	}
}

// A copy the provider answered outranks a cancelled or expired copy of the
// same result written later, for devices a chunk had sent before a crash
// left its progress unsaved and the next owner closed the batch out.
func TestSentCopyOutranksALaterCloseOut(t *testing.T) {
	mk := func(outcome, provider string, status int, at time.Time) Row {
		return RowFromResult(&schemas.Result{ID: "r1", CampaignID: "c1", CampaignVersion: 1, BatchID: "b", App: "a", Token: "t1",
			Platform: "ios", Provider: provider, Outcome: outcome, Status: status, Attempt: 1, At: at, LatencyMs: 5})
	}
	sent := mk(schemas.OutcomeDelivered, "apns", 200, t0)
	for _, closeOut := range []Row{
		mk(schemas.OutcomeExpired, "", 0, t0.Add(10*time.Minute)),
		mk(schemas.OutcomeCancelled, "", 0, t0.Add(time.Minute)),
	} {
		if sent.version() <= closeOut.version() {
			t.Errorf("delivered at %s: version %d, not above %s at %s: %d", sent.At, sent.version(), closeOut.Outcome, closeOut.At, closeOut.version())
		}
		// A retryable answer did not end the device: its retry was in the
		// unsaved progress, so the close-out is its outcome.
		if retryable := mk(schemas.OutcomeRetryable, "apns", 503, t0); retryable.version() >= closeOut.version() {
			t.Errorf("retryable at %s: version %d, not below %s at %s: %d", retryable.At, retryable.version(), closeOut.Outcome, closeOut.At, closeOut.version())
		}
		for name, writes := range map[string][]Row{"close-out last": {sent, closeOut}, "close-out first": {closeOut, sent}} {
			acc := NewAccumulator()
			if err := acc.Write(context.Background(), writes); err != nil {
				t.Fatal(err)
			}
			s, err := acc.Summary("c1")
			if err != nil {
				t.Fatal(err)
			}
			if s.Results != 1 || s.Delivered != 1 || s.Sent != 1 {
				t.Errorf("%s, %s: %d results, %d delivered, %d sent; want the delivered copy", closeOut.Outcome, name, s.Results, s.Delivered, s.Sent)
			}
		}
	}
}

// Shares of outcomes that count attempts no provider answered are of all
// results, not of sent: 1000 Android delivered and 1000 iOS payloads
// refused before sending read "100% of sent" for both before.
func TestWriteSummarySharesOfTheirWhole(t *testing.T) {
	var b strings.Builder
	s := CampaignSummary{CampaignID: "c1", Results: 2000, Sent: 1000, Delivered: 1000, PayloadRejected: 1000, Retried: 0}
	if err := WriteSummary(&b, s); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"delivered                      1000  100.00% of sent\n",
		"payload rejected               1000   50.00% of results\n",
		"retried                           0    0.00% of results\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, b.String())
		}
	}
}
