package feedback

import (
	"context"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/pushlane/pushlane/internal/migrate"
	"github.com/pushlane/pushlane/internal/testenv"
	"github.com/pushlane/pushlane/schemas"
)

// TestAnalystQueries runs every query of schemas/queries, and Summary, on
// the ClickHouse of deploy/local with the copies a real table holds before
// its merges: a replayed row (identical) and results whose chunk was
// re-sent after a crash (retryable first, delivered in the later send),
// whether both copies come in one insert or the later send's copy is
// inserted first (an old feedback member flushing after an outage and a
// rebalance). Each result counts once, as the copy of its later send says,
// and only results a provider answered count as sent.
func TestAnalystQueries(t *testing.T) {
	t.Parallel()
	_, database, conn := testenv.ClickHouse(t)
	ctx := context.Background()
	if _, err := migrate.ClickHouse(ctx, conn, database); err != nil {
		t.Fatal(err)
	}
	sink, err := NewClickHouseSink(conn, database)
	if err != nil {
		t.Fatal(err)
	}
	// An hour's start: the copies 30 s later stay on the same day.
	at := time.Now().UTC().Add(-time.Hour).Truncate(time.Hour)
	res := func(id, token, outcome string, status int, reason string, lateness float64, at time.Time) Row {
		return RowFromResult(&schemas.Result{SchemaVersion: 1, ID: id, CampaignID: "c1", CampaignVersion: 1, BatchID: "c1:v1::0",
			App: "shop", Provider: "apns", Token: token, Platform: "ios", Outcome: outcome, Status: status, Reason: reason,
			Attempt: 1, SendAt: at.Add(-time.Second), At: at, LatencyMs: 10, LatenessMs: lateness})
	}
	// What the dispatcher writes for a device whose app has no provider
	// for its platform: failed, no provider, no status, no latency.
	noProvider := res("r6", "t6", schemas.OutcomeFailed, 0, "no provider for ios", 0, at)
	noProvider.Provider, noProvider.LatencyMs = "", 0
	// A payload the provider package refused before sending.
	localReject := res("r7", "t7", schemas.OutcomePayloadRejected, 0, "PayloadTooLarge", 0, at)
	localReject.LatencyMs = 0
	// The in-memory Accumulator (demo, pushctl status) gets the same
	// writes and must summarise them as ClickHouse does.
	acc := NewAccumulator()
	write := func(rows ...Row) {
		t.Helper()
		if err := sink.Write(ctx, rows); err != nil {
			t.Fatal(err)
		}
		if err := acc.Write(ctx, rows); err != nil {
			t.Fatal(err)
		}
	}
	write(res("r1", "t1", schemas.OutcomeRetryable, 503, "ServiceUnavailable", 100, at),
		res("r1", "t1", schemas.OutcomeDelivered, 200, "", 400, at.Add(30*time.Second)), // re-sent, same flush
		res("r2", "t2", schemas.OutcomeDelivered, 200, "", 50, at),
		res("r3", "t3", schemas.OutcomeTokenDead, 410, "Unregistered", 70, at),
		res("r4", "t4", schemas.OutcomeExpired, 0, "expired", 0, at),
		noProvider, localReject)
	write(res("r2", "t2", schemas.OutcomeDelivered, 200, "", 50, at)) // replayed
	write(res("r5", "t5", schemas.OutcomeDelivered, 200, "", 60, at.Add(20*time.Second)))
	write(res("r5", "t5", schemas.OutcomeRetryable, 429, "TooManyRequests", 5000, at)) // the earlier send, inserted last
	// Outside every query's window: counted by none of them.
	old := res("r8", "t8", schemas.OutcomeTokenDead, 410, "Unregistered", 90000, at.Add(-40*24*time.Hour))
	old.CampaignID = "c0"
	write(old)

	query := func(file string) driver.Rows {
		t.Helper()
		b, err := os.ReadFile("../../schemas/queries/" + file)
		if err != nil {
			t.Fatal(err)
		}
		q := strings.TrimSuffix(strings.TrimSpace(strings.ReplaceAll(string(b), "${database}", database)), ";")
		rows, err := conn.Query(ctx, q)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		t.Cleanup(func() { _ = rows.Close() })
		return rows
	}

	rows := query("top_error_reasons.sql")
	var got []string
	for rows.Next() {
		var provider, outcome, reason string
		var status uint16
		var results, tokens, campaigns uint64
		if err := rows.Scan(&provider, &outcome, &status, &reason, &results, &tokens, &campaigns); err != nil {
			t.Fatal(err)
		}
		got = append(got, strings.Join([]string{provider, outcome, itoa(uint64(status)), reason, itoa(results), itoa(tokens), itoa(campaigns)}, " "))
	}
	sort.Strings(got) // the rows tie on count
	if want := []string{" failed 0 no provider for ios 1 1 1", "apns expired 0 expired 1 1 1", "apns payload_rejected 0 PayloadTooLarge 1 1 1",
		"apns token_dead 410 Unregistered 1 1 1"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("top_error_reasons = %q, want %q (r1's and r5's retryable copies are superseded)", got, want)
	}

	rows = query("delivery_rate.sql")
	got = nil
	for rows.Next() {
		var app, platform string
		var day time.Time
		var sent, delivered uint64
		var rate float64
		if err := rows.Scan(&app, &platform, &day, &sent, &delivered, &rate); err != nil {
			t.Fatal(err)
		}
		got = append(got, strings.Join([]string{app, platform, day.Format("2006-01-02"), itoa(sent), itoa(delivered)}, " "))
	}
	if want := "shop ios " + at.Format("2006-01-02") + " 4 3"; strings.Join(got, "|") != want {
		t.Errorf("delivery_rate = %q, want %q", got, want)
	}

	rows = query("dead_token_rate.sql")
	got = nil
	for rows.Next() {
		var app, platform string
		var day time.Time
		var sent, dead, suspect uint64
		var deadRate, suspectRate float64
		if err := rows.Scan(&app, &platform, &day, &sent, &dead, &suspect, &deadRate, &suspectRate); err != nil {
			t.Fatal(err)
		}
		got = append(got, strings.Join([]string{app, platform, itoa(sent), itoa(dead), itoa(suspect)}, " "))
	}
	if want := "shop ios 4 1 0"; strings.Join(got, "|") != want {
		t.Errorf("dead_token_rate = %q, want %q", got, want)
	}

	rows = query("lateness_distribution.sql")
	got = nil
	for rows.Next() {
		var campaign string
		var sent, early, u100, u1s, u10s, u1m, over uint64
		var quantiles []float64
		var maxMs float64
		if err := rows.Scan(&campaign, &sent, &quantiles, &maxMs, &early, &u100, &u1s, &u10s, &u1m, &over); err != nil {
			t.Fatal(err)
		}
		got = append(got, strings.Join([]string{campaign, itoa(sent), itoa(uint64(maxMs)), itoa(u100), itoa(u1s), itoa(u10s)}, " "))
	}
	if want := "c1 4 400 3 1 0"; strings.Join(got, "|") != want {
		t.Errorf("lateness_distribution = %q, want %q (r1 and r5 counted with their later sends, 400 and 60 ms; r6 and r7 not sent)", got, want)
	}

	s, err := Summary(ctx, conn, database, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if s.Results != 7 || s.Delivered != 3 || s.TokenDead != 1 || s.Expired != 1 || s.Failed != 1 || s.PayloadRejected != 1 ||
		s.Retried != 0 || s.Sent != 4 {
		t.Errorf("summary = %+v, want 7 results: 3 delivered, 1 token_dead, 1 expired, 1 failed, 1 payload_rejected, none retried; 4 sent", s)
	}
	// Lateness of the sent attempts only: 50, 60, 70, 400.
	if s.LatenessP50Ms != 70 || s.LatenessP99Ms != 400 || s.LatencyP50Ms != 10 {
		t.Errorf("summary lateness p50/p99 = %v/%v, latency p50 = %v, want 70/400 and 10", s.LatenessP50Ms, s.LatenessP99Ms, s.LatencyP50Ms)
	}
	if mem, err := acc.Summary("c1"); err != nil || mem != s {
		t.Errorf("Accumulator summary\n%+v, %v\nClickHouse's\n%+v", mem, err, s)
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }
