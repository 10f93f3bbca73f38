package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pushlane/pushlane/internal/embedded"
	"github.com/pushlane/pushlane/internal/testenv"
	"github.com/pushlane/pushlane/pipeline/feedback"
)

// TestRealDemoOnTheLocalStack runs the demo with -real against
// deploy/local's Kafka, MariaDB and ClickHouse, isolated in its own topics,
// group prefix and databases, twice: the second run proves the seed resets
// the demo app so a repeated demo gives the same result.
func TestRealDemoOnTheLocalStack(t *testing.T) {
	chAddr, chDB, chConn := testenv.ClickHouse(t)
	path, _ := realDemoConfig(t, map[string]any{"clickhouse": map[string]any{"addr": []string{chAddr}, "database": chDB}})

	for run := 1; run <= 2; run++ {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		o := demoOptions{Devices: 400, Delayed: 2 * time.Second, BatchSize: 100, Timeout: 2 * time.Minute,
			Real: true, ConfigPath: path, Dir: t.TempDir(), Progress: "lines", Environ: nil}
		var out bytes.Buffer
		res, err := runDemo(ctx, o, &out)
		cancel()
		if err != nil {
			t.Fatalf("run %d: demo did not run: %v\n%s", run, err, out.String())
		}
		if len(res.Problems) > 0 {
			t.Fatalf("run %d: problems %q\n%s", run, res.Problems, out.String())
		}
		live := res.Pop.Count(embedded.KindLive, "")
		if int(res.APNsAccepted+res.FCMAccepted) != live || len(res.Report.deactivated) != res.Pop.Count(embedded.KindDead, "") {
			t.Fatalf("run %d: accepted %d+%d, deactivated %d; want %d live, %d dead", run, res.APNsAccepted, res.FCMAccepted,
				len(res.Report.deactivated), live, res.Pop.Count(embedded.KindDead, ""))
		}
		if !strings.Contains(out.String(), "analytics rows: ClickHouse "+chAddr) {
			t.Errorf("run %d: output does not name ClickHouse:\n%s", run, out.String())
		}
		// ClickHouse holds the same summary feedback's accumulator gave.
		for _, want := range res.Report.summaries {
			sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
			got, err := feedback.Summary(sctx, chConn, chDB, want.CampaignID)
			scancel()
			if err != nil {
				t.Fatalf("run %d: ClickHouse summary of %s: %v", run, want.CampaignID, err)
			}
			if got.Delivered != want.Delivered || got.TokenDead != want.TokenDead || got.Suspect != want.Suspect || got.Results != want.Results {
				t.Errorf("run %d: ClickHouse summary %+v, accumulator %+v", run, got, want)
			}
		}
	}
}
