package config

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// writeFile writes content to dir/name and returns the path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// loadYAML loads yaml text (after replacing $DIR with dir) with environ.
func loadYAML(t *testing.T, dir, yaml string, environ ...string) (*Config, error) {
	t.Helper()
	p := writeFile(t, dir, "pushlane.yaml", strings.ReplaceAll(yaml, "$DIR", dir))
	return Load(p, environ)
}

// problems returns the problems of a *Error, failing the test otherwise.
func problems(t *testing.T, err error) []string {
	t.Helper()
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T), want *config.Error", err, err)
	}
	return ce.Problems
}

func TestDefaults(t *testing.T) {
	cfg, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Kafka.Brokers, []string{"127.0.0.1:9092"}) {
		t.Errorf("brokers %v", cfg.Kafka.Brokers)
	}
	checks := []struct {
		key       string
		got, want any
	}{
		{"kafka.client_id", cfg.Kafka.ClientID, "pushlane"},
		{"kafka.group_prefix", cfg.Kafka.GroupPrefix, "pushlane"},
		{"kafka.topics.campaigns.name", cfg.Kafka.Topics.Campaigns.Name, "pushlane.campaigns"},
		{"kafka.topics.campaigns.partitions", cfg.Kafka.Topics.Campaigns.Partitions, int32(6)},
		{"kafka.topics.control.name", cfg.Kafka.Topics.Control.Name, "pushlane.campaign-control"},
		{"kafka.topics.control.partitions", cfg.Kafka.Topics.Control.Partitions, int32(1)},
		{"kafka.topics.delay.retention", cfg.Kafka.Topics.Delay.Retention, 744 * time.Hour},
		{"kafka.topics.ready.partitions", cfg.Kafka.Topics.Ready.Partitions, int32(12)},
		{"kafka.topics.dead_letter.name", cfg.Kafka.Topics.DeadLetter.Name, "pushlane.dead-letter"},
		{"kafka.topics.registrations.name", cfg.Kafka.Topics.Registrations.Name, "pushlane.device-registrations"},
		{"kafka.topics.replication_factor", cfg.Kafka.Topics.ReplicationFactor, int16(-1)},
		{"mysql.max_open_conns", cfg.MySQL.MaxOpenConns, 8},
		{"clickhouse.database", cfg.ClickHouse.Database, "pushlane"},
		{"clickhouse.username", cfg.ClickHouse.Username, "default"},
		{"http.addr", cfg.HTTP.Addr, ":8080"},
		{"log.level", cfg.Log.Level, "info"},
		{"log.format", cfg.Log.Format, "json"},
		{"planner.page_size", cfg.Planner.PageSize, 5000},
		{"planner.batches_per_transaction", cfg.Planner.BatchesPerTransaction, 200},
		{"delay.tiers", cfg.Delay.Tiers, 22},
		{"dispatcher.max_attempts", cfg.Dispatcher.MaxAttempts, 8},
		{"dispatcher.chunk_size", cfg.Dispatcher.ChunkSize, 100},
		{"dispatcher.results_linger", cfg.Dispatcher.ResultsLinger, 20 * time.Millisecond},
		{"feedback.suspect_strikes", cfg.Feedback.SuspectStrikes, 3},
		{"feedback.flush_rows", cfg.Feedback.FlushRows, 5000},
		{"feedback.flush_interval", cfg.Feedback.FlushInterval, time.Second},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.key, c.got, c.want)
		}
	}
	tiers := cfg.DelayTiers()
	if len(tiers) != 22 || tiers[0] != "pushlane.delay.t00" || tiers[21] != "pushlane.delay.t21" {
		t.Errorf("DelayTiers = %v", tiers)
	}
	if TierDelay(0) != time.Second || TierDelay(21) != 2097152*time.Second {
		t.Errorf("TierDelay(0)=%v TierDelay(21)=%v", TierDelay(0), TierDelay(21))
	}
}

func TestAppDefaults(t *testing.T) {
	dir := t.TempDir()
	sa := writeFile(t, dir, "sa.json", "{}")
	cfg, err := loadYAML(t, dir, `
apps:
  news:
    fcm:
      project_id: news-prod
      service_account_file: `+sa+`
`)
	if err != nil {
		t.Fatal(err)
	}
	app := cfg.Apps["news"]
	if app.Concurrency != 200 || app.RatePerSecond != 0 || app.APNS != nil {
		t.Errorf("app defaults: %+v", app)
	}
	if app.FCM.Concurrency != 200 || app.FCM.QuotaPerMinute != 600000 {
		t.Errorf("fcm defaults: %+v", *app.FCM)
	}
}

func TestUnknownKeysAreNamed(t *testing.T) {
	dir := t.TempDir()
	_, err := loadYAML(t, dir, `
kafka:
  brokerz: [a:1]
  topics:
    ready:
      partition: 3
apps:
  shop:
    apns:
      environment: production
      topic: com.example.shop
      cert_file: $DIR/cert.p12
      cert_pasword: x
planner:
  page_size: 10
  pagesize: 10
clickhous: {password: {s3cret}}
mysql:
  pasword: {t0psecret}
clickhouse:
  pasword: {my.s3cret}
`, "PUSHLANE_DISPATCHER__MAX_ATTEMPT=3")
	// Below an unknown level the path may be a value's text written as a
	// section: only the unknown level is named, never the secret.
	want := []string{
		"apps.shop.apns.cert_pasword: unknown key",
		"clickhous: unknown key",
		"clickhouse.pasword: unknown key",
		"dispatcher.max_attempt: unknown key",
		"kafka.brokerz: unknown key",
		"kafka.topics.ready.partition: unknown key",
		"mysql.pasword: unknown key",
		"planner.pagesize: unknown key",
	}
	if got := problems(t, err); !slices.Equal(got, want) {
		t.Errorf("problems:\n got %q\nwant %q", got, want)
	}
	if !strings.HasPrefix(err.Error(), "config: apps.shop.apns.cert_pasword: unknown key; ") {
		t.Errorf("Error() = %q", err.Error())
	}
	if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "t0psecret") || strings.Contains(err.Error(), "my.") {
		t.Errorf("Error() shows a secret: %q", err.Error())
	}
}

func TestMissingRequiredKeys(t *testing.T) {
	dir := t.TempDir()
	_, err := loadYAML(t, dir, `
apps:
  shop:
    apns: {}
    fcm: {}
  empty: {}
kafka:
  brokers: [""]
  sasl:
    mechanism: scram-sha-512
  topics:
    ready:
      name: ""
      partitions: 0
`)
	want := []string{
		"apps.empty: needs an apns or fcm section",
		"apps.shop.apns.environment: required (development or production)",
		"apps.shop.apns.topic: required (the app's bundle id)",
		"apps.shop.apns: needs token auth (key_file, key_id, team_id) or certificate auth (cert_file)",
		"apps.shop.fcm.project_id: required",
		"apps.shop.fcm.service_account_file: required",
		"kafka.brokers: required",
		"kafka.sasl.username: required with a mechanism",
		"kafka.topics.ready.name: required",
		"kafka.topics.ready.partitions: must be at least 1",
	}
	if got := problems(t, err); !slices.Equal(got, want) {
		t.Errorf("problems:\n got %q\nwant %q", got, want)
	}
}

