package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/internal/embedded"
	"github.com/pushlane/pushlane/internal/mysqldb"
	"github.com/pushlane/pushlane/internal/testenv"
	pkafka "github.com/pushlane/pushlane/pipeline/kafka"
)

// realDemoConfig writes a -real config for deploy/local's Kafka and MariaDB
// (analytics to a file unless extra names ClickHouse) with its own random
// topic names and group prefix, the fixed names a user's config has; extra
// adds top-level sections. The topics and groups are deleted at cleanup.
func realDemoConfig(t *testing.T, extra map[string]any) (string, *config.Config) {
	t.Helper()
	brokers := testenv.KafkaBrokers(t)
	dsn, _ := testenv.MySQL(t)
	adm := testenv.KafkaAdmin(t)
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	prefix := "pushlane-demo-rerun-" + hex.EncodeToString(rnd[:])
	topic := func(name string, partitions int) map[string]any {
		return map[string]any{"name": prefix + "." + name, "partitions": partitions}
	}
	doc := map[string]any{
		"kafka": map[string]any{
			"brokers": brokers, "client_id": prefix, "group_prefix": prefix,
			"topics": map[string]any{
				"campaigns": topic("campaigns", 1), "control": topic("campaign-control", 1), "delay": topic("delay", 1),
				"ready": topic("ready", 2), "results": topic("results", 2), "dead_letter": topic("dead-letter", 1),
				"registrations": topic("device-registrations", 1),
			},
		},
		"mysql":    map[string]any{"dsn": dsn},
		"http":     map[string]any{"addr": ""},
		"delay":    map[string]any{"tiers": 6},
		"feedback": map[string]any{"flush_interval": "200ms"},
	}
	for k, v := range extra {
		doc[k] = v
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "real.yaml")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var names []string
		for _, s := range pkafka.Layout(cfg) {
			names = append(names, s.Name)
		}
		_, _ = adm.DeleteTopics(ctx, names...)
		var groups []string
		for _, g := range demoGroups(cfg) {
			groups = append(groups, g.Name)
		}
		_, _ = adm.DeleteGroups(ctx, groups...)
	})
	return path, cfg
}

