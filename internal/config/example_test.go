package config

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
)

// deployedPath matches the file paths the deploy manifests use for keys
// and certificates (mounted from Secrets in production).
var deployedPath = regexp.MustCompile(`/etc/pushlane/[A-Za-z0-9_./-]+`)

// loadDeployed loads a deploy YAML config as a command would, after moving
// every /etc/pushlane/... path into a temp dir holding a dummy file there.
func loadDeployed(t *testing.T, yamlText string, environ []string) (*Config, error) {
	t.Helper()
	cfg, _, err := loadDeployedIn(t, yamlText, environ)
	return cfg, err
}

// loadDeployedIn is loadDeployed, also returning the directory that stands
// for /etc/pushlane/.
func loadDeployedIn(t *testing.T, yamlText string, environ []string) (*Config, string, error) {
	t.Helper()
	dir := t.TempDir()
	for _, p := range deployedPath.FindAllString(yamlText+"\n"+strings.Join(environ, "\n"), -1) {
		local := filepath.Join(dir, strings.TrimPrefix(p, "/etc/pushlane/"))
		if err := os.MkdirAll(filepath.Dir(local), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(local, []byte("dummy"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	moved := func(s string) string { return strings.ReplaceAll(s, "/etc/pushlane/", dir+"/") }
	env := make([]string, len(environ))
	for i, e := range environ {
		env[i] = moved(e)
	}
	p := filepath.Join(dir, "pushlane.yaml")
	if err := os.WriteFile(p, []byte(moved(yamlText)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(p, env)
	return cfg, dir, err
}

// fileKeys lists the keys a YAML text sets, with app names replaced by
// <name>.
func fileKeys(t *testing.T, yamlText string) map[string]bool {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keys.yaml")
	if err := os.WriteFile(p, []byte(yamlText), 0o600); err != nil {
		t.Fatal(err)
	}
	k := koanf.New(".")
	if err := k.Load(file.Provider(p), yaml.Parser()); err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, key := range k.Keys() {
		parts := strings.Split(key, ".")
		if parts[0] == "apps" && len(parts) > 2 {
			parts[1] = "<name>"
		}
		out[strings.Join(parts, ".")] = true
	}
	return out
}

func TestExampleConfig(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/pushlane.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := loadDeployed(t, string(raw), []string{
		"PUSHLANE_KAFKA__SASL__PASSWORD=from-a-secret",
		"PUSHLANE_APPS__NEWS__APNS__CERT_PASSWORD=from-a-secret",
	})
	if err != nil {
		t.Fatalf("deploy/pushlane.example.yaml does not load: %v", err)
	}

	// It is complete: every key is shown.
	all := map[string]string{}
	leafKeys(reflect.TypeOf(Config{}), "", all)
	set := fileKeys(t, string(raw))
	var missing []string
	for key := range all {
		if !set[key] {
			missing = append(missing, key)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("deploy/pushlane.example.yaml lacks %d keys: %s", len(missing), strings.Join(missing, ", "))
	}

	// And it says what it looks like it says.
	if len(cfg.Apps) != 2 || cfg.Apps["shop"].APNS.KeyID != "ABC123DEFG" || cfg.Apps["shop"].FCM.ProjectID != "shop-prod" ||
		cfg.Apps["news"].FCM != nil || cfg.Apps["news"].APNS.Connections != 4 || cfg.Apps["news"].APNS.CertPassword != "from-a-secret" {
		t.Errorf("apps: %+v", cfg.Apps)
	}
	if !slices.Equal(cfg.Kafka.Brokers, []string{"kafka-0.kafka:9092", "kafka-1.kafka:9092", "kafka-2.kafka:9092"}) {
		t.Errorf("kafka.brokers: %v", cfg.Kafka.Brokers)
	}
	if cfg.Kafka.Topics.ReplicationFactor != 3 || len(cfg.DelayTiers()) != 22 {
		t.Errorf("topics: %+v tiers %d", cfg.Kafka.Topics, len(cfg.DelayTiers()))
	}
	// Defaults and the example agree where the example keeps the default.
	def, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Planner != def.Planner || cfg.Dispatcher != def.Dispatcher || cfg.Feedback != def.Feedback || cfg.Delay != def.Delay || cfg.Log != def.Log || cfg.HTTP != def.HTTP {
		t.Errorf("the example's stage settings differ from the defaults it claims to show")
	}
}

// TestExampleConfigNeedsItsFiles: loaded as is (no key files here), the
// example fails naming each file key, proving the file checks apply to it.
func TestExampleConfigNeedsItsFiles(t *testing.T) {
	_, err := Load("../../deploy/pushlane.example.yaml", nil)
	want := []string{
		"apps.news.apns.cert_file: cannot read /etc/pushlane/keys/news/apns.p12: no such file or directory",
		"apps.shop.apns.key_file: cannot read /etc/pushlane/keys/shop/AuthKey_ABC123DEFG.p8: no such file or directory",
		"apps.shop.fcm.service_account_file: cannot read /etc/pushlane/keys/shop/firebase-service-account.json: no such file or directory",
		"kafka.tls.ca_file: cannot read /etc/pushlane/tls/kafka-ca.pem: no such file or directory",
	}
	if got := problems(t, err); !slices.Equal(got, want) {
		t.Errorf("problems:\n got %q\nwant %q", got, want)
	}
}
