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

func TestDeployDemoLocalConfigIsValid(t *testing.T) {
	cfg, err := config.Load("../../deploy/demo/local.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MySQL.DSN == "" || len(cfg.ClickHouse.Addr) != 1 || cfg.Kafka.Topics.Campaigns.Name != "pushlane-demo.campaigns" || cfg.Kafka.GroupPrefix != "pushlane-demo" {
		t.Fatalf("unexpected config: %+v", cfg.Redacted())
	}
}
