package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// -check-config prints the effective config with secrets masked.
func TestCheckConfigPrintsRedactedConfig(t *testing.T) {
	cfg := writeConfig(t, `
mysql: {dsn: "user:s3cret@tcp(127.0.0.1:3306)/pushlane"}
clickhouse: {addr: ["127.0.0.1:9000"], database: analytics, password: hunter2}
`)
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"-config", cfg, "-check-config"}, &out, &errOut); err != nil {
		t.Fatalf("run: %v (%s)", err, errOut.String())
	}
	if strings.Contains(out.String(), "s3cret") || strings.Contains(out.String(), "hunter2") {
		t.Errorf("secrets printed:\n%s", out.String())
	}
	for _, line := range []string{`clickhouse.database = "analytics"`, "feedback.flush_interval = 1s"} {
		if !strings.Contains(out.String(), line+"\n") {
			t.Errorf("printed config lacks %q:\n%s", line, out.String())
		}
	}
	if !strings.Contains(out.String(), "clickhouse.addr = [") {
		t.Errorf("printed config lacks clickhouse.addr:\n%s", out.String())
	}
}

func TestBadInvocationsNameTheProblem(t *testing.T) {
	noCH := writeConfig(t, `mysql: {dsn: "u:p@tcp(127.0.0.1:3306)/x"}`)
	noMySQL := writeConfig(t, `clickhouse: {addr: ["127.0.0.1:9000"]}`)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-config", noCH, "-check-config"}, "config: clickhouse.addr: required (or pass -rows-file)"},
		{[]string{"-config", noMySQL, "-check-config"}, "config: mysql.dsn: required"},
		{[]string{"-no-such-flag"}, "flag provided but not defined: -no-such-flag"},
	} {
		err := run(context.Background(), c.args, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || err.Error() != c.want {
			t.Errorf("%v: err = %v, want %s", c.args, err, c.want)
		}
	}
	// Analytics rows to a file need no ClickHouse.
	if err := run(context.Background(), []string{"-config", noCH, "-rows-file", filepath.Join(t.TempDir(), "rows.jsonl"), "-check-config"}, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Errorf("-rows-file without clickhouse.addr: %v", err)
	}
}
