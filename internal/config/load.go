package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
)

// EnvPrefix starts every environment override.
const EnvPrefix = "PUSHLANE_"

// Defaults are applied before the file and the environment.
func Defaults() map[string]any {
	return map[string]any{
		"kafka.brokers":                         []string{"127.0.0.1:9092"},
		"kafka.client_id":                       "pushlane",
		"kafka.group_prefix":                    "pushlane",
		"kafka.topics.campaigns.name":           "pushlane.campaigns",
		"kafka.topics.campaigns.partitions":     6,
		"kafka.topics.control.name":             "pushlane.campaign-control",
		"kafka.topics.control.partitions":       1,
		"kafka.topics.delay.name":               "pushlane.delay",
		"kafka.topics.delay.partitions":         6,
		"kafka.topics.delay.retention":          "744h",
		"kafka.topics.ready.name":               "pushlane.ready",
		"kafka.topics.ready.partitions":         12,
		"kafka.topics.results.name":             "pushlane.results",
		"kafka.topics.results.partitions":       12,
		"kafka.topics.dead_letter.name":         "pushlane.dead-letter",
		"kafka.topics.dead_letter.partitions":   3,
		"kafka.topics.registrations.name":       "pushlane.device-registrations",
		"kafka.topics.registrations.partitions": 6,
		"kafka.topics.replication_factor":       -1,
		"mysql.max_open_conns":                  8,
		"clickhouse.database":                   "pushlane",
		"clickhouse.username":                   "default",
		"http.addr":                             ":8080",
		"log.level":                             "info",
		"log.format":                            "json",
		"planner.page_size":                     5000,
		"planner.batches_per_transaction":       200,
		"delay.tiers":                           22,
		"dispatcher.max_attempts":               8,
		"dispatcher.chunk_size":                 100,
		"dispatcher.results_linger":             "20ms",
		"feedback.suspect_strikes":              3,
		"feedback.flush_rows":                   5000,
		"feedback.flush_interval":               "1s",
	}
}

// appDefaults fill in every configured app.
var appDefaults = map[string]any{
	"concurrency":          200,
	"apns.connections":     2,
	"fcm.concurrency":      200,
	"fcm.quota_per_minute": 600000,
}

// Load reads path (may be empty: defaults and environment only), applies
// environ (os.Environ() in production) on top, and validates. Every
// problem found is reported, each naming its key.
func Load(path string, environ []string) (*Config, error) {
	k := koanf.New(".")
	if err := k.Load(confmap.Provider(Defaults(), "."), nil); err != nil {
		return nil, fmt.Errorf("config: defaults: %w", err)
	}
	if path != "" {
		if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
			return nil, fmt.Errorf("config: read %s: %w", path, unwrapPathErr(err))
		}
	}
	if err := k.Load(env.Provider(".", env.Opt{
		Prefix:        EnvPrefix,
		TransformFunc: envKey,
		EnvironFunc:   func() []string { return environ },
	}), nil); err != nil {
		return nil, fmt.Errorf("config: environment: %w", err)
	}
	for _, app := range k.MapKeys("apps") {
		for key, v := range appDefaults {
			full := "apps." + app + "." + key
			section := "apps." + app + "." + strings.SplitN(key, ".", 2)[0]
			if strings.Contains(key, ".") && !k.Exists(section) {
				continue
			}
			if !k.Exists(full) {
				if err := k.Set(full, v); err != nil {
					return nil, fmt.Errorf("config: %s: %w", full, err)
				}
			}
		}
	}

	var problems []string
	sections := map[string]bool{}
	for _, key := range k.Keys() {
		path := strings.Split(key, ".")
		switch typ, ok, scalar := resolve(reflect.TypeOf(Config{}), path); {
		case ok && typ == durationType && !durationText(k.Get(key)):
			// YAML's 168 decodes as 168ns: a topic created with it
			// would delete its records at once.
			problems = append(problems, key+`: a duration needs a unit, as in "20ms" or "168h" (a bare number would be read as nanoseconds)`)
		case scalar > 0:
			// A value written as a section (a YAML password starting
			// with "{"): the rest of the path is the value's own text,
			// maybe a secret, so only the key is named.
			if name := strings.Join(path[:scalar], "."); !sections[name] {
				sections[name] = true
				problems = append(problems, name+": a value, not a section (quote a value that starts with { or [)")
			}
		case !ok:
			problems = append(problems, fmt.Sprintf("%s: unknown key", key))
		}
	}
	var cfg Config
	if err := k.UnmarshalWithConf("", &cfg, koanf.UnmarshalConf{Tag: "koanf"}); err != nil {
		problems = append(problems, decodeProblems(err)...)
	}
	if len(problems) == 0 {
		problems = cfg.validate()
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, &Error{Problems: problems}
	}
	return &cfg, nil
}

