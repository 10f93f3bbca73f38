package embedded

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/pushlane/pushlane/internal/config"
)

// DemoApp is the app name of the demo devices and campaigns.
const DemoApp = "demo"

// ConfigSpec is what the embedded infrastructure contributes to the demo's
// configuration.
type ConfigSpec struct {
	Brokers  []string
	MySQLDSN string
	App      config.App // the simulators' app (Simulators.App)
	// ClickHouse, if set, sends analytics to ClickHouse at these
	// addresses instead of a local file.
	ClickHouse []string
}

// WriteConfig writes the demo's configuration to path as a file the
// production commands accept (JSON is YAML), and loads it back through
// config.Load, so the demo runs on exactly the validated configuration a
// user could pass to planner, dispatcher or feedback with -config. Topics
// get few partitions and the ladder few tiers: the demo needs seconds of
// delay, not days, and kfake creates every partition in memory.
func WriteConfig(path string, s ConfigSpec) (*config.Config, error) {
	app := map[string]any{"concurrency": s.App.Concurrency}
	if a := s.App.APNS; a != nil {
		app["apns"] = map[string]any{
			"environment": a.Environment, "topic": a.Topic, "key_file": a.KeyFile, "key_id": a.KeyID,
			"team_id": a.TeamID, "endpoint": a.Endpoint, "ca_file": a.CAFile, "connections": a.Connections,
		}
	}
	if f := s.App.FCM; f != nil {
		app["fcm"] = map[string]any{
			"project_id": f.ProjectID, "service_account_file": f.ServiceAccountFile, "endpoint": f.Endpoint,
			"ca_file": f.CAFile, "concurrency": f.Concurrency, "quota_per_minute": f.QuotaPerMinute,
		}
	}
	parts := func(n int) map[string]any { return map[string]any{"partitions": n} }
	doc := map[string]any{
		"apps": map[string]any{DemoApp: app},
		"kafka": map[string]any{
			"brokers":      s.Brokers,
			"client_id":    "pushlane-demo",
			"group_prefix": "pushlane-demo",
			"topics": map[string]any{
				"campaigns": parts(1), "control": parts(1), "delay": parts(1), "ready": parts(4),
				"results": parts(2), "dead_letter": parts(1), "registrations": parts(1),
			},
		},
		// One connection: go-mysql-server loses concurrent writes.
		"mysql":    map[string]any{"dsn": s.MySQLDSN, "max_open_conns": 1},
		"http":     map[string]any{"addr": ""},
		"log":      map[string]any{"level": "info", "format": "text"},
		"delay":    map[string]any{"tiers": 8},
		"feedback": map[string]any{"flush_interval": "200ms"},
	}
	if len(s.ClickHouse) > 0 {
		doc["clickhouse"] = map[string]any{"addr": s.ClickHouse}
	}
	raw, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("embedded: encode config: %w", err)
	}
	if err := os.WriteFile(path, append(raw, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("embedded: write config: %w", err)
	}
	cfg, err := config.Load(path, nil)
	if err != nil {
		return nil, fmt.Errorf("embedded: generated config %s: %w", path, err)
	}
	return cfg, nil
}
