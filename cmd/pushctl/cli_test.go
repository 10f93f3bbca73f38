package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pushlane/pushlane/schemas"
)

// testNow is the clock of every test invocation.
var testNow = time.Date(2026, 3, 20, 8, 30, 0, 0, time.UTC)

type result struct {
	code           int
	stdout, stderr string
}

// pushctl runs one invocation in-process with an empty environment (plus
// environ) and the test clock.
func pushctl(t *testing.T, stdin string, environ []string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	c := &cli{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errOut, environ: environ, now: func() time.Time { return testNow }}
	code := run(context.Background(), c, args)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

func expect(t *testing.T, r result, code int, stdout, stderr string) {
	t.Helper()
	if r.code != code || r.stdout != stdout || r.stderr != stderr {
		t.Errorf("exit %d, want %d\nstdout:\n%s\nwant:\n%s\nstderr:\n%s\nwant:\n%s", r.code, code, r.stdout, stdout, r.stderr, stderr)
	}
}

func TestUsageErrors(t *testing.T) {
	cases := []struct {
		name   string
		args   []string
		stderr string
	}{
		{"unknown command", []string{"pubish"}, "pushctl: unknown command \"pubish\"\nRun 'pushctl help' for usage.\n"},
		{"unknown global flag", []string{"-brokerz", "x", "topics"}, "pushctl: flag provided but not defined: -brokerz\nRun 'pushctl help' for usage.\n"},
		{"unknown command flag", []string{"topics", "-chek"}, "pushctl topics: flag provided but not defined: -chek\nRun 'pushctl help topics' for usage.\n"},
		{"bad flag value", []string{"replay", "-dry-run=maybe"}, "pushctl replay: invalid boolean value \"maybe\" for -dry-run: parse error\nRun 'pushctl help replay' for usage.\n"},
		{"publish without app", []string{"publish", "-segment", "-title", "x"}, "pushctl publish: -app is required (or give the campaign as -f FILE)\nRun 'pushctl help publish' for usage.\n"},
		{"publish without audience", []string{"publish", "-app", "shop", "-title", "x"},
			"pushctl publish: choose the audience: -segment (every active device of the app) or -tokens T1,T2\nRun 'pushctl help publish' for usage.\n"},
		{"publish with both audiences", []string{"publish", "-app", "shop", "-segment", "-tokens", "a", "-title", "x"},
			"pushctl publish: -segment and -tokens exclude each other: choose one audience\nRun 'pushctl help publish' for usage.\n"},
		{"publish file and flags", []string{"publish", "-f", "c.json", "-app", "shop", "-title", "x"},
			"pushctl publish: -f cannot be combined with -app, -title: put them in the file\nRun 'pushctl help publish' for usage.\n"},
		{"publish bad time", []string{"publish", "-app", "shop", "-segment", "-title", "x", "-at", "tomorrow"},
			"pushctl publish: -at \"tomorrow\": want RFC 3339 (2026-03-20T09:00:00Z), now, or +DURATION\nRun 'pushctl help publish' for usage.\n"},
		{"publish local time without date", []string{"publish", "-app", "shop", "-segment", "-title", "x", "-local-time", "09:00"},
			"pushctl publish: -local-time and -local-date go together: the wall-clock time and its day\nRun 'pushctl help publish' for usage.\n"},
		{"publish at and local time", []string{"publish", "-app", "shop", "-segment", "-title", "x", "-at", "+1h", "-local-time", "09:00", "-local-date", "2026-03-29"},
			"pushctl publish: -at and -local-time exclude each other\nRun 'pushctl help publish' for usage.\n"},
		{"publish bad data", []string{"publish", "-app", "shop", "-segment", "-title", "x", "-data", "novalue"},
			"pushctl publish: -data \"novalue\": want key=value\nRun 'pushctl help publish' for usage.\n"},
		{"publish stray argument", []string{"publish", "-app", "shop", "-segment", "oops"}, "pushctl publish: unexpected argument \"oops\"\nRun 'pushctl help publish' for usage.\n"},
		{"cancel without id", []string{"cancel"}, "pushctl cancel: want exactly one campaign id, got 0 arguments\nRun 'pushctl help cancel' for usage.\n"},
		{"pause with two ids", []string{"pause", "a", "b"}, "pushctl pause: want exactly one campaign id, got 2 arguments\nRun 'pushctl help pause' for usage.\n"},
		{"dlq without subcommand", []string{"dlq"}, "pushctl dlq: want a subcommand: list, show or redrive\nRun 'pushctl help dlq' for usage.\n"},
		{"dlq bad position", []string{"dlq", "show", "7"}, "pushctl dlq: \"7\" is not <partition>:<offset>, e.g. 1:7 (see dlq list)\nRun 'pushctl help dlq' for usage.\n"},
		{"dlq flag of another subcommand", []string{"dlq", "list", "-raw"}, "pushctl dlq: -raw does not apply to dlq list\nRun 'pushctl help dlq' for usage.\n"},
		{"replay without topic", []string{"replay", "-group", "g", "-from", "start"}, "pushctl replay: -topic is required\nRun 'pushctl help replay' for usage.\n"},
		{"replay bad from", []string{"replay", "-topic", "t", "-group", "g", "-from", "yesterday"},
			"pushctl replay: -from \"yesterday\": want start, end, RFC 3339 (2026-03-20T09:00:00Z), or -DURATION\nRun 'pushctl help replay' for usage.\n"},
		{"replay empty range", []string{"replay", "-topic", "t", "-group", "g", "-from", "-1h", "-to", "-2h"},
			"pushctl replay: -to -2h is not after -from -1h\nRun 'pushctl help replay' for usage.\n"},
		{"validate unknown kind", []string{"validate", "campaigns", "x.json"},
			"pushctl validate: unknown kind \"campaigns\": want one of campaign, campaign-control, batch, result, dead-letter, device-registration\nRun 'pushctl help validate' for usage.\n"},
		{"validate missing file", []string{"validate", "campaign", "/nonexistent/c.json"},
			"pushctl validate: open /nonexistent/c.json: no such file or directory\nRun 'pushctl help validate' for usage.\n"},
		{"help of unknown command", []string{"help", "nope"}, "pushctl help: unknown command \"nope\"\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			expect(t, pushctl(t, "", nil, c.args...), exitUsage, "", c.stderr)
		})
	}
}

