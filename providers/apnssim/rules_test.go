package apnssim_test

import (
	"crypto/ecdsa"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/pushlane/pushlane/providers/apnssim"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func startSim(t *testing.T, mutate func(*apnssim.Config)) (*apnssim.Server, *apnssim.TestKey) {
	t.Helper()
	key, err := apnssim.NewTestKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg := apnssim.Config{Keys: map[string]*ecdsa.PublicKey{key.KeyID: key.Public()}, TeamID: key.TeamID, Topics: []string{"com.example.app"}}
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

// conn is one HTTP/2 connection to the simulator: each http2.Transport
// dials its own.
type conn struct {
	t   *testing.T
	sim *apnssim.Server
	c   *http.Client
}

func newConn(t *testing.T, sim *apnssim.Server) *conn {
	tr := &http2.Transport{TLSClientConfig: &tls.Config{RootCAs: sim.CertPool()}}
	t.Cleanup(tr.CloseIdleConnections)
	return &conn{t: t, sim: sim, c: &http.Client{Transport: tr}}
}

// push sends an alert to token with the provider token jwt and returns the
// status, the reason and the answer's headers.
func (c *conn) push(token, jwt string, hdr map[string]string) (int, string, http.Header) {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.sim.URL()+"/3/device/"+token, strings.NewReader(`{"aps":{"alert":"hi"}}`))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("apns-topic", "com.example.app")
	if jwt != "" {
		req.Header.Set("authorization", "bearer "+jwt)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.c.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var eb struct {
		Reason string `json:"reason"`
	}
	if len(body) > 0 {
		_ = json.Unmarshal(body, &eb)
	}
	return resp.StatusCode, eb.Reason, resp.Header
}

func live(n int) string { return strings.Repeat("ab", 31) + "0123456789abcdef"[n%16:n%16+1] + "0" }

// Apple limits how often a connection changes its provider token: a token
// other than the one the connection last had accepted, issued (iat) within
// 20 minutes of that one, is refused. The first token of a connection is always
// fine, so separate signers with one key work on their own connections.
func TestProviderTokenUpdateLimitIsPerConnection(t *testing.T) {
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	sim, key := startSim(t, func(c *apnssim.Config) { c.Clock = clk.Now })
	first, _ := key.JWT(clk.Now())
	a := newConn(t, sim)
	if st, rs, _ := a.push(live(1), first, nil); st != 200 {
		t.Fatalf("first token: %d %s", st, rs)
	}
	clk.Advance(time.Minute)
	second, _ := key.JWT(clk.Now())
	if st, rs, _ := a.push(live(2), second, nil); st != 429 || rs != "TooManyProviderTokenUpdates" {
		t.Fatalf("new token on the same connection after a minute: %d %s, want 429 TooManyProviderTokenUpdates", st, rs)
	}
	// Another signer, on its own connection: its first token is fine, and
	// so is the first connection's token, still in use there.
	b := newConn(t, sim)
	if st, rs, _ := b.push(live(3), second, nil); st != 200 {
		t.Fatalf("second signer on its own connection: %d %s", st, rs)
	}
	if st, rs, _ := a.push(live(4), first, nil); st != 200 {
		t.Fatalf("first token again on its connection: %d %s", st, rs)
	}
	// An older token is a change too.
	if st, rs, _ := b.push(live(5), first, nil); st != 429 || rs != "TooManyProviderTokenUpdates" {
		t.Fatalf("older token on the second connection: %d %s", st, rs)
	}
	// A token issued 20 minutes after the one in use may replace it, also
	// on a connection that has used the old one for a moment only: the
	// interval is between the tokens, not since the connection took one.
	clk.Advance(14 * time.Minute)
	late := newConn(t, sim)
	if st, rs, _ := late.push(live(6), first, nil); st != 200 {
		t.Fatalf("first token on a connection opened at minute 15: %d %s", st, rs)
	}
	clk.Advance(5 * time.Minute)
	third, _ := key.JWT(clk.Now())
	for i, c := range []*conn{a, late} {
		if st, rs, _ := c.push(live(7+i), third, nil); st != 200 {
			t.Fatalf("connection %d, token issued 20 minutes after the one in use: %d %s", i, st, rs)
		}
	}
	if st, rs, _ := a.push(live(9), second, nil); st != 429 || rs != "TooManyProviderTokenUpdates" {
		t.Fatalf("changing back to a token 19 minutes older: %d %s", st, rs)
	}
	if got := sim.TokenUpdates(key.KeyID); got != 3 {
		t.Errorf("TokenUpdates = %d, want 3 distinct tokens accepted", got)
	}
	if c := sim.Counts(); c.Accepted != 6 || c.Rejected["TooManyProviderTokenUpdates"] != 3 {
		t.Errorf("counts = %+v", c)
	}

	// AllowFrequentTokenUpdates turns the limit off.
	sim2, key2 := startSim(t, func(c *apnssim.Config) { c.Clock = clk.Now; c.AllowFrequentTokenUpdates = true })
	c := newConn(t, sim2)
	for i := range 3 {
		jwt, _ := key2.JWT(clk.Now())
		if st, rs, _ := c.push(live(i), jwt, nil); st != 200 {
			t.Fatalf("AllowFrequentTokenUpdates, token %d: %d %s", i, st, rs)
		}
		clk.Advance(time.Minute)
	}
}

// apns-unique-id is Apple's own identifier, only in development: never the
// apns-id echoed.
func TestUniqueIDIsItsOwnUUID(t *testing.T) {
	sim, key := startSim(t, nil)
	jwt, _ := key.JWT(time.Now())
	c := newConn(t, sim)
	seen := map[string]bool{}
	for _, hdr := range []map[string]string{nil, {"apns-id": "123E4567-E89B-12D3-A456-426614174000"}} {
		st, _, h := c.push(live(1), jwt, hdr)
		id, uid := h.Get("apns-id"), h.Get("apns-unique-id")
		if st != 200 || id == "" || len(uid) != 36 || strings.Count(uid, "-") != 4 {
			t.Fatalf("%d apns-id %q apns-unique-id %q", st, id, uid)
		}
		if uid == id || seen[uid] {
			t.Errorf("apns-unique-id %q is the apns-id or repeats", uid)
		}
		seen[uid] = true
	}
	prod, pkey := startSim(t, func(c *apnssim.Config) { c.Environment = "production" })
	pjwt, _ := pkey.JWT(time.Now())
	if _, _, h := newConn(t, prod).push(live(1), pjwt, nil); h.Get("apns-unique-id") != "" {
		t.Errorf("production answered apns-unique-id %q", h.Get("apns-unique-id"))
	}
}

// An injected fault's Count is spent only on pushes that would have been
// delivered: one refused for its token, auth or headers keeps its own
// answer and leaves the fault for the next good one.
func TestFaultCountIsSpentOnlyOnAcceptablePushes(t *testing.T) {
	sim, key := startSim(t, nil)
	sim.SetFault(apnssim.Fault{Rate503: 1, Count: 1, RetryAfter: time.Second})
	jwt, _ := key.JWT(time.Now())
	c := newConn(t, sim)
	dead := "dead" + live(1)[4:]
	if st, rs, _ := c.push(dead, jwt, nil); st != 410 || rs != "Unregistered" {
		t.Fatalf("dead token: %d %s, want 410 Unregistered", st, rs)
	}
	if st, rs, _ := c.push(live(1), "", nil); st != 403 || rs != "MissingProviderToken" {
		t.Fatalf("no auth: %d %s", st, rs)
	}
	if st, rs, _ := c.push(live(1), jwt, map[string]string{"apns-priority": "7"}); st != 400 || rs != "BadPriority" {
		t.Fatalf("bad header: %d %s", st, rs)
	}
	st, rs, h := c.push(live(2), jwt, nil)
	if st != 503 || rs != "ServiceUnavailable" || h.Get("Retry-After") != "1" {
		t.Fatalf("live token: %d %s (Retry-After %q), want the injected 503", st, rs, h.Get("Retry-After"))
	}
	if st, rs, _ := c.push(live(3), jwt, nil); st != 200 {
		t.Fatalf("after the fault's count: %d %s", st, rs)
	}
}
