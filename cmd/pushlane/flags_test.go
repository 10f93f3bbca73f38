package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/pushlane/pushlane/internal/config"
)

func TestFlagErrorsExitTwo(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "usage: pushlane demo"},
		{[]string{"serve"}, "usage: pushlane demo"},
		{[]string{"demo", "-real"}, "-real needs -config FILE"},
		{[]string{"demo", "-config", "x.yaml"}, "-config is only used with -real"},
		{[]string{"demo", "-devices", "0"}, "-devices must be at least 1"},
		{[]string{"demo", "-progress", "fancy"}, `-progress must be auto, bar, lines or none, not "fancy"`},
		{[]string{"demo", "extra"}, `unexpected argument "extra"`},
		{[]string{"demo", "-real", "-config", "/nonexistent.yaml"}, "config: read /nonexistent.yaml"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tc.args, &stdout, &stderr, nil)
		if code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("run %q = %d, stderr %q; want 2 and %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}

// help and -h print the usage with every flag on stdout and exit 0.
func TestHelpListsTheFlags(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"-h"}, {"demo", "-h"}} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), args, &stdout, &stderr, nil)
		out := stdout.String() + stderr.String()
		if code != 0 || !strings.Contains(out, "-devices") || !strings.Contains(out, "-timeout") {
			t.Errorf("run %q = %d, output %q; want 0 and the flags", args, code, out)
		}
	}
}

func TestDeployDemoLocalConfigIsValid(t *testing.T) {
	cfg, err := config.Load("../../deploy/demo/local.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MySQL.DSN == "" || len(cfg.ClickHouse.Addr) != 1 || cfg.Kafka.Topics.Campaigns.Name != "pushlane-demo.campaigns" || cfg.Kafka.GroupPrefix != "pushlane-demo" {
		t.Fatalf("unexpected config: %+v", cfg.Redacted())
	}
}

// The database is cut from the parsed DSN, not from its text: a password
// that contains "/pushlane" stays whole.
func TestServerDSN(t *testing.T) {
	for _, c := range []struct{ dsn, server, name, err string }{
		{"pushlane:secret@tcp(127.0.0.1:3306)/pushlane?parseTime=true", "pushlane:secret@tcp(127.0.0.1:3306)/?parseTime=true", "pushlane", ""},
		{"u:a/pushlane@tcp(db:3306)/pushlane", "u:a/pushlane@tcp(db:3306)/", "pushlane", ""},
		{"u:p@tcp(db:3306)/", "", "", "mysql.dsn: names no database"},
		{"u:p@tcp(db:3306)/we`ird", "", "", "mysql.dsn: database name \"we`ird\" contains a backquote"},
	} {
		server, name, err := serverDSN(c.dsn)
		if server != c.server || name != c.name || (err == nil) != (c.err == "") || (err != nil && err.Error() != c.err) {
			t.Errorf("serverDSN(%q) = %q, %q, %v; want %q, %q, %q", c.dsn, server, name, err, c.server, c.name, c.err)
		}
	}
}