func TestNoArgumentsPrintsUsage(t *testing.T) {
	r := pushctl(t, "", nil)
	if r.code != exitUsage || r.stdout != "" || !strings.HasPrefix(r.stderr, "pushctl operates a Pushlane deployment.") {
		t.Errorf("%+v", r)
	}
}

func TestConfigErrorsAreUsageErrors(t *testing.T) {
	r := pushctl(t, "", []string{"PUSHLANE_KAFKA__BROKERZ=x:1", "PUSHLANE_LOG__LEVEL=loud"}, "topics", "-check")
	expect(t, r, exitUsage, "",
		"pushctl topics: config: kafka.brokerz: unknown key\nRun 'pushctl help topics' for usage.\n")
	r = pushctl(t, "", nil, "-config", "/nonexistent/pushlane.yaml", "dlq", "list")
	expect(t, r, exitUsage, "",
		"pushctl dlq: config: read /nonexistent/pushlane.yaml: no such file or directory\nRun 'pushctl help dlq' for usage.\n")
	r = pushctl(t, "", nil, "migrate")
	expect(t, r, exitUsage, "",
		"pushctl migrate: nothing to migrate: set mysql.dsn and/or clickhouse.addr\nRun 'pushctl help migrate' for usage.\n")
	r = pushctl(t, "", nil, "migrate", "-clickhouse")
	expect(t, r, exitUsage, "",
		"pushctl migrate: config: clickhouse.addr: required\nRun 'pushctl help migrate' for usage.\n")
}