func TestBadValuesAreNamed(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "AuthKey.p8", "x")
	_, err := loadYAML(t, dir, `
apps:
  shop:
    rate_per_second: -1
    concurrency: 0
    apns:
      environment: prod
      topic: com.example.shop
      key_file: $DIR/AuthKey.p8
      key_id: ABC123
      team_id: TEAM1
      connections: 65
    fcm:
      project_id: shop-prod
      service_account_file: $DIR/AuthKey.p8
      quota_per_minute: 1
  news:
    fcm:
      project_id: shop-prod
      service_account_file: $DIR/AuthKey.p8
kafka:
  sasl:
    mechanism: gssapi
  tls:
    cert_file: $DIR/AuthKey.p8
log:
  level: trace
  format: xml
delay:
  tiers: 31
dispatcher:
  results_linger: 2s
feedback:
  suspect_strikes: -1
  flush_interval: 0s
`)
	want := []string{
		"apps.shop.apns.connections: must be 1 to 64, not 65",
		`apps.shop.apns.environment: must be development or production, not "prod"`,
		`apps.shop.apns.key_id: "ABC123" is not Apple's 10-character id (letters and digits)`,
		`apps.shop.apns.team_id: "TEAM1" is not Apple's 10-character id (letters and digits)`,
		"apps.shop.concurrency: must be at least 1",
		"apps.shop.fcm.quota_per_minute: 1, but apps.news.fcm.quota_per_minute is 600000 for the same project shop-prod: the apps share its one quota, so give them the same value",
		"apps.shop.fcm.quota_per_minute: must be at least 2, not 1",
		"apps.shop.rate_per_second: must not be negative",
		"delay.tiers: must be between 1 and 30",
		"dispatcher.results_linger: must be between 0s and 1s",
		"feedback.flush_interval: must be at least 10ms",
		"feedback.suspect_strikes: must not be negative",
		`kafka.sasl.mechanism: must be plain, scram-sha-256 or scram-sha-512, not "gssapi"`,
		"kafka.tls.enabled: must be true for the other kafka.tls settings to be used (they are ignored without it): set it, or remove them",
		"kafka.tls: cert_file and key_file go together",
		`log.format: must be json or text, not "xml"`,
		`log.level: must be debug, info, warn or error, not "trace"`,
	}
	if got := problems(t, err); !slices.Equal(got, want) {
		t.Errorf("problems:\n got %q\nwant %q", got, want)
	}
}

// The tier topics must keep a batch as long as the top tier holds it, plus
// a day: shorter, and batches scheduled weeks ahead are deleted before
// they are due (the old default, 72h, was). The bound follows delay.tiers.
func TestDelayRetentionCoversTheTopTier(t *testing.T) {
	for _, tc := range []struct {
		tiers     int
		retention string
		want      string // "" loads
	}{
		{22, "744h", ""},
		{22, "606h32m32s", ""}, // 2^21 s + 24h exactly
		{22, "606h32m31s", "kafka.topics.delay.retention: 606h32m31s is shorter than the top tier (t21) holds a batch (582h32m32s) plus a day to recover from an outage; set at least 606h32m32s"},
		{22, "72h", "kafka.topics.delay.retention: 72h0m0s is shorter than the top tier (t21) holds a batch (582h32m32s) plus a day to recover from an outage; set at least 606h32m32s"},
		{22, "0s", "kafka.topics.delay.retention: 0s is shorter than the top tier (t21) holds a batch (582h32m32s) plus a day to recover from an outage; set at least 606h32m32s"},
		{12, "72h", ""}, // top tier 2^11 s, 34 minutes
	} {
		_, err := Load("", []string{
			"PUSHLANE_DELAY__TIERS=" + strconv.Itoa(tc.tiers),
			"PUSHLANE_KAFKA__TOPICS__DELAY__RETENTION=" + tc.retention,
		})
		var got []string
		if err != nil {
			got = problems(t, err)
		}
		switch {
		case tc.want == "" && len(got) != 0:
			t.Errorf("%d tiers, retention %s: %q, want it to load", tc.tiers, tc.retention, got)
		case tc.want != "" && !slices.Equal(got, []string{tc.want}):
			t.Errorf("%d tiers, retention %s:\n got %q\nwant %q", tc.tiers, tc.retention, got, tc.want)
		}
	}
}

// Values the clients would only refuse at run time (retrying a broker
// "kafka://host" for ever, a topic name the broker rejects, groups named
// "-dispatcher") are refused at start-up, by key.
func TestAddressesAndNamesAreCheckedAtStartUp(t *testing.T) {
	_, err := Load("", []string{
		"PUSHLANE_KAFKA__BROKERS=kafka://127.0.0.1:9092,127.0.0.1,[::1]:9092,kafka-0.kafka:70000",
		"PUSHLANE_CLICKHOUSE__ADDR=clickhouse://127.0.0.1:9000",
		"PUSHLANE_KAFKA__GROUP_PREFIX=",
		"PUSHLANE_KAFKA__TOPICS__READY__NAME=bad ready/topic",
		"PUSHLANE_KAFKA__TOPICS__DELAY__NAME=" + strings.Repeat("d", 246),
		"PUSHLANE_MYSQL__MAX_OPEN_CONNS=-3",
		"PUSHLANE_FEEDBACK__FLUSH_INTERVAL=1ns",
	})
	want := []string{
		`clickhouse.addr: "clickhouse://127.0.0.1:9000": want host:port, not a URL`,
		"feedback.flush_interval: must be at least 10ms",
		"kafka.brokers: \"127.0.0.1\": want host:port",
		`kafka.brokers: "kafka-0.kafka:70000": port "70000" is not a number from 1 to 65535`,
		`kafka.brokers: "kafka://127.0.0.1:9092": want host:port, not a URL`,
		"kafka.group_prefix: required (the consumer groups are <prefix>-planner, -control-audit, -delay, -dispatcher, -feedback)",
		`kafka.topics.delay.name: "` + strings.Repeat("d", 246) + `" is not a Kafka topic name (letters, digits, '.', '_' and '-', at most 249 characters)`,
		`kafka.topics.ready.name: "bad ready/topic" is not a Kafka topic name (letters, digits, '.', '_' and '-', at most 249 characters)`,
		"mysql.max_open_conns: must be at least 1",
	}
	if got := problems(t, err); !slices.Equal(got, want) {
		t.Errorf("problems:\n got %q\nwant %q", got, want)
	}
}

