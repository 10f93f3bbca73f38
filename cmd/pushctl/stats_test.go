package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/internal/migrate"
	"github.com/pushlane/pushlane/internal/testenv"
	"github.com/pushlane/pushlane/pipeline/feedback"
	"github.com/pushlane/pushlane/schemas"
)

// statsResults is a small campaign's results: 5 devices, one retried then
// delivered, one dead, one expired, plus another campaign's result that
// must not be counted.
func statsResults() []schemas.Result {
	at := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	mk := func(id, campaign, token, outcome string, attempt int) schemas.Result {
		r := schemas.Result{SchemaVersion: 1, ID: id, CampaignID: campaign, CampaignVersion: 1, BatchID: campaign + ":b0",
			App: "shop", Provider: "apns", Token: token, Platform: "ios", Outcome: outcome, Attempt: attempt,
			SendAt: at, At: at.Add(time.Second), LatencyMs: 10, LatenessMs: 5}
		// APNs' answer; an expired device was never sent.
		switch outcome {
		case schemas.OutcomeDelivered:
			r.Status = 200
		case schemas.OutcomeRetryable:
			r.Status = 503
		case schemas.OutcomeTokenDead:
			r.Status = 410
		default:
			r.Provider, r.LatencyMs, r.LatenessMs = "", 0, 0
		}
		return r
	}
	return []schemas.Result{
		mk("r1", "sale", "t1", schemas.OutcomeDelivered, 1),
		mk("r2", "sale", "t2", schemas.OutcomeDelivered, 1),
		mk("r3", "sale", "t3", schemas.OutcomeRetryable, 1),
		mk("r4", "sale", "t3", schemas.OutcomeDelivered, 2),
		mk("r5", "sale", "t4", schemas.OutcomeTokenDead, 1),
		mk("r6", "sale", "t5", schemas.OutcomeExpired, 0),
		mk("x1", "other", "t1", schemas.OutcomeDelivered, 1),
	}
}

func TestStatusCommand(t *testing.T) { onEachKafka(t, testStatusCommand) }

