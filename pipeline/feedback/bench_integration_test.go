package feedback

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/internal/migrate"
	"github.com/pushlane/pushlane/internal/testenv"
	"github.com/pushlane/pushlane/schemas"
)

// BenchmarkFeedbackThroughput measures cmd/feedback as a separate process
// on the real stack: PUSHLANE_BENCH=N results (default 200000; 96%
// delivered, 2% token_dead, 1% suspect, 1% retryable, against seeded
// devices) are produced to Kafka first, then the binary consumes them into
// MariaDB and ClickHouse. Rate = results committed per second between the
// first commit and the last; RSS is the process's VmHWM. Figures go to
// docs/benchmarks.md; nothing is asserted about speed.
//
// It is a benchmark, not a test, so `go test ./...` never runs it:
//
//	eval "$(deploy/local/env)"; PUSHLANE_BENCH=200000 go test ./pipeline/feedback -run '^$' -bench BenchmarkFeedbackThroughput -benchtime 1x
func BenchmarkFeedbackThroughput(b *testing.B) {
	for range b.N {
		benchFeedbackThroughput(b)
	}
}

func benchFeedbackThroughput(t *testing.B) {
	t.StopTimer() // the figures are the process's own, reported below
	n, err := strconv.Atoi(os.Getenv("PUSHLANE_BENCH"))
	if err != nil || n < 1000 {
		n = 200000
	}
	brokers := testenv.KafkaBrokers(t)
	results := testenv.Topic(t, "results", 12, nil)
	regs := testenv.Topic(t, "registrations", 1, nil)
	dlq := testenv.Topic(t, "dead-letter", 1, nil)
	dsn, db := testenv.MySQL(t)
	chAddr, chdb, ch := testenv.ClickHouse(t)
	ctx := context.Background()
	if _, err := migrate.MySQL(ctx, db); err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.ClickHouse(ctx, ch, chdb); err != nil {
		t.Fatal(err)
	}
	// Seed the devices the dead and suspect results name.
	var hygiene []string
	for i := 0; i < n; i++ {
		if i%100 < 4 {
			hygiene = append(hygiene, fmt.Sprintf("%064x", i))
		}
	}
	for start := 0; start < len(hygiene); start += 1000 {
		chunk := hygiene[start:min(start+1000, len(hygiene))]
		q := "INSERT INTO devices (app, platform, token, registered_at) VALUES " + strings.TrimSuffix(strings.Repeat("('app', 'ios', ?, '2026-01-01'), ", len(chunk)), ", ")
		args := make([]any, len(chunk))
		for i, tok := range chunk {
			args[i] = tok
		}
		if _, err := db.Exec(q, args...); err != nil {
			t.Fatal(err)
		}
	}

	cl := testenv.KafkaClient(t, kgo.ProducerLinger(5*time.Millisecond))
	prodStart := time.Now()
	for start := 0; start < n; start += 10000 {
		var recs []*kgo.Record
		for i := start; i < min(start+10000, n); i++ {
			r := result(fmt.Sprintf("bench/%d/a1", i), "app", fmt.Sprintf("%064x", i), schemas.OutcomeDelivered, "", time.Now().UTC())
			r.Provider, r.ProviderID, r.Status, r.LatencyMs, r.LatenessMs = "apns", "7C3A2B1E-1111-2222-3333-444455556666", 200, float64(i%300), float64(i%1000)
			switch i % 100 {
			case 0, 1:
				r.Outcome, r.Reason, r.Status = schemas.OutcomeTokenDead, "Unregistered", 410
				r.ProviderTimestamp = time.Now().UTC()
			case 2:
				r.Outcome, r.Reason, r.Status = schemas.OutcomeTokenSuspect, "BadDeviceToken", 400
			case 3:
				r.Outcome, r.Reason, r.Status = schemas.OutcomeRetryable, "TooManyRequests", 429
			}
			recs = append(recs, &kgo.Record{Topic: results, Key: []byte(r.App + "/" + r.Token), Value: encode(t, r)})
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("produced %d results in %s", n, time.Since(prodStart).Round(time.Millisecond))

	bin := filepath.Join(t.TempDir(), "feedback")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/feedback").CombinedOutput(); err != nil {
		t.Fatalf("build cmd/feedback: %v\n%s", err, out)
	}
	prefix := "bench" + strconv.FormatInt(time.Now().UnixNano()%1e9, 10)
	cmd := exec.Command(bin)
	// The binary reads PUSHLANE_* as config: pass none of the test's own.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PUSHLANE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env,
		"PUSHLANE_KAFKA__BROKERS="+strings.Join(brokers, ","),
		"PUSHLANE_KAFKA__GROUP_PREFIX="+prefix,
		"PUSHLANE_KAFKA__TOPICS__RESULTS__NAME="+results,
		"PUSHLANE_KAFKA__TOPICS__REGISTRATIONS__NAME="+regs,
		"PUSHLANE_KAFKA__TOPICS__DEAD_LETTER__NAME="+dlq,
		"PUSHLANE_MYSQL__DSN="+dsn,
		"PUSHLANE_CLICKHOUSE__ADDR="+chAddr,
		"PUSHLANE_CLICKHOUSE__DATABASE="+chdb,
		"PUSHLANE_HTTP__ADDR=",
		"PUSHLANE_LOG__LEVEL=warn",
	)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	group := prefix + "-feedback"
	var firstAt time.Time
	var firstN int64
	deadline := time.Now().Add(10 * time.Minute)
	for {
		c := committedTotal(t, brokers, group, results, regs)
		if c > 0 && firstAt.IsZero() {
			firstAt, firstN = time.Now(), c
		}
		if c == int64(n) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("committed %d of %d", c, n)
		}
		select {
		case err := <-exited:
			t.Fatalf("cmd/feedback exited after committing %d of %d: %v", c, n, err)
		default:
		}
		time.Sleep(50 * time.Millisecond)
	}
	elapsed := time.Since(firstAt)
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := <-exited; err != nil {
		t.Errorf("cmd/feedback after SIGTERM: %v", err)
	}
	var hwm string
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			hwm = strings.TrimSpace(strings.TrimPrefix(l, "VmHWM:"))
		}
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	cpu := (utime + stime) / 100 // USER_HZ
	rate := float64(int64(n)-firstN) / elapsed.Seconds()
	s, err := Summary(ctx, ch, chdb, "c1")
	if err != nil {
		t.Fatal(err)
	}
	var inactive int
	if err := db.QueryRow("SELECT COUNT(*) FROM devices WHERE active = 0").Scan(&inactive); err != nil {
		t.Fatal(err)
	}
	if s.Results != uint64(n) {
		t.Errorf("ClickHouse holds %d distinct results, want %d", s.Results, n)
	}
	t.Logf("feedback: %d results (first commit at %d) in %s = %.0f results/s; process CPU %.1fs (%.1f µs/result); VmHWM %s; %d devices deactivated",
		n, firstN, elapsed.Round(time.Millisecond), rate, cpu, cpu*1e6/float64(n), hwm, inactive)
}