func TestHelp(t *testing.T) {
	r := pushctl(t, "", nil, "help")
	for _, want := range []string{
		"Exit codes:\n  0  done\n  1  the operation failed (broker, database, or refused by a safety check)\n  2  usage error: unknown command or flag, missing argument, invalid configuration\n  3  validation error: an event does not match its schema; nothing was sent\n",
		"  -config file ", "  -brokers brokers ", "  publish ", "  replay ", "  dlq ",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("pushctl help lacks %q:\n%s", want, r.stdout)
		}
	}
	if r.code != exitOK || r.stderr != "" {
		t.Errorf("help: %+v", r)
	}
	if h := pushctl(t, "", nil, "-h"); h.code != exitOK || h.stdout != r.stdout {
		t.Errorf("-h differs from help: %+v", h)
	}
	for _, cmd := range commands() {
		t.Run(cmd.name, func(t *testing.T) {
			for _, args := range [][]string{{cmd.name, "-h"}, {cmd.name, "--help"}, {"help", cmd.name}} {
				r := pushctl(t, "", nil, args...)
				if r.code != exitOK || r.stderr != "" {
					t.Fatalf("%v: exit %d stderr %q", args, r.code, r.stderr)
				}
				if !strings.HasPrefix(r.stdout, "Usage: pushctl [global flags] "+cmd.name+" ") {
					t.Errorf("%v: %q", args, r.stdout)
				}
				if !strings.Contains(r.stdout, "\nExamples:\n  ") {
					t.Errorf("%v: no examples", args)
				}
			}
		})
	}
	for _, listed := range []string{"stats", "status"} {
		if !strings.Contains(r.stdout, "\n  "+listed+" ") {
			t.Errorf("help does not list %s", listed)
		}
	}
}

// dryRun publishes with -dry-run and decodes what would be sent.
func dryRun(t *testing.T, stdin string, args ...string) *schemas.Campaign {
	t.Helper()
	r := pushctl(t, stdin, nil, append([]string{"publish", "-dry-run"}, args...)...)
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	c, err := schemas.DecodeCampaign([]byte(r.stdout))
	if err != nil {
		t.Fatalf("dry run printed an invalid campaign: %v\n%s", err, r.stdout)
	}
	return c
}

