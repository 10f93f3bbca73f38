package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/pipeline/control"
	"github.com/pushlane/pushlane/pipeline/delay"
	"github.com/pushlane/pushlane/pipeline/kafka"
	"github.com/pushlane/pushlane/schemas"
)

// stack is a Kafka for one test, the environment pointing pushctl at it,
// and clients for the test's own reads and writes.
type stack struct {
	env []string
	cl  *kgo.Client
	adm *kadm.Client
	cfg *config.Config
}

// run invokes pushctl against the stack.
func (s *stack) run(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	return pushctl(t, stdin, s.env, append([]string{"-timeout", "20s"}, args...)...)
}

// records reads every record of topic.
func (s *stack) records(t *testing.T, topic string) []*kgo.Record {
	t.Helper()
	c := &cli{environ: s.env, now: time.Now}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	recs, err := c.readTopic(ctx, s.cfg, topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// withTopics creates the layout of s.cfg through pushctl itself.
func (s *stack) withTopics(t *testing.T) *stack {
	t.Helper()
	if r := s.run(t, "", "topics"); r.code != exitOK {
		t.Fatalf("topics: %+v", r)
	}
	s.waitUsable(t)
	return s
}

// newStackOn points a stack at brokers. name gives each pipeline topic
// (campaigns, control, ...) its name on this cluster and prefix the group
// prefix, so tests sharing a broker do not meet; environ adds settings.
func newStackOn(t *testing.T, brokers []string, name func(string) string, prefix string, environ ...string) *stack {
	t.Helper()
	env := []string{"PUSHLANE_KAFKA__BROKERS=" + strings.Join(brokers, ","), "PUSHLANE_DELAY__TIERS=3",
		"PUSHLANE_KAFKA__GROUP_PREFIX=" + prefix, "PUSHLANE_KAFKA__TOPICS__REPLICATION_FACTOR=1"}
	for _, topic := range []string{"campaigns", "control", "delay", "ready", "results", "dead_letter", "registrations"} {
		env = append(env, "PUSHLANE_KAFKA__TOPICS__"+strings.ToUpper(topic)+"__NAME="+name(topic))
	}
	env = append(env, environ...)
	cfg, err := config.Load("", env)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &stack{env: env, cl: cl, adm: kadm.NewClient(cl), cfg: cfg}
}

// topics returns the stack's topic names.
func (s *stack) topics() config.Topics { return s.cfg.Kafka.Topics }

// cells splits tabwriter output into rows of cells.
func cells(out string) [][]string {
	var rows [][]string
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		rows = append(rows, regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(line), -1))
	}
	return rows
}

func TestTopicsCommand(t *testing.T) { onEachKafka(t, testTopicsCommand) }

