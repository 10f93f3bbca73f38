package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
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

	"github.com/pushlane/pushlane/internal/testenv"
	"github.com/pushlane/pushlane/schemas"
)

// BenchmarkPlanner measures the planner on the real stack: the real
// command plans one campaign of N devices seeded in MariaDB and produces
// its batches to the real Kafka. The figures are the command's own
// "campaign planned" log (first page read to last commit) and its peak RSS
// (VmHWM). It takes minutes; PUSHLANE_BENCH_SIZES chooses the sizes
// (default 100000,1000000).
//
//	eval "$(deploy/local/env)"; go test ./cmd/planner -run '^$' -bench BenchmarkPlanner -benchtime 1x -v -timeout 40m
func BenchmarkPlanner(b *testing.B) {
	sizes := []int{100000, 1000000}
	if s := os.Getenv("PUSHLANE_BENCH_SIZES"); s != "" {
		sizes = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(f)
			if err != nil {
				b.Fatal(err)
			}
			sizes = append(sizes, n)
		}
	}
	bin := filepath.Join(b.TempDir(), "planner")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	for _, n := range sizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for range b.N {
				benchOne(b, bin, n)
			}
		})
	}
}

func benchOne(t *testing.B, bin string, n int) {
	logLevel := "info"
	if os.Getenv("PUSHLANE_BENCH_DEBUG") != "" {
		logLevel = "debug"
	}
	s := newPlannerStack(t, "plannerbench", 1, 6, "{apns: {environment: development, topic: com.example, cert_file: %q}}", "log:\n  level: "+logLevel+"\n")
	campaigns, cfgPath := s.campaigns, s.configPath
	// Half iOS (64 hex digits), half Android (a 163-character FCM token),
	// with user ids, locales and zones, like a production table.
	seedStart := time.Now()
	if _, err := s.db.Exec(fmt.Sprintf(`INSERT INTO devices (id, app, user_id, platform, token, locale, timezone, registered_at)
		SELECT seq, 'shop', CONCAT('user-', seq DIV 2), IF(seq %% 2, 'ios', 'android'),
		       IF(seq %% 2, LPAD(HEX(seq), 64, '0'), CONCAT('fcm-', seq, ':APA91bHPRgkF3JUikC4ENAHEeMrd41Zxv3hVZjC9KtT8OvPVGJ-hQMRKRrZuJAEcl7B338qju59zJMjw2DELjzEvxwYv7hH5Ynpc1ODQ0aT4U4OFEeco8ohsN5PjL1iC2dNtk2BAok')),
		       ELT(1 + seq %% 4, 'en-US', 'de-DE', 'fr', NULL), ELT(1 + seq %% 3, 'Europe/Berlin', 'America/New_York', NULL), NOW(3)
		FROM seq_1_to_%d`, n)); err != nil {
		t.Fatal(err)
	}
	t.Logf("seeded %d devices in %s", n, time.Since(seedStart).Round(time.Millisecond))

	logs := &testenv.SyncBuffer{}
	cmd := exec.Command(bin, "-config", cfgPath, "-instance", "bench")
	cmd.Stdout, cmd.Stderr = logs, logs
	// The PUSHLANE_BENCH switches are not config keys.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PUSHLANE_BENCH") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
		exited <- nil
	}()
	// Let the planner join its group before the campaign arrives, so the
	// figure is planning, not start-up.
	time.Sleep(3 * time.Second)
	c := schemas.Campaign{SchemaVersion: 1, ID: "bench", App: "shop", Audience: schemas.Audience{Type: schemas.AudienceSegment},
		Content: schemas.Content{Title: "Spring sale", Body: "Everything 20% off until Sunday"}, Schedule: schemas.Schedule{Mode: schemas.DeliverAt}}
	raw, _ := json.Marshal(c)
	if err := testenv.KafkaClient(t).ProduceSync(context.Background(), &kgo.Record{Topic: campaigns, Key: []byte(c.ID), Value: raw}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	var stats testenv.ProcStats
	sample := func() {
		if st, err := testenv.ReadProcStats(cmd.Process.Pid); err == nil {
			stats = st
		}
	}
	deadline := time.Now().Add(3 * time.Minute)
	var planned map[string]any
	for planned == nil {
		if time.Now().After(deadline) {
			t.Fatalf("not planned in time:\n%s", logs.String())
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("planner exited (%v):\n%s", err, logs.String())
		default:
		}
		sample()
		sc := bufio.NewScanner(bytes.NewReader(logs.Bytes()))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "planner: campaign planned" {
				planned = m
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	sample()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := <-exited; err != nil {
		t.Fatalf("planner exited with %v:\n%s", err, logs.String())
	}
	exited <- nil
	took := time.Duration(planned["took"].(float64))
	devices, batches := planned["devices"].(float64), planned["batches"].(float64)
	if int(devices) != n {
		t.Fatalf("planned %v devices of %d", devices, n)
	}
	// Anything unusual on the way (a retry, a rebalance) is part of the
	// figure: show it.
	sc := bufio.NewScanner(bytes.NewReader(logs.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) != nil {
			continue
		}
		if msg := fmt.Sprint(m["msg"]); m["level"] == "WARN" || m["level"] == "ERROR" ||
			strings.Contains(msg, "resuming") || strings.Contains(msg, "abort") || strings.Contains(msg, "abandoned") ||
			os.Getenv("PUSHLANE_BENCH_DEBUG") != "" && strings.Contains(msg, "kafka client") {
			t.Logf("planner: %s", sc.Text())
		}
	}
	waitMySQL := time.Duration(planned["waited_for_mysql"].(float64))
	waitKafka := time.Duration(planned["waited_for_kafka_commits"].(float64))
	if os.Getenv("PUSHLANE_BENCH_GCTRACE") != "" {
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.HasPrefix(line, "gc ") {
				t.Log(line)
			}
		}
	}
	load, _ := os.ReadFile("/proc/loadavg")
	t.ReportMetric(took.Seconds(), "s/plan")
	t.ReportMetric(devices/took.Seconds(), "rows/s")
	t.ReportMetric(batches/took.Seconds(), "batches/s")
	t.ReportMetric(float64(stats.PeakRSSKiB)/1024, "peakRSS_MiB")
	t.Logf("BENCH devices=%d batches=%.0f took=%s rows/s=%.0f batches/s=%.0f peak_rss=%.1fMiB cpu=%.2fs waited_for_mysql=%s waited_for_kafka_commits=%s loadavg=%s",
		n, batches, took.Round(time.Millisecond), devices/took.Seconds(), batches/took.Seconds(), float64(stats.PeakRSSKiB)/1024, stats.CPU.Seconds(),
		waitMySQL.Round(time.Millisecond), waitKafka.Round(time.Millisecond), strings.Fields(string(load))[0])
}