func TestCampaignFromFlags(t *testing.T) {
	badge := 0
	cases := []struct {
		name string
		args []string
		want schemas.Campaign
	}{
		{"segment with filters, content and options",
			[]string{"-app", "shop", "-id", "spring-sale", "-version", "2", "-segment", "-platforms", "ios,android", "-locales", "de-DE",
				"-locales", "fr", "-users", "u-1", "-title", "Spring sale", "-body", "20% off", "-badge", "0", "-sound", "default",
				"-data", "deeplink=shop://sale", "-data", "x=a=b", "-at", "2026-03-20T09:00:00Z", "-expires", "+12h",
				"-priority", "high", "-collapse-id", "sale", "-thread-id", "sales", "-category", "SALE", "-mutable-content",
				"-interruption-level", "active", "-android-channel", "promo", "-ttl", "6h", "-batch-size", "500", "-throttle", "2000"},
			schemas.Campaign{SchemaVersion: 1, ID: "spring-sale", Version: 2, App: "shop", CreatedAt: testNow,
				Audience: schemas.Audience{Type: "segment", Platforms: []string{"ios", "android"}, Locales: []string{"de-DE", "fr"}, UserIDs: []string{"u-1"}},
				Content: schemas.Content{Title: "Spring sale", Body: "20% off", Badge: &badge, Sound: "default",
					Data: map[string]string{"deeplink": "shop://sale", "x": "a=b"}},
				Schedule: schemas.Schedule{Mode: "at", SendAt: time.Date(2026, 3, 20, 9, 0, 0, 0, time.UTC), ExpiresAt: testNow.Add(12 * time.Hour)},
				Options: schemas.Options{Priority: "high", CollapseID: "sale", ThreadID: "sales", Category: "SALE", MutableContent: true,
					InterruptionLevel: "active", AndroidChannel: "promo", TTLSeconds: 21600, BatchSize: 500, ThrottlePerSecond: 2000}}},
		{"tokens, sent now",
			[]string{"-app", "shop", "-id", "order-1", "-tokens", "aaa, bbb", "-title", "Shipped"},
			schemas.Campaign{SchemaVersion: 1, ID: "order-1", Version: 1, App: "shop", CreatedAt: testNow,
				Audience: schemas.Audience{Type: "tokens", Tokens: []string{"aaa", "bbb"}},
				Content:  schemas.Content{Title: "Shipped"}, Schedule: schemas.Schedule{Mode: "at"}}},
		{"local time with localized content",
			[]string{"-app", "news", "-id", "digest", "-segment", "-title", "Digest", "-localized", "de=Überblick|Fünf Meldungen",
				"-localized", "ja=朝", "-fallback-locale", "de", "-local-time", "09:00", "-local-date", "2026-03-29", "-timezone", "Europe/Berlin"},
			schemas.Campaign{SchemaVersion: 1, ID: "digest", Version: 1, App: "news", CreatedAt: testNow,
				Audience: schemas.Audience{Type: "segment"},
				Content: schemas.Content{Title: "Digest", FallbackLocale: "de", Localized: map[string]schemas.LocalizedText{
					"de": {Title: "Überblick", Body: "Fünf Meldungen"}, "ja": {Title: "朝"}}},
				Schedule: schemas.Schedule{Mode: "local_time", LocalTime: "09:00", LocalDate: "2026-03-29", DefaultTimezone: "Europe/Berlin"}}},
		{"background push",
			[]string{"-app", "shop", "-id", "refresh", "-segment", "-push-type", "background", "-content-available", "-priority", "normal", "-data", "refresh=catalog", "-at", "+30m"},
			schemas.Campaign{SchemaVersion: 1, ID: "refresh", Version: 1, App: "shop", CreatedAt: testNow,
				Audience: schemas.Audience{Type: "segment"}, Content: schemas.Content{Data: map[string]string{"refresh": "catalog"}},
				Schedule: schemas.Schedule{Mode: "at", SendAt: testNow.Add(30 * time.Minute)},
				Options:  schemas.Options{PushType: "background", ContentAvailable: true, Priority: "normal"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := dryRun(t, "", c.args...)
			if !reflect.DeepEqual(*got, c.want) {
				t.Errorf("campaign:\n got %+v\nwant %+v", *got, c.want)
			}
		})
	}
}

func TestTokensFromFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "tokens.txt")
	if err := os.WriteFile(p, []byte("# exported 2026-03-20\naaa\n\n  bbb  \nccc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := dryRun(t, "", "-app", "shop", "-tokens", "@"+p, "-title", "x")
	if !reflect.DeepEqual(c.Audience.Tokens, []string{"aaa", "bbb", "ccc"}) {
		t.Errorf("tokens %q", c.Audience.Tokens)
	}
	c = dryRun(t, "ddd\neee\n", "-app", "shop", "-tokens", "@-", "-title", "x")
	if !reflect.DeepEqual(c.Audience.Tokens, []string{"ddd", "eee"}) {
		t.Errorf("tokens from stdin %q", c.Audience.Tokens)
	}
	r := pushctl(t, "# nothing\n", nil, "publish", "-dry-run", "-app", "shop", "-tokens", "@-", "-title", "x")
	expect(t, r, exitUsage, "", "pushctl publish: -tokens @-: no tokens\nRun 'pushctl help publish' for usage.\n")
}

func TestGeneratedCampaignID(t *testing.T) {
	a := dryRun(t, "", "-app", "shop", "-segment", "-title", "x")
	b := dryRun(t, "", "-app", "shop", "-segment", "-title", "x")
	if !strings.HasPrefix(a.ID, "shop-20260320-083000-") || len(a.ID) != len("shop-20260320-083000-")+6 {
		t.Errorf("generated id %q", a.ID)
	}
	if a.ID == b.ID {
		t.Errorf("two generated ids are equal: %s", a.ID)
	}
}

func TestPublishFileFillsIDAndCreatedAt(t *testing.T) {
	file := `{"schema_version":1,"app":"shop","audience":{"type":"segment"},"content":{"title":"Hi","badge":3},"schedule":{"mode":"at"},"options":{"batch_size":250}}`
	c := dryRun(t, file, "-f", "-")
	if !strings.HasPrefix(c.ID, "shop-20260320-083000-") || !c.CreatedAt.Equal(testNow) || c.Version != 1 ||
		*c.Content.Badge != 3 || c.Options.BatchSize != 250 {
		t.Errorf("campaign %+v", *c)
	}
	// A complete file is published as written (after validation).
	ex, err := os.ReadFile("../../schemas/examples/campaign/segment-filters.json")
	if err != nil {
		t.Fatal(err)
	}
	c = dryRun(t, "", "-f", "../../schemas/examples/campaign/segment-filters.json")
	want, _ := schemas.DecodeCampaign(ex)
	if !reflect.DeepEqual(c, want) {
		t.Errorf("example changed on the way:\n got %+v\nwant %+v", *c, *want)
	}
}

func TestPublishValidationErrors(t *testing.T) {
	cases := []struct {
		name   string
		stdin  string
		args   []string
		stderr string
	}{
		{"invalid file", `{"schema_version":1,"id":"x","app":"shop","audience":{"type":"tokens"},"content":{"title":"Hi"},"schedule":{"mode":"at"}}`,
			[]string{"-f", "-"}, "pushctl publish: invalid campaign: /audience: missing property 'tokens'\n"},
		{"garbage file", "\x00\x01", []string{"-f", "-"},
			"pushctl publish: invalid campaign: not JSON: invalid character '\\x00' looking for beginning of value at byte 1\n"},
		{"background with high priority", "", []string{"-app", "shop", "-id", "x", "-segment", "-push-type", "background", "-priority", "high", "-content-available"},
			"pushctl publish: invalid campaign: /options/priority: push_type \"background\" must not use priority \"high\" (APNs requires 5)\n"},
		{"bad timezone", "", []string{"-app", "shop", "-id", "x", "-segment", "-title", "x", "-local-time", "09:00", "-local-date", "2026-03-29", "-timezone", "Mars/Olympus"},
			"pushctl publish: invalid campaign: /schedule/default_timezone: \"Mars/Olympus\" is not an IANA time zone\n"},
		// The planner's rules: accepted here, these were dead-lettered there.
		{"host time zone", "", []string{"-app", "shop", "-id", "x", "-segment", "-title", "x", "-local-time", "09:00", "-local-date", "2026-03-29", "-timezone", "Local"},
			"pushctl publish: invalid campaign: /schedule/default_timezone: \"Local\" is not an IANA time zone\n"},
		{"local date before 1970", "", []string{"-app", "shop", "-id", "x", "-segment", "-title", "x", "-local-time", "09:00", "-local-date", "1969-12-31"},
			"pushctl publish: invalid campaign: /schedule/local_date: \"1969-12-31\" is before 1970\n"},
		{"reserved data key", "", []string{"-app", "shop", "-id", "x", "-segment", "-title", "x", "-data", "google.x=1"},
			"pushctl publish: invalid campaign: /content/data/google.x: reserved data key: APNs and FCM reserve aps, from, gcm, notification, message_type, collapse_key and every key starting with google. or gcm.\n"},
		{"nothing to show", "", []string{"-app", "shop", "-id", "x", "-segment"},
			"pushctl publish: invalid campaign: /content: an alert needs a title, body, badge or sound (or content_available for a silent push)\n"},
		{"bad id", "", []string{"-app", "shop", "-id", "spring sale", "-segment", "-title", "x"},
			"pushctl publish: invalid campaign: /id: 'spring sale' does not match pattern '^[A-Za-z0-9][A-Za-z0-9_.:-]*$'\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// No broker is configured: an invalid campaign must fail
			// before any connection.
			expect(t, pushctl(t, c.stdin, []string{"PUSHLANE_KAFKA__BROKERS=127.0.0.1:1"}, append([]string{"publish"}, c.args...)...), exitInvalid, "", c.stderr)
		})
	}
}