// Error lists every configuration problem, each starting with its key.
type Error struct{ Problems []string }

func (e *Error) Error() string {
	return "config: " + strings.Join(e.Problems, "; ")
}

// envKey maps PUSHLANE_KAFKA__TOPICS__READY__NAME to kafka.topics.ready.name.
// Values of list keys may be comma-separated. PUSHLANE_TEST_* variables
// belong to internal/testenv, not to the configuration, and are skipped so
// a shell prepared for integration tests can still run the commands.
func envKey(k, v string) (string, any) {
	if strings.HasPrefix(k, EnvPrefix+"TEST_") {
		return "", nil
	}
	key := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(k, EnvPrefix), "__", "."))
	if key == "kafka.brokers" || key == "clickhouse.addr" {
		return key, strings.Split(v, ",")
	}
	return key, v
}

// known reports whether a dotted key path names a field of t. Map levels
// (apps.<name>) accept any name.
//
// When the path goes on below a scalar key, scalar is the length of that
// key's path (and ok is false).
func known(t reflect.Type, path []string) (ok bool, scalar int) {
	_, ok, scalar = resolve(t, path)
	return ok, scalar
}

var durationType = reflect.TypeOf(time.Duration(0))

// durationText reports whether v can be a duration as written in a config:
// text ("20ms", from YAML or the environment) or a bare zero.
func durationText(v any) bool {
	switch v := v.(type) {
	case string:
		return true
	case int:
		return v == 0
	case int64:
		return v == 0
	case float64:
		return v == 0
	}
	return false
}

// resolve is known, with the type the path names when ok (nil for a list).
func resolve(t reflect.Type, path []string) (typ reflect.Type, ok bool, scalar int) {
	depth := 0
	for {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if depth == len(path) {
			return t, true, 0
		}
		switch t.Kind() {
		case reflect.Struct:
			found := false
			for i := 0; i < t.NumField(); i++ {
				if f := t.Field(i); f.Tag.Get("koanf") == path[depth] {
					t, found = f.Type, true
					break
				}
			}
			if !found {
				return nil, false, 0
			}
		case reflect.Map:
			t = t.Elem()
		case reflect.Slice:
			return nil, true, 0 // koanf flattens lists of scalars into one key
		default:
			return nil, false, depth // a scalar has no sub-keys
		}
		depth++
	}
}