func TestDecodeErrorsNameTheKey(t *testing.T) {
	_, err := Load("", []string{
		"PUSHLANE_KAFKA__TLS__ENABLED=yes please",
		"PUSHLANE_FEEDBACK__FLUSH_INTERVAL=soon",
		"PUSHLANE_PLANNER__PAGE_SIZE=lots",
	})
	want := []string{
		"feedback.flush_interval: time: invalid duration",
		"kafka.tls.enabled: cannot parse value as 'bool': strconv.ParseBool: invalid syntax",
		"planner.page_size: cannot parse value as 'int': strconv.ParseInt: invalid syntax",
	}
	if got := problems(t, err); !slices.Equal(got, want) {
		t.Errorf("problems:\n got %q\nwant %q", got, want)
	}
}

func TestUnreadableFilesNameKeyAndPath(t *testing.T) {
	dir := t.TempDir()
	_, err := loadYAML(t, dir, `
apps:
  shop:
    apns:
      environment: production
      topic: com.example.shop
      key_file: $DIR/keys/AuthKey_ABC123.p8
      key_id: ABC123DEFG
      team_id: TEAM123456
      ca_file: $DIR
    fcm:
      project_id: shop-prod
      service_account_file: $DIR/keys/shop-sa.json
kafka:
  tls:
    enabled: true
    ca_file: $DIR/kafka-ca.pem
mysql:
  tls:
    enabled: true
    cert_file: $DIR/mysql.crt
    key_file: $DIR/mysql.key
`)
	want := []string{
		"apps.shop.apns.ca_file: " + dir + " is a directory, not a file",
		"apps.shop.apns.key_file: cannot read " + dir + "/keys/AuthKey_ABC123.p8: no such file or directory",
		"apps.shop.fcm.service_account_file: cannot read " + dir + "/keys/shop-sa.json: no such file or directory",
		"kafka.tls.ca_file: cannot read " + dir + "/kafka-ca.pem: no such file or directory",
		"mysql.tls.cert_file: cannot read " + dir + "/mysql.crt: no such file or directory",
		"mysql.tls.key_file: cannot read " + dir + "/mysql.key: no such file or directory",
	}
	if got := problems(t, err); !slices.Equal(got, want) {
		t.Errorf("problems:\n got %q\nwant %q", got, want)
	}
}

func TestTokenAndCertificateAuthConflict(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "AuthKey.p8", "x")
	writeFile(t, dir, "shop.p12", "x")
	base := `
apps:
  shop:
    apns:
      environment: development
      topic: com.example.shop
`
	cases := []struct {
		name, yaml string
		want       []string
	}{
		{"both", "      key_file: $DIR/AuthKey.p8\n      key_id: K\n      team_id: T\n      cert_file: $DIR/shop.p12\n      cert_password: hunter2\n",
			[]string{"apps.shop.apns: use token auth (key_file, key_id, team_id) or certificate auth (cert_file), not both"}},
		{"key id alone with a certificate", "      key_id: K\n      cert_file: $DIR/shop.p12\n",
			[]string{"apps.shop.apns: use token auth (key_file, key_id, team_id) or certificate auth (cert_file), not both"}},
		{"token auth incomplete", "      key_file: $DIR/AuthKey.p8\n",
			[]string{"apps.shop.apns.key_id: required for token auth", "apps.shop.apns.team_id: required for token auth"}},
		{"token auth", "      key_file: $DIR/AuthKey.p8\n      key_id: ABC123DEFG\n      team_id: TEAM123456\n", nil},
		{"certificate auth", "      cert_file: $DIR/shop.p12\n      cert_password: hunter2\n", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := loadYAML(t, dir, base+c.yaml)
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.Apps["shop"].APNS.Connections != 2 {
					t.Errorf("connections default: %d", cfg.Apps["shop"].APNS.Connections)
				}
				return
			}
			if got := problems(t, err); !slices.Equal(got, c.want) {
				t.Errorf("problems:\n got %q\nwant %q", got, c.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error shows the certificate password: %v", err)
			}
		})
	}
}

func TestEnvironmentOverrides(t *testing.T) {
	dir := t.TempDir()
	sa := writeFile(t, dir, "sa.json", "{}")
	sa2 := writeFile(t, dir, "sa-prod.json", "{}")
	cfg, err := loadYAML(t, dir, `
kafka:
  brokers: [file:9092]
apps:
  shop:
    concurrency: 10
    fcm:
      project_id: from-file
      service_account_file: `+sa+`
`,
		"PUSHLANE_KAFKA__BROKERS=a:1,b:2",
		"PUSHLANE_KAFKA__TOPICS__READY__NAME=acme.ready",
		"PUSHLANE_KAFKA__TOPICS__READY__PARTITIONS=48",
		"PUSHLANE_KAFKA__TLS__ENABLED=true",
		"PUSHLANE_KAFKA__SASL__MECHANISM=scram-sha-256",
		"PUSHLANE_KAFKA__SASL__USERNAME=pushlane",
		"PUSHLANE_KAFKA__SASL__PASSWORD=s3cr3t",
		"PUSHLANE_CLICKHOUSE__ADDR=ch1:9000,ch2:9000",
		"PUSHLANE_APPS__SHOP__FCM__PROJECT_ID=shop-prod",
		"PUSHLANE_APPS__SHOP__FCM__SERVICE_ACCOUNT_FILE="+sa2,
		"PUSHLANE_APPS__SHOP__RATE_PER_SECOND=500",
		"PUSHLANE_FEEDBACK__FLUSH_INTERVAL=250ms",
		"PUSHLANE_HTTP__ADDR=",
		// Integration-test variables share the prefix and are not config.
		"PUSHLANE_TEST_REQUIRE=1",
		"PUSHLANE_TEST_KAFKA_BROKERS=127.0.0.1:9092",
		// Not ours at all.
		"PATH=/usr/bin",
		"KAFKA__BROKERS=x:1",
	)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Kafka.Brokers, []string{"a:1", "b:2"}) {
		t.Errorf("kafka.brokers = %q", cfg.Kafka.Brokers)
	}
	if !slices.Equal(cfg.ClickHouse.Addr, []string{"ch1:9000", "ch2:9000"}) {
		t.Errorf("clickhouse.addr = %q", cfg.ClickHouse.Addr)
	}
	if r := cfg.Kafka.Topics.Ready; r.Name != "acme.ready" || r.Partitions != 48 {
		t.Errorf("kafka.topics.ready = %+v", r)
	}
	if !cfg.Kafka.TLS.Enabled || cfg.Kafka.SASL.Password != "s3cr3t" {
		t.Errorf("kafka tls/sasl = %+v %+v", cfg.Kafka.TLS, cfg.Kafka.SASL)
	}
	shop := cfg.Apps["shop"]
	if shop.FCM.ProjectID != "shop-prod" || shop.FCM.ServiceAccountFile != sa2 {
		t.Errorf("apps.shop.fcm = %+v", *shop.FCM)
	}
	if shop.Concurrency != 10 || shop.RatePerSecond != 500 {
		t.Errorf("apps.shop = %+v", shop)
	}
	if cfg.Feedback.FlushInterval != 250*time.Millisecond {
		t.Errorf("feedback.flush_interval = %v", cfg.Feedback.FlushInterval)
	}
	if cfg.HTTP.Addr != "" {
		t.Errorf("an empty PUSHLANE_HTTP__ADDR should disable the ops endpoint, got %q", cfg.HTTP.Addr)
	}
}