func TestPublishRefusesUnknownApp(t *testing.T) {
	dir := t.TempDir()
	sa := filepath.Join(dir, "sa.json")
	if err := os.WriteFile(sa, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"PUSHLANE_APPS__SHOP__FCM__PROJECT_ID=p", "PUSHLANE_APPS__SHOP__FCM__SERVICE_ACCOUNT_FILE=" + sa,
		"PUSHLANE_APPS__NEWS__FCM__PROJECT_ID=p", "PUSHLANE_APPS__NEWS__FCM__SERVICE_ACCOUNT_FILE=" + sa, "PUSHLANE_KAFKA__BROKERS=127.0.0.1:1"}
	r := pushctl(t, "", env, "publish", "-app", "shpo", "-id", "x", "-segment", "-title", "x")
	expect(t, r, exitInvalid, "", "pushctl publish: app \"shpo\" is not configured (apps: news, shop)\n")
}

func TestControlValidation(t *testing.T) {
	r := pushctl(t, "", []string{"PUSHLANE_KAFKA__BROKERS=127.0.0.1:1"}, "cancel", "spring sale")
	expect(t, r, exitInvalid, "",
		"pushctl cancel: invalid campaign-control: /campaign_id: 'spring sale' does not match pattern '^[A-Za-z0-9][A-Za-z0-9_.:-]*$'\n")
}

