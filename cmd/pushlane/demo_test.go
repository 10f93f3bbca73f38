package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pushlane/pushlane/internal/embedded"
	"github.com/pushlane/pushlane/pipeline/feedback"
	"github.com/pushlane/pushlane/providers/apnssim"
	"github.com/pushlane/pushlane/schemas"
)

func embeddedOptions(t *testing.T) demoOptions {
	return demoOptions{Devices: 600, Delayed: 2 * time.Second, BatchSize: 100, Timeout: 90 * time.Second,
		Dir: t.TempDir(), Progress: "lines"}
}

// TestEmbeddedDemoDeliversEveryLiveDeviceOnce runs the README's first
// command in-process on a small seed and checks the outcome against the
// seeded truth, from the simulators, the store and the analytics file,
// independently of the demo's own report.
func TestEmbeddedDemoDeliversEveryLiveDeviceOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o := embeddedOptions(t)
	var out bytes.Buffer
	published := time.Now()
	res, err := runDemo(ctx, o, &out)
	if err != nil {
		t.Fatalf("demo did not run: %v\n%s", err, out.String())
	}
	if len(res.Problems) > 0 {
		t.Fatalf("demo found problems: %q\n%s", res.Problems, out.String())
	}
	pop := res.Pop
	if len(pop.Devices) != 600 {
		t.Fatalf("seeded %d devices, want 600", len(pop.Devices))
	}
	liveIOS, liveAndroid := 0, 0
	for _, d := range pop.Devices {
		if d.Kind == embedded.KindLive {
			if d.Platform == schemas.PlatformIOS {
				liveIOS++
			} else {
				liveAndroid++
			}
		}
	}
	if res.APNsAccepted != int64(liveIOS) || res.FCMAccepted != int64(liveAndroid) {
		t.Errorf("simulators accepted APNs %d FCM %d, want %d and %d", res.APNsAccepted, res.FCMAccepted, liveIOS, liveAndroid)
	}

	// Exactly the dead tokens are deactivated, each for the provider's reason.
	var gotDead []string
	for _, d := range res.Report.deactivated {
		gotDead = append(gotDead, d.Token)
		want := "Unregistered"
		if d.Platform == schemas.PlatformAndroid {
			want = "UNREGISTERED"
		}
		if d.Reason != want {
			t.Errorf("token %s deactivated for %q, want %q", d.Token, d.Reason, want)
		}
	}
	wantDead := pop.Tokens(embedded.KindDead)
	sort.Strings(gotDead)
	sort.Strings(wantDead)
	if strings.Join(gotDead, ",") != strings.Join(wantDead, ",") || len(wantDead) != 600/67 {
		t.Errorf("deactivated %d tokens %v, want the %d dead %v", len(gotDead), gotDead, len(wantDead), wantDead)
	}

	// Feedback's summaries, per part: the planner's planned count is the
	// part's audience, and outcomes add up to it.
	ja := 0
	for _, d := range pop.Devices {
		if d.Locale == "ja" {
			ja++
		}
	}
	if len(res.Report.summaries) != 2 {
		t.Fatalf("%d summaries, want 2", len(res.Report.summaries))
	}
	now, later := res.Report.summaries[0], res.Report.summaries[1]
	if now.Planned != uint64(600-ja) || later.Planned != uint64(ja) || now.PlannedSource != "mysql" {
		t.Errorf("planned %d (%s) and %d, want %d and %d", now.Planned, now.PlannedSource, later.Planned, 600-ja, ja)
	}
	var delivered, dead, suspect uint64
	for _, s := range res.Report.summaries {
		delivered += s.Delivered
		dead += s.TokenDead
		suspect += s.Suspect
		if s.Delivered+s.TokenDead+s.Suspect != s.Planned || s.Failed+s.Expired+s.Cancelled+s.InvalidToken != 0 {
			t.Errorf("summary %+v does not add up to its planned devices", s)
		}
	}
	if delivered != uint64(liveIOS+liveAndroid) || dead != uint64(len(wantDead)) || suspect != 3 {
		t.Errorf("delivered %d dead %d suspect %d, want %d %d 3", delivered, dead, suspect, liveIOS+liveAndroid, len(wantDead))
	}

	// The analytics file has one row per result, and the later part was
	// not sent before its send-at.
	acc := feedback.NewAccumulator()
	f, err := os.Open(filepath.Join(o.Dir, "analytics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := feedback.ReadRows(f, acc); err != nil {
		t.Fatal(err)
	}
	fromFile, err := acc.Summary(later.CampaignID)
	if err != nil || fromFile.Delivered != later.Delivered || fromFile.Results != later.Results {
		t.Errorf("analytics file summary of %s: %+v (%v), want delivered %d results %d", later.CampaignID, fromFile, err, later.Delivered, later.Results)
	}
	_, _ = f.Seek(0, 0)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	laterRows := 0
	for sc.Scan() {
		var r feedback.Row
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		if r.CampaignID != later.CampaignID {
			continue
		}
		laterRows++
		if r.SendAt.Before(published.Add(o.Delayed)) || r.At.Before(r.SendAt) {
			t.Errorf("later part row sent at %s for send-at %s; published %s + %s", r.At, r.SendAt, published, o.Delayed)
		}
	}
	if laterRows != ja {
		t.Errorf("%d rows of the later part, want %d", laterRows, ja)
	}

	for _, want := range []string{fmt.Sprintf("published 2 campaign(s):\n  %-32s en de fr es pt devices, now\n  %-32s ja devices, at ", now.CampaignID, later.CampaignID), "tokens deactivated in MySQL (8):", "ok    every live device delivered exactly once",
		"ok    every dead token deactivated", "ok    every suspect token has one strike and stays active: 3", "analytics rows (JSON lines): " + filepath.Join(o.Dir, "analytics.jsonl")} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestEmbeddedDemoFailsWhenADeviceIsNotDelivered makes the APNs simulator
// answer one live device as unregistered: the demo must report exactly what
// differed, so it is a smoke test that can fail.
func TestEmbeddedDemoFailsWhenADeviceIsNotDelivered(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o := embeddedOptions(t)
	o.Delayed = 0
	pop := embedded.SeedSpec{App: embedded.DemoApp, Devices: o.Devices}.Population()
	var victim string
	for _, d := range pop.Devices {
		if d.Kind == embedded.KindLive && d.Platform == schemas.PlatformIOS {
			victim = d.Token
			break
		}
	}
	o.beforePublish = func(s *embedded.Simulators) {
		s.APNs.SetTokenRule(victim, apnssim.Rule{Status: 410, Reason: "Unregistered"})
	}
	var out bytes.Buffer
	res, err := runDemo(ctx, o, &out)
	if err != nil {
		t.Fatalf("demo did not run: %v\n%s", err, out.String())
	}
	all := strings.Join(res.Problems, "\n")
	for _, want := range []string{
		"live devices not accepted exactly once 1: " + short(victim) + " (ios) accepted 0 times",
		"deactivated but not dead 1: " + short(victim) + " (Unregistered)",
		fmt.Sprintf("summary: planned 600, delivered %d, token dead %d, suspect 3", pop.Count(embedded.KindLive, "")-1, pop.Count(embedded.KindDead, "")+1),
	} {
		if !strings.Contains(all, want) {
			t.Errorf("problems lack %q:\n%s", want, all)
		}
	}
	if len(res.Problems) != 3 {
		t.Errorf("%d problems, want 3:\n%s", len(res.Problems), all)
	}
}

// TestEmbeddedDemoWithAnEmptyPart: one device, so the delayed part's
// audience is empty; the demo must not wait for results that never come.
func TestEmbeddedDemoWithAnEmptyPart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	o := embeddedOptions(t)
	o.Devices, o.Timeout = 1, 30*time.Second
	var out bytes.Buffer
	res, err := runDemo(ctx, o, &out)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Problems) > 0 || len(res.Report.summaries) != 2 || res.Report.summaries[1].Planned != 0 {
		t.Fatalf("problems %q, summaries %+v\n%s", res.Problems, res.Report.summaries, out.String())
	}
}