func TestEnvironmentCreatesAnApp(t *testing.T) {
	dir := t.TempDir()
	key := writeFile(t, dir, "AuthKey.p8", "x")
	cfg, err := Load("", []string{
		"PUSHLANE_APPS__NEWS__APNS__ENVIRONMENT=production",
		"PUSHLANE_APPS__NEWS__APNS__TOPIC=com.example.news",
		"PUSHLANE_APPS__NEWS__APNS__KEY_FILE=" + key,
		"PUSHLANE_APPS__NEWS__APNS__KEY_ID=ABC123DEFG",
		"PUSHLANE_APPS__NEWS__APNS__TEAM_ID=TEAM123456",
	})
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Apps["news"].APNS
	if a == nil || a.Topic != "com.example.news" || a.KeyFile != key || a.Connections != 2 || cfg.Apps["news"].Concurrency != 200 {
		t.Errorf("apps.news = %+v %+v", cfg.Apps["news"], a)
	}
}

func TestMissingConfigFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := Load(p, nil)
	if want := "config: read " + p + ": no such file or directory"; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	bad := writeFile(t, t.TempDir(), "bad.yaml", "kafka: [\n")
	_, err = Load(bad, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "config: read "+bad+": ") {
		t.Errorf("malformed YAML: %v", err)
	}
}

const (
	dsnPassword  = "dsn-Pa55"
	saslPassword = "sasl-Pa55"
	chPassword   = "ch-Pa55"
	certPassword = "cert-Pa55"
)

func secretConfig(t *testing.T) *Config {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, dir, "shop.p12", "x")
	cfg, err := loadYAML(t, dir, `
apps:
  shop:
    apns:
      environment: production
      topic: com.example.shop
      cert_file: $DIR/shop.p12
      cert_password: `+certPassword+`
kafka:
  sasl:
    mechanism: plain
    username: pushlane
    password: `+saslPassword+`
mysql:
  dsn: "pushlane:`+dsnPassword+`@tcp(db:3306)/pushlane?timeout=5s"
clickhouse:
  addr: [ch:9000]
  password: `+chPassword+`
`)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestRedactedMasksEverySecret(t *testing.T) {
	cfg := secretConfig(t)
	r := cfg.Redacted()
	if r.MySQL.DSN != "pushlane:******@tcp(db:3306)/pushlane?timeout=5s" {
		t.Errorf("mysql.dsn = %q", r.MySQL.DSN)
	}
	if r.Kafka.SASL.Password != "******" || r.Kafka.SASL.Username != "pushlane" {
		t.Errorf("kafka.sasl = %+v", r.Kafka.SASL)
	}
	if r.ClickHouse.Password != "******" {
		t.Errorf("clickhouse.password = %q", r.ClickHouse.Password)
	}
	if p := r.Apps["shop"].APNS.CertPassword; p != "******" {
		t.Errorf("apps.shop.apns.cert_password = %q", p)
	}
	printed := fmt.Sprintf("%+v %+v", r, *r.Apps["shop"].APNS)
	for _, s := range []string{dsnPassword, saslPassword, chPassword, certPassword} {
		if strings.Contains(printed, s) {
			t.Errorf("redacted config shows %q: %s", s, printed)
		}
	}
	// Redacting is a copy: the running config keeps its secrets.
	if cfg.MySQL.DSN != "pushlane:"+dsnPassword+"@tcp(db:3306)/pushlane?timeout=5s" ||
		cfg.Apps["shop"].APNS.CertPassword != certPassword || cfg.Kafka.SASL.Password != saslPassword ||
		cfg.ClickHouse.Password != chPassword {
		t.Errorf("Redacted changed the original: %+v", cfg)
	}
	// Empty secrets stay empty, so the output says "not set".
	empty, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if er := empty.Redacted(); er.MySQL.DSN != "" || er.Kafka.SASL.Password != "" || er.ClickHouse.Password != "" {
		t.Errorf("empty secrets: %+v", er)
	}
	// A DSN that does not parse is hidden whole.
	odd := Config{MySQL: MySQL{DSN: "user:" + dsnPassword + "@tcp(db"}}
	if got := odd.Redacted().MySQL.DSN; got != "******" {
		t.Errorf("unparseable DSN redacted to %q", got)
	}
}

func TestSecretsNeverInErrors(t *testing.T) {
	cases := []struct {
		name    string
		environ []string
		want    []string
	}{
		{"DSN without database slash", []string{"PUSHLANE_MYSQL__DSN=pushlane:" + dsnPassword + "@tcp(db:3306)"},
			[]string{"mysql.dsn: not a valid DSN: invalid DSN: missing the slash separating the database name"}},
		{"DSN with a bad parameter", []string{"PUSHLANE_MYSQL__DSN=pushlane:" + dsnPassword + "@tcp(db:3306)/x?parseTime=" + dsnPassword},
			[]string{"mysql.dsn: not a valid DSN: (details hidden: may contain a password)"}},
		{"secret in a number field", []string{"PUSHLANE_MYSQL__MAX_OPEN_CONNS=pushlane:" + dsnPassword + "@tcp(db)"},
			[]string{"mysql.max_open_conns: cannot parse value as 'int': strconv.ParseInt: invalid syntax"}},
		{"secret in a duration field", []string{"PUSHLANE_FEEDBACK__FLUSH_INTERVAL=" + chPassword},
			[]string{"feedback.flush_interval: time: invalid duration"}},
		{"secret under an unknown key", []string{"PUSHLANE_CLICKHOUSE__PASSWD=" + chPassword, "PUSHLANE_KAFKA__SASL__PASS=" + saslPassword},
			[]string{"clickhouse.passwd: unknown key", "kafka.sasl.pass: unknown key"}},
		{"password without user", []string{"PUSHLANE_KAFKA__SASL__MECHANISM=plain", "PUSHLANE_KAFKA__SASL__PASSWORD=" + saslPassword},
			[]string{"kafka.sasl.username: required with a mechanism"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load("", c.environ)
			if got := problems(t, err); !slices.Equal(got, c.want) {
				t.Errorf("problems:\n got %q\nwant %q", got, c.want)
			}
			for _, s := range []string{dsnPassword, saslPassword, chPassword, certPassword} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error shows secret %q: %v", s, err)
				}
			}
		})
	}
}