func testStatusCommand(t *testing.T, newStack stackFactory) {
	s := newStack(t).withTopics(t)
	ctx := context.Background()
	for _, r := range statsResults() {
		v, _ := json.Marshal(r)
		// Produced twice: a replayed results topic must not change the counts.
		for range 2 {
			if err := s.cl.ProduceSync(ctx, &kgo.Record{Topic: s.topics().Results.Name, Key: []byte(r.App + "/" + r.Token), Value: v}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.cl.ProduceSync(ctx, &kgo.Record{Topic: s.topics().Results.Name, Value: []byte("garbage")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// status has no deadline unless -timeout is given: a long results
	// topic takes as long as it takes to read.
	setFor(t, &defaultTimeout, time.Nanosecond)
	r := pushctl(t, "", s.env, "status", "-json", "sale")
	if r.code != exitOK {
		t.Fatalf("status: %+v", r)
	}
	var got feedback.CampaignSummary
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("status -json output %q: %v", r.stdout, err)
	}
	if got.Delivered != 3 || got.TokenDead != 1 || got.Retried != 1 || got.Expired != 1 || got.Results != 6 || got.Devices != 5 || got.Sent != 5 {
		t.Errorf("status counts = %+v, want delivered 3, dead 1, retried 1, expired 1, results 6, devices 5, sent 5", got)
	}
	if !strings.Contains(r.stderr, "1 malformed result records skipped") {
		t.Errorf("stderr %q does not report the malformed record", r.stderr)
	}

	if r := s.run(t, "", "status"); r.code != exitUsage || !strings.Contains(r.stderr, "want exactly one campaign id") {
		t.Errorf("status without a campaign: %+v", r)
	}
}

func TestStatusWatch(t *testing.T) { onEachKafka(t, testStatusWatch) }

// A watch started before the first result shows zeros, then each refresh
// adds only what was written since, counted once however often it is
// read; the watch ends at an interrupt with exit 0.
func testStatusWatch(t *testing.T, newStack stackFactory) {
	s := newStack(t).withTopics(t)
	ctx := context.Background()
	results := statsResults()
	produce := func(rs []schemas.Result) {
		t.Helper()
		for _, r := range rs {
			v, _ := json.Marshal(r)
			if err := s.cl.ProduceSync(ctx, &kgo.Record{Topic: s.topics().Results.Name, Key: []byte(r.App + "/" + r.Token), Value: v}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	out, errOut := &testenv.SyncBuffer{}, &testenv.SyncBuffer{}
	c := &cli{stdin: strings.NewReader(""), stdout: out, stderr: errOut, environ: s.env, now: func() time.Time { return testNow }}
	// The watch runs until the test has seen what it waits for, then ends
	// as an interrupt ends it.
	watchCtx, interrupt := context.WithCancel(ctx)
	defer interrupt()
	done := make(chan int, 1)
	go func() {
		done <- run(watchCtx, c, []string{"-timeout", "0", "status", "-watch", "-interval", "100ms", "-json", "sale"})
	}()
	// counted returns the Results of each summary printed so far, repeats
	// collapsed.
	counted := func() []uint64 {
		dec := json.NewDecoder(strings.NewReader(out.String()))
		var seen []uint64
		for {
			var got feedback.CampaignSummary
			if err := dec.Decode(&got); err != nil {
				return seen
			}
			if got.CampaignID != "sale" {
				t.Errorf("summary of %q", got.CampaignID)
			}
			if len(seen) == 0 || seen[len(seen)-1] != got.Results {
				seen = append(seen, got.Results)
			}
		}
	}
	waitFor := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); fmt.Sprint(counted()) != want; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("refreshes counted %v, want %s", counted(), want)
			}
		}
	}
	waitFor("[0]")
	produce(results[:3])
	waitFor("[0 3]")
	produce(results) // the first three again: a replay
	waitFor("[0 3 6]")
	interrupt()
	if code := <-done; code != exitOK || errOut.String() != "" {
		t.Fatalf("status -watch: exit %d, stderr %q", code, errOut.String())
	}
	seen := counted()
	if fmt.Sprint(seen) != "[0 3 6]" {
		t.Errorf("results counted by the refreshes: %v, want [0 3 6]", seen)
	}
}

func TestResultsTallyReadsOnlyWhatIsNew(t *testing.T) {
	onEachKafka(t, testResultsTallyReadsOnlyWhatIsNew)
}

func testResultsTallyReadsOnlyWhatIsNew(t *testing.T, newStack stackFactory) {
	s := newStack(t).withTopics(t)
	ctx := context.Background()
	topic := s.topics().Results.Name
	produce := func(values ...string) {
		t.Helper()
		for _, v := range values {
			if err := s.cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	var vals []string
	for _, r := range statsResults() {
		v, _ := json.Marshal(r)
		vals = append(vals, string(v))
	}
	c := &cli{environ: s.env, now: time.Now, stderr: &strings.Builder{}}
	tally := newResultsTally("sale")
	produce(append(vals[:2:2], "garbage")...)
	if bad, err := tally.read(ctx, c, s.cfg); err != nil || bad != 1 {
		t.Fatalf("first read: %d malformed, %v", bad, err)
	}
	produce(vals[2:]...)
	if bad, err := tally.read(ctx, c, s.cfg); err != nil || bad != 0 {
		t.Fatalf("second read: %d malformed (the garbage read again?), %v", bad, err)
	}
	sum, err := tally.acc.Summary("sale")
	if err != nil || sum.Results != 6 || sum.Delivered != 3 {
		t.Errorf("after two reads: %+v %v, want 6 results, 3 delivered", sum, err)
	}
	var total int64
	for _, n := range tally.next {
		total += n
	}
	if total != 8 || tally.malformed != 1 {
		t.Errorf("read up to %v (sum %d, want 8), %d malformed", tally.next, total, tally.malformed)
	}
}

func TestStatsFromRowsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rows.jsonl")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	enc := json.NewEncoder(f)
	for _, r := range statsResults() {
		if err := enc.Encode(feedback.RowFromResult(&r)); err != nil {
			t.Fatal(err)
		}
	}
	// The writer was killed in the middle of a row.
	if _, err := f.WriteString(`{"result_id":"r9","at":"2026-11-26T12:`); err != nil {
		t.Fatal(err)
	}
	f.Close()

	r := pushctl(t, "", nil, "stats", "-rows-file", path, "-json", "sale")
	if r.code != exitOK {
		t.Fatalf("stats: %+v", r)
	}
	if want := "1 torn rows skipped (lines [8])"; !strings.Contains(r.stderr, want) {
		t.Errorf("stats stderr %q does not say %q", r.stderr, want)
	}
	var got feedback.CampaignSummary
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatal(err)
	}
	if got.Delivered != 3 || got.TokenDead != 1 || got.Expired != 1 || got.Devices != 5 {
		t.Errorf("stats = %+v", got)
	}
	if r := pushctl(t, "", nil, "stats", "-rows-file", path, "nosuch"); r.code != exitFailed {
		t.Errorf("stats of an unknown campaign: %+v", r)
	}
	if r := pushctl(t, "", nil, "stats", "sale"); r.code != exitUsage || !strings.Contains(r.stderr, "clickhouse.addr: required (or use -rows-file)") {
		t.Errorf("stats without clickhouse: %+v", r)
	}
}

func TestStatsFromClickHouse(t *testing.T) {
	addr, database, conn := testenv.ClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := migrate.ClickHouse(ctx, conn, database); err != nil {
		t.Fatal(err)
	}
	sink, err := feedback.NewClickHouseSink(conn, database)
	if err != nil {
		t.Fatal(err)
	}
	var rows []feedback.Row
	for _, r := range statsResults() {
		rows = append(rows, feedback.RowFromResult(&r))
	}
	// Written twice, as after a replay: counts are of distinct result ids.
	for range 2 {
		if err := sink.Write(ctx, rows); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{"PUSHLANE_CLICKHOUSE__ADDR=" + addr, "PUSHLANE_CLICKHOUSE__DATABASE=" + database}
	r := pushctl(t, "", env, "stats", "sale")
	if r.code != exitOK {
		t.Fatalf("stats: %+v", r)
	}
	for _, want := range []string{"sale", fmt.Sprint(3)} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stats output lacks %q:\n%s", want, r.stdout)
		}
	}
	r = pushctl(t, "", env, "stats", "-json", "sale")
	var got feedback.CampaignSummary
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("%v: %q", err, r.stdout)
	}
	if got.Delivered != 3 || got.TokenDead != 1 || got.Retried != 1 || got.Expired != 1 || got.Results != 6 {
		t.Errorf("stats from ClickHouse = %+v", got)
	}
}
