package dispatchtest

import (
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/pushlane/pushlane/providers/fcm"
	"github.com/pushlane/pushlane/providers/fcmsim"
)

// FCMSender starts an FCM simulator with fault and returns it with a real
// FCM sender for app (its project of the same name) that takes a
// simulator-issued access token; mutate adjusts the sender's config
// (Concurrency, Halt). Both are closed at cleanup.
func FCMSender(t testing.TB, app string, fault fcmsim.Fault, mutate func(*fcm.Config)) (*fcm.Sender, *fcmsim.Server) {
	t.Helper()
	acct, err := fcmsim.NewTestServiceAccount(app, "")
	if err != nil {
		t.Fatal(err)
	}
	sim, err := fcmsim.New(fcmsim.Config{Accounts: map[string]fcmsim.Account{acct.ClientEmail: acct.Account()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	sim.SetFault(fault)
	at, err := sim.IssueAccessToken(acct.ClientEmail)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fcm.Config{App: app, ProjectID: app, Endpoint: sim.URL(), RootCAs: sim.CertPool(),
		TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: at, Expiry: time.Now().Add(time.Hour)})}
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := fcm.New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, sim
}
