package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/internal/migrate"
	"github.com/pushlane/pushlane/internal/testenv"
	"github.com/pushlane/pushlane/pipeline/control"
	pkafka "github.com/pushlane/pushlane/pipeline/kafka"
	"github.com/pushlane/pushlane/schemas"
)

// spec says what a test's pipeline looks like.
type spec struct {
	// Apps get their own simulators and a section in the config.
	Apps []string
	// Partitions of the campaigns, delay tiers, ready and results topics;
	// 0 means 2, 2, 4, 4.
	CampaignPartitions, DelayPartitions, ReadyPartitions, ResultsPartitions int
	// Tiers of the delay ladder; 0 means 8 (2^7 s = 128 s at the top).
	Tiers int
	// DynamicDispatchers runs dispatchers without -instance, as the
	// Kubernetes Deployment does: a stopped one leaves its group at once,
	// a killed one holds its partitions for the session timeout. Otherwise
	// each has a stable instance name (static membership), so a restarted
	// one takes its partitions back at once.
	DynamicDispatchers bool
	// Tune, if set, edits the config document before it is written.
	Tune func(doc map[string]any)
}

// pipeline is one test's isolated deployment: its own topics and group
// prefix on the shared Kafka, its own ClickHouse database, the shared
// seeded MySQL database, simulators per app, and the stage processes.
type pipeline struct {
	t       testing.TB
	Prefix  string
	CfgPath string
	Cfg     *config.Config
	Bin     string
	Logs    string
	Sims    map[string]*appSims
	Devices *sharedDevices
	CH      driver.Conn
	CHDB    string
	Kafka   *kgo.Client
	Admin   *kadm.Client

	procs   []*proc
	seq     map[string]int
	dynamic bool
	apps    map[string]string // campaign id → app, of published campaigns
}

