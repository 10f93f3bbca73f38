package kafka

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushlane/pushlane/internal/config"
)

func TestClientOptsErrors(t *testing.T) {
	_, err := ClientOpts(config.Kafka{Brokers: []string{"x:1"}, SASL: config.SASL{Mechanism: "gssapi"}})
	if err == nil || err.Error() != `kafka.sasl.mechanism: unsupported "gssapi"` {
		t.Errorf("sasl: %v", err)
	}
	dir := t.TempDir()
	missing := filepath.Join(dir, "ca.pem")
	_, err = ClientOpts(config.Kafka{Brokers: []string{"x:1"}, TLS: config.TLS{Enabled: true, CAFile: missing}})
	if err == nil || err.Error() != "kafka.tls: ca_file: open "+missing+": no such file or directory" {
		t.Errorf("missing ca: %v", err)
	}
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = ClientOpts(config.Kafka{Brokers: []string{"x:1"}, TLS: config.TLS{Enabled: true, CAFile: notPEM}})
	if err == nil || err.Error() != "kafka.tls: ca_file: no PEM certificates in "+notPEM {
		t.Errorf("not PEM: %v", err)
	}
	_, err = ClientOpts(config.Kafka{Brokers: []string{"x:1"}, TLS: config.TLS{Enabled: true, CertFile: notPEM, KeyFile: notPEM}})
	if err == nil || !strings.HasPrefix(err.Error(), "kafka.tls: cert_file/key_file: ") {
		t.Errorf("bad cert: %v", err)
	}
	// TLS settings are ignored unless enabled.
	if _, err := ClientOpts(config.Kafka{Brokers: []string{"x:1"}, TLS: config.TLS{CAFile: missing}}); err != nil {
		t.Errorf("disabled TLS: %v", err)
	}
	for _, m := range []string{"", "plain", "scram-sha-256", "scram-sha-512"} {
		if _, err := ClientOpts(config.Kafka{Brokers: []string{"x:1"}, SASL: config.SASL{Mechanism: m, Username: "u", Password: "p"}}); err != nil {
			t.Errorf("mechanism %q: %v", m, err)
		}
	}
}

func TestNewClientReachesBroker(t *testing.T) {
	c, _, _ := fakeCluster(t)
	cl, err := NewClient(config.Kafka{Brokers: c.ListenAddrs(), ClientID: "pushlane-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cl.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}