func TestRequire(t *testing.T) {
	cfg, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	err = cfg.Require("mysql.dsn", "clickhouse.addr", "apps", "kafka.brokers")
	want := []string{"mysql.dsn: required", "clickhouse.addr: required", "apps: at least one app is required", "kafka.brokers: unknown requirement"}
	if got := problems(t, err); !slices.Equal(got, want) {
		t.Errorf("problems:\n got %q\nwant %q", got, want)
	}
	cfg = secretConfig(t)
	if err := cfg.Require("mysql.dsn", "clickhouse.addr", "apps"); err != nil {
		t.Errorf("Require on a complete config: %v", err)
	}
}

func TestKnown(t *testing.T) {
	typ := reflect.TypeOf(Config{})
	for _, k := range []string{"apps.any-name.apns.key_file", "kafka.topics.ready.retention", "kafka.brokers", "clickhouse.tls.ca_file"} {
		if ok, _ := known(typ, strings.Split(k, ".")); !ok {
			t.Errorf("%s should be known", k)
		}
	}
	for k, scalar := range map[string]int{"apps.shop.apns.key_file.x": 4, "kafka.topics.ready.name.x.y": 4, "kafka.nope": 0, "nope": 0} {
		if ok, s := known(typ, strings.Split(k, ".")); ok || s != scalar {
			t.Errorf("%s: known %v, scalar %d; want false, %d", k, ok, s, scalar)
		}
	}
}

// A password written unquoted with a leading "{" is a YAML mapping: its
// text becomes a key below the password. The error names the password's
// key and never the text.
func TestValueWrittenAsSectionIsNamedNotShown(t *testing.T) {
	_, err := loadYAML(t, t.TempDir(), `
kafka:
  sasl:
    mechanism: plain
    username: pushlane
    password: {Sup3rS3cret!}
`)
	if err == nil {
		t.Fatal("a password written as a section loaded")
	}
	if strings.Contains(err.Error(), "Sup3rS3cret") {
		t.Fatalf("the error shows the secret: %v", err)
	}
	want := []string{
		"kafka.sasl.password: a value, not a section (quote a value that starts with { or [)",
		"kafka.sasl.password: expected type 'string', got unconvertible type 'map[string]interface {}'",
	}
	if got := problems(t, err); !slices.Equal(got, want) {
		t.Errorf("problems:\n got %q\nwant %q", got, want)
	}
}

// YAML's bare 168 would decode as 168ns: a results topic created with it
// deletes its records at once. A duration needs its unit; zero needs none.
func TestBareNumberDurationsAreRefused(t *testing.T) {
	_, err := loadYAML(t, t.TempDir(), `
kafka: {topics: {results: {retention: 168}}}
dispatcher: {results_linger: 20}
feedback: {flush_interval: 1.5}
`)
	const unit = `: a duration needs a unit, as in "20ms" or "168h" (a bare number would be read as nanoseconds)`
	want := []string{"dispatcher.results_linger" + unit, "feedback.flush_interval" + unit, "kafka.topics.results.retention" + unit}
	if got := problems(t, err); !slices.Equal(got, want) {
		t.Errorf("problems:\n got %q\nwant %q", got, want)
	}
	cfg, err := loadYAML(t, t.TempDir(), `
kafka: {topics: {results: {retention: 168h}}}
dispatcher: {results_linger: 0}
`)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Kafka.Topics.Results.Retention != 168*time.Hour || cfg.Dispatcher.ResultsLinger != 0 {
		t.Errorf("retention %s, linger %s", cfg.Kafka.Topics.Results.Retention, cfg.Dispatcher.ResultsLinger)
	}
}

// The database name is spliced unquoted into the DDL and the queries: a
// name that is not a plain identifier fails at start-up, naming the key.
func TestClickHouseDatabaseIsAPlainName(t *testing.T) {
	for _, name := range []string{"pushlane-prod", "a.b", "1st", "x y"} {
		_, err := loadYAML(t, t.TempDir(), "clickhouse: {database: \""+name+"\"}\n")
		want := "clickhouse.database: \"" + name + "\" is not a plain ClickHouse name"
		if got := problems(t, err); len(got) != 1 || !strings.HasPrefix(got[0], want) {
			t.Errorf("%s: problems %q, want %q", name, got, want)
		}
	}
	if cfg, err := loadYAML(t, t.TempDir(), "clickhouse: {database: pushlane_prod}\n"); err != nil || cfg.ClickHouse.Database != "pushlane_prod" {
		t.Errorf("pushlane_prod: %v", err)
	}
}

// An address with user:password@ is refused like any URL, but its error
// must not show the password: start-up errors end up in pod logs and CI
// output. A password with a comma is split into two items of an
// environment list, one without the "@", so that one is not shown either.
func TestAddressErrorsHideCredentials(t *testing.T) {
	const sasl = ": want host:port, with no user or password (those go in kafka.sasl)"
	const ch = ": want host:port, with no user or password (those go in clickhouse.username and clickhouse.password)"
	cases := []struct {
		name    string
		yaml    string
		environ []string
		want    []string
	}{
		{"broker URL", "", []string{"PUSHLANE_KAFKA__BROKERS=SASL_SSL://svc:s3cret@b1:9093"},
			[]string{`kafka.brokers: "SASL_SSL://******@b1:9093"` + sasl}},
		{"ClickHouse URL in the file", `clickhouse: {addr: ["clickhouse://default:s3cret@ch:9000/pushlane"]}`, nil,
			[]string{`clickhouse.addr: "clickhouse://******@ch:9000/pushlane"` + ch}},
		{"no scheme", "", []string{"PUSHLANE_KAFKA__BROKERS=svc:s3cret@b1:9093"},
			[]string{`kafka.brokers: "******@b1:9093"` + sasl}},
		{"a token alone", `kafka: {brokers: ["s3cret@b1:9093"]}`, nil,
			[]string{`kafka.brokers: "******@b1:9093"` + sasl}},
		{"a password split at a comma", "", []string{"PUSHLANE_KAFKA__BROKERS=b0:9092,svc:s3c,ret@b1:9093"},
			[]string{`kafka.brokers: "******@b1:9093"` + sasl, "kafka.brokers: item 2 (not shown: the list holds a password): want host:port"}},
		{"a password in the query", "", []string{"PUSHLANE_CLICKHOUSE__ADDR=clickhouse://ch:9000/pushlane?password=s3cret"},
			[]string{`clickhouse.addr: "clickhouse://ch:9000/pushlane?******": want host:port, not a URL`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := loadYAML(t, t.TempDir(), c.yaml, c.environ...)
			got := problems(t, err)
			if !slices.Equal(got, c.want) {
				t.Errorf("problems:\n got %q\nwant %q", got, c.want)
			}
			for _, s := range []string{"s3cret", "s3c", "ret@"} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error shows the password (%q): %v", s, err)
				}
			}
		})
	}
}

