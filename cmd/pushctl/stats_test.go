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
		return schemas.Result{SchemaVersion: 1, ID: id, CampaignID: campaign, CampaignVersion: 1, BatchID: campaign + ":b0",
			App: "shop", Provider: "apns", Token: token, Platform: "ios", Outcome: outcome, Attempt: attempt,
			SendAt: at, At: at.Add(time.Second), LatencyMs: 10, LatenessMs: 5}
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

	r := s.run(t, "", "status", "-json", "sale")
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
	f.Close()

	r := pushctl(t, "", nil, "stats", "-rows-file", path, "-json", "sale")
	if r.code != exitOK {
		t.Fatalf("stats: %+v", r)
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
