package dispatcher

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/providers/apns"
	"github.com/pushlane/pushlane/providers/apnssim"
	"github.com/pushlane/pushlane/providers/fcm"
	"github.com/pushlane/pushlane/providers/fcmsim"
	"github.com/pushlane/pushlane/schemas"
)

// ttlClock is a settable clock for the senders' lifetimes.
type ttlClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *ttlClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *ttlClock) Set(now time.Time) {
	c.mu.Lock()
	c.now = now
	c.mu.Unlock()
}

func (c *ttlClock) Sleep(context.Context, time.Duration) error { return nil }

// ttlFCM is an FCM sender on clk against a recording simulator.
func ttlFCM(t *testing.T, clk *ttlClock) (*fcm.Sender, *fcmsim.Server) {
	t.Helper()
	acct, err := fcmsim.NewTestServiceAccount("ttl", "")
	if err != nil {
		t.Fatal(err)
	}
	sim, err := fcmsim.New(fcmsim.Config{Accounts: map[string]fcmsim.Account{acct.ClientEmail: acct.Account()}, Record: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	at, err := sim.IssueAccessToken(acct.ClientEmail)
	if err != nil {
		t.Fatal(err)
	}
	s, err := fcm.New(fcm.Config{App: "ttl", ProjectID: "ttl", Endpoint: sim.URL(), RootCAs: sim.CertPool(),
		TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: at, Expiry: time.Now().Add(time.Hour)}),
		Clock:       clk.Now, Sleep: clk.Sleep}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, sim
}

func androidTTLSent(t *testing.T, sim *fcmsim.Server, token string) string {
	t.Helper()
	rec, ok := sim.Last(token)
	if !ok {
		t.Fatalf("%s: the simulator accepted nothing", token)
	}
	var body struct {
		Message struct {
			Android struct {
				TTL string `json:"ttl"`
			} `json:"android"`
		} `json:"message"`
	}
	if err := json.Unmarshal(rec.Body, &body); err != nil {
		t.Fatal(err)
	}
	return body.Message.Android.TTL
}

func ttlBatch(sendAt, expiresAt time.Time, ttlSeconds int, platform string, tokens ...string) *schemas.Batch {
	b := &schemas.Batch{ID: "b1", CampaignID: "c1", App: "ttl", Attempt: 1, SendAt: sendAt, ExpiresAt: expiresAt,
		Content: schemas.Content{Title: "Sale", Body: "now"}, Options: schemas.Options{TTLSeconds: ttlSeconds}}
	for _, tok := range tokens {
		b.Devices = append(b.Devices, schemas.BatchDevice{Token: tok, Platform: platform})
	}
	return b
}

// A campaign expiring 30 days after its send, without ttl_seconds, reaches
// FCM with FCM's longest lifetime, four weeks; it used to be refused, and
// every Android device of the batch was payload_rejected.
func TestBatchExpiringIn30DaysIsSentThroughFCM(t *testing.T) {
	clk := &ttlClock{now: time.Unix(1_800_000_000, 0)}
	s, sim := ttlFCM(t, clk)
	t0 := clk.Now()
	b := ttlBatch(t0, t0.Add(30*24*time.Hour), 0, schemas.PlatformAndroid, "and-1")
	p := newMessages(b, App{FCM: s}).forDevice(&b.Devices[0])
	if p.err != nil {
		t.Fatalf("prepare: %v", p.err)
	}
	if r := p.send(context.Background(), "and-1", 1); r.Outcome != providers.Delivered {
		t.Fatalf("%+v", r)
	}
	if got := androidTTLSent(t, sim, "and-1"); got != "2419200s" {
		t.Errorf("ttl sent %s, want 2419200s", got)
	}
}

// A batch's message is prepared once and sent chunk after chunk, over
// minutes when the app is rate limited: each request carries what is left
// of the batch's lifetime at that request, so none outlives the expiry.
func TestBatchSentLaterCarriesTheLifetimeLeft(t *testing.T) {
	clk := &ttlClock{now: time.Unix(1_800_000_000, 0)}
	s, sim := ttlFCM(t, clk)
	t0 := clk.Now()
	b := ttlBatch(t0, t0.Add(time.Hour), 0, schemas.PlatformAndroid, "and-1", "and-2")
	ms := newMessages(b, App{FCM: s})
	first := ms.forDevice(&b.Devices[0])
	if r := first.send(context.Background(), "and-1", 1); r.Outcome != providers.Delivered {
		t.Fatalf("first chunk: %+v", r)
	}
	clk.Set(t0.Add(100 * time.Second))
	later := ms.forDevice(&b.Devices[1])
	if later != first {
		t.Fatal("the batch's message was prepared twice; this test means the one prepared for the first chunk")
	}
	if r := later.send(context.Background(), "and-2", 1); r.Outcome != providers.Delivered {
		t.Fatalf("later chunk: %+v", r)
	}
	for tok, want := range map[string]string{"and-1": "3600s", "and-2": "3500s"} {
		if got := androidTTLSent(t, sim, tok); got != want {
			t.Errorf("%s: ttl sent %s, want %s", tok, got, want)
		}
	}
}

// ttl_seconds is the provider-side TTL with an expires_at too: APNs keeps
// the message until the earlier of them. It used to get the expiry alone.
func TestBatchTTLAndExpiryReachAPNsAsTheEarlier(t *testing.T) {
	clk := &ttlClock{now: time.Unix(1_800_000_000, 0)}
	key, err := apnssim.NewTestKey()
	if err != nil {
		t.Fatal(err)
	}
	const topic = "com.example.ttl"
	sim, err := apnssim.New(apnssim.Config{Keys: map[string]*ecdsa.PublicKey{key.KeyID: key.Public()}, TeamID: key.TeamID,
		Topics: []string{topic}, Record: true, Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	s, err := apns.New(apns.Config{App: "ttl", Environment: apns.Development, Topic: topic, KeyPEM: key.PEM, KeyID: key.KeyID,
		TeamID: key.TeamID, Endpoint: sim.URL(), RootCAs: sim.CertPool(), Clock: clk.Now}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	t0 := clk.Now()
	token := "c0ffee" + "0000000000000000000000000000000000000000000000000000000001"
	b := ttlBatch(t0, t0.Add(24*time.Hour), 600, schemas.PlatformIOS, token)
	p := newMessages(b, App{APNS: s}).forDevice(&b.Devices[0])
	if r := p.send(context.Background(), token, 1); r.Outcome != providers.Delivered {
		t.Fatalf("%+v", r)
	}
	rec, _ := sim.Last(token)
	if got, want := rec.Header.Get("Apns-Expiration"), strconv.FormatInt(t0.Add(600*time.Second).Unix(), 10); got != want {
		t.Errorf("apns-expiration %s, want %s (send plus ttl_seconds)", got, want)
	}
}