// The decoder converts weakly, for the environment's text; a file's
// number or boolean of the wrong type would be changed without a word
// (0.5 cut to 0, an unlimited rate). The file is held to its types, naming
// the key, while text (all the environment has) is parsed as before.
func TestFileValuesOfTheWrongTypeAreRefused(t *testing.T) {
	dir := t.TempDir()
	sa := writeFile(t, dir, "sa.json", "{}")
	shop := "apps:\n  shop:\n    fcm: {project_id: p, service_account_file: " + sa + "}\n"
	const fraction = "want an integer, not a number with a fraction or an exponent"
	cases := []struct {
		yaml    string
		environ []string
		want    string
	}{
		{shop + "    rate_per_second: 0.5\n", nil, "apps.shop.rate_per_second: " + fraction},
		{"dispatcher: {max_attempts: 1.5}", nil, "dispatcher.max_attempts: " + fraction},
		{"dispatcher: {max_attempts: true}", nil, "dispatcher.max_attempts: want an integer, not true or false"},
		{"kafka: {tls: {insecure_skip_verify: 2}}", nil, "kafka.tls.insecure_skip_verify: want true or false, not a number"},
		{"kafka: {topics: {ready: {partitions: 4294967297}}}", nil, "kafka.topics.ready.partitions: out of range (-2147483648 to 2147483647)"},
		{"kafka: {topics: {replication_factor: 65539}}", nil, "kafka.topics.replication_factor: out of range (-32768 to 32767)"},
		{"planner: {page_size: 18446744073709551615}", nil, "planner.page_size: out of range (-9223372036854775808 to 9223372036854775807)"},
		{"kafka: {sasl: {mechanism: plain, username: u, password: 1e5}}", nil,
			"kafka.sasl.password: want a string, not a number with a fraction or an exponent (quote it, so that it is kept as written)"},
		{"apps: {shop: {apns: {key_id: true}}}", nil, "apps.shop.apns.key_id: want a string, not true or false (quote it, so that it is kept as written)"},
		{"kafka: {brokers: [a:9092, 9093]}", nil, "kafka.brokers: want a list of strings, not one holding a number (quote each item)"},
		// The same values from the environment, refused as before.
		{shop, []string{"PUSHLANE_APPS__SHOP__RATE_PER_SECOND=0.5"}, "apps.shop.rate_per_second: cannot parse value as 'int': strconv.ParseInt: invalid syntax"},
		{"", []string{"PUSHLANE_KAFKA__TOPICS__READY__PARTITIONS=4294967297"}, "kafka.topics.ready.partitions: cannot parse value as 'int32': strconv.ParseInt: value out of range"},
		{"", []string{"PUSHLANE_KAFKA__TLS__INSECURE_SKIP_VERIFY=2"}, "kafka.tls.insecure_skip_verify: cannot parse value as 'bool': strconv.ParseBool: invalid syntax"},
	}
	for _, c := range cases {
		t.Run(c.want, func(t *testing.T) {
			_, err := loadYAML(t, dir, c.yaml, c.environ...)
			if got := problems(t, err); !slices.Equal(got, []string{c.want}) {
				t.Errorf("problems:\n got %q\nwant %q", got, []string{c.want})
			}
		})
	}

	// Text, from either source, is still parsed; durations keep their units.
	cfg, err := loadYAML(t, dir, shop+`    rate_per_second: "50"
kafka:
  tls: {enabled: true, insecure_skip_verify: "true"}
  topics: {ready: {partitions: "48", retention: 30d}}
dispatcher: {results_linger: 5ms}
`, "PUSHLANE_DISPATCHER__MAX_ATTEMPTS=5", "PUSHLANE_FEEDBACK__FLUSH_INTERVAL=2s", "PUSHLANE_KAFKA__SASL__MECHANISM=plain",
		"PUSHLANE_KAFKA__SASL__USERNAME=u", "PUSHLANE_KAFKA__SASL__PASSWORD=100000")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Apps["shop"].RatePerSecond != 50 || !cfg.Kafka.TLS.InsecureSkipVerify || cfg.Kafka.Topics.Ready.Partitions != 48 ||
		cfg.Kafka.Topics.Ready.Retention != 720*time.Hour || cfg.Dispatcher.ResultsLinger != 5*time.Millisecond ||
		cfg.Dispatcher.MaxAttempts != 5 || cfg.Feedback.FlushInterval != 2*time.Second || cfg.Kafka.SASL.Password != "100000" {
		t.Errorf("text values: %+v", cfg)
	}
}

// Kafka takes a replication factor as an int16: -1 for the broker's
// default, else at least 1.
func TestReplicationFactor(t *testing.T) {
	for _, rf := range []string{"-1", "1", "3", "32767"} {
		cfg, err := Load("", []string{"PUSHLANE_KAFKA__TOPICS__REPLICATION_FACTOR=" + rf})
		if err != nil {
			t.Errorf("%s: %v", rf, err)
		} else if got := strconv.Itoa(int(cfg.Kafka.Topics.ReplicationFactor)); got != rf {
			t.Errorf("%s loaded as %s", rf, got)
		}
	}
	for rf, want := range map[string]string{
		"0":     "kafka.topics.replication_factor: must be -1 (the broker's default) or at least 1, not 0",
		"-5":    "kafka.topics.replication_factor: must be -1 (the broker's default) or at least 1, not -5",
		"40000": "kafka.topics.replication_factor: out of range (-32768 to 32767)",
	} {
		_, err := loadYAML(t, t.TempDir(), "kafka: {topics: {replication_factor: "+rf+"}}")
		if got := problems(t, err); !slices.Equal(got, []string{want}) {
			t.Errorf("%s: problems %q, want %q", rf, got, want)
		}
	}
	_, err := Load("", []string{"PUSHLANE_KAFKA__TOPICS__REPLICATION_FACTOR=40000"})
	if want := "kafka.topics.replication_factor: cannot parse value as 'int16': strconv.ParseInt: value out of range"; !slices.Equal(problems(t, err), []string{want}) {
		t.Errorf("40000 from the environment: %q, want %q", problems(t, err), want)
	}
}