func testTopicsCommand(t *testing.T, newStack stackFactory) {
	s := newStack(t)
	T := s.topics()
	names := []string{}
	for _, spec := range kafka.Layout(s.cfg) {
		names = append(names, spec.Name)
	}
	want := []string{T.Campaigns.Name, T.Control.Name, T.Ready.Name, T.Results.Name, T.DeadLetter.Name, T.Registrations.Name,
		T.Delay.Name + ".t00", T.Delay.Name + ".t01", T.Delay.Name + ".t02"}
	if !slices.Equal(names, want) {
		t.Fatalf("layout %v", names)
	}

	r := s.run(t, "", "topics", "-check")
	var missing []string
	for _, n := range names {
		missing = append(missing, n+": missing")
	}
	expect(t, r, exitFailed, "", "pushctl topics: 9 problems:\n  "+strings.Join(missing, "\n  ")+"\n")

	r = s.run(t, "", "topics")
	var created strings.Builder
	for _, n := range names {
		created.WriteString("created " + n + "\n")
	}
	expect(t, r, exitOK, created.String()+"ok: 9 topics as configured\n", "")

	expect(t, s.run(t, "", "topics"), exitOK, "ok: 9 topics as configured\n", "")
	expect(t, s.run(t, "", "topics", "-check"), exitOK, "ok: 9 topics as configured\n", "")

	// Someone changed a tier to producer timestamps and the control topic
	// to deletion: both break the pipeline silently, so -check says so.
	ctx := context.Background()
	if _, err := s.adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "message.timestamp.type", Value: kadm.StringPtr("CreateTime")}}, T.Delay.Name+".t01"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "cleanup.policy", Value: kadm.StringPtr("delete")}}, T.Control.Name); err != nil {
		t.Fatal(err)
	}
	// The broker applies altered configs through its metadata log, so a
	// describe right after the alter can still see the old values.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		r = s.run(t, "", "topics", "-check")
		if strings.Count(r.stderr, "\n  ") >= 2 || time.Now().After(deadline) {
			break
		}
	}
	expect(t, r, exitFailed, "", "pushctl topics: 2 problems:\n"+
		"  "+T.Control.Name+": cleanup.policy is \"delete\", want \"compact\"\n"+
		"  "+T.Delay.Name+".t01: message.timestamp.type is \"CreateTime\", want \"LogAppendTime\"\n")

	// A tier created under an older, shorter default would delete batches
	// before they are due: -check says so and topics raises it. A topic
	// that keeps records longer than configured is left as it is.
	if _, err := s.adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "retention.ms", Value: kadm.StringPtr("259200000")}}, T.Delay.Name+".t02"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "retention.ms", Value: kadm.StringPtr("-1")}}, T.Delay.Name+".t00"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		r = s.run(t, "", "topics", "-check")
		if strings.Count(r.stderr, "\n  ") >= 3 || time.Now().After(deadline) {
			break
		}
	}
	twoProblems := "  " + T.Control.Name + ": cleanup.policy is \"delete\", want \"compact\"\n" +
		"  " + T.Delay.Name + ".t01: message.timestamp.type is \"CreateTime\", want \"LogAppendTime\"\n"
	expect(t, r, exitFailed, "", "pushctl topics: 3 problems:\n"+twoProblems+
		"  "+T.Delay.Name+".t02: retention.ms is 259200000 (72h0m0s), want at least 2678400000 (744h0m0s)\n")
	expect(t, s.run(t, "", "topics"), exitFailed, T.Delay.Name+".t02: retention.ms raised from 259200000 (72h0m0s) to 2678400000 (744h0m0s)\n",
		"pushctl topics: 2 problems:\n"+twoProblems)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		r = s.run(t, "", "topics", "-check")
		if strings.Count(r.stderr, "\n  ") <= 2 || time.Now().After(deadline) {
			break
		}
	}
	expect(t, r, exitFailed, "", "pushctl topics: 2 problems:\n"+twoProblems)
	rcs, err := s.adm.DescribeTopicConfigs(ctx, T.Delay.Name+".t00")
	if err != nil {
		t.Fatal(err)
	}
	if v, err := rcs.On(T.Delay.Name+".t00", nil); err != nil || retentionOf(v.Configs) != "-1" {
		t.Errorf("t00 retention.ms %q (%v), want -1 kept", retentionOf(v.Configs), err)
	}
}

func retentionOf(cs []kadm.Config) string {
	for _, c := range cs {
		if c.Key == "retention.ms" {
			return c.MaybeValue()
		}
	}
	return ""
}

func TestPublishCommand(t *testing.T) { onEachKafka(t, testPublishCommand) }

func testPublishCommand(t *testing.T, newStack stackFactory) {
	s := newStack(t).withTopics(t)
	r := s.run(t, "", "publish", "-app", "shop", "-id", "spring-sale", "-segment", "-platforms", "ios", "-title", "Spring sale", "-at", "+1h")
	expect(t, r, exitOK, "spring-sale\n", "")
	r = s.run(t, "", "publish", "-f", "../../schemas/examples/campaign/local-time-localized.json")
	expect(t, r, exitOK, "morning-digest-2026-03-29\n", "")

	recs := s.records(t, s.topics().Campaigns.Name)
	if len(recs) != 2 {
		t.Fatalf("%d campaign records, want 2", len(recs))
	}
	byKey := map[string]*kgo.Record{}
	for _, r := range recs {
		byKey[string(r.Key)] = r
	}
	rec := byKey["spring-sale"]
	if rec == nil {
		t.Fatalf("no record keyed spring-sale: %v", recs)
	}
	if v, _ := kafka.Header(rec, kafka.HeaderSchema); v != "campaign.v1" {
		t.Errorf("schema header %q", v)
	}
	c, err := schemas.DecodeCampaign(rec.Value)
	if err != nil {
		t.Fatal(err)
	}
	if c.ID != "spring-sale" || c.App != "shop" || c.Content.Title != "Spring sale" || !c.Schedule.SendAt.Equal(testNow.Add(time.Hour)) ||
		!slices.Equal(c.Audience.Platforms, []string{"ios"}) {
		t.Errorf("published %+v", *c)
	}
	digest, err := schemas.DecodeCampaign(byKey["morning-digest-2026-03-29"].Value)
	if err != nil || digest.Schedule.LocalTime != "09:00" || digest.Content.Localized["de"].Title != "Ihr Morgenüberblick" {
		t.Errorf("published %+v %v", digest, err)
	}
}

func TestPublishToMissingTopicFails(t *testing.T) { onEachKafka(t, testPublishToMissingTopicFails) }

func testPublishToMissingTopicFails(t *testing.T, newStack stackFactory) {
	s := newStack(t)
	r := pushctl(t, "", s.env, "-timeout", "5s", "publish", "-app", "shop", "-id", "x", "-segment", "-title", "x")
	if r.code != exitFailed || r.stdout != "" || !strings.HasPrefix(r.stderr, "pushctl publish: produce campaign x to "+s.topics().Campaigns.Name+": ") {
		t.Errorf("%+v", r)
	}
}

