package fcm_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/providers/fcm"
	"github.com/pushlane/pushlane/providers/fcmsim"
)

// lifetimeSent is the lifetime the simulator received for token: android.ttl,
// webpush's TTL header, or the APNs override's apns-expiration.
func lifetimeSent(t *testing.T, sim *fcmsim.Server, token string) string {
	t.Helper()
	rec, ok := sim.Last(token)
	if !ok {
		t.Fatalf("%s: the simulator accepted nothing", token)
	}
	var body struct {
		Message struct {
			Android struct {
				TTL *string `json:"ttl"`
			} `json:"android"`
			Webpush struct {
				Headers map[string]string `json:"headers"`
			} `json:"webpush"`
			APNS struct {
				Headers map[string]string `json:"headers"`
			} `json:"apns"`
		} `json:"message"`
	}
	if err := json.Unmarshal(rec.Body, &body); err != nil {
		t.Fatal(err)
	}
	m := body.Message
	switch {
	case m.Android.TTL != nil:
		return *m.Android.TTL
	case m.Webpush.Headers != nil:
		return m.Webpush.Headers["TTL"]
	default:
		return m.APNS.Headers["apns-expiration"]
	}
}

// A campaign may expire 30 days after its send. With no TTL of its own,
// its lifetime on FCM is FCM's longest, four weeks: the expiry is kept
// anyway, since FCM keeps nothing longer. It used to be refused, and every
// device of the batch was payload_rejected.
func TestExpirationBeyondFourWeeksIsSentWithTheLongestTTL(t *testing.T) {
	sim, acct := startSim(t, nil)
	clk := newFakeClock()
	s := newSender(t, sim, acct, func(c *fcm.Config) { c.Clock, c.Sleep = clk.Now, clk.Sleep })
	t0 := clk.Now()
	for _, c := range []struct {
		platform, token, want string
	}{
		{providers.PlatformAndroid, "and-30d", "2419200s"},
		{providers.PlatformWeb, "web-30d", "2419200"},
		{providers.PlatformIOS, "ios-30d", strconv.FormatInt(t0.Add(fcm.MaxTTL).Unix(), 10)},
	} {
		m := &providers.Message{Platform: c.platform, Title: "t", Expiration: t0.Add(30 * 24 * time.Hour)}
		p, err := s.Prepare(m)
		if err != nil {
			t.Fatalf("%s: Prepare: %v", c.platform, err)
		}
		if r := p.Send(context.Background(), c.token, 1); r.Outcome != providers.Delivered {
			t.Fatalf("%s: %+v", c.platform, r)
		}
		if got := lifetimeSent(t, sim, c.token); got != c.want {
			t.Errorf("%s: lifetime sent %s, want %s", c.platform, got, c.want)
		}
	}
	// An explicit TTL over four weeks is still refused: nothing asks for
	// one (the campaign schema caps ttl_seconds), with an expiration or not.
	m := &providers.Message{Platform: providers.PlatformAndroid, Title: "t", TTL: fcm.MaxTTL + time.Second,
		Expiration: t0.Add(time.Hour)}
	if _, err := s.Prepare(m); err == nil || !strings.Contains(err.Error(), "outside 0–2419200 s") {
		t.Errorf("TTL over four weeks: %v", err)
	}
}

