package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/internal/testenv"
	pkafka "github.com/pushlane/pushlane/pipeline/kafka"
	"github.com/pushlane/pushlane/providers/fcmsim"
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
	// A service account the FCM sender takes: the check builds it.
	acct, err := fcmsim.NewTestServiceAccount("p", "https://127.0.0.1:1/token")
	if err != nil {
		t.Fatal(err)
	}
	sa, err := acct.WriteFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
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
	for _, line := range []string{`apps.shop.fcm.project_id = "p"`, `kafka.sasl.password = "******"`, "dispatcher.results_linger = 20ms"} {
		if !strings.Contains(out.String(), line+"\n") {
			t.Errorf("printed config lacks %q:\n%s", line, out.String())
		}
	}
}

func TestBadInvocationsNameTheProblem(t *testing.T) {
	noApps := writeFile(t, "c.yaml", `mysql: {dsn: "u:p@tcp(127.0.0.1:3306)/x"}`)
	delayOnly := writeFile(t, "d.yaml", `delay: {tiers: 4}`)
	// A key file that is no .p8: the config loads, the sender refuses it.
	badKey := writeFile(t, "AuthKey.p8", "not a key")
	badKeyCfg := writeFile(t, "k.yaml", `mysql: {dsn: "u:p@tcp(127.0.0.1:3306)/x"}
apps: {shop: {apns: {environment: production, topic: t, key_file: `+badKey+`, key_id: ABCDE12345, team_id: TEAM123456}}}`)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"-mode", "everything"}, `-mode: must be all, dispatch or delay, not "everything"`},
		{[]string{"-halt-probe", "0s"}, "-halt-probe: must be positive"},
		{[]string{"-config", noApps, "-check-config"}, "apps: at least one app is required"},
		{[]string{"-config", badKeyCfg, "-check-config"}, "apps.shop.apns: apns: config KeyFile: read " + badKey + ": token: AuthKey must be a valid .p8 PEM file"},
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

// A forwarder-only process (-mode delay) reports ready once its group is
// joined and the control view has caught up, with no dispatcher in it.
func TestDelayModeBecomesReady(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Port 0: the ops endpoint binds a free port itself and logs it.
	cfgPath := writeFile(t, "d.yaml", fmt.Sprintf("kafka: {brokers: [%q]}\nhttp: {addr: \"127.0.0.1:0\"}\ndelay: {tiers: 4}\n", c.ListenAddrs()[0]))
	cfg, err := config.Load(cfgPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(mustClient(t, c.ListenAddrs()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := pkafka.EnsureTopics(ctx, adm, 1, pkafka.Layout(cfg)); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	var out bytes.Buffer
	var errOut testenv.SyncBuffer // the logs, read while run writes them
	go func() { done <- run(runCtx, []string{"-config", cfgPath, "-mode", "delay"}, &out, &errOut) }()
	var addr, last string
	exited := false
	for ctx.Err() == nil && !exited {
		select {
		case err := <-done: // run gave up before it was ready
			done <- err
			exited = true
			continue
		default:
		}
		if addr == "" {
			if addr = testenv.OpsAddr(errOut.String()); addr == "" {
				time.Sleep(20 * time.Millisecond)
				continue
			}
		}
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(body))
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
	if addr == "" {
		t.Fatalf("no ops endpoint in the logs:\n%s", errOut.String())
	}
	if !strings.HasPrefix(last, "200") {
		t.Fatalf("/readyz never 200 in -mode delay; last answer %q", last)
	}
}

func mustClient(t *testing.T, brokers []string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}