func TestControlCommands(t *testing.T) { onEachKafka(t, testControlCommands) }

func testControlCommands(t *testing.T, newStack stackFactory) {
	s := newStack(t).withTopics(t)
	ts := testNow.Format(time.RFC3339)
	ctl := s.topics().Control.Name

	expect(t, s.run(t, "", "cancel", "spring-sale", "-reason", "wrong discount"), exitOK,
		"cancel spring-sale: written to "+ctl+"/0@0\n", "")
	expect(t, s.run(t, "", "pause", "spring-sale"), exitFailed, "",
		"pushctl pause: campaign spring-sale was cancelled at "+ts+" (wrong discount): cancel is final, it cannot be paused\n")
	expect(t, s.run(t, "", "resume", "spring-sale"), exitFailed, "",
		"pushctl resume: campaign spring-sale was cancelled at "+ts+" (wrong discount): cancel is final, it cannot be resumed\n")
	expect(t, s.run(t, "", "cancel", "spring-sale"), exitOK,
		"cancel spring-sale: already cancelled at "+ts+" (wrong discount); nothing written\n", "")

	expect(t, s.run(t, "", "resume", "update-5"), exitOK, "resume update-5: not paused; nothing written\n", "")
	expect(t, s.run(t, "", "pause", "update-5", "-reason", "support overloaded"), exitOK,
		"pause update-5: written to "+ctl+"/0@1\n", "")
	expect(t, s.run(t, "", "pause", "update-5"), exitOK,
		"pause update-5: already paused at "+ts+" (support overloaded); nothing written\n", "")
	expect(t, s.run(t, "", "resume", "update-5"), exitOK, "resume update-5: written to "+ctl+"/0@2\n", "")
	expect(t, s.run(t, "", "cancel", "update-5"), exitOK, "cancel update-5: written to "+ctl+"/0@3\n", "")

	recs := s.records(t, ctl)
	var got []string
	for _, r := range recs {
		c, err := schemas.DecodeCampaignControl(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		if want := control.Key(*c); string(r.Key) != want {
			t.Errorf("record keyed %q holds %s %s, want key %q", r.Key, c.Action, c.CampaignID, want)
		}
		if v, _ := kafka.Header(r, kafka.HeaderSchema); v != "campaign-control.v1" {
			t.Errorf("schema header %q", v)
		}
		got = append(got, fmt.Sprintf("%s %s %q", c.Action, c.CampaignID, c.Reason))
	}
	want := []string{`cancel spring-sale "wrong discount"`, `pause update-5 "support overloaded"`, `resume update-5 ""`, `cancel update-5 ""`}
	if !slices.Equal(got, want) {
		t.Errorf("control topic:\n got %q\nwant %q", got, want)
	}

	// Another producer resumes spring-sale after its cancel. The stages
	// ignore it, and so does pushctl: the cancel is still the state.
	r, err := control.Record(ctl, schemas.CampaignControl{CampaignID: "spring-sale", Action: schemas.ControlResume, At: testNow})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
		t.Fatal(err)
	}
	expect(t, s.run(t, "", "pause", "spring-sale"), exitFailed, "",
		"pushctl pause: campaign spring-sale was cancelled at "+ts+" (wrong discount): cancel is final, it cannot be paused\n")
}

