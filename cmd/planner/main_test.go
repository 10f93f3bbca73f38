package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/internal/testenv"
	"github.com/pushlane/pushlane/schemas"
)

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	sa := writeFile(t, dir, "sa.json", "{}")
	cfgPath := writeFile(t, dir, "pushlane.yaml", fmt.Sprintf(`
mysql:
  dsn: "pushlane:s3cret@tcp(127.0.0.1:3306)/pushlane"
apps:
  shop:
    fcm:
      project_id: shop-1
      service_account_file: %s
planner:
  page_size: 2000
`, sa))
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"-config", cfgPath, "-check-config", "-instance", "p-0"}, &out, &errOut); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	if strings.Contains(out.String(), "s3cret") {
		t.Fatalf("the password was printed:\n%s", out.String())
	}
	for _, line := range []string{"planner.page_size = 2000", "planner.batches_per_transaction = 200", `mysql.dsn = "pushlane:******@tcp(127.0.0.1:3306)/pushlane"`} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("printed config lacks %q:\n%s", line, out.String())
		}
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	sa := writeFile(t, dir, "sa.json", "{}")
	app := fmt.Sprintf("apps:\n  shop:\n    fcm:\n      project_id: p\n      service_account_file: %s\n", sa)
	for _, c := range []struct {
		yaml, args, want string
	}{
		{app, "", "config: mysql.dsn: required"},
		{"mysql:\n  dsn: \"u:p@tcp(h:3306)/d\"\n", "", "config: apps: at least one app is required"},
		{app + "mysql:\n  dsn: \"u:p@tcp(h:3306)/d\"\n", "-instance=", "planner: config: instance: required"},
		{app + "mysql:\n  dsn: \"u:p@tcp(h:3306)/d\"\nplanner:\n  page_size: 0\n", "", "config: planner.page_size: must be at least 1"},
	} {
		p := writeFile(t, dir, "c.yaml", c.yaml)
		args := []string{"-config", p, "-check-config"}
		if c.args != "" {
			args = append(args, c.args)
		}
		err := run(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || err.Error() != c.want {
			t.Errorf("%q: got %v, want %s", c.yaml, err, c.want)
		}
	}
}

// TestProcessKilledMidCampaign runs the real command against the real
// stack, SIGKILLs it once a few chunks are committed, starts it again, and
// stops it with SIGTERM once the campaign is planned: every batch is
// committed exactly once, and the second process exits cleanly.
func TestProcessKilledMidCampaign(t *testing.T) {
	s := newPlannerStack(t, "plannercmd", 2, 3, "{fcm: {project_id: p, service_account_file: %q}}", `planner:
  page_size: 500
  batches_per_transaction: 4
`)
	campaigns, ready, cfgPath := s.campaigns, s.ready, s.configPath
	const devices = 20000
	if _, err := s.db.Exec(`INSERT INTO devices (id, app, platform, token)
		SELECT seq, 'shop', 'ios', LPAD(HEX(seq), 64, '0') FROM seq_1_to_20000`); err != nil {
		t.Fatal(err)
	}
	adm := testenv.KafkaAdmin(t)

	bin := filepath.Join(t.TempDir(), "planner")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	start := func(name string) (*exec.Cmd, *bytes.Buffer) {
		var logs bytes.Buffer
		cmd := exec.Command(bin, "-config", cfgPath, "-instance", "p-0")
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			}
			if t.Failed() {
				t.Logf("%s output:\n%s", name, logs.String())
			}
		})
		return cmd, &logs
	}

	c := schemas.Campaign{SchemaVersion: 1, ID: "cmd-kill", App: "shop", Audience: schemas.Audience{Type: schemas.AudienceSegment},
		Content: schemas.Content{Title: "t"}, Schedule: schemas.Schedule{Mode: schemas.DeliverAt}, Options: schemas.Options{BatchSize: 10}}
	raw, _ := json.Marshal(c)
	prod := testenv.KafkaClient(t)
	if err := prod.ProduceSync(context.Background(), &kgo.Record{Topic: campaigns, Key: []byte(c.ID), Value: raw}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	group := campaigns + "-planner"
	checkpointChunks := func() (chunks int, done bool) {
		ctx, cancel := context.WithTimeout(kadm.RequireStable(context.Background()), 5*time.Second)
		defer cancel()
		offs, err := adm.FetchOffsetsForTopics(ctx, group, campaigns)
		if err != nil {
			return 0, false
		}
		offs.Each(func(o kadm.OffsetResponse) {
			if i := strings.Index(o.Metadata, `"k":`); i >= 0 {
				fmt.Sscanf(o.Metadata[i+4:], "%d", &chunks)
			}
			if o.At == 1 && o.Metadata == "" {
				done = true
			}
		})
		return chunks, done
	}
	wait := func(what string, ok func() bool) {
		deadline := time.Now().Add(2 * time.Minute)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	first, _ := start("first planner")
	var killedAt int
	wait("a few committed chunks", func() bool {
		n, done := checkpointChunks()
		if done {
			t.Fatal("the campaign finished before the kill; make it bigger")
		}
		killedAt = n
		return n >= 3
	})
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	t.Logf("killed after %d chunks", killedAt)

	second, logs := start("second planner")
	wait("the campaign planned", func() bool { _, done := checkpointChunks(); return done })
	if err := second.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := second.Wait(); err != nil {
		t.Fatalf("second planner exited with %v after SIGTERM", err)
	}
	if !strings.Contains(logs.String(), "resuming campaign from its checkpoint") {
		t.Errorf("the second planner did not resume from a checkpoint")
	}

	// Read back every committed batch.
	cl := testenv.KafkaClient(t, kgo.ConsumeTopics(ready), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	seen := map[string]int{}
	var ids []int64
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for len(seen) < devices/10 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d batches", len(seen), devices/10)
		}
		fs.EachRecord(func(r *kgo.Record) {
			b, err := schemas.DecodeBatch(r.Value)
			if err != nil {
				t.Fatal(err)
			}
			seen[b.ID]++
			for _, d := range b.Devices {
				ids = append(ids, d.DeviceID)
			}
		})
	}
	// Nothing more arrives: no committed duplicate after the last new id.
	mctx, mcancel := context.WithTimeout(context.Background(), time.Second)
	cl.PollFetches(mctx).EachRecord(func(r *kgo.Record) { seen[string(r.Key)]++ })
	mcancel()
	for id, n := range seen {
		if n != 1 {
			t.Errorf("batch %s committed %d times", id, n)
		}
	}
	slices.Sort(ids)
	if uniq := slices.Compact(slices.Clone(ids)); len(ids) != devices || len(uniq) != devices || ids[0] != 1 || ids[len(ids)-1] != devices {
		t.Errorf("%d device ids, want exactly 1..%d", len(ids), devices)
	}
}