func (c *Config) validate() []string {
	var p []string
	add := func(key, format string, args ...any) {
		p = append(p, key+": "+fmt.Sprintf(format, args...))
	}
	readable := func(key, path string) {
		if path == "" {
			return
		}
		f, err := os.Open(path)
		if err != nil {
			add(key, "cannot read %s: %v", path, unwrapPathErr(err))
			return
		}
		st, err := f.Stat()
		f.Close()
		if err == nil && st.IsDir() {
			add(key, "%s is a directory, not a file", path)
		}
	}
	tlsFiles := func(prefix string, t TLS) {
		readable(prefix+".ca_file", t.CAFile)
		readable(prefix+".cert_file", t.CertFile)
		readable(prefix+".key_file", t.KeyFile)
		if (t.CertFile == "") != (t.KeyFile == "") {
			add(prefix, "cert_file and key_file go together")
		}
	}

	// Apps in name order, so a clash between two apps is reported the same
	// way every time.
	type projectQuota struct {
		app   string
		quota int
	}
	projects := map[string]projectQuota{}
	for _, name := range slices.Sorted(maps.Keys(c.Apps)) {
		app := c.Apps[name]
		key := "apps." + name
		if app.APNS == nil && app.FCM == nil {
			add(key, "needs an apns or fcm section")
		}
		if app.Concurrency < 1 {
			add(key+".concurrency", "must be at least 1")
		}
		if app.RatePerSecond < 0 {
			add(key+".rate_per_second", "must not be negative")
		}
		if a := app.APNS; a != nil {
			k := key + ".apns"
			switch a.Environment {
			case "development", "production":
			case "":
				add(k+".environment", "required (development or production)")
			default:
				add(k+".environment", "must be development or production, not %q", a.Environment)
			}
			if a.Topic == "" {
				add(k+".topic", "required (the app's bundle id)")
			}
			token := a.KeyFile != "" || a.KeyID != "" || a.TeamID != ""
			cert := a.CertFile != ""
			switch {
			case token && cert:
				add(k, "use token auth (key_file, key_id, team_id) or certificate auth (cert_file), not both")
			case token:
				if a.KeyFile == "" {
					add(k+".key_file", "required for token auth")
				}
				if a.KeyID == "" {
					add(k+".key_id", "required for token auth")
				}
				if a.TeamID == "" {
					add(k+".team_id", "required for token auth")
				}
				// Apple's ids are ten letters and digits; the provider
				// token APNs refuses otherwise is a halted app.
				for _, id := range []struct{ key, v string }{{k + ".key_id", a.KeyID}, {k + ".team_id", a.TeamID}} {
					if id.v != "" && !appleID.MatchString(id.v) {
						add(id.key, "%q is not Apple's 10-character id (letters and digits)", id.v)
					}
				}
				readable(k+".key_file", a.KeyFile)
			case cert:
				readable(k+".cert_file", a.CertFile)
			default:
				add(k, "needs token auth (key_file, key_id, team_id) or certificate auth (cert_file)")
			}
			readable(k+".ca_file", a.CAFile)
			if a.Connections < 1 || a.Connections > 64 {
				add(k+".connections", "must be 1 to 64, not %d", a.Connections)
			}
		}
		if f := app.FCM; f != nil {
			k := key + ".fcm"
			if f.ProjectID == "" {
				add(k+".project_id", "required")
			}
			if f.ServiceAccountFile == "" {
				add(k+".service_account_file", "required")
			}
			readable(k+".service_account_file", f.ServiceAccountFile)
			readable(k+".ca_file", f.CAFile)
			if f.Concurrency < 1 {
				add(k+".concurrency", "must be at least 1")
			}
			if f.QuotaPerMinute < 2 {
				add(k+".quota_per_minute", "must be at least 2, not %d", f.QuotaPerMinute)
			}
			// Google counts a project's messages whichever app sends
			// them: the apps of one project share one bucket.
			if p, ok := projects[f.ProjectID]; ok && f.ProjectID != "" && p.quota != f.QuotaPerMinute {
				add(k+".quota_per_minute", "%d, but apps.%s.fcm.quota_per_minute is %d for the same project %s: the apps share its one quota, so give them the same value",
					f.QuotaPerMinute, p.app, p.quota, f.ProjectID)
			} else if !ok {
				projects[f.ProjectID] = projectQuota{app: name, quota: f.QuotaPerMinute}
			}
		}
	}

	if len(c.Kafka.Brokers) == 0 || c.Kafka.Brokers[0] == "" {
		add("kafka.brokers", "required")
	}
	hostPorts := func(key string, addrs []string) {
		for _, a := range addrs {
			if a == "" {
				continue // an empty list is "required" above
			}
			if err := checkHostPort(a); err != nil {
				add(key, "%q: %v", a, err)
			}
		}
	}
	hostPorts("kafka.brokers", c.Kafka.Brokers)
	hostPorts("clickhouse.addr", c.ClickHouse.Addr)
	if !clickhouseIdent.MatchString(c.ClickHouse.Database) {
		// Spliced unquoted into the DDL and the analysts' queries.
		add("clickhouse.database", "%q is not a plain ClickHouse name (a letter or '_', then letters, digits and '_')", c.ClickHouse.Database)
	}
	if c.Kafka.GroupPrefix == "" {
		add("kafka.group_prefix", "required (the consumer groups are <prefix>-planner, -delay, -dispatcher, -feedback)")
	}
	tlsFiles("kafka.tls", c.Kafka.TLS)
	switch c.Kafka.SASL.Mechanism {
	case "":
	case "plain", "scram-sha-256", "scram-sha-512":
		if c.Kafka.SASL.Username == "" {
			add("kafka.sasl.username", "required with a mechanism")
		}
	default:
		add("kafka.sasl.mechanism", "must be plain, scram-sha-256 or scram-sha-512, not %q", c.Kafka.SASL.Mechanism)
	}
	topics := map[string]Topic{
		"campaigns": c.Kafka.Topics.Campaigns, "control": c.Kafka.Topics.Control, "delay": c.Kafka.Topics.Delay,
		"ready": c.Kafka.Topics.Ready, "results": c.Kafka.Topics.Results, "dead_letter": c.Kafka.Topics.DeadLetter,
		"registrations": c.Kafka.Topics.Registrations,
	}
	for name, t := range topics {
		longest := t.Name
		if name == "delay" {
			longest += ".t00" // the tier topics are <name>.tNN
		}
		switch {
		case t.Name == "":
			add("kafka.topics."+name+".name", "required")
		case !topicName.MatchString(longest):
			add("kafka.topics."+name+".name", "%q is not a Kafka topic name (letters, digits, '.', '_' and '-', at most 249 characters)", t.Name)
		}
		if t.Partitions < 1 {
			add("kafka.topics."+name+".partitions", "must be at least 1")
		}
		if t.Retention < 0 {
			add("kafka.topics."+name+".retention", "must not be negative")
		}
	}
	if c.MySQL.DSN != "" {
		if _, err := mysql.ParseDSN(c.MySQL.DSN); err != nil {
			add("mysql.dsn", "not a valid DSN: %s", dsnErr(err))
		}
	}
	tlsFiles("mysql.tls", c.MySQL.TLS)
	tlsFiles("clickhouse.tls", c.ClickHouse.TLS)
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level", "must be debug, info, warn or error, not %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		add("log.format", "must be json or text, not %q", c.Log.Format)
	}
	if c.Planner.PageSize < 1 {
		add("planner.page_size", "must be at least 1")
	}
	if c.Planner.BatchesPerTransaction < 1 {
		add("planner.batches_per_transaction", "must be at least 1")
	}
	if c.Delay.Tiers < 1 || c.Delay.Tiers > 30 {
		add("delay.tiers", "must be between 1 and 30")
	} else if need := DelayRetentionMin(c.Delay.Tiers); c.Kafka.Topics.Delay.Retention < need {
		// A batch sits in its tier until the tier's delay has passed: a
		// shorter retention deletes it first, and a forwarder that
		// restarts then skips it without an error. The broker's default
		// (0 here) is unknown, usually 7 days.
		add("kafka.topics.delay.retention", "%s is shorter than the top tier (t%02d) holds a batch (%s) plus a day to recover from an outage; set at least %s",
			c.Kafka.Topics.Delay.Retention, c.Delay.Tiers-1, TierDelay(c.Delay.Tiers-1), need)
	}
	if c.Dispatcher.MaxAttempts < 1 {
		add("dispatcher.max_attempts", "must be at least 1")
	}
	if c.Dispatcher.ChunkSize < 1 {
		add("dispatcher.chunk_size", "must be at least 1")
	}
	if c.Dispatcher.ResultsLinger < 0 || c.Dispatcher.ResultsLinger > time.Second {
		add("dispatcher.results_linger", "must be between 0s and 1s")
	}
	if c.Feedback.SuspectStrikes < 0 {
		add("feedback.suspect_strikes", "must not be negative")
	}
	if c.Feedback.FlushRows < 1 {
		add("feedback.flush_rows", "must be at least 1")
	}
	if c.Feedback.FlushInterval < 10*time.Millisecond {
		// Shorter only makes feedback poll in a busy loop.
		add("feedback.flush_interval", "must be at least 10ms")
	}
	if c.MySQL.MaxOpenConns < 1 {
		add("mysql.max_open_conns", "must be at least 1")
	}
	return p
}

