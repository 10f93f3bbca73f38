package apns_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/providers/apns"
	"github.com/pushlane/pushlane/providers/apnssim"
)

func clockedSetup(t *testing.T, refresh time.Duration) (env, *fakeClock) {
	clk := newFakeClock()
	sim, key := startSim(t, func(c *apnssim.Config) { c.Clock = clk.Now })
	s, reg := newSender(t, sim, key, func(c *apns.Config) { c.Clock = clk.Now; c.TokenRefresh = refresh })
	return env{sim: sim, key: key, sender: s, reg: reg}, clk
}

func sendN(t *testing.T, e env, n, base int) {
	t.Helper()
	p, err := e.sender.Prepare(alert())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan providers.Result, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := p.Send(context.Background(), tok("a", base+i), 1); r.Outcome != providers.Delivered {
				errs <- r
			}
		}()
	}
	wg.Wait()
	close(errs)
	for r := range errs {
		t.Fatalf("send not delivered: %+v", r)
	}
}

func TestProviderTokenSharedAndRefreshedOnSchedule(t *testing.T) {
	e, clk := clockedSetup(t, 45*time.Minute)
	kid := e.key.KeyID

	// 200 goroutines at once sign exactly one token.
	sendN(t, e, 200, 0)
	if got := e.sender.Token().Refreshes(); got != 1 {
		t.Fatalf("tokens signed = %d, want 1 shared by all goroutines", got)
	}
	// Never re-signed before the refresh age, however often we send.
	for _, step := range []time.Duration{time.Minute, 18 * time.Minute, 25*time.Minute + 59*time.Second} {
		clk.Advance(step)
		sendN(t, e, 20, 1000)
	}
	if got := e.sender.Token().Refreshes(); got != 1 {
		t.Fatalf("re-signed after %s: %d tokens", 44*time.Minute+59*time.Second, got)
	}
	// At 45 minutes, once.
	clk.Advance(time.Second)
	sendN(t, e, 50, 2000)
	if got := e.sender.Token().Refreshes(); got != 2 {
		t.Fatalf("tokens signed at 45m = %d, want 2", got)
	}
	if got := e.sim.TokenUpdates(kid); got != 2 {
		t.Fatalf("simulator saw %d distinct tokens, want 2", got)
	}
	if c := e.sim.Counts(); c.Rejected["TooManyProviderTokenUpdates"] != 0 || c.Rejected["ExpiredProviderToken"] != 0 {
		t.Fatalf("simulator rejected tokens: %v", c.Rejected)
	}
}

func TestProviderTokenAlwaysReSignedBeforeAnHour(t *testing.T) {
	e, clk := clockedSetup(t, 55*time.Minute)
	sendN(t, e, 1, 0)
	clk.Advance(54*time.Minute + 59*time.Second)
	sendN(t, e, 1, 1)
	clk.Advance(time.Second)
	sendN(t, e, 1, 2)
	clk.Advance(54 * time.Minute)
	sendN(t, e, 1, 3)
	if got := e.sender.Token().Refreshes(); got != 2 {
		t.Fatalf("tokens signed = %d, want 2", got)
	}
	if c := e.sim.Counts(); c.Accepted != 4 || len(c.Rejected) != 0 {
		t.Fatalf("counts = %+v", c)
	}
	if _, err := apns.NewProviderToken(e.key.Private, e.key.KeyID, e.key.TeamID, 19*time.Minute, nil); err == nil {
		t.Error("a refresh interval under 20 minutes was accepted")
	}
}

func TestExpiredProviderTokenIsReSignedOnceAndRetried(t *testing.T) {
	e, clk := clockedSetup(t, 45*time.Minute)
	sendN(t, e, 10, 0)
	clk.Advance(25 * time.Minute)
	e.sim.ExpireProviderTokens()
	// 100 sends hit ExpiredProviderToken together; one re-signs, all retry.
	sendN(t, e, 100, 100)
	if got := e.sender.Token().Refreshes(); got != 2 {
		t.Fatalf("tokens signed = %d, want 2", got)
	}
	c := e.sim.Counts()
	if c.Accepted != 110 || c.Duplicates != 0 {
		t.Fatalf("counts = %+v", c)
	}
	if c.Rejected["ExpiredProviderToken"] == 0 {
		t.Fatal("the simulator never answered ExpiredProviderToken; the test proves nothing")
	}
}

func TestExpiredProviderTokenYoungerThan20MinutesIsACredentialFailure(t *testing.T) {
	e, clk := clockedSetup(t, 45*time.Minute)
	sendN(t, e, 1, 0)
	clk.Advance(5 * time.Minute)
	e.sim.ExpireProviderTokens()
	m := alert()
	m.Token = tok("a", 9)
	r := e.sender.Send(context.Background(), m, 1)
	if r.Outcome != providers.CredentialFailure || r.Reason != "ExpiredProviderToken" || !errors.Is(r.Err, apns.ErrTokenTooYoung) {
		t.Fatalf("result = %+v", r)
	}
	if got := e.sender.Token().Refreshes(); got != 1 {
		t.Fatalf("re-signed a 5-minute-old token: %d tokens", got)
	}
}

// Processes that each sign their own token with one key, each on its own
// connections, are all served: APNs limits how often a connection's token
// is re-created, not how many tokens a key has. Each then refreshes on its
// schedule without tripping TooManyProviderTokenUpdates.
func TestSeparateSignersForOneKeyAreServed(t *testing.T) {
	clk := newFakeClock()
	sim, key := startSim(t, func(c *apnssim.Config) { c.Clock = clk.Now })
	a, _ := newSender(t, sim, key, func(c *apns.Config) { c.Clock = clk.Now })
	b, _ := newSender(t, sim, key, func(c *apns.Config) { c.Clock = clk.Now })
	shared, _ := newSender(t, sim, key, func(c *apns.Config) { c.Clock = clk.Now; c.Token = a.Token(); c.App = "other" })
	m := alert()
	m.Token = tok("a", 1)
	send := func(what string, s *apns.Sender) {
		t.Helper()
		if r := s.Send(context.Background(), m, 1); r.Outcome != providers.Delivered {
			t.Fatalf("%s: %+v", what, r)
		}
	}
	send("first signer", a)
	clk.Advance(time.Minute)
	send("sender sharing its token", shared)
	send("second signer", b)
	if got := sim.TokenUpdates(key.KeyID); got != 2 {
		t.Errorf("tokens accepted: %d, want 2 (the shared one is one)", got)
	}
	clk.Advance(45 * time.Minute)
	send("first signer after its refresh", a)
	send("second signer after its refresh", b)
	if ra, rb := a.Token().Refreshes(), b.Token().Refreshes(); ra != 2 || rb != 2 {
		t.Errorf("tokens signed: %d and %d, want 2 each", ra, rb)
	}
	if c := sim.Counts(); c.Rejected["TooManyProviderTokenUpdates"] != 0 {
		t.Errorf("rejected: %v", c.Rejected)
	}
}