// A campaign's app may be a bundle id (com.example.shop): its dots are
// part of the name, not levels of the key.
func TestAppNamesWithDots(t *testing.T) {
	dir := t.TempDir()
	sa := writeFile(t, dir, "sa.json", "{}")
	app := func(concurrency string) string {
		return `
apps:
  com.example.shop:
    concurrency: ` + concurrency + `
    rate_per_second: 50
    fcm:
      project_id: shop-prod
      service_account_file: ` + sa + `
      quota_per_minute: 1200
`
	}
	cfg, err := loadYAML(t, dir, app("7"), "PUSHLANE_APPS__COM.EXAMPLE.SHOP__FCM__CONCURRENCY=9")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Apps) != 1 {
		t.Fatalf("apps: %+v", cfg.Apps)
	}
	shop := cfg.Apps["com.example.shop"]
	if shop.Concurrency != 7 || shop.RatePerSecond != 50 || shop.FCM == nil || shop.FCM.QuotaPerMinute != 1200 || shop.FCM.Concurrency != 9 {
		t.Errorf("apps.com.example.shop = %+v %+v", shop, shop.FCM)
	}
	if !slices.Contains(cfg.Lines(), "apps.com.example.shop.concurrency = 7") {
		t.Errorf("Lines: %q", cfg.Lines())
	}

	for _, c := range []struct {
		yaml    string
		environ []string
		want    string
	}{
		{app("0"), nil, "apps.com.example.shop.concurrency: must be at least 1"},
		{app("1.5"), nil, "apps.com.example.shop.concurrency: want an integer, not a number with a fraction or an exponent"},
		{app("7"), []string{"PUSHLANE_APPS__COM.EXAMPLE.SHOP__CONCURRENCY=abc"}, "apps.com.example.shop.concurrency: cannot parse value as 'int': strconv.ParseInt: invalid syntax"},
		{app("7") + "    concurrencyy: 1\n", nil, "apps.com.example.shop.concurrencyy: unknown key"},
		// Elsewhere a dot does not nest a key either, and says so.
		{"kafka.brokers: [a:9092]\n", nil, `kafka.brokers: unknown key (only an app's name may hold a ".": write each level of a key as its own section)`},
		{"", []string{"PUSHLANE_KAFKA.BROKERS=a:9092"}, `kafka.brokers: unknown key (only an app's name may hold a ".": write each level of a key as its own section)`},
	} {
		_, err := loadYAML(t, dir, c.yaml, c.environ...)
		if got := problems(t, err); !slices.Equal(got, []string{c.want}) {
			t.Errorf("problems:\n got %q\nwant %q", got, []string{c.want})
		}
	}
}

// A section whose keys are all commented out is YAML null. It used to
// replace the section's defaults: "http:" so left turned the ops endpoint
// off, and the liveness probe restarted the pod in a loop. It now counts
// as absent; "" still turns the endpoint off, and a key with no value,
// default or empty, is refused.
func TestEmptySectionKeepsItsDefaults(t *testing.T) {
	cfg, err := loadYAML(t, t.TempDir(), `
http:
  # addr: ":9090"
log:
kafka:
  topics:
    ready:
`)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.Addr != ":8080" || cfg.Log.Level != "info" || cfg.Kafka.Topics.Ready.Name != "pushlane.ready" {
		t.Errorf("http.addr %q, log.level %q, kafka.topics.ready.name %q: want the defaults", cfg.HTTP.Addr, cfg.Log.Level, cfg.Kafka.Topics.Ready.Name)
	}
	cfg, err = loadYAML(t, t.TempDir(), "http:\n  addr: \"\"\n")
	if err != nil || cfg.HTTP.Addr != "" {
		t.Errorf(`addr: "" should turn the ops endpoint off: %v %+v`, err, cfg)
	}
	_, err = loadYAML(t, t.TempDir(), "http:\n  addr:\nfeedback:\n  suspect_strikes: ~\n")
	want := []string{
		`feedback.suspect_strikes: no value: leave the key out to keep the default (3), or give one`,
		`http.addr: no value: leave the key out to keep the default (":8080"), or give one`,
	}
	if got := problems(t, err); !slices.Equal(got, want) {
		t.Errorf("problems:\n got %q\nwant %q", got, want)
	}
}

// The decoder writes an app's key as apps[shop].concurrency; the problem
// names it as the file and the documentation do.
func TestAppDecodeErrorsNameTheDottedKey(t *testing.T) {
	for env, want := range map[string]string{
		"PUSHLANE_APPS__SHOP__CONCURRENCY=abc":        "apps.shop.concurrency: cannot parse value as 'int': strconv.ParseInt: invalid syntax",
		"PUSHLANE_APPS__SHOP__APNS__CONNECTIONS=many": "apps.shop.apns.connections: cannot parse value as 'int': strconv.ParseInt: invalid syntax",
	} {
		_, err := Load("", []string{env})
		if got := problems(t, err); !slices.Equal(got, []string{want}) {
			t.Errorf("%s: problems %q, want %q", env, got, want)
		}
	}
}

// "a:9092, b:9092" is two brokers, not a seed host " b"; every list key
// read from the environment trims its items and drops empty ones.
func TestEnvironmentListsAreTrimmed(t *testing.T) {
	cfg, err := Load("", []string{"PUSHLANE_KAFKA__BROKERS=a:9092, b:9092", "PUSHLANE_CLICKHOUSE__ADDR= ch1:9000 ,\tch2:9000,"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Kafka.Brokers, []string{"a:9092", "b:9092"}) || !slices.Equal(cfg.ClickHouse.Addr, []string{"ch1:9000", "ch2:9000"}) {
		t.Errorf("kafka.brokers %q, clickhouse.addr %q", cfg.Kafka.Brokers, cfg.ClickHouse.Addr)
	}
	// Empty is no address at all, so what needs one says so.
	cfg, err = Load("", []string{"PUSHLANE_CLICKHOUSE__ADDR="})
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Require("clickhouse.addr"); err == nil {
		t.Errorf("an empty PUSHLANE_CLICKHOUSE__ADDR satisfies Require: %q", cfg.ClickHouse.Addr)
	}
	// A space inside a file's item is no host.
	_, err = loadYAML(t, t.TempDir(), `kafka: {brokers: ["a:9092", " b:9092"]}`)
	if want := []string{`kafka.brokers: " b:9092": want host:port, with no spaces`}; !slices.Equal(problems(t, err), want) {
		t.Errorf("problems:\n got %q\nwant %q", problems(t, err), want)
	}
}

// An app's name is what campaigns write in "app", so it follows the
// campaign schema's rule (schemas.CheckAppName); an app named otherwise
// used to load, and every campaign for it was dead-lettered by the planner.
func TestAppNamesFollowTheCampaignRule(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "sa.json", "{}")
	long := strings.Repeat("a", 65)
	app := `{fcm: {project_id: p, service_account_file: $DIR/sa.json}}`
	_, err := loadYAML(t, dir, `
apps:
  "my shop": `+app+`
  "shop ": `+app+`
  _shop: `+app+`
  `+long+`: `+app+`
  com.example.shop: `+app+`
  Shop-2_x: `+app+`
  `+long[:64]+`: `+app+`
`)
	const rule = "not an app name (1 to 64 ASCII letters, digits, _, . and -, starting with a letter or digit): "
	want := []string{
		"apps._shop: " + rule + "'_shop' does not match pattern '^[A-Za-z0-9][A-Za-z0-9_.-]*$'",
		"apps." + long + ": " + rule + "maxLength: got 65, want 64",
		"apps.my shop: " + rule + "'my shop' does not match pattern '^[A-Za-z0-9][A-Za-z0-9_.-]*$'",
		"apps.shop : " + rule + "'shop ' does not match pattern '^[A-Za-z0-9][A-Za-z0-9_.-]*$'",
	}
	if got := problems(t, err); !slices.Equal(got, want) {
		t.Fatalf("problems:\n got %q\nwant %q", got, want)
	}

	cfg, err := loadYAML(t, dir, `
apps:
  com.example.shop: `+app+`
  Shop-2_x: `+app+`
  `+long[:64]+`: `+app+`
`)
	if err != nil {
		t.Fatalf("names within the rule: %v", err)
	}
	if len(cfg.Apps) != 3 {
		t.Errorf("apps: %v", slices.Sorted(maps.Keys(cfg.Apps)))
	}
}

