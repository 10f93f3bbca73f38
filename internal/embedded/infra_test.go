package embedded

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	pkafka "github.com/pushlane/pushlane/pipeline/kafka"
)

// TestInfrastructureComesUpWithAValidConfig starts the broker and the
// simulators, writes the demo config and checks that it loads, names the
// simulators and that its topic layout can be created on kfake.
func TestInfrastructureComesUpWithAValidConfig(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	b, err := StartBroker()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	sims, err := StartSimulators(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sims.Close()
	cfg, err := WriteConfig(filepath.Join(dir, "pushlane-demo.yaml"), ConfigSpec{
		Brokers: b.Addrs(), MySQLDSN: "root:@tcp(127.0.0.1:1)/pushlane", App: sims.App,
	})
	if err != nil {
		t.Fatal(err)
	}
	app, ok := cfg.Apps[DemoApp]
	if !ok || app.APNS == nil || app.FCM == nil {
		t.Fatalf("apps = %+v, want demo with apns and fcm", cfg.Apps)
	}
	if app.APNS.Endpoint != sims.APNs.URL() || app.FCM.Endpoint != sims.FCM.URL() {
		t.Fatalf("endpoints %s %s, want the simulators %s %s", app.APNS.Endpoint, app.FCM.Endpoint, sims.APNs.URL(), sims.FCM.URL())
	}
	if cfg.MySQL.MaxOpenConns != 1 || cfg.Delay.Tiers != 8 || cfg.Kafka.GroupPrefix != "pushlane-demo" {
		t.Fatalf("mysql conns %d tiers %d prefix %s", cfg.MySQL.MaxOpenConns, cfg.Delay.Tiers, cfg.Kafka.GroupPrefix)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	specs := pkafka.Layout(cfg)
	created, err := pkafka.EnsureTopics(ctx, adm, cfg.Kafka.Topics.ReplicationFactor, specs)
	if err != nil {
		t.Fatal(err)
	}
	if len(created) != len(specs) || len(specs) != 6+8 {
		t.Fatalf("created %d of %d topics, want 14", len(created), len(specs))
	}
	if problems, err := pkafka.VerifyTopics(ctx, adm, specs); err != nil || len(problems) > 0 {
		t.Fatalf("verify: %v %v", problems, err)
	}
}