func TestValidateCommand(t *testing.T) {
	r := pushctl(t, "", nil, "validate", "campaign", "../../schemas/examples/campaign/tokens.json", "../../schemas/examples/campaign/background.json")
	expect(t, r, exitOK, "../../schemas/examples/campaign/tokens.json: ok\n../../schemas/examples/campaign/background.json: ok\n", "")

	bad := "../../schemas/examples/invalid/campaign/collapse-id-over-64-bytes.json"
	want, err := os.ReadFile(strings.TrimSuffix(bad, ".json") + ".want")
	if err != nil {
		t.Fatal(err)
	}
	r = pushctl(t, "", nil, "validate", "campaign", "../../schemas/examples/campaign/tokens.json", bad)
	expect(t, r, exitInvalid, "../../schemas/examples/campaign/tokens.json: ok\n"+bad+": "+string(want), "pushctl validate: 1 of 2 files invalid\n")

	r = pushctl(t, `{"schema_version":1,"campaign_id":"c","action":"stop","at":"2026-03-20T09:00:00Z"}`, nil, "validate", "campaign-control", "-")
	expect(t, r, exitInvalid, "-: invalid campaign-control: /action: must be one of 'cancel', 'pause', 'resume', got 'stop'\n",
		"pushctl validate: 1 of 1 files invalid\n")
}

func TestConfigCommand(t *testing.T) {
	env := []string{"PUSHLANE_MYSQL__DSN=pushlane:s3cret@tcp(db:3306)/pushlane", "PUSHLANE_KAFKA__SASL__MECHANISM=plain",
		"PUSHLANE_KAFKA__SASL__USERNAME=u", "PUSHLANE_KAFKA__SASL__PASSWORD=s3cret", "PUSHLANE_CLICKHOUSE__PASSWORD=s3cret"}
	r := pushctl(t, "", env, "-brokers", "a:1, b:2", "config")
	if r.code != exitOK || strings.Contains(r.stdout, "s3cret") {
		t.Fatalf("%+v", r)
	}
	// -brokers is checked as kafka.brokers is: a password in it is
	// refused, masked.
	bad := pushctl(t, "", nil, "-brokers", "SASL_SSL://svc:s3cret@b1:9093", "config")
	if bad.code != exitUsage || strings.Contains(bad.stderr, "s3cret") || !strings.Contains(bad.stderr, "kafka.brokers: \"SASL_SSL://******@b1:9093\"") {
		t.Errorf("-brokers with a password: %+v", bad)
	}
	for _, want := range []string{
		"kafka.brokers = [a:1, b:2]\n",
		"mysql.dsn = \"pushlane:******@tcp(db:3306)/pushlane\"\n",
		"kafka.sasl.password = \"******\"\n",
		"clickhouse.password = \"******\"\n",
		"feedback.flush_interval = 1s\n",
		"delay.tiers = 22\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("config output lacks %q", want)
		}
	}
}
