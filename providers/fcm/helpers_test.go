package fcm_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/providers/fcm"
	"github.com/pushlane/pushlane/providers/fcmsim"
)

const project = "pushlane-demo"

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

// Sleep advances the clock instead of waiting.
func (c *fakeClock) Sleep(_ context.Context, d time.Duration) error {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
	return nil
}

func startSim(t testing.TB, mutate func(*fcmsim.Config)) (*fcmsim.Server, *fcmsim.TestServiceAccount) {
	t.Helper()
	// The account's token_uri must name the simulator, which has no address
	// before it starts: make the server first, then the account.
	var cfg fcmsim.Config
	acct, err := fcmsim.NewTestServiceAccount(project, "")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Accounts = map[string]fcmsim.Account{acct.ClientEmail: acct.Account()}
	cfg.Record = true
	if mutate != nil {
		mutate(&cfg)
	}
	sim, err := fcmsim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	acct2, err := fcmsim.NewTestServiceAccount(project, sim.TokenURL())
	if err != nil {
		t.Fatal(err)
	}
	// Keep the key the simulator knows; only token_uri changes.
	acct2.Private, acct2.ClientEmail, acct2.KeyID = acct.Private, acct.ClientEmail, acct.KeyID
	acct2.JSON = rewriteTokenURI(t, acct.JSON, sim.TokenURL())
	return sim, acct2
}

func newSender(t testing.TB, sim *fcmsim.Server, acct *fcmsim.TestServiceAccount, mutate func(*fcm.Config)) *fcm.Sender {
	t.Helper()
	cfg := fcm.Config{App: "demo", ServiceAccountJSON: acct.JSON, Endpoint: sim.URL(), RootCAs: sim.CertPool()}
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := fcm.New(cfg, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func note() *providers.Message {
	return &providers.Message{Platform: providers.PlatformAndroid, Title: "Hi", Body: "there"}
}