// Settings that are ignored, or that would be printed, are refused: a key
// pasted where its path belongs is not echoed (it would reach the logs);
// TLS files without tls.enabled and SASL credentials without a mechanism
// would connect unprotected without a word; a certificate password beside
// token auth is unused; an empty variable for a number or a switch would
// read as 0 or false; a second YAML document was dropped silently.
func TestIgnoredOrEchoedSettingsAreRefused(t *testing.T) {
	dir := t.TempDir()
	sa := writeFile(t, dir, "sa.json", "{}")
	key := writeFile(t, dir, "AuthKey.p8", "x")
	const pem = "-----BEGIN PRIVATE KEY-----\nMIGTs3cretKEYMATERIAL\n-----END PRIVATE KEY-----"
	const saJSON = `{"type":"service_account","private_key":"s3cretKEYMATERIAL"}`
	shop := "apps:\n  shop:\n    fcm: {project_id: p, service_account_file: " + sa + "}\n"
	token := "apps:\n  shop:\n    apns: {environment: production, topic: t, key_file: " + key + ", key_id: ABCDE12345, team_id: TEAM123456"
	cases := []struct {
		yaml    string
		environ []string
		want    []string
	}{
		{"", []string{"PUSHLANE_APPS__SHOP__APNS__KEY_FILE=" + pem, "PUSHLANE_APPS__SHOP__APNS__KEY_ID=ABCDE12345",
			"PUSHLANE_APPS__SHOP__APNS__TEAM_ID=TEAM123456", "PUSHLANE_APPS__SHOP__APNS__TOPIC=t", "PUSHLANE_APPS__SHOP__APNS__ENVIRONMENT=production"},
			[]string{fmt.Sprintf("apps.shop.apns.key_file: holds what looks like a file's contents (%d bytes), not a path: write them to a file and give its path", len(pem))}},
		{"", []string{"PUSHLANE_APPS__SHOP__FCM__SERVICE_ACCOUNT_FILE=" + saJSON, "PUSHLANE_APPS__SHOP__FCM__PROJECT_ID=p"},
			[]string{fmt.Sprintf("apps.shop.fcm.service_account_file: holds what looks like a file's contents (%d bytes), not a path: write them to a file and give its path", len(saJSON))}},
		{"mysql: {tls: {ca_file: " + sa + "}}", nil,
			[]string{"mysql.tls.enabled: must be true for the other mysql.tls settings to be used (they are ignored without it): set it, or remove them"}},
		{"clickhouse: {tls: {insecure_skip_verify: true}}", nil,
			[]string{"clickhouse.tls.enabled: must be true for the other clickhouse.tls settings to be used (they are ignored without it): set it, or remove them"}},
		{"kafka: {sasl: {username: u, password: s3cret}}", nil,
			[]string{"kafka.sasl.mechanism: required with a username or password (plain, scram-sha-256 or scram-sha-512)"}},
		{token + ", cert_password: s3cret}\n", nil,
			[]string{"apps.shop.apns.cert_password: is for certificate auth (cert_file), which this app does not use"}},
		{shop, []string{"PUSHLANE_FEEDBACK__SUSPECT_STRIKES=", "PUSHLANE_APPS__SHOP__RATE_PER_SECOND=", "PUSHLANE_KAFKA__TLS__ENABLED="},
			[]string{
				"apps.shop.rate_per_second: PUSHLANE_APPS__SHOP__RATE_PER_SECOND is set but empty: unset it to keep the default, or give a value",
				"feedback.suspect_strikes: PUSHLANE_FEEDBACK__SUSPECT_STRIKES is set but empty: unset it to keep the default, or give a value",
				"kafka.tls.enabled: PUSHLANE_KAFKA__TLS__ENABLED is set but empty: unset it to keep the default, or give a value",
			}},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.want, "; "), func(t *testing.T) {
			_, err := loadYAML(t, dir, c.yaml, c.environ...)
			got := problems(t, err)
			slices.Sort(got)
			if !slices.Equal(got, c.want) {
				t.Errorf("problems:\n got %q\nwant %q", got, c.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("the error shows the secret: %v", err)
			}
		})
	}

	// Still accepted: empty strings and lists from the environment (an
	// empty PUSHLANE_HTTP__ADDR turns the ops endpoint off), and a file
	// that ends with an empty document.
	cfg, err := loadYAML(t, dir, shop+"---\n", "PUSHLANE_HTTP__ADDR=", "PUSHLANE_MYSQL__DSN=")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.Addr != "" || cfg.Feedback.SuspectStrikes != 3 {
		t.Errorf("http.addr %q, feedback.suspect_strikes %d", cfg.HTTP.Addr, cfg.Feedback.SuspectStrikes)
	}

	_, err = loadYAML(t, dir, shop+"---\nlog: {format: text}\nkafka: {brokerz: [a]}\n")
	if err == nil || !strings.Contains(err.Error(), "yaml: line 5: a second document (after ---): the configuration is one document") {
		t.Errorf("a second document: %v", err)
	}
}

// An app's apns: or fcm: section whose keys are all commented out is no
// section, as docs/config.md says of every section; before, it was filled
// with the app defaults and refused for its missing required keys.
func TestEmptyProviderSectionIsAbsent(t *testing.T) {
	dir := t.TempDir()
	key := writeFile(t, dir, "AuthKey.p8", "x")
	cfg, err := loadYAML(t, dir, `apps:
  shop:
    apns: {environment: production, topic: t, key_file: `+key+`, key_id: ABCDE12345, team_id: TEAM123456}
    fcm:
      # project_id: shop-prod
`)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Apps["shop"].FCM != nil || cfg.Apps["shop"].APNS == nil {
		t.Errorf("apps.shop: apns %v, fcm %v; want apns only", cfg.Apps["shop"].APNS, cfg.Apps["shop"].FCM)
	}
	// An app with nothing in it is still reported.
	_, err = loadYAML(t, dir, "apps:\n  shop:\n    apns:\n    fcm:\n")
	if got := problems(t, err); !slices.Equal(got, []string{"apps.shop: needs an apns or fcm section"}) {
		t.Errorf("problems: %q", got)
	}
}