// deadLetters produces two dead letters as the stages do and returns their
// positions in the dead-letter topic.
func deadLetters(t *testing.T, s *stack) (string, string) {
	t.Helper()
	T := s.topics()
	invalidCampaign := &kgo.Record{Topic: T.Campaigns.Name, Partition: 4, Offset: 1289, Key: []byte("broken-1"),
		Value:   []byte(`{"schema_version":1,"id":"broken-1","app":"shop","audience":{"type":"tokens"},"content":{"title":"Hi"},"schedule":{"mode":"at"}}`),
		Headers: []kgo.RecordHeader{{Key: kafka.HeaderSchema, Value: []byte("campaign.v1")}, {Key: "traceparent", Value: []byte("00-ab-cd-01")}}}
	garbage := &kgo.Record{Topic: T.Ready.Name, Partition: 0, Offset: 77, Key: []byte("b-9"), Value: []byte("\x00\x01garbage\n")}
	at := time.Date(2026, 3, 20, 9, 0, 3, 500_000_000, time.UTC)
	_, reason := schemas.DecodeCampaign(invalidCampaign.Value)
	dl1, err := kafka.DeadLetterRecord(T.DeadLetter.Name, "planner", invalidCampaign, reason.Error(), at)
	if err != nil {
		t.Fatal(err)
	}
	_, reason = schemas.DecodeBatch(garbage.Value)
	dl2, err := kafka.DeadLetterRecord(T.DeadLetter.Name, "dispatcher", garbage, reason.Error(), at.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cl.ProduceSync(context.Background(), dl1, dl2).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d:%d", dl1.Partition, dl1.Offset), fmt.Sprintf("%d:%d", dl2.Partition, dl2.Offset)
}

func TestDLQCommands(t *testing.T) { onEachKafka(t, testDLQCommands) }

func testDLQCommands(t *testing.T, newStack stackFactory) {
	s := newStack(t).withTopics(t)
	T := s.topics()
	expect(t, s.run(t, "", "dlq", "list"), exitOK, "no dead letters in "+T.DeadLetter.Name+"\n", "")
	first, second := deadLetters(t, s)

	r := s.run(t, "", "dlq", "list")
	rows := [][]string{
		{"POSITION", "AT", "STAGE", "SOURCE", "REASON"},
		{first, "2026-03-20T09:00:03Z", "planner", T.Campaigns.Name + "/4@1289", "invalid campaign: /audience: missing property 'tokens'"},
		{second, "2026-03-20T09:01:03Z", "dispatcher", T.Ready.Name + "/0@77", `invalid batch: not JSON: invalid character '\x00' looking for beginning of value at byte 1`},
	}
	if got := cells(r.stdout); r.code != exitOK || r.stderr != "" || !reflect.DeepEqual(got, rows) {
		t.Errorf("dlq list: exit %d %q\n got %q\nwant %q", r.code, r.stderr, got, rows)
	}
	r = s.run(t, "", "dlq", "list", "-n", "1")
	if got := cells(r.stdout); !reflect.DeepEqual(got, [][]string{rows[0], rows[2]}) {
		t.Errorf("dlq list -n 1: %q", got)
	}
	r = s.run(t, "", "dlq", "list", "-stage", "planner")
	if got := cells(r.stdout); !reflect.DeepEqual(got, [][]string{rows[0], rows[1]}) {
		t.Errorf("dlq list -stage planner: %q", got)
	}

	r = s.run(t, "", "dlq", "list", "-stage", "dispatcher", "-json")
	var line map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &line); err != nil || strings.Count(r.stdout, "\n") != 1 {
		t.Fatalf("json list %q: %v", r.stdout, err)
	}
	if fmt.Sprintf("%v:%v", line["partition"], line["offset"]) != second || line["stage"] != "dispatcher" || line["at"] != "2026-03-20T09:01:03.5Z" ||
		fmt.Sprint(line["source"]) != "map[offset:77 partition:0 topic:"+T.Ready.Name+"]" || line["reason"] != rows[2][4] {
		t.Errorf("json line %v", line)
	}

	r = s.run(t, "", "dlq", "show", first)
	expect(t, r, exitOK, "dead letter:  "+first+"\n"+
		"at:           2026-03-20T09:00:03.5Z\n"+
		"stage:        planner\n"+
		"source:       "+T.Campaigns.Name+"/4@1289\n"+
		"reason:       invalid campaign: /audience: missing property 'tokens'\n"+
		"key:          broken-1\n"+
		"headers:      pushlane-schema: campaign.v1\n"+
		"              traceparent: 00-ab-cd-01\n"+
		"value (128 bytes):\n"+
		`{"schema_version":1,"id":"broken-1","app":"shop","audience":{"type":"tokens"},"content":{"title":"Hi"},"schedule":{"mode":"at"}}`+"\n", "")
	r = s.run(t, "", "dlq", "show", second)
	if !strings.HasSuffix(r.stdout, "value (10 bytes):\n\"\\x00\\x01garbage\\n\"\n") {
		t.Errorf("binary value shown as %q", r.stdout)
	}
	expect(t, s.run(t, "", "dlq", "show", second, "-raw"), exitOK, "\x00\x01garbage\n", "")

	// Errors name the position.
	expect(t, s.run(t, "", "dlq", "show", "7:0"), exitFailed, "", "pushctl dlq: "+T.DeadLetter.Name+" has no partition 7 (it has 3)\n")
	p := strings.Split(first, ":")[0]
	expect(t, s.run(t, "", "dlq", "show", p+":99"), exitFailed, "", "pushctl dlq: no dead letter at "+p+":99: partition "+p+" ends at offset "+endOf(t, s, p)+"\n")

	// The original is still invalid: nothing is sent.
	r = s.run(t, "", "dlq", "redrive", first)
	expect(t, r, exitInvalid, "", "pushctl dlq: the original bytes of "+first+": still invalid, not re-driven: invalid campaign: /audience: missing property 'tokens'\n")
	fixed := filepath.Join(t.TempDir(), "fixed.json")
	if err := os.WriteFile(fixed, []byte(`{"schema_version":1,"id":"broken-1","app":"shop","audience":{"type":"tokens","tokens":["abc"]},"content":{"title":"Hi"},"schedule":{"mode":"at"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	r = s.run(t, "", "dlq", "redrive", first, "-f", fixed)
	if r.code != exitOK || !strings.HasPrefix(r.stdout, "re-drove "+first+" ("+fixed+") to "+T.Campaigns.Name+"/") {
		t.Fatalf("redrive: %+v", r)
	}
	recs := s.records(t, T.Campaigns.Name)
	if len(recs) != 1 {
		t.Fatalf("%d campaign records after the re-drive, want 1", len(recs))
	}
	c, err := schemas.DecodeCampaign(recs[0].Value)
	if err != nil || c.Audience.Tokens[0] != "abc" || string(recs[0].Key) != "broken-1" {
		t.Errorf("re-driven %v %v key %q", c, err, recs[0].Key)
	}
	for k, v := range map[string]string{kafka.HeaderSchema: "campaign.v1", "traceparent": "00-ab-cd-01",
		headerRedrivenFrom: T.DeadLetter.Name + "/" + strings.Replace(first, ":", "@", 1)} {
		if got, _ := kafka.Header(recs[0], k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	// A fixed file that is still wrong is refused too.
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"schema_version":2}`), 0o600); err != nil {
		t.Fatal(err)
	}
	r = s.run(t, "", "dlq", "redrive", first, "-f", bad)
	if r.code != exitInvalid || !strings.Contains(r.stderr, bad+" of "+first+": still invalid, not re-driven: invalid campaign: /: missing properties") {
		t.Errorf("%+v", r)
	}
	if n := len(s.records(t, T.Campaigns.Name)); n != 1 {
		t.Errorf("%d campaign records after refused re-drives, want 1", n)
	}
}