// newPipeline builds the isolated deployment of sp, creates its topics and
// ClickHouse tables, and arranges for everything to be stopped and removed
// at cleanup. No stage runs yet: see Start.
func newPipeline(t testing.TB, sp spec) *pipeline {
	t.Helper()
	brokers := testenv.KafkaBrokers(t)
	shared := devices(t)
	chAddr, chDB, chConn := testenv.ClickHouse(t)
	p := &pipeline{
		t: t, Bin: binaries(t), Logs: logDir(t), Sims: map[string]*appSims{}, Devices: shared,
		CH: chConn, CHDB: chDB, seq: map[string]int{}, dynamic: sp.DynamicDispatchers, apps: map[string]string{},
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	h := fnv.New32a()
	h.Write([]byte(t.Name()))
	p.Prefix = fmt.Sprintf("e2e-%08x-%s", h.Sum32(), hex.EncodeToString(rnd[:]))

	apps := map[string]any{}
	for _, a := range sp.Apps {
		s := startSims(t, a)
		p.Sims[a] = s
		apps[a] = s.appConfig()
	}
	or := func(v, d int) int {
		if v == 0 {
			return d
		}
		return v
	}
	topic := func(name string, partitions int) map[string]any {
		return map[string]any{"name": p.Prefix + "." + name, "partitions": partitions}
	}
	doc := map[string]any{
		"apps": apps,
		"kafka": map[string]any{
			"brokers": brokers, "client_id": p.Prefix, "group_prefix": p.Prefix,
			"topics": map[string]any{
				"campaigns":     topic("campaigns", or(sp.CampaignPartitions, 2)),
				"control":       topic("campaign-control", 1),
				"delay":         topic("delay", or(sp.DelayPartitions, 2)),
				"ready":         topic("ready", or(sp.ReadyPartitions, 4)),
				"results":       topic("results", or(sp.ResultsPartitions, 4)),
				"dead_letter":   topic("dead-letter", 1),
				"registrations": topic("device-registrations", 1),
			},
		},
		"mysql":      map[string]any{"dsn": shared.dsn},
		"clickhouse": map[string]any{"addr": []string{chAddr}, "database": chDB},
		"http":       map[string]any{"addr": ""},
		"log":        map[string]any{"level": "info", "format": "json"},
		"delay":      map[string]any{"tiers": or(sp.Tiers, 8)},
		"feedback":   map[string]any{"flush_interval": "250ms"},
	}
	if sp.Tune != nil {
		sp.Tune(doc)
	}
	raw, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	p.CfgPath = filepath.Join(p.Logs, "pushlane.yaml")
	if err := os.WriteFile(p.CfgPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if p.Cfg, err = config.Load(p.CfgPath, nil); err != nil {
		t.Fatalf("e2e: generated config: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := migrate.ClickHouse(ctx, chConn, chDB); err != nil {
		t.Fatalf("e2e: migrate ClickHouse %s: %v", chDB, err)
	}
	p.Kafka = testenv.KafkaClient(t, kgo.ProducerLinger(0))
	p.Admin = kadm.NewClient(p.Kafka)
	p.createTopics(ctx)

	// Registered last, so it runs first: stages stop before the topics,
	// simulators and databases they use go away.
	t.Cleanup(p.cleanup)
	return p
}

// createTopics creates every topic of the layout and waits until each
// partition has a leader that answers offset requests.
func (p *pipeline) createTopics(ctx context.Context) {
	t := p.t
	specs := pkafka.Layout(p.Cfg)
	var names []string
	for _, s := range specs {
		names = append(names, s.Name)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := p.Admin.DeleteTopics(ctx, names...); err != nil {
			t.Logf("e2e: delete topics: %v", err)
		}
		groups := []string{"planner", "delay", "dispatcher", "feedback"}
		for i := range groups {
			groups[i] = p.Prefix + "-" + groups[i]
		}
		_, _ = p.Admin.DeleteGroups(ctx, groups...)
	})
	if _, err := pkafka.EnsureTopics(ctx, p.Admin, 1, specs); err != nil {
		t.Fatalf("e2e: create topics: %v", err)
	}
	for {
		missing, err := pkafka.VerifyTopics(ctx, p.Admin, specs)
		if err == nil && len(missing) == 0 {
			offs, err := p.Admin.ListEndOffsets(ctx, names...)
			if err == nil && offs.Error() == nil {
				n := 0
				offs.Each(func(kadm.ListedOffset) { n++ })
				want := 0
				for _, s := range specs {
					want += int(s.Partitions)
				}
				if n == want {
					return
				}
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("e2e: topics not usable: missing %v, %v", missing, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stageEnv is the environment of a stage process: the test's own minus any
// PUSHLANE_ variable (which would override the generated config), plus extra.
func stageEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, config.EnvPrefix) {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// Start runs one more instance of stage (planner, dispatcher or feedback)
// and waits until it is ready.
func (p *pipeline) Start(stage string) *proc {
	p.t.Helper()
	p.seq[stage]++
	return p.StartNamed(stage, fmt.Sprintf("%s-%d", stage, p.seq[stage]))
}

// Restart starts a process like pr again, under the same replica name (a
// restarted pod keeps its name).
func (p *pipeline) Restart(pr *proc) *proc {
	p.t.Helper()
	return p.StartNamed(pr.Stage, pr.Name)
}

// StartNamed runs stage as replica name: its Kafka client id is
// <prefix>-<name>, so group members can be told apart.
func (p *pipeline) StartNamed(stage, name string) *proc {
	p.t.Helper()
	args := []string{"-config", p.CfgPath}
	if stage == "planner" || stage == "dispatcher" && !p.dynamic {
		// The planner's transactional id needs a stable unique name.
		args = append(args, "-instance", name)
	}
	env := stageEnv("PUSHLANE_HTTP__ADDR=127.0.0.1:0", "PUSHLANE_KAFKA__CLIENT_ID="+p.ClientID(name))
	n := 0
	for _, q := range p.procs {
		if q.Name == name {
			n++
		}
	}
	logName := name + ".log"
	if n > 0 {
		logName = fmt.Sprintf("%s.run%d.log", name, n+1)
	}
	pr := startProc(p.t, name, stage, filepath.Join(p.Bin, stage), args, env, "/readyz", filepath.Join(p.Logs, logName))
	p.procs = append(p.procs, pr)
	p.t.Logf("e2e: started %s (pid %d, ops %s)", name, pr.cmd.Process.Pid, pr.OpsAddr)
	return pr
}

// ClientID is the Kafka client id of replica name.
func (p *pipeline) ClientID(name string) string { return p.Prefix + "-" + name }

// StartAll starts one instance of every stage.
func (p *pipeline) StartAll() map[string]*proc {
	p.t.Helper()
	out := map[string]*proc{}
	for _, s := range stageCommands {
		out[s] = p.Start(s)
	}
	return out
}

// Procs returns the processes started so far.
func (p *pipeline) Procs() []*proc { return slices.Clone(p.procs) }

func (p *pipeline) cleanup() {
	t := p.t
	for _, pr := range p.procs {
		if err := pr.unexpectedExit(); err != nil {
			t.Errorf("e2e: %s stopped on its own: %v\n%s", pr.Name, err, tail(pr.LogPath, 30))
		}
	}
	for _, pr := range p.procs {
		pr.Stop(t, 45*time.Second)
	}
	if t.Failed() {
		for _, pr := range p.procs {
			t.Logf("e2e: --- %s (log %s): first warnings and errors:", pr.Name, pr.LogPath)
			for _, l := range problems(pr.LogPath, 15) {
				t.Logf("    %s", l)
			}
			t.Logf("e2e: --- %s: last lines:\n%s", pr.Name, tail(pr.LogPath, 25))
		}
		t.Logf("e2e: logs and config kept in %s", p.Logs)
	}
}

// CheckAlive fails the test if a stage process stopped on its own.
func (p *pipeline) CheckAlive() {
	p.t.Helper()
	for _, pr := range p.procs {
		if err := pr.unexpectedExit(); err != nil {
			p.t.Fatalf("e2e: %s stopped on its own: %v\n%s", pr.Name, err, tail(pr.LogPath, 30))
		}
	}
}

// campaign returns a campaign to every active device of app, sent at sendAt
// (zero: now).
func campaign(id, app string, sendAt time.Time) schemas.Campaign {
	badge := 1
	return schemas.Campaign{
		SchemaVersion: schemas.SchemaVersion,
		ID:            id,
		Version:       1,
		App:           app,
		Audience:      schemas.Audience{Type: schemas.AudienceSegment},
		Content: schemas.Content{
			Title: "Spring sale", Body: "Everything 20% off until Sunday.", Badge: &badge, Sound: "default",
			Data: map[string]string{"deeplink": "shop://sale/spring"},
			Localized: map[string]schemas.LocalizedText{
				"de": {Title: "Frühlingsschlussverkauf", Body: "Alles 20% günstiger bis Sonntag."},
				"fr": {Title: "Soldes de printemps", Body: "Tout à -20% jusqu'à dimanche."},
			},
		},
		Schedule:  schemas.Schedule{Mode: schemas.DeliverAt, SendAt: sendAt},
		Options:   schemas.Options{Priority: schemas.PriorityHigh, PushType: "alert", TTLSeconds: 3600},
		CreatedAt: time.Now().UTC(),
	}
}

// Publish produces c to the campaigns topic as pushctl publish does and
// returns when the broker acknowledged it.
func (p *pipeline) Publish(c schemas.Campaign) time.Time {
	p.t.Helper()
	value, err := json.Marshal(c)
	if err != nil {
		p.t.Fatal(err)
	}
	if _, err := schemas.DecodeCampaign(value); err != nil {
		p.t.Fatalf("e2e: campaign %s is invalid: %v", c.ID, err)
	}
	p.apps[c.ID] = c.App
	return p.PublishRaw([]byte(c.ID), value, kgo.RecordHeader{Key: pkafka.HeaderSchema, Value: []byte("campaign.v1")},
		kgo.RecordHeader{Key: pkafka.HeaderCampaignID, Value: []byte(c.ID)})
}

// PublishRaw produces any bytes to the campaigns topic.
func (p *pipeline) PublishRaw(key, value []byte, headers ...kgo.RecordHeader) time.Time {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rec := &kgo.Record{Topic: p.Cfg.Kafka.Topics.Campaigns.Name, Key: key, Value: value, Headers: headers}
	if err := p.Kafka.ProduceSync(ctx, rec).FirstErr(); err != nil {
		p.t.Fatalf("e2e: publish %q (%d bytes): %v", key, len(value), err)
	}
	return time.Now()
}

// Control publishes a cancel, pause or resume and returns when the broker
// acknowledged it.
func (p *pipeline) Control(campaignID, action string) time.Time {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := control.Publish(ctx, p.Kafka, p.Cfg.Kafka.Topics.Control.Name, schemas.CampaignControl{
		SchemaVersion: schemas.SchemaVersion, CampaignID: campaignID, Action: action, Reason: "e2e", At: time.Now().UTC(),
	})
	if err != nil {
		p.t.Fatalf("e2e: %s %s: %v", action, campaignID, err)
	}
	return time.Now()
}

// DeadLetters reads the dead-letter topic from the start until it has n
// records or timeout passes, and returns what it read.
func (p *pipeline) DeadLetters(n int, timeout time.Duration) []schemas.DeadLetter {
	p.t.Helper()
	cl := testenv.KafkaClient(p.t, kgo.ConsumeTopics(p.Cfg.Kafka.Topics.DeadLetter.Name),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []schemas.DeadLetter
	for len(out) < n && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachError(func(topic string, part int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				p.t.Logf("e2e: read dead letters: %s/%d: %v", topic, part, err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) {
			var dl schemas.DeadLetter
			if err := json.Unmarshal(r.Value, &dl); err != nil {
				p.t.Errorf("e2e: dead letter at offset %d is not JSON: %v", r.Offset, err)
				return
			}
			out = append(out, dl)
		})
	}
	return out
}

// outcomes counts a campaign's results in ClickHouse by outcome, each result
// id once (replayed rows are merged lazily by ReplacingMergeTree).
func (p *pipeline) outcomes(ctx context.Context, campaignID string) (map[string]uint64, error) {
	rows, err := p.CH.Query(ctx, fmt.Sprintf(`SELECT outcome, count() FROM (
		SELECT result_id, any(outcome) AS outcome FROM %s.results WHERE campaign_id = ? GROUP BY result_id
	) GROUP BY outcome`, p.CHDB), campaignID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]uint64{}
	for rows.Next() {
		var o string
		var n uint64
		if err := rows.Scan(&o, &n); err != nil {
			return nil, err
		}
		out[o] = n
	}
	return out, rows.Err()
}

// finalDevices counts a campaign's devices with a final result in
// ClickHouse: any outcome but retryable (which says a retry follows).
func (p *pipeline) finalDevices(ctx context.Context, campaignID string) (uint64, error) {
	var n uint64
	err := p.CH.QueryRow(ctx, fmt.Sprintf(`SELECT uniqExact(app, token) FROM (
		SELECT result_id, any(app) AS app, any(token) AS token, any(outcome) AS outcome
		FROM %s.results WHERE campaign_id = ? GROUP BY result_id
	) WHERE outcome != 'retryable'`, p.CHDB), campaignID).Scan(&n)
	return n, err
}

// tokensWith returns the distinct tokens of a campaign's results with outcome.
func (p *pipeline) tokensWith(ctx context.Context, campaignID, outcome string) (map[string]bool, error) {
	rows, err := p.CH.Query(ctx, fmt.Sprintf(`SELECT DISTINCT token FROM %s.results WHERE campaign_id = ? AND outcome = ?`, p.CHDB), campaignID, outcome)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var tok string
		if err := rows.Scan(&tok); err != nil {
			return nil, err
		}
		out[tok] = true
	}
	return out, rows.Err()
}

// WaitFinal waits until every one of want devices of the campaign has a
// final result in ClickHouse, logging progress, and returns when it saw
// the last one. It polls with a cheap row count and runs the deduplicated
// count only once the rows could be complete: polling with GROUP BY
// result_id over a million rows would cost ClickHouse more CPU than
// inserting them, and slow down the pipeline being measured.
func (p *pipeline) WaitFinal(campaignID string, want int, timeout time.Duration) time.Time {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	lastLog := time.Now()
	var rows, n uint64
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := p.CH.QueryRow(ctx, fmt.Sprintf(`SELECT countIf(outcome != 'retryable') FROM %s.results WHERE campaign_id = ?`, p.CHDB), campaignID).Scan(&rows)
		if err == nil && rows >= uint64(want) {
			n, err = p.finalDevices(ctx, campaignID)
		}
		cancel()
		if err != nil {
			p.t.Logf("e2e: count results of %s: %v", campaignID, err)
		}
		if n >= uint64(want) {
			return time.Now()
		}
		p.CheckAlive()
		if time.Now().After(deadline) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			n, _ = p.finalDevices(ctx, campaignID)
			got, _ := p.outcomes(ctx, campaignID)
			missing := p.withoutResult(ctx, campaignID)
			cancel()
			p.t.Fatalf("e2e: campaign %s: %d of %d devices have a final result after %s; outcomes %v%s", campaignID, n, want, timeout, got, missing)
		}
		if time.Since(lastLog) > 10*time.Second {
			p.t.Logf("e2e: campaign %s: %d result rows of %d devices", campaignID, rows, want)
			lastLog = time.Now()
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// withoutResult describes the seeded devices of a published campaign's app
// that have no result at all (for a failure message): their seed index
// (id order), platform and kind.
func (p *pipeline) withoutResult(ctx context.Context, campaignID string) string {
	app, ok := p.apps[campaignID]
	if !ok {
		return ""
	}
	pop, ok := p.Devices.apps[app]
	if !ok {
		return ""
	}
	rows, err := p.CH.Query(ctx, fmt.Sprintf(`SELECT DISTINCT token FROM %s.results WHERE campaign_id = ?`, p.CHDB), campaignID)
	if err != nil {
		return fmt.Sprintf("; tokens with results: %v", err)
	}
	defer rows.Close()
	seen := map[string]bool{}
	for rows.Next() {
		var tok string
		if rows.Scan(&tok) == nil {
			seen[tok] = true
		}
	}
	var out []string
	n := 0
	for i, d := range pop.Devices {
		if !seen[d.Token] {
			n++
			if len(out) < 20 {
				out = append(out, fmt.Sprintf("#%d %s %s %.12s…", i, d.Platform, d.Kind, d.Token))
			}
		}
	}
	return fmt.Sprintf("; %d seeded devices of %s without any result: %v", n, app, out)
}

// deactivated returns the app's inactive tokens with their reasons.
func (p *pipeline) deactivated(app string) map[string]string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := p.Devices.db.QueryContext(ctx, `SELECT token, COALESCE(deactivation_reason, '') FROM devices WHERE app = ? AND active = 0`, app)
	if err != nil {
		p.t.Fatalf("e2e: read deactivated devices of %s: %v", app, err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var tok, reason string
		if err := rows.Scan(&tok, &reason); err != nil {
			p.t.Fatal(err)
		}
		out[tok] = reason
	}
	if err := rows.Err(); err != nil {
		p.t.Fatal(err)
	}
	return out
}

// WaitDeactivated waits until the app has want inactive devices (feedback
// applies deaths in batches, possibly after the ClickHouse rows).
func (p *pipeline) WaitDeactivated(app string, want int, timeout time.Duration) map[string]string {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := p.deactivated(app)
		if len(got) >= want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// sortedKeys is for stable messages.
func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// firstN shortens a list for a failure message.
func firstN(s []string, n int) []string {
	if len(s) > n {
		return append(slices.Clone(s[:n]), fmt.Sprintf("… (%d in all)", len(s)))
	}
	return s
}

// groupMember is one member of a consumer group and the partitions it owns.
type groupMember struct {
	ClientID, InstanceID string
	Partitions           int
	Topics               kadm.TopicsSet
}

// GroupMembers describes the stage's consumer group (<prefix>-<stage>),
// whichever protocol it uses: KIP-848 consumer groups first, then classic.
func (p *pipeline) GroupMembers(stage string) ([]groupMember, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	group := p.Prefix + "-" + stage
	var out []groupMember
	if cgs, err := p.Admin.DescribeConsumerGroups(ctx, group); err == nil {
		if g, ok := cgs[group]; ok && g.Err == nil && len(g.Members) > 0 {
			for _, m := range g.Members {
				gm := groupMember{ClientID: m.ClientID, Topics: m.Assignment}
				if m.InstanceID != nil {
					gm.InstanceID = *m.InstanceID
				}
				for _, ps := range m.Assignment {
					gm.Partitions += len(ps)
				}
				out = append(out, gm)
			}
			return out, nil
		}
	}
	gs, err := p.Admin.DescribeGroups(ctx, group)
	if err != nil {
		return nil, err
	}
	g, ok := gs[group]
	if !ok {
		return nil, fmt.Errorf("group %s not described", group)
	}
	if g.Err != nil {
		return nil, fmt.Errorf("group %s: %w", group, g.Err)
	}
	for _, m := range g.Members {
		gm := groupMember{ClientID: m.ClientID, Topics: kadm.TopicsSet{}}
		if m.InstanceID != nil {
			gm.InstanceID = *m.InstanceID
		}
		if a, ok := m.Assigned.AsConsumer(); ok {
			for _, tp := range a.Topics {
				for _, part := range tp.Partitions {
					gm.Topics.Add(tp.Topic, part)
					gm.Partitions++
				}
			}
		}
		out = append(out, gm)
	}
	return out, nil
}

// WaitGroup waits until the stage's group has members members that
// together own all partitions partitions, each owning at least one.
func (p *pipeline) WaitGroup(stage string, members, partitions int, timeout time.Duration) []groupMember {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	var last []groupMember
	var lastErr error
	for time.Now().Before(deadline) {
		last, lastErr = p.GroupMembers(stage)
		if lastErr == nil && len(last) == members {
			total, each := 0, true
			for _, m := range last {
				total += m.Partitions
				each = each && m.Partitions > 0
			}
			if total == partitions && each {
				return last
			}
		}
		p.CheckAlive()
		time.Sleep(200 * time.Millisecond)
	}
	p.t.Fatalf("e2e: group %s-%s: want %d members sharing %d partitions; have %+v (err %v)", p.Prefix, stage, members, partitions, last, lastErr)
	return nil
}

// WaitAccepted waits until the app's simulators accepted at least n sends.
func (p *pipeline) WaitAccepted(app string, n int64, timeout time.Duration) int64 {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := p.Sims[app].accepted()
		if got >= n {
			return got
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("e2e: %s: %d sends accepted after %s, waiting for %d", app, got, timeout, n)
		}
		p.CheckAlive()
		time.Sleep(20 * time.Millisecond)
	}
}
