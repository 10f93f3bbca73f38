package config

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/go-sql-driver/mysql"
	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"

	"github.com/pushlane/pushlane/schemas"
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

// sep joins the levels of a key inside the loader. It is not ".": an app
// name may hold dots (com.example.shop, like a bundle id) and is one level.
// Keys are shown to people with dots (dotted).
const sep = "\x00"

var configType = reflect.TypeOf(Config{})

// dotted is key as the file, the documentation and the errors write it.
func dotted(key string) string { return strings.ReplaceAll(key, sep, ".") }

// Load reads path (may be empty: defaults and environment only), applies
// environ (os.Environ() in production) on top, and validates. Every
// problem found is reported, each naming its key.
func Load(path string, environ []string) (*Config, error) {
	k := koanf.New(sep)
	if err := k.Load(confmap.Provider(Defaults(), "."), nil); err != nil {
		return nil, fmt.Errorf("config: defaults: %w", err)
	}
	if path != "" {
		f := koanf.New(sep)
		if err := f.Load(file.Provider(path), yamlParser{}); err != nil {
			return nil, fmt.Errorf("config: read %s: %w", path, unwrapPathErr(err))
		}
		// A section whose keys are all commented out is YAML null, which
		// would replace the section and its defaults: an "http:" left so
		// turned the ops endpoint off without a word. It counts as absent.
		// An app written with nothing is kept, so it is still reported;
		// an app's empty apns: or fcm: section is absent like any other.
		for _, key := range f.Keys() {
			levels := strings.Split(key, sep)
			typ, ok, _ := resolve(configType, levels)
			app := levels[0] == "apps" && len(levels) == 2
			if ok && typ != nil && (typ.Kind() == reflect.Struct || typ.Kind() == reflect.Pointer) && !app && f.Get(key) == nil {
				f.Delete(key)
				// Deleting an app's last section deletes the app: it
				// is put back empty, to be reported.
				if levels[0] == "apps" && !f.Exists(strings.Join(levels[:2], sep)) {
					_ = f.Set(strings.Join(levels[:2], sep), nil)
				}
			}
		}
		if err := k.Merge(f); err != nil {
			return nil, fmt.Errorf("config: read %s: %w", path, err)
		}
	}
	// An empty variable for a number, a switch or a duration would decode
	// as 0 or false (suspect_strikes 0: suspect tokens never
	// deactivated; rate_per_second 0: unlimited), where the file refuses
	// "key:" with no value. An unset ${VAR} in a manifest gives one, so it
	// is refused, naming the variable.
	var problems []string
	if err := k.Load(env.Provider(sep, env.Opt{
		Prefix: EnvPrefix,
		TransformFunc: func(name, v string) (string, any) {
			key, value := envKey(name, v)
			if text, ok := value.(string); ok && key != "" && text == "" {
				if typ, known, _ := resolve(configType, strings.Split(key, sep)); known && typ != nil && typ.Kind() != reflect.String {
					problems = append(problems, fmt.Sprintf("%s: %s is set but empty: unset it to keep the default, or give a value", dotted(key), name))
					return "", nil
				}
			}
			return key, value
		},
		EnvironFunc: func() []string { return environ },
	}), nil); err != nil {
		return nil, fmt.Errorf("config: environment: %w", err)
	}
	for _, app := range k.MapKeys("apps") {
		for key, v := range appDefaults {
			full := strings.Join([]string{"apps", app, strings.ReplaceAll(key, ".", sep)}, sep)
			section := strings.Join([]string{"apps", app, strings.SplitN(key, ".", 2)[0]}, sep)
			if strings.Contains(key, ".") && !k.Exists(section) {
				continue
			}
			if !k.Exists(full) {
				if err := k.Set(full, v); err != nil {
					return nil, fmt.Errorf("config: %s: %w", dotted(full), err)
				}
			}
		}
	}

	sections := map[string]bool{}
	defaults := Defaults()
	for _, key := range k.Keys() {
		path := strings.Split(key, sep)
		name := dotted(key)
		v := k.Get(key)
		switch typ, ok, scalar := resolve(configType, path); {
		case scalar > 0:
			// A value written as a section (a YAML password starting
			// with "{"): the rest of the path is the value's own text,
			// maybe a secret, so only the key is named.
			if value := strings.Join(path[:scalar], "."); !sections[value] {
				sections[value] = true
				problems = append(problems, value+": a value, not a section (quote a value that starts with { or [)")
			}
		case !ok:
			// Only the first unknown level is named: below it the path
			// may be a value's own text (`clickhous: {password: {s3cret}}`
			// in YAML), maybe a secret.
			unknown := path
			for i := 1; i < len(path); i++ {
				if _, known, _ := resolve(configType, path[:i]); !known {
					unknown = path[:i]
					break
				}
			}
			uname := dotted(strings.Join(unknown, sep))
			if sections[uname] {
				break
			}
			sections[uname] = true
			if dottedLevel(unknown) {
				// "kafka.brokers:" in the file (or PUSHLANE_KAFKA.BROKERS)
				// names one level called "kafka.brokers", not two.
				problems = append(problems, uname+`: unknown key (only an app's name may hold a ".": write each level of a key as its own section)`)
			} else {
				problems = append(problems, uname+": unknown key")
			}
		case v == nil:
			// "addr:" with nothing after it: meant as the default, or as
			// empty (for http.addr, no ops endpoint)? Only the key's
			// author knows, so it is refused where the two differ.
			if d, has := defaultOf(defaults, path); has {
				if text, ok := d.(string); ok {
					d = strconv.Quote(text)
				}
				problems = append(problems, fmt.Sprintf("%s: no value: leave the key out to keep the default (%v), or give one", name, d))
			}
		default:
			if msg := wrongType(typ, v); msg != "" {
				problems = append(problems, name+": "+msg)
			}
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

// dottedLevel reports whether a level of path, other than an app's name,
// holds a ".".
func dottedLevel(path []string) bool {
	for i, level := range path {
		if strings.Contains(level, ".") && !(i == 1 && path[0] == "apps") {
			return true
		}
	}
	return false
}

// defaultOf is the default of the key at path, if it has one.
func defaultOf(defaults map[string]any, path []string) (any, bool) {
	if len(path) > 2 && path[0] == "apps" {
		v, ok := appDefaults[strings.Join(path[2:], ".")]
		return v, ok
	}
	v, ok := defaults[strings.Join(path, ".")]
	return v, ok
}

// wrongType says what is wrong with v as the file's value of a key of type
// t, or returns "". The decoder converts weakly, which the environment's
// values need (they are all text, parsed as it decodes), but which would
// change a file's values without a word: 0.5 cut to 0 (an unlimited
// rate), true read as 1, 2 as true, 4294967297 wrapped to 1 in an int32,
// 1e5 turned into the text "100000". Text is left to the decoder, so the
// file and the environment accept the same.
func wrongType(t reflect.Type, v any) string {
	if _, text := v.(string); text || t == nil {
		return "" // t is nil below a list, which the decoder reports
	}
	switch {
	case t == durationType:
		if !durationText(v) {
			// YAML's 168 decodes as 168ns: a topic created with it
			// would delete its records at once.
			return `a duration needs a unit, as in "20ms" or "168h" (a bare number would be read as nanoseconds)`
		}
	case t.Kind() == reflect.Slice:
		items, ok := v.([]any)
		if !ok {
			if _, ok := v.([]string); ok {
				return ""
			}
			return "want a list of strings, not " + describe(v)
		}
		for _, item := range items {
			if _, ok := item.(string); !ok {
				return "want a list of strings, not one holding " + describe(item) + " (quote each item)"
			}
		}
	case t.Kind() == reflect.String:
		return "want a string, not " + describe(v) + " (quote it, so that it is kept as written)"
	case t.Kind() == reflect.Bool:
		if _, ok := v.(bool); !ok {
			return "want true or false, not " + describe(v)
		}
	case reflect.Zero(t).CanInt():
		var n int64
		switch v := v.(type) {
		case int:
			n = int64(v)
		case int64:
			n = v
		case uint64:
			if v > math.MaxInt64 {
				return intRange(t)
			}
			n = int64(v)
		default:
			return "want an integer, not " + describe(v)
		}
		if reflect.Zero(t).OverflowInt(n) {
			return intRange(t)
		}
	}
	return ""
}

// intRange is the problem of an integer that t cannot hold.
func intRange(t reflect.Type) string {
	bits := t.Bits()
	return fmt.Sprintf("out of range (%d to %d)", int64(-1)<<(bits-1), uint64(1)<<(bits-1)-1)
}

// describe names the kind of a YAML value, never the value itself.
func describe(v any) string {
	switch v.(type) {
	case bool:
		return "true or false"
	case float32, float64:
		return "a number with a fraction or an exponent"
	case int, int64, uint64:
		return "a number"
	case time.Time:
		return "a date"
	case []any:
		return "a list"
	case map[string]any:
		return "a section"
	}
	return fmt.Sprintf("a %T", v)
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
	path := strings.Split(strings.ToLower(strings.TrimPrefix(k, EnvPrefix)), "__")
	if typ, ok, _ := resolve(configType, path); ok && typ != nil && typ.Kind() == reflect.Slice {
		// "a:9092, b:9092" reads as two brokers, not " b" as a host; an
		// empty item ("a:9092,") is no item, and an empty value no list.
		var items []string
		for item := range strings.SplitSeq(v, ",") {
			if item = strings.TrimSpace(item); item != "" {
				items = append(items, item)
			}
		}
		return strings.Join(path, sep), items
	}
	return strings.Join(path, sep), v
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
		if looksLikeContents(path) {
			// A key or service account pasted where its path belongs
			// (a Kubernetes secret mounted as a variable, not a file):
			// echoed in the error, it would be printed to the logs.
			add(key, "holds what looks like a file's contents (%d bytes), not a path: write them to a file and give its path", len(path))
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
		// The clients use none of these unless enabled is set: a ca_file
		// alone would connect in plain text without a word.
		if !t.Enabled && (t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "" || t.InsecureSkipVerify) {
			add(prefix+".enabled", "must be true for the other %s settings to be used (they are ignored without it): set it, or remove them", prefix)
		}
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
		// Campaigns name their app by the schema's rule: an app named
		// otherwise would load, and every campaign for it be dead-lettered.
		if err := schemas.CheckAppName(name); err != nil {
			add(key, "%v", err)
		}
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
			if a.CertPassword != "" && !cert {
				add(k+".cert_password", "is for certificate auth (cert_file), which this app does not use")
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
	hostPorts := func(key, credentials string, addrs []string) {
		// An address may carry a password (user:password@host); a comma
		// in that password splits it into two items of the list, one
		// without the "@". With an "@" in the list, no item is shown whole.
		withUser := slices.ContainsFunc(addrs, func(a string) bool { return strings.Contains(a, "@") })
		for i, a := range addrs {
			if a == "" {
				continue // an empty list is "required" above
			}
			err := checkHostPort(a)
			switch {
			case err == nil:
			case strings.Contains(a, "@"):
				add(key, "%q: want host:port, with no user or password (those go in %s)", redactAddr(a), credentials)
			case withUser:
				add(key, "item %d (not shown: the list holds a password): want host:port", i+1)
			default:
				add(key, "%q: %v", redactAddr(a), err)
			}
		}
	}
	// The ops endpoint listens only once the stage has started: a bad
	// address would pass -check-config and fail the start.
	if a := c.HTTP.Addr; a != "" {
		if _, port, err := net.SplitHostPort(a); err != nil || strings.ContainsFunc(a, unicode.IsSpace) {
			add("http.addr", "%q: want [host]:port, e.g. :8080 (or empty for no ops endpoint)", a)
		} else if _, err := net.LookupPort("tcp", port); err != nil {
			add("http.addr", "port %q is not a number from 0 to 65535 or a service name", port)
		}
	}
	hostPorts("kafka.brokers", "kafka.sasl", c.Kafka.Brokers)
	hostPorts("clickhouse.addr", "clickhouse.username and clickhouse.password", c.ClickHouse.Addr)
	if !clickhouseIdent.MatchString(c.ClickHouse.Database) {
		// Spliced unquoted into the DDL and the analysts' queries.
		add("clickhouse.database", "%q is not a plain ClickHouse name (a letter or '_', then letters, digits and '_')", c.ClickHouse.Database)
	}
	if c.Kafka.GroupPrefix == "" {
		add("kafka.group_prefix", "required (the consumer groups are <prefix>-planner, -control-audit, -delay, -dispatcher, -feedback)")
	}
	tlsFiles("kafka.tls", c.Kafka.TLS)
	switch c.Kafka.SASL.Mechanism {
	case "":
		// Without a mechanism the client does not authenticate at all.
		if c.Kafka.SASL.Username != "" || c.Kafka.SASL.Password != "" {
			add("kafka.sasl.mechanism", "required with a username or password (plain, scram-sha-256 or scram-sha-512)")
		}
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
	if rf := c.Kafka.Topics.ReplicationFactor; rf != -1 && rf < 1 {
		add("kafka.topics.replication_factor", "must be -1 (the broker's default) or at least 1, not %d", rf)
	}
	if c.MySQL.DSN != "" {
		// Parsed without the interpolateParams that mysqldb forces, so the
		// driver's own refusal of an unsafe collation would come only at
		// start-up; CheckMySQLCharsets covers it, and the charsets too.
		if d, err := mysql.ParseDSN(c.MySQL.DSN); err != nil {
			add("mysql.dsn", "not a valid DSN: %s", dsnErr(err))
		} else if err := CheckMySQLCharsets(d); err != nil {
			add("mysql.dsn", "%v", err)
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
	if strings.Contains(addr, "@") {
		return errors.New("want host:port, with no user or password")
	}
	if strings.Contains(addr, "://") {
		return errors.New("want host:port, not a URL")
	}
	if strings.ContainsFunc(addr, unicode.IsSpace) {
		return errors.New("want host:port, with no spaces")
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

// looksLikeContents reports whether a *_file value is a file's contents
// rather than its path: PEM, JSON or several lines, or longer than any
// path a file system takes.
func looksLikeContents(path string) bool {
	return len(path) > 1024 || strings.ContainsAny(path, "\n\r") || strings.Contains(path, "-----BEGIN") ||
		strings.HasPrefix(strings.TrimSpace(path), "{")
}

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
			out = append(out, decoderKey(de.Name())+": "+redactErr(de.Unwrap().Error()))
			continue
		}
		out = append(out, redactErr(e.Error()))
	}
	return out
}

// decoderKey turns the decoder's name of a field, which writes a map's key
// in brackets (apps[shop].concurrency), into the key as the file and the
// documentation write it (apps.shop.concurrency). A list's index stays in
// brackets (kafka.brokers[1]): it names an item, not a key.
func decoderKey(name string) string {
	rest, ok := strings.CutPrefix(name, "apps[")
	if !ok {
		return name
	}
	// An app's name may hold "." and even "]"; no list or map lies below
	// an app, so the name ends at the last "]".
	if i := strings.LastIndex(rest, "]"); i >= 0 {
		return "apps." + rest[:i] + rest[i+1:]
	}
	return name
}

// dsnErr shows the driver's fixed DSN syntax messages; any other message
// may quote a piece of the DSN, which may be the password.
func dsnErr(err error) string {
	if strings.HasPrefix(err.Error(), "invalid DSN: ") {
		return err.Error()
	}
	return "(details hidden: may contain a password)"
}

// secretMask stands for a hidden secret.
const secretMask = "******"

// redactAddr hides what in a host:port-like address may be a password:
// the user information before an "@" (SASL_SSL://user:password@host:9093)
// and a URL's query (clickhouse://host:9000?password=...).
func redactAddr(a string) string {
	if i := strings.LastIndex(a, "@"); i >= 0 {
		start := 0
		if j := strings.Index(a, "://"); j >= 0 && j < i {
			start = j + len("://")
		}
		a = a[:start] + secretMask + a[i:]
	}
	if i := strings.Index(a, "?"); i >= 0 {
		a = a[:i+1] + secretMask
	}
	return a
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
	out := c
	out.Apps = make(map[string]App, len(c.Apps))
	for n, a := range c.Apps {
		if a.APNS != nil {
			cp := *a.APNS
			if cp.CertPassword != "" {
				cp.CertPassword = secretMask
			}
			a.APNS = &cp
		}
		out.Apps[n] = a
	}
	if out.Kafka.SASL.Password != "" {
		out.Kafka.SASL.Password = secretMask
	}
	if out.ClickHouse.Password != "" {
		out.ClickHouse.Password = secretMask
	}
	if d, err := mysql.ParseDSN(c.MySQL.DSN); err == nil && d.Passwd != "" {
		d.Passwd = secretMask
		out.MySQL.DSN = d.FormatDSN()
	} else if err != nil && c.MySQL.DSN != "" {
		// Unparseable: where the password is cannot be told, so hide it all.
		out.MySQL.DSN = secretMask
	}
	return out
}