func TestDLQRedriveBatch(t *testing.T) { onEachKafka(t, testDLQRedriveBatch) }

// A tier record the ladder dead-letters for its send-at header comes back
// from a re-drive with its key and scheduling headers taken from the batch
// itself, the hop count kept; a fixed file's new schedule is what routes it.
func testDLQRedriveBatch(t *testing.T, newStack stackFactory) {
	s := newStack(t).withTopics(t)
	tier := s.cfg.DelayTiers()[1]
	batch := func(sendAt, expiry string) []byte {
		return []byte(`{"schema_version":1,"id":"spring:v1::4","campaign_id":"spring","campaign_version":1,"app":"shop","seq":4,"attempt":1,` +
			`"send_at":"` + sendAt + `"` + expiry + `,"content":{"title":"Hi"},"options":{},` +
			`"devices":[{"token":"7f3c1a0e9b2d4c6f8a1e3b5d7c9f0a2b4d6e8f0a1c3e5b7d9f1a3c5e7b9d0f2a","platform":"ios"}]}`)
	}
	src := &kgo.Record{Topic: tier, Partition: 1, Offset: 40, Key: []byte("spring:v1::4"),
		Value: batch("2026-03-20T10:00:00Z", `,"expires_at":"2026-03-20T12:00:00Z"`),
		Headers: []kgo.RecordHeader{{Key: kafka.HeaderSchema, Value: []byte("batch.v1")}, {Key: kafka.HeaderBatchID, Value: []byte("spring:v1::4")},
			{Key: kafka.HeaderSendAt, Value: []byte("tomorrow")}, {Key: kafka.HeaderHop, Value: []byte("3")}, {Key: "traceparent", Value: []byte("00-ab-cd-01")}}}
	dl, err := kafka.DeadLetterRecord(s.topics().DeadLetter.Name, "delay", src, "tier record without a readable "+kafka.HeaderSendAt+" header", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cl.ProduceSync(context.Background(), dl).FirstErr(); err != nil {
		t.Fatal(err)
	}
	pos := fmt.Sprintf("%d:%d", dl.Partition, dl.Offset)

	// Its send_at is past: from a tier it goes where the planner would
	// write it now, the ready topic.
	ready := s.topics().Ready.Name
	if r := s.run(t, "", "dlq", "redrive", pos); r.code != exitOK || !strings.HasPrefix(r.stdout, "re-drove "+pos+" (the original bytes) to "+ready+"/") {
		t.Fatalf("redrive: %+v", r)
	}
	fixed := filepath.Join(t.TempDir(), "fixed.json")
	if err := os.WriteFile(fixed, batch("2026-03-21T08:30:00Z", ""), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := s.run(t, "", "dlq", "redrive", pos, "-f", fixed); r.code != exitOK {
		t.Fatalf("redrive -f: %+v", r)
	}

	// A fix to a send_at 30 minutes ahead goes to the tier that fits it,
	// not back to its source tier, where it would hold the records behind
	// it (its hop kept, it counts as forwarded).
	ahead := time.Now().Add(30 * time.Minute).UTC().Truncate(time.Second)
	if err := os.WriteFile(fixed, batch(ahead.Format(time.RFC3339), ""), 0o600); err != nil {
		t.Fatal(err)
	}
	wantTier := delay.LadderFrom(s.cfg).Route(ahead, time.Now())
	if r := s.run(t, "", "dlq", "redrive", pos, "-f", fixed); r.code != exitOK || !strings.Contains(r.stdout, " to "+wantTier+"/") || wantTier == tier {
		t.Fatalf("redrive -f (30 min ahead): %+v, want it on %s (not the source %s)", r, wantTier, tier)
	}
	if recs := s.records(t, tier); len(recs) != 0 {
		t.Errorf("%d records re-driven back to the source tier %s, want none", len(recs), tier)
	}

	recs := s.records(t, ready)
	if len(recs) != 2 {
		t.Fatalf("%d records in %s after two re-drives, want 2", len(recs), ready)
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Offset < recs[j].Offset })
	from := s.topics().DeadLetter.Name + "/" + strings.Replace(pos, ":", "@", 1)
	for i, want := range []map[string]string{
		{kafka.HeaderSendAt: "1774000800000", kafka.HeaderExpiresAt: "1774008000000"},
		{kafka.HeaderSendAt: "1774081800000", kafka.HeaderExpiresAt: ""},
	} {
		r := recs[i]
		want[kafka.HeaderSchema], want[kafka.HeaderBatchID], want[kafka.HeaderCampaignID] = "batch.v1", "spring:v1::4", "spring"
		want[kafka.HeaderHop], want["traceparent"], want[headerRedrivenFrom] = "3", "00-ab-cd-01", from
		for k, v := range want {
			if got, _ := kafka.Header(r, k); got != v {
				t.Errorf("re-drive %d: header %s = %q, want %q", i+1, k, got, v)
			}
		}
		if n := len(r.Headers); n != len(want)-boolInt(want[kafka.HeaderExpiresAt] == "") {
			t.Errorf("re-drive %d: %d headers %v", i+1, n, r.Headers)
		}
		if string(r.Key) != "spring:v1::4" {
			t.Errorf("re-drive %d: key %q", i+1, r.Key)
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func endOf(t *testing.T, s *stack, partition string) string {
	t.Helper()
	topic := s.topics().DeadLetter.Name
	ends, err := s.adm.ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	var p int32
	if _, err := fmt.Sscan(partition, &p); err != nil {
		t.Fatal(err)
	}
	o, _ := ends.Lookup(topic, p)
	return fmt.Sprint(o.Offset)
}

func TestReplayTransactionalTopic(t *testing.T) { onEachKafka(t, testReplayTransactionalTopic) }

// The planner writes batches in transactions: a group past a transaction
// stands after its marker, whose timestamp is the commit's, and aborted
// records never reach it. Neither may make a replay refuse or skip.
func testReplayTransactionalTopic(t *testing.T, newStack stackFactory) {
	s := newStack(t).withTopics(t)
	ctx := context.Background()
	topic, group := s.topics().Ready.Name, s.cfg.Kafka.GroupPrefix+"-dispatcher"
	t0 := time.Date(2026, 3, 20, 9, 0, 0, 0, time.UTC)
	at := func(min int) string { return t0.Add(time.Duration(min) * time.Minute).Format(time.RFC3339) }
	txn, err := kgo.NewClient(kgo.SeedBrokers(s.cfg.Kafka.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.TransactionalID(s.cfg.Kafka.GroupPrefix+"-replay-test"))
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	// in writes one transaction of records at the given minutes to
	// partition 0, ends it, and waits for the partition to end at want.
	in := func(commit bool, want int64, minutes ...int) {
		t.Helper()
		if err := txn.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for _, m := range minutes {
			r := &kgo.Record{Topic: topic, Partition: 0, Timestamp: t0.Add(time.Duration(m) * time.Minute), Value: []byte("b")}
			if err := txn.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := txn.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
		// The coordinator writes the marker after EndTransaction returns.
		var end int64
		for deadline := time.Now().Add(10 * time.Second); end != want; time.Sleep(20 * time.Millisecond) {
			ends, err := s.adm.ListEndOffsets(ctx, topic)
			if err != nil {
				t.Fatal(err)
			}
			o, _ := ends.Lookup(topic, 0)
			if end = o.Offset; end != want && time.Now().After(deadline) {
				t.Fatalf("%s/0 ends at %d after the transaction, want %d", topic, end, want)
			}
		}
	}
	commitAt := func(offset int64) {
		t.Helper()
		offsets := kadm.Offsets{}
		offsets.AddOffset(topic, 0, offset, -1)
		if err := s.adm.CommitAllOffsets(ctx, group, offsets); err != nil {
			t.Fatal(err)
		}
	}
	others := func() string { // the partitions the group never read
		var b strings.Builder
		for p := int32(1); p < s.cfg.Kafka.Topics.Ready.Partitions; p++ {
			fmt.Fprintf(&b, "%s/%d: no committed offset, unchanged (the stage reads it from its start)\n", topic, p)
		}
		return b.String()
	}()

	// Records 0-4 and the commit marker 5; records 6-7 aborted, marker 8.
	in(true, 6, 0, 1, 2, 3, 4)
	in(false, 9, 40, 41)
	commitAt(9) // read to the end, markers included

	// -to falls after the last committed record and before the markers: only
	// markers and aborted records lie between the range and the group.
	r := s.run(t, "", "replay", "-topic", topic, "-group", group, "-from", at(2), "-to", at(30), "-dry-run")
	expect(t, r, exitOK, topic+"/0: 9 -> 2 (re-runs 7 records)\n"+others+"dry run: "+group+" would re-run 7 records of "+topic+"; nothing changed\n", "")

	// A group standing on the first marker, -from after everything: it has
	// nothing unprocessed to skip, and nothing to re-run.
	commitAt(5)
	r = s.run(t, "", "replay", "-topic", topic, "-group", group, "-from", time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "-dry-run")
	expect(t, r, exitOK, topic+"/0: 5, unchanged\n"+others+"dry run: "+group+" would re-run 0 records of "+topic+"; nothing changed\n", "")

	// A committed record past the range is still refused.
	in(true, 11, 50)
	commitAt(11)
	r = s.run(t, "", "replay", "-topic", topic, "-group", group, "-from", at(2), "-to", at(30))
	expect(t, r, exitFailed, "", "pushctl replay: refused, nothing changed:\n  "+topic+"/0: the group is at 11, after the range end 5: it would also re-run 6 records past the range (use -to end)\n")
	// The whole rewind, and the partitions without offsets are not touched.
	r = s.run(t, "", "replay", "-topic", topic, "-group", group, "-from", at(2))
	expect(t, r, exitOK, topic+"/0: 11 -> 2 (re-runs 9 records)\n"+others+group+" rewound: it re-runs 9 records of "+topic+" when it starts\n", "")
	got, err := s.adm.FetchOffsetsForTopics(ctx, group, topic)
	if err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < s.cfg.Kafka.Topics.Ready.Partitions; p++ {
		o, ok := got.Lookup(topic, p)
		switch {
		case p == 0 && o.At != 2:
			t.Errorf("%s/0 committed at %d after the rewind, want 2", topic, o.At)
		case p > 0 && ok && o.At >= 0:
			t.Errorf("%s/%d committed at %d after the rewind, want no offset", topic, p, o.At)
		}
	}
}

func TestReplayCommand(t *testing.T) { onEachKafka(t, testReplayCommand) }

func testReplayCommand(t *testing.T, newStack stackFactory) {
	s := newStack(t).withTopics(t)
	ctx := context.Background()
	topic, group := s.topics().Registrations.Name, s.cfg.Kafka.GroupPrefix+"-feedback"
	// Ten records per partition, one a minute from t0, on all 6 partitions.
	t0 := time.Date(2026, 3, 20, 9, 0, 0, 0, time.UTC)
	producer, err := kgo.NewClient(kgo.SeedBrokers(s.cfg.Kafka.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	var recs []*kgo.Record
	for p := int32(0); p < 6; p++ {
		for i := 0; i < 10; i++ {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Timestamp: t0.Add(time.Duration(i) * time.Minute), Value: []byte("x")})
		}
	}
	if err := producer.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	offsets := kadm.Offsets{}
	for p := int32(0); p < 6; p++ {
		offsets.AddOffset(topic, p, 10, -1)
	}
	if err := s.adm.CommitAllOffsets(ctx, group, offsets); err != nil {
		t.Fatal(err)
	}
	committed := func() []int64 {
		got, err := s.adm.FetchOffsetsForTopics(ctx, group, topic)
		if err != nil {
			t.Fatal(err)
		}
		var out []int64
		for p := int32(0); p < 6; p++ {
			o, _ := got.Lookup(topic, p)
			out = append(out, o.At)
		}
		return out
	}
	plan := func(from, to, n int) string {
		var b strings.Builder
		for p := 0; p < 6; p++ {
			fmt.Fprintf(&b, "%s/%d: %d -> %d (re-runs %d records)\n", topic, p, from, to, n)
		}
		return b.String()
	}
	at := func(min int) string { return t0.Add(time.Duration(min) * time.Minute).Format(time.RFC3339) }

	r := s.run(t, "", "replay", "-topic", topic, "-group", group, "-from", at(5), "-dry-run")
	expect(t, r, exitOK, plan(10, 5, 5)+"dry run: "+group+" would re-run 30 records of "+topic+"; nothing changed\n", "")
	if got := committed(); !slices.Equal(got, []int64{10, 10, 10, 10, 10, 10}) {
		t.Fatalf("dry run changed offsets: %v", got)
	}

	r = s.run(t, "", "replay", "-topic", topic, "-group", group, "-from", at(5))
	expect(t, r, exitOK, plan(10, 5, 5)+group+" rewound: it re-runs 30 records of "+topic+" when it starts\n", "")
	if got := committed(); !slices.Equal(got, []int64{5, 5, 5, 5, 5, 5}) {
		t.Fatalf("offsets after replay: %v", got)
	}

	// A partition already at the range start is left as it is, with its
	// commit's metadata (the planner keeps its checkpoint there); the
	// others move back.
	offsets = kadm.Offsets{}
	offsets.Add(kadm.Offset{Topic: topic, Partition: 0, At: 5, LeaderEpoch: -1, Metadata: "checkpoint"})
	for p := int32(1); p < 6; p++ {
		offsets.AddOffset(topic, p, 10, -1)
	}
	if err := s.adm.CommitAllOffsets(ctx, group, offsets); err != nil {
		t.Fatal(err)
	}
	r = s.run(t, "", "replay", "-topic", topic, "-group", group, "-from", at(5))
	expect(t, r, exitOK, topic+"/0: 5, unchanged\n"+strings.SplitN(plan(10, 5, 5), "\n", 2)[1]+group+" rewound: it re-runs 25 records of "+topic+" when it starts\n", "")
	if got := committed(); !slices.Equal(got, []int64{5, 5, 5, 5, 5, 5}) {
		t.Fatalf("offsets after replay: %v", got)
	}
	if got, err := s.adm.FetchOffsetsForTopics(ctx, group, topic); err != nil {
		t.Fatal(err)
	} else if o, _ := got.Lookup(topic, 0); o.Metadata != "checkpoint" {
		t.Errorf("partition 0 metadata %q after replay, want \"checkpoint\" kept", o.Metadata)
	}

	// The group is at 5: going to 8 would skip 5..7.
	r = s.run(t, "", "replay", "-topic", topic, "-group", group, "-from", at(8))
	var lines []string
	for p := 0; p < 6; p++ {
		lines = append(lines, fmt.Sprintf("%s/%d: the group is at 5, before the range start 8: moving it would skip 3 records it has not processed", topic, p))
	}
	expect(t, r, exitFailed, "", "pushctl replay: refused, nothing changed:\n  "+strings.Join(lines, "\n  ")+"\n")

	// The range ends at 3, but the group is at 5: 3..4 would be re-run too.
	r = s.run(t, "", "replay", "-topic", topic, "-group", group, "-from", "start", "-to", at(3))
	lines = lines[:0]
	for p := 0; p < 6; p++ {
		lines = append(lines, fmt.Sprintf("%s/%d: the group is at 5, after the range end 3: it would also re-run 2 records past the range (use -to end)", topic, p))
	}
	expect(t, r, exitFailed, "", "pushctl replay: refused, nothing changed:\n  "+strings.Join(lines, "\n  ")+"\n")

	// From the start to the end: 5 each.
	r = s.run(t, "", "replay", "-topic", topic, "-group", group, "-from", "start", "-dry-run")
	expect(t, r, exitOK, plan(5, 0, 5)+"dry run: "+group+" would re-run 30 records of "+topic+"; nothing changed\n", "")

	// A misspelt group has no offsets.
	r = s.run(t, "", "replay", "-topic", topic, "-group", group+"x", "-from", "start")
	expect(t, r, exitFailed, "", "pushctl replay: group "+group+"x has no committed offsets on "+topic+": nothing to rewind (stage groups are <kafka.group_prefix>-<stage>, e.g. pushlane-feedback)\n")

	r = s.run(t, "", "replay", "-topic", topic+"-nope", "-group", group, "-from", "start")
	expect(t, r, exitFailed, "", "pushctl replay: topic "+topic+"-nope does not exist\n")

	// A running stage: refused while the member is in the group.
	member, err := kgo.NewClient(kgo.SeedBrokers(s.cfg.Kafka.Brokers...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ClientID("feedback-0"), kgo.DisableAutoCommit())
	if err != nil {
		t.Fatal(err)
	}
	defer member.Close()
	pollCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for len(member.PollFetches(pollCtx).Records()) == 0 && pollCtx.Err() == nil {
	}
	r = s.run(t, "", "replay", "-topic", topic, "-group", group, "-from", "start")
	if r.code != exitFailed || !strings.HasPrefix(r.stderr, "pushctl replay: group "+group+" has 1 active members (feedback-0@") ||
		!strings.HasSuffix(r.stderr, "): stop the stage (scale it to 0) before rewinding it\n") {
		t.Errorf("%+v", r)
	}
	if got := committed(); !slices.Equal(got, []int64{5, 5, 5, 5, 5, 5}) {
		t.Errorf("refused replay changed offsets: %v", got)
	}
}
