package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// -check-config prints the effective config with secrets masked.
func TestCheckConfigPrintsRedactedConfig(t *testing.T) {
	sa := writeFile(t, "sa.json", "{}")
	cfg := writeFile(t, "c.yaml", `
mysql: {dsn: "user:s3cret@tcp(127.0.0.1:3306)/pushlane"}
kafka: {sasl: {mechanism: plain, username: u, password: hunter2}}
apps: {shop: {fcm: {project_id: p, service_account_file: `+sa+`}}}
`)
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"-config", cfg, "-check-config"}, &out, &errOut); err != nil {
		t.Fatalf("run: %v (%s)", err, errOut.String())
	}
	if strings.Contains(out.String(), "s3cret") || strings.Contains(out.String(), "hunter2") {
		t.Errorf("secrets printed:\n%s", out.String())
	}
	var v map[string]any
	if err := json.Unmarshal(out.Bytes(), &v); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if !strings.Contains(out.String(), `"shop"`) {
		t.Errorf("app missing from the printed config")
	}
}

func TestBadInvocationsNameTheProblem(t *testing.T) {
	noApps := writeFile(t, "c.yaml", `mysql: {dsn: "u:p@tcp(127.0.0.1:3306)/x"}`)
	delayOnly := writeFile(t, "d.yaml", `delay: {tiers: 4}`)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"-mode", "everything"}, `-mode: must be all, dispatch or delay, not "everything"`},
		{[]string{"-halt-probe", "0s"}, "-halt-probe: must be positive"},
		{[]string{"-config", noApps, "-check-config"}, "apps: at least one app is required"},
		{[]string{"-config", filepath.Join(t.TempDir(), "missing.yaml")}, "missing.yaml"},
	}
	for _, c := range cases {
		var out, errOut bytes.Buffer
		err := run(context.Background(), c.args, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err = %v, want it to contain %q", c.args, err, c.want)
		}
	}
	// The forwarder alone needs neither MySQL nor apps.
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"-config", delayOnly, "-mode", "delay", "-check-config"}, &out, &errOut); err != nil {
		t.Errorf("-mode delay without apps: %v", err)
	}
}
