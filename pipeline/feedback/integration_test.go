package feedback

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/internal/migrate"
	"github.com/pushlane/pushlane/internal/testenv"
	"github.com/pushlane/pushlane/schemas"
)

// realEnv is one test's topics and databases on the deploy/local stack.
type realEnv struct {
	brokers                   []string
	results, regs, deadLetter string
	db                        *sql.DB
	ch                        driver.Conn
	chdb                      string
}

func newRealEnv(t *testing.T) realEnv {
	t.Helper()
	e := realEnv{brokers: testenv.KafkaBrokers(t)}
	e.results = testenv.Topic(t, "results", 6, nil)
	e.regs = testenv.Topic(t, "registrations", 2, nil)
	e.deadLetter = testenv.Topic(t, "dead-letter", 1, nil)
	_, e.db = testenv.MySQL(t)
	_, e.chdb, e.ch = testenv.ClickHouse(t)
	ctx := context.Background()
	if _, err := migrate.MySQL(ctx, e.db); err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.ClickHouse(ctx, e.ch, e.chdb); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e realEnv) produce(t *testing.T, topic string, values [][]byte) {
	t.Helper()
	cl := testenv.KafkaClient(t, kgo.ProducerBatchMaxBytes(4<<20))
	recs := make([]*kgo.Record, len(values))
	for i, v := range values {
		recs[i] = &kgo.Record{Topic: topic, Key: []byte(fmt.Sprint(i % 97)), Value: v}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// start runs a feedback stage in group on e, writing to ClickHouse.
func (e realEnv) start(t *testing.T, group string, strikes int, reg *prometheus.Registry) (stop func() error) {
	t.Helper()
	sink, err := NewClickHouseSink(e.ch, e.chdb)
	if err != nil {
		t.Fatal(err)
	}
	f, err := New(Config{ResultsTopic: e.results, RegistrationsTopic: e.regs, DeadLetterTopic: e.deadLetter, Group: group,
		FlushRows: 2000, FlushInterval: 200 * time.Millisecond, MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second},
		Deps{KafkaOpts: []kgo.Opt{kgo.SeedBrokers(e.brokers...)}, Store: NewMySQLStore(e.db, strikes), Sink: sink, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(60 * time.Second):
			return fmt.Errorf("Run did not return within 60s of cancel")
		}
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// group returns a consumer group name for this env: base plus the unique
// part of the env's topic names, so no earlier (killed) or concurrent run
// on the same stack shares it.
func (e realEnv) group(base string) string {
	return base + "-" + strings.TrimPrefix(e.results, "results-")
}

// committed sums group's committed offsets on this env's input topics.
func (e realEnv) committed(t *testing.T, group string) int64 {
	t.Helper()
	return committedTotal(t, e.brokers, group, e.results, e.regs)
}

func (e realEnv) waitCommitted(t *testing.T, group string, want int64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var got int64
	for {
		if got = e.committed(t, group); got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s committed %d records, want %d", group, got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// providerStatus is the HTTP status of the fixture's provider answers.
var providerStatus = map[string]int{schemas.OutcomeDelivered: 200, schemas.OutcomeTokenDead: 410,
	schemas.OutcomeTokenSuspect: 400, schemas.OutcomeRetryable: 429, schemas.OutcomeFailed: 503}

// campaign is the fixture of the end-to-end test: 1000 seeded devices of
// app "app" registered at t0 and the results and registrations of one
// campaign against them (see the expectations in the test).
func campaign(t *testing.T, db *sql.DB) (results []*schemas.Result, regs []*schemas.DeviceRegistration) {
	t.Helper()
	var b strings.Builder
	var args []any
	b.WriteString("INSERT INTO devices (app, platform, token, registered_at, active) VALUES ")
	for i := range 1000 {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("('app', 'ios', ?, ?, 1)")
		args = append(args, fmt.Sprintf("tok%04d", i), t0)
	}
	if _, err := db.Exec(b.String(), args...); err != nil {
		t.Fatal(err)
	}
	mk := func(i, attempt int, outcome, reason string, at time.Time) *schemas.Result {
		r := result(fmt.Sprintf("b%d/tok%04d/a%d", i/100, i, attempt), "app", fmt.Sprintf("tok%04d", i), outcome, reason, at)
		r.BatchID = fmt.Sprintf("b%d", i/100)
		r.Attempt = attempt
		r.SendAt = t0.Add(3 * time.Hour)
		if outcome != schemas.OutcomeExpired && outcome != schemas.OutcomeCancelled && outcome != schemas.OutcomeInvalidToken {
			r.LatencyMs = float64(i%100) + float64(attempt)
			r.LatenessMs = float64(i%37) * 10
			r.Status = providerStatus[outcome] // the provider answered: sent
		} else {
			r.Provider = ""
		}
		return r
	}
	at := t0.Add(3 * time.Hour)
	for i := range 1000 {
		switch i % 10 {
		case 0: // APNs 410 with Apple's timestamp t0+1h; half the devices re-registered at t0+2h
			r := mk(i, 1, schemas.OutcomeTokenDead, "Unregistered", at)
			r.ProviderTimestamp = t0.Add(time.Hour)
			results = append(results, r)
			if i%20 == 0 {
				regs = append(regs, &schemas.DeviceRegistration{SchemaVersion: 1, App: "app", Token: r.Token, Platform: "ios", RegisteredAt: t0.Add(2 * time.Hour)})
			}
		case 1:
			results = append(results, mk(i, 1, schemas.OutcomeTokenDead, "ExpiredToken", at))
		case 2: // three strikes, or two for i%20 == 12
			n := 3
			if i%20 == 12 {
				n = 2
			}
			for a := 1; a <= n; a++ {
				results = append(results, mk(i, a, schemas.OutcomeTokenSuspect, "BadDeviceToken", at.Add(time.Duration(a)*time.Minute)))
			}
		case 3:
			results = append(results, mk(i, 1, schemas.OutcomeRetryable, "TooManyRequests", at), mk(i, 2, schemas.OutcomeDelivered, "", at.Add(time.Minute)))
		case 4:
			results = append(results, mk(i, 0, schemas.OutcomeExpired, "", at))
		case 5:
			results = append(results, mk(i, 0, schemas.OutcomeCancelled, "", at))
		case 6:
			results = append(results, mk(i, 0, schemas.OutcomeInvalidToken, "", at))
		case 7:
			results = append(results, mk(i, 5, schemas.OutcomeFailed, "ServiceUnavailable", at))
		default:
			results = append(results, mk(i, 1, schemas.OutcomeDelivered, "", at))
		}
	}
	for i := range 5 { // dead tokens of devices that do not exist
		r := result(fmt.Sprintf("ghost%d", i), "app", fmt.Sprintf("ghost%d", i), schemas.OutcomeTokenDead, "UNREGISTERED", at)
		r.Provider, r.Status = "fcm", 404
		results = append(results, r)
	}
	regs = append(regs, &schemas.DeviceRegistration{SchemaVersion: 1, App: "app", Token: "fresh", Platform: "android", UserID: "u1", RegisteredAt: at})
	return results, regs
}

func inactiveByReason(t *testing.T, db *sql.DB) map[string]int {
	t.Helper()
	rows, err := db.Query(`SELECT deactivation_reason, COUNT(*) FROM devices WHERE active = 0 GROUP BY deactivation_reason`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var reason string
		var n int
		if err := rows.Scan(&reason, &n); err != nil {
			t.Fatal(err)
		}
		out[reason] = n
	}
	return out
}

// TestIntegrationStoreOnMariaDB runs the hygiene cases on MariaDB.
func TestIntegrationStoreOnMariaDB(t *testing.T) {
	for _, c := range storeCases() {
		t.Run(c.name, func(t *testing.T) {
			_, db := testenv.MySQL(t)
			if _, err := migrate.MySQL(context.Background(), db); err != nil {
				t.Fatal(err)
			}
			c.run(t, db)
		})
	}
}

// TestIntegrationCampaignAndReplay runs a campaign's results through real
// Kafka into MariaDB and ClickHouse 18.16, checks the token hygiene, the
// dead letters and the campaign summary, then consumes the same topics
// again in a new group and checks that nothing changed.
func TestIntegrationCampaignAndReplay(t *testing.T) {
	e := newRealEnv(t)
	results, regs := campaign(t, e.db)
	var values [][]byte
	for _, r := range results {
		values = append(values, encode(t, r))
	}
	values = append(values, []byte(`not json`), []byte(`{"schema_version":1,"id":"x","outcome":"delivered"}`))
	e.produce(t, e.results, values)
	var regValues [][]byte
	for _, g := range regs {
		regValues = append(regValues, encode(t, g))
	}
	regValues = append(regValues, []byte(`{"schema_version":1,"app":"app","token":"t","platform":"windows","registered_at":"2026-01-01T00:00:00Z"}`))
	e.produce(t, e.regs, regValues)
	total := int64(len(values) + len(regValues))

	reg := prometheus.NewRegistry()
	first := e.group("feedback-first")
	stop := e.start(t, first, 3, reg)
	e.waitCommitted(t, first, total, 2*time.Minute)
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// MySQL: 50 of the 100 410s (the others re-registered after Apple's
	// timestamp), 100 ExpiredToken, 50 with three strikes.
	wantInactive := map[string]int{"Unregistered": 50, "ExpiredToken": 100, ReasonSuspectStrikes: 50}
	if got := inactiveByReason(t, e.db); fmt.Sprint(got) != fmt.Sprint(wantInactive) {
		t.Errorf("inactive devices by reason = %v, want %v", got, wantInactive)
	}
	if d := device(t, e.db, "app", "tok0000"); !d.Active || !d.RegisteredAt.Equal(t0.Add(2*time.Hour)) {
		t.Errorf("re-registered device = %s, want active, registered t0+2h", d)
	}
	if d := device(t, e.db, "app", "tok0010"); d.Active || !d.DeactivatedAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("410 device = %s, want inactive at Apple's timestamp", d)
	}
	if d := device(t, e.db, "app", "fresh"); !d.Active || d.Platform != "android" || d.UserID != "u1" {
		t.Errorf("registered device = %s", d)
	}
	if got := counterValue(t, reg, "pushlane_feedback_unknown_devices_total", ""); got != 5 {
		t.Errorf("unknown devices = %v, want 5", got)
	}
	if got := counterValue(t, reg, "pushlane_feedback_dead_letters_total", schemas.KindResult); got != 2 {
		t.Errorf("dead-lettered results = %v, want 2", got)
	}
	if got := counterValue(t, reg, "pushlane_feedback_dead_letters_total", schemas.KindDeviceRegistration); got != 1 {
		t.Errorf("dead-lettered registrations = %v, want 1", got)
	}
	// 150, plus up to 50 deactivated and then revived when a 410 was
	// applied before its device's re-registration (the topics interleave).
	if got := counterValue(t, reg, "pushlane_feedback_tokens_deactivated_total", "token_dead"); got < 150 || got > 200 {
		t.Errorf("tokens deactivated (token_dead) = %v, want 150..200", got)
	}

	// ClickHouse summary against the in-memory oracle and hand counts.
	oracle := NewAccumulator()
	var rows []Row
	for _, r := range results {
		rows = append(rows, RowFromResult(r))
	}
	if err := oracle.Write(context.Background(), rows); err != nil {
		t.Fatal(err)
	}
	want, err := oracle.Summary("c1")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	got, err := Summary(ctx, e.ch, e.chdb, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("summary =\n%+v\nwant\n%+v", got, want)
	}
	hand := CampaignSummary{Devices: 1005, Results: 1255, Sent: 955, Delivered: 300, TokenDead: 205, Suspect: 250, Retried: 100,
		Failed: 100, Expired: 100, Cancelled: 100, InvalidToken: 100}
	if got.Devices != hand.Devices || got.Results != hand.Results || got.Sent != hand.Sent || got.Delivered != hand.Delivered ||
		got.TokenDead != hand.TokenDead || got.Suspect != hand.Suspect || got.Retried != hand.Retried || got.Failed != hand.Failed ||
		got.Expired != hand.Expired || got.Cancelled != hand.Cancelled || got.InvalidToken != hand.InvalidToken {
		t.Errorf("summary counts = %+v, want %+v", got, hand)
	}
	var text strings.Builder
	if err := WriteSummary(&text, got); err != nil {
		t.Fatal(err)
	}
	t.Logf("pushctl stats c1:\n%s", text.String())

	// Replay: a new group reads both topics from the start.
	before := snapshot(t, e.db)
	replay := e.group("feedback-replay")
	stop = e.start(t, replay, 3, prometheus.NewRegistry())
	e.waitCommitted(t, replay, total, 2*time.Minute)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, e.db); after != before {
		t.Errorf("replay changed MySQL:\nbefore\n%s\nafter\n%s", before, after)
	}
	again, err := Summary(ctx, e.ch, e.chdb, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if again != got {
		t.Errorf("summary after replay =\n%+v\nwant\n%+v", again, got)
	}
	var raw, final, distinct uint64
	if err := e.ch.QueryRow(ctx, "SELECT count(), uniqExact(result_id) FROM "+e.chdb+".results").Scan(&raw, &distinct); err != nil {
		t.Fatal(err)
	}
	if err := e.ch.QueryRow(ctx, "SELECT count() FROM "+e.chdb+".results FINAL").Scan(&final); err != nil {
		t.Fatal(err)
	}
	if distinct != 1255 || final != 1255 {
		t.Errorf("after replay: distinct result ids %d, rows FINAL %d; want 1255 each", distinct, final)
	}
	t.Logf("after replay: %d physical rows (duplicates until merged), %d distinct, %d FINAL", raw, distinct, final)
}

// TestIntegrationClickHouseDownAndUp stops the real ClickHouse while
// results flow, then starts it again: feedback stops committing, retries
// with backoff, and after recovery every result is in ClickHouse exactly
// once by result id.
func TestIntegrationClickHouseDownAndUp(t *testing.T) {
	e := newRealEnv(t)
	const n = 20000
	batch := func(from, to int) [][]byte {
		var out [][]byte
		for i := from; i < to; i++ {
			r := result(fmt.Sprintf("o%06d", i), "app", fmt.Sprintf("tok%06d", i), schemas.OutcomeDelivered, "", t0.Add(time.Duration(i)*time.Millisecond))
			r.LatencyMs = float64(i % 250)
			out = append(out, encode(t, r))
		}
		return out
	}
	reg := prometheus.NewRegistry()
	group := e.group("feedback-outage")
	stop := e.start(t, group, 3, reg)
	e.produce(t, e.results, batch(0, n/4))
	e.waitCommitted(t, group, n/4, time.Minute)

	testenv.StackCtl(t, "stop", "clickhouse")
	stopped := true
	t.Cleanup(func() {
		if stopped {
			testenv.StackCtl(t, "start", "clickhouse")
		}
	})
	e.produce(t, e.results, batch(n/4, n))
	// While ClickHouse is down nothing past the first quarter is committed
	// and the analytics step is retried.
	deadline := time.Now().Add(30 * time.Second)
	for counterValue(t, reg, "pushlane_feedback_retries_total", stepAnalytics) < 3 {
		if time.Now().After(deadline) {
			t.Fatal("no analytics retries while ClickHouse is down")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := e.committed(t, group); got != n/4 {
		t.Errorf("committed %d records while ClickHouse was down, want %d", got, n/4)
	}

	testenv.StackCtl(t, "start", "clickhouse")
	stopped = false
	e.waitCommitted(t, group, n, 2*time.Minute)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var distinct, final, minID, maxID uint64
	err := e.ch.QueryRow(ctx, "SELECT uniqExact(result_id), toUInt64(substring(min(result_id), 2)), toUInt64(substring(max(result_id), 2)) FROM "+e.chdb+".results").Scan(&distinct, &minID, &maxID)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.ch.QueryRow(ctx, "SELECT count() FROM "+e.chdb+".results FINAL").Scan(&final); err != nil {
		t.Fatal(err)
	}
	if distinct != n || final != n || minID != 0 || maxID != n-1 {
		t.Errorf("after recovery: %d distinct ids (o%06d..o%06d), %d rows FINAL; want %d, o000000..o%06d", distinct, minID, maxID, final, n, n-1)
	}
	s, err := Summary(ctx, e.ch, e.chdb, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if s.Delivered != n || s.Results != n {
		t.Errorf("summary after recovery = %+v, want %d delivered", s, n)
	}
	t.Logf("analytics retries during the outage: %v", counterValue(t, reg, "pushlane_feedback_retries_total", stepAnalytics))
}
