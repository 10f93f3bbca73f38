package dispatcher_test

import (
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/pipeline/dispatcher"
	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/providers/fcm"
	"github.com/pushlane/pushlane/providers/fcmsim"
)

// Apps of one Firebase project share its quota bucket: Google counts the
// project's messages, not the app's. Two quotas for one project are a
// configuration error naming both keys.
func TestAppsOfOneProjectShareItsQuota(t *testing.T) {
	acct, err := fcmsim.NewTestServiceAccount("shared", "https://oauth2.invalid/token")
	if err != nil {
		t.Fatal(err)
	}
	sa, err := acct.WriteFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	build := func(yaml string, change func(*config.Config)) (map[string]dispatcher.App, error) {
		t.Helper()
		path := t.TempDir() + "/pushlane.yaml"
		if err := os.WriteFile(path, []byte(strings.ReplaceAll(yaml, "SA", sa)), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if change != nil {
			change(cfg)
		}
		log, reg := slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry()
		halt, err := providers.NewHalt(log, reg)
		if err != nil {
			t.Fatal(err)
		}
		apps, closeApps, err := dispatcher.BuildApps(cfg.Apps, halt, log, reg)
		if err == nil {
			t.Cleanup(func() { _ = closeApps() })
		}
		return apps, err
	}
	apps, err := build(`apps:
  a: {fcm: {project_id: shared, service_account_file: SA}}
  b: {fcm: {project_id: shared, service_account_file: SA}}
  c: {fcm: {project_id: other, service_account_file: SA}}
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	quota := func(app string) *fcm.Quota { return apps[app].FCM.(*fcm.Sender).Quota() }
	if quota("a") != quota("b") {
		t.Error("apps a and b of project shared have a bucket each")
	}
	if quota("a") == quota("c") {
		t.Error("app c of project other shares project shared's bucket")
	}

	// The configuration refuses this already; a Config built in code meets
	// the same rule here.
	_, err = build(`apps:
  a: {fcm: {project_id: shared, service_account_file: SA}}
  b: {fcm: {project_id: shared, service_account_file: SA}}
`, func(c *config.Config) { c.Apps["a"].FCM.QuotaPerMinute = 1000 })
	want := "apps.b.fcm.quota_per_minute: 600000, but apps.a.fcm.quota_per_minute is 1000 for the same project shared"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("two quotas for one project: %v, want an error containing %q", err, want)
	}
}