// topicName is what Kafka accepts as a topic name.
var topicName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,249}$`)

var clickhouseIdent = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// appleID is the form of Apple's key and team ids.
var appleID = regexp.MustCompile(`^[A-Za-z0-9]{10}$`)

// checkHostPort accepts host:port (a name, an IPv4 address or a bracketed
// IPv6 one), which is what the Kafka and ClickHouse clients dial.
func checkHostPort(addr string) error {
	if strings.Contains(addr, "://") {
		return errors.New("want host:port, not a URL")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want host:port")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	if host == "" {
		return errors.New("want host:port, the host is empty")
	}
	return nil
}

// Require reports, naming keys, what a command needs beyond the common
// validation (e.g. the planner needs mysql.dsn).
func (c *Config) Require(keys ...string) error {
	var p []string
	for _, key := range keys {
		switch key {
		case "mysql.dsn":
			if c.MySQL.DSN == "" {
				p = append(p, "mysql.dsn: required")
			}
		case "clickhouse.addr":
			if len(c.ClickHouse.Addr) == 0 {
				p = append(p, "clickhouse.addr: required")
			}
		case "apps":
			if len(c.Apps) == 0 {
				p = append(p, "apps: at least one app is required")
			}
		default:
			p = append(p, key+": unknown requirement")
		}
	}
	if len(p) > 0 {
		return &Error{Problems: p}
	}
	return nil
}

// DelayRetentionMin is the least retention of the tier topics with tiers
// tiers: the top tier's delay (a batch stays in a tier that long) plus a
// day, so a forwarder that was down can still read what came due meanwhile.
func DelayRetentionMin(tiers int) time.Duration { return TierDelay(tiers-1) + 24*time.Hour }

// DelayTiers returns the names of the delay ladder topics.
func (c *Config) DelayTiers() []string {
	out := make([]string, c.Delay.Tiers)
	for i := range out {
		out[i] = fmt.Sprintf("%s.t%02d", c.Kafka.Topics.Delay.Name, i)
	}
	return out
}

// TierDelay is the fixed delay of ladder tier k.
func TierDelay(k int) time.Duration { return time.Second << k }

func unwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// decodeProblems turns the decoder's joined errors into one problem per
// key ("feedback.flush_interval: time: invalid duration"), never echoing
// values.
func decodeProblems(err error) []string {
	var leaves []error
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		leaves = joined.Unwrap()
	} else {
		leaves = []error{err}
	}
	var out []string
	for _, e := range leaves {
		var de *mapstructure.DecodeError
		if errors.As(e, &de) {
			out = append(out, de.Name()+": "+redactErr(de.Unwrap().Error()))
			continue
		}
		out = append(out, redactErr(e.Error()))
	}
	return out
}

// dsnErr shows the driver's fixed DSN syntax messages; any other message
// may quote a piece of the DSN, which may be the password.
func dsnErr(err error) string {
	if strings.HasPrefix(err.Error(), "invalid DSN: ") {
		return err.Error()
	}
	return "(details hidden: may contain a password)"
}

// redactErr keeps decoder and DSN errors from echoing secrets back.
func redactErr(s string) string {
	if i := strings.Index(s, "@"); i > 0 && strings.Contains(s[:i], ":") {
		return "(details hidden: may contain a password)"
	}
	return s
}

// Redacted returns a copy safe to print or log: passwords and DSN
// passwords are replaced.
func (c Config) Redacted() Config {
	const mask = "******"
	out := c
	out.Apps = make(map[string]App, len(c.Apps))
	for n, a := range c.Apps {
		if a.APNS != nil {
			cp := *a.APNS
			if cp.CertPassword != "" {
				cp.CertPassword = mask
			}
			a.APNS = &cp
		}
		out.Apps[n] = a
	}
	if out.Kafka.SASL.Password != "" {
		out.Kafka.SASL.Password = mask
	}
	if out.ClickHouse.Password != "" {
		out.ClickHouse.Password = mask
	}
	if d, err := mysql.ParseDSN(c.MySQL.DSN); err == nil && d.Passwd != "" {
		d.Passwd = mask
		out.MySQL.DSN = d.FormatDSN()
	} else if err != nil && c.MySQL.DSN != "" {
		// Unparseable: where the password is cannot be told, so hide it all.
		out.MySQL.DSN = mask
	}
	return out
}