// TestRealDemoRepeatsAfterAnInterruptedRun interrupts a -real demo just
// after it published its campaigns, leaving work in its topics (the
// campaigns, ready batches, the delayed part in a delay tier, results not
// yet applied), then runs it again with the same config, as a user would
// after Ctrl-C: the second run must skip those leftovers and pass every
// check with exit status 0. Without the skip, it sends the first run's
// batches to the same seeded tokens again and fails.
func TestRealDemoRepeatsAfterAnInterruptedRun(t *testing.T) {
	path, cfg := realDemoConfig(t, nil)
	adm := testenv.KafkaAdmin(t)

	// Run 1, interrupted 100 ms after publishing. Whatever the planner and
	// the dispatcher got done by then, the delayed part (the ja devices,
	// due 4 s after publishing) is not sent: its campaign is not planned
	// or its batches wait in a delay tier.
	const delayed = 4 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o := demoOptions{Devices: 400, Delayed: delayed, BatchSize: 50, Timeout: time.Minute,
		Real: true, ConfigPath: path, Dir: t.TempDir(), Progress: "lines"}
	var sims *embedded.Simulators
	o.beforePublish = func(s *embedded.Simulators) { sims = s }
	o.afterPublish = func() { time.AfterFunc(100*time.Millisecond, cancel) }
	var out1 bytes.Buffer
	res, err := runDemo(ctx, o, &out1)
	if err != nil {
		t.Fatalf("run 1: demo did not run: %v\n%s", err, out1.String())
	}
	if len(res.Problems) == 0 {
		t.Fatalf("run 1 was not interrupted in time: it finished\n%s", out1.String())
	}
	// Counted at run 1's simulators, not guessed from how long its stop
	// took: none of the delayed part's devices was sent.
	db, err := mysqldb.Open(config.MySQL{DSN: cfg.MySQL.DSN}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.QueryContext(context.Background(), `SELECT token FROM devices WHERE app = ? AND locale LIKE 'ja%'`, embedded.DemoApp)
	if err != nil {
		t.Fatal(err)
	}
	ja, sent := 0, 0
	for rows.Next() {
		var token string
		if err := rows.Scan(&token); err != nil {
			t.Fatal(err)
		}
		ja++
		sent += sims.APNs.AcceptedFor(token) + sims.FCM.AcceptedFor(token)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if ja == 0 || sent != 0 {
		t.Fatalf("run 1 sent %d of the delayed part's %d ja devices; want 0 of some", sent, ja)
	}
	t.Logf("run 1, interrupted: %q", res.Problems[0])

	// Every group the stages used is one skipLeftovers knows, consuming
	// only topics it knows: a stage that gains a group or a topic must be
	// added to demoGroups.
	known := map[string][]string{}
	for _, g := range demoGroups(cfg) {
		known[g.Name] = g.Topics
	}
	lctx, lcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer lcancel()
	listed, err := adm.ListGroups(lctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, name := range listed.Groups() {
		if !strings.HasPrefix(name, cfg.Kafka.GroupPrefix+"-") {
			continue
		}
		topics, ok := known[name]
		if !ok {
			t.Errorf("the stages used group %s, which demoGroups does not list", name)
			continue
		}
		seen++
		offs, err := adm.FetchOffsets(lctx, name)
		if err != nil {
			t.Fatal(err)
		}
		for topic := range offs {
			if !slices.Contains(topics, topic) {
				t.Errorf("group %s committed offsets on %s, which demoGroups does not list for it", name, topic)
			}
		}
	}
	if seen < 3 {
		t.Errorf("found %d of the demo's groups after run 1; want the planner's, the dispatcher's and feedback's at least", seen)
	}

	// Run 2, through the command line, right away: the first run's planner
	// is still a static member of its group. It runs at least until its
	// own delayed part, due later than run 1's: without the skip, run 1's
	// leftovers (its ja devices at least) are sent during it, to the same
	// seeded tokens, and its simulators count them.
	var out2, errOut bytes.Buffer
	ctx2, cancel2 := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel2()
	code := run(ctx2, []string{"demo", "-real", "-config", path, "-devices", "400", "-delayed", delayed.String(),
		"-batch-size", "50", "-progress", "lines", "-dir", t.TempDir()}, &out2, &errOut, nil)
	if code != 0 {
		t.Fatalf("run 2: exit status %d, want 0\nstderr:\n%s\nstdout:\n%s\nrun 1:\n%s", code, errOut.String(), out2.String(), out1.String())
	}
	m := regexp.MustCompile(`skipped (?:about )?(\d+) leftover record`).FindStringSubmatch(out2.String())
	if m == nil {
		t.Fatalf("run 2 does not say it skipped leftovers:\n%s", out2.String())
	}
	if n, _ := strconv.Atoi(m[1]); n == 0 {
		t.Errorf("run 2 skipped no leftovers:\n%s", out2.String())
	}
	if !strings.Contains(out2.String(), `removed the planner's static member "demo" of an earlier run`) {
		t.Errorf("run 2 did not replace run 1's static planner member:\n%s", out2.String())
	}
	for _, want := range []string{"ok    every live device delivered exactly once", "ok    every suspect token has one strike"} {
		if !strings.Contains(out2.String(), want) {
			t.Errorf("run 2's output lacks %q:\n%s", want, out2.String())
		}
	}
	t.Logf("run 2: %s", strings.TrimSpace(regexp.MustCompile(`(?m)^skipped .*$`).FindString(out2.String())))
}

// TestRealDemoRefusesToRunBesideAnother: while a member that is not an
// earlier run's planner stays in one of the demo's groups (here a consumer
// in the feedback group, as a demo still running has), a -real demo does
// not touch the groups' offsets: it waits, then gives up with
// errDemoRunning (exit status 2).
func TestRealDemoRefusesToRunBesideAnother(t *testing.T) {
	path, cfg := realDemoConfig(t, nil)
	adm := testenv.KafkaAdmin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := pkafka.EnsureTopics(ctx, adm, cfg.Kafka.Topics.ReplicationFactor, pkafka.Layout(cfg)); err != nil {
		t.Fatal(err)
	}
	var group string
	for _, g := range demoGroups(cfg) {
		if g.Stage == "feedback" {
			group = g.Name
		}
	}
	other := testenv.KafkaClient(t, kgo.ConsumerGroup(group), kgo.ConsumeTopics(cfg.Kafka.Topics.Results.Name),
		kgo.ClientID("other-demo"))
	pollCtx, stopPolling := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for pollCtx.Err() == nil {
			other.PollFetches(pollCtx)
		}
	})
	defer func() { stopPolling(); wg.Wait() }()
	for {
		d, err := adm.DescribeGroups(ctx, group)
		if err == nil && len(d[group].Members) > 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the other member never joined %s: %v", group, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	before := committedOf(t, adm, demoGroups(cfg))

	o := demoOptions{Devices: 50, Delayed: 0, BatchSize: 50, Timeout: time.Minute,
		Real: true, ConfigPath: path, Dir: t.TempDir(), Progress: "none", groupWait: 3 * time.Second}
	var out bytes.Buffer
	_, err := runDemo(ctx, o, &out)
	if !errors.Is(err, errDemoRunning) {
		t.Fatalf("demo beside another: err %v, want errDemoRunning\n%s", err, out.String())
	}
	if !strings.Contains(err.Error(), "other-demo") || !strings.Contains(out.String(), "waiting up to 3s") {
		t.Errorf("the error or output does not name the member it waited for: %v\n%s", err, out.String())
	}
	if after := committedOf(t, adm, demoGroups(cfg)); !equalOffsets(before, after) {
		t.Errorf("committed offsets changed: %v, then %v", before, after)
	}
	t.Logf("refused: %v", err)
}

func committedOf(t *testing.T, adm *kadm.Client, groups []demoGroup) map[string]kadm.Offsets {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := map[string]kadm.Offsets{}
	for _, g := range groups {
		offs, err := adm.FetchOffsets(ctx, g.Name)
		if err != nil {
			t.Fatal(err)
		}
		m[g.Name] = offs.Offsets()
	}
	return m
}

func equalOffsets(a, b map[string]kadm.Offsets) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}