// A batch is sent in chunks, over minutes when its app is rate limited,
// from one prepared message. The lifetime each request carries is what is
// left at that request, so no message outlives the expiry: prepared at t0,
// sent 100 s later, a message expiring at t0+1h lives 3500 s, not 3600.
func TestPreparedSendCarriesTheLifetimeLeftAtTheSend(t *testing.T) {
	sim, acct := startSim(t, nil)
	clk := newFakeClock()
	s := newSender(t, sim, acct, func(c *fcm.Config) { c.Clock, c.Sleep = clk.Now, clk.Sleep })
	sdk, wire := sdkClient(t)
	t0 := clk.Now()
	cases := []struct {
		name     string
		m        providers.Message
		after    time.Duration // the send, after Prepare at t0
		want     string
		sdkValue time.Duration // the lifetime in the SDK's encoding of the body
	}{
		{"expiration", providers.Message{Platform: providers.PlatformAndroid, Expiration: t0.Add(time.Hour)},
			100 * time.Second, "3500s", 3500 * time.Second},
		{"expiration, fraction of a second cut", providers.Message{Platform: providers.PlatformAndroid, Expiration: t0.Add(time.Hour)},
			100*time.Second + 300*time.Millisecond, "3499s", 3499 * time.Second},
		{"TTL shorter than what is left", providers.Message{Platform: providers.PlatformAndroid, TTL: 600 * time.Second,
			Expiration: t0.Add(time.Hour)}, 100 * time.Second, "600s", 600 * time.Second},
		{"what is left shorter than TTL", providers.Message{Platform: providers.PlatformAndroid, TTL: 600 * time.Second,
			Expiration: t0.Add(650 * time.Second)}, 100 * time.Second, "550s", 550 * time.Second},
		{"expiration 30 days out, sent a day later", providers.Message{Platform: providers.PlatformAndroid,
			Expiration: t0.Add(30 * 24 * time.Hour)}, 24 * time.Hour, "2419200s", fcm.MaxTTL},
		{"expiration 30 days out, sent three days later", providers.Message{Platform: providers.PlatformAndroid,
			Expiration: t0.Add(30 * 24 * time.Hour)}, 3 * 24 * time.Hour, "2332800s", 27 * 24 * time.Hour},
		{"under a second left", providers.Message{Platform: providers.PlatformAndroid, Expiration: t0.Add(100*time.Second + 500*time.Millisecond)},
			100 * time.Second, "0s", 0},
		{"web", providers.Message{Platform: providers.PlatformWeb, Title: "t", Expiration: t0.Add(time.Hour)},
			100 * time.Second, "3500", 3500 * time.Second},
		{"web, under a second left", providers.Message{Platform: providers.PlatformWeb, Title: "t", Expiration: t0.Add(100*time.Second + 500*time.Millisecond)},
			100 * time.Second, "0", 0},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clk.Set(t0)
			m := c.m
			m.Data = map[string]string{"k": "v"}
			m.CollapseID, m.Priority, m.AndroidChannel = "c", providers.PriorityHigh, "promo"
			p, err := s.PrepareFCM(&m)
			if err != nil {
				t.Fatal(err)
			}
			clk.Set(t0.Add(c.after))
			token := "later-" + strconv.Itoa(i)
			if r := p.Send(context.Background(), token, 1); r.Outcome != providers.Delivered {
				t.Fatalf("%+v", r)
			}
			if got := lifetimeSent(t, sim, token); got != c.want {
				t.Errorf("lifetime sent %s, want %s", got, c.want)
			}
			// Byte for byte what the SDK encodes for that lifetime.
			sm := *p.Message
			sm.Token = token
			if sm.Android != nil {
				a := *sm.Android
				a.TTL = &c.sdkValue
				sm.Android = &a
			} else {
				w := *sm.Webpush
				w.Headers = map[string]string{"TTL": strconv.FormatInt(int64(c.sdkValue/time.Second), 10), "Urgency": "high"}
				sm.Webpush = &w
			}
			if _, err := sdk.Send(context.Background(), &sm); err != nil {
				t.Fatal(err)
			}
			rec, _ := sim.Last(token)
			if string(rec.Body) != string(wire.body) {
				t.Errorf("body\n got %s\nwant %s", rec.Body, wire.body)
			}
		})
	}
}

// A prepared message whose expiration has passed by the time of a send is
// not sent: it is refused as Prepare refuses it, with nothing on the wire,
// whatever the platform. (The dispatcher bars sends after the expiry, but a
// send can start just before it.)
func TestPreparedSendAfterTheExpirationSendsNothing(t *testing.T) {
	sim, acct := startSim(t, nil)
	clk := newFakeClock()
	s := newSender(t, sim, acct, func(c *fcm.Config) { c.Clock, c.Sleep = clk.Now, clk.Sleep })
	t0 := clk.Now()
	for _, platform := range []string{providers.PlatformAndroid, providers.PlatformWeb, providers.PlatformIOS} {
		for _, late := range []time.Duration{0, time.Second} {
			clk.Set(t0)
			m := &providers.Message{Platform: platform, Title: "t", Expiration: t0.Add(10 * time.Second), TTL: time.Hour}
			p, err := s.Prepare(m)
			if err != nil {
				t.Fatal(err)
			}
			clk.Set(m.Expiration.Add(late))
			r := p.Send(context.Background(), "expired-"+platform, 1)
			if r.Outcome != providers.PayloadRejected || r.Reason != "INVALID_ARGUMENT" || r.Status != 0 || r.Attempt != 1 ||
				r.Err == nil || !strings.Contains(r.Err.Error(), "has passed") || !errors.Is(r.Err, providers.ErrExpired) {
				t.Errorf("%s, %v after the expiration: %+v", platform, late, r)
			}
		}
	}
	if n := sim.Counts().Requests; n != 0 {
		t.Fatalf("the simulator saw %d sends, want 0", n)
	}
}

// Set moves the clock to now.
func (c *fakeClock) Set(now time.Time) {
	c.mu.Lock()
	c.now = now
	c.mu.Unlock()
}
