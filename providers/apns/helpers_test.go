package apns_test

import (
	"crypto/ecdsa"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/providers/apns"
	"github.com/pushlane/pushlane/providers/apnssim"
)

const topic = "com.example.app"

// fakeClock is a settable clock shared by a sender and the simulator.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_800_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type env struct {
	sim    *apnssim.Server
	key    *apnssim.TestKey
	sender *apns.Sender
	reg    *prometheus.Registry
}

func startSim(t testing.TB, mutate func(*apnssim.Config)) (*apnssim.Server, *apnssim.TestKey) {
	t.Helper()
	key, err := apnssim.NewTestKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg := apnssim.Config{
		Keys:   map[string]*ecdsa.PublicKey{key.KeyID: key.Public()},
		TeamID: key.TeamID,
		Topics: []string{topic},
		Record: true,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	sim, err := apnssim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	return sim, key
}

func newSender(t testing.TB, sim *apnssim.Server, key *apnssim.TestKey, mutate func(*apns.Config)) (*apns.Sender, *prometheus.Registry) {
	t.Helper()
	cfg := apns.Config{
		App:         "demo",
		Environment: apns.Development,
		Topic:       topic,
		KeyPEM:      key.PEM,
		KeyID:       key.KeyID,
		TeamID:      key.TeamID,
		Endpoint:    sim.URL(),
		RootCAs:     sim.CertPool(),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	reg := prometheus.NewRegistry()
	s, err := apns.New(cfg, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, reg
}

func setup(t *testing.T) env {
	sim, key := startSim(t, nil)
	s, reg := newSender(t, sim, key, nil)
	return env{sim: sim, key: key, sender: s, reg: reg}
}

// tok makes a 64-hex-digit device token starting with prefix.
func tok(prefix string, n int) string {
	s := prefix + strings.Repeat("0", 56-len(prefix))
	return s + hex8(n)
}

func hex8(n int) string {
	const digits = "0123456789abcdef"
	b := make([]byte, 8)
	for i := 7; i >= 0; i-- {
		b[i] = digits[n&0xf]
		n >>= 4
	}
	return string(b)
}

func alert() *providers.Message {
	return &providers.Message{Platform: providers.PlatformIOS, Title: "Hi", Body: "there"}
}
