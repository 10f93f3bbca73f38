package apns_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pushlane/pushlane/providers"
)

// TTL is the lifetime after the send whether or not the message also has
// an expiration: apns-expiration is the earlier of the expiration and the
// send plus TTL. It used to be the expiration alone whenever there was one.
func TestExpirationIsTheEarlierOfExpirationAndTTL(t *testing.T) {
	e, clk := clockedSetup(t, 45*time.Minute)
	t0 := clk.Now()
	for i, c := range []struct {
		name       string
		expiration time.Time
		ttl        time.Duration
		want       time.Time
	}{
		{"expiration in 24 h, TTL 600 s", t0.Add(24 * time.Hour), 600 * time.Second, t0.Add(600 * time.Second)},
		{"expiration in 300 s, TTL 600 s", t0.Add(300 * time.Second), 600 * time.Second, t0.Add(300 * time.Second)},
		{"expiration only", t0.Add(24 * time.Hour), 0, t0.Add(24 * time.Hour)},
		{"TTL only", time.Time{}, 600 * time.Second, t0.Add(600 * time.Second)},
	} {
		m := alert()
		m.Token, m.Expiration, m.TTL = tok("e", i), c.expiration, c.ttl
		if r := e.sender.Send(context.Background(), m, 1); r.Outcome != providers.Delivered {
			t.Fatalf("%s: %+v", c.name, r)
		}
		rec, _ := e.sim.Last(m.Token)
		if got, want := rec.Header.Get("Apns-Expiration"), strconv.FormatInt(c.want.Unix(), 10); got != want {
			t.Errorf("%s: apns-expiration %s, want %s (t0%+d s)", c.name, got, want, c.want.Unix()-t0.Unix())
		}
	}
}

// A prepared message is sent with the apns-expiration set at Prepare, an
// absolute time: sent later, it lives no longer. Once the expiration has
// passed it is not sent at all, but refused as Prepare refuses it.
func TestPreparedSendAfterTheExpirationSendsNothing(t *testing.T) {
	e, clk := clockedSetup(t, 45*time.Minute)
	t0 := clk.Now()
	m := alert()
	m.Expiration, m.TTL = t0.Add(time.Hour), 10*time.Minute
	p, err := e.sender.PrepareAPNs(m)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(100 * time.Second)
	if r := p.Send(context.Background(), tok("1a7e", 1), 1); r.Outcome != providers.Delivered {
		t.Fatalf("sent 100 s later: %+v", r)
	}
	rec, _ := e.sim.Last(tok("1a7e", 1))
	// The TTL counts from the request, not from Prepare: a chunk sent 100 s
	// later got 100 s less of it (and one sent past Prepare + TTL an
	// expiration already passed).
	if got, want := rec.Header.Get("Apns-Expiration"), strconv.FormatInt(t0.Add(100*time.Second+10*time.Minute).Unix(), 10); got != want {
		t.Errorf("sent 100 s later: apns-expiration %s, want %s (the send's time plus TTL)", got, want)
	}
	// Near the expiration, the expiration is the earlier.
	clk.Advance(55 * time.Minute)
	if r := p.Send(context.Background(), tok("1a7e", 3), 1); r.Outcome != providers.Delivered {
		t.Fatalf("sent 5 min before the expiration: %+v", r)
	}
	rec, _ = e.sim.Last(tok("1a7e", 3))
	if got, want := rec.Header.Get("Apns-Expiration"), strconv.FormatInt(m.Expiration.Unix(), 10); got != want {
		t.Errorf("sent 5 min before the expiration: apns-expiration %s, want the expiration %s", got, want)
	}

	n := e.sim.Counts().Requests
	for _, at := range []time.Time{m.Expiration, m.Expiration.Add(time.Second)} {
		clk.Advance(at.Sub(clk.Now()))
		r := p.Send(context.Background(), tok("1a7e", 2), 3)
		if r.Outcome != providers.PayloadRejected || r.Reason != "BadExpirationDate" || r.Status != 0 || r.Attempt != 3 ||
			r.Err == nil || !strings.Contains(r.Err.Error(), "has passed") || !errors.Is(r.Err, providers.ErrExpired) {
			t.Errorf("sent %v after the expiration: %+v", at.Sub(m.Expiration), r)
		}
	}
	if got := e.sim.Counts().Requests; got != n {
		t.Fatalf("the simulator saw %d sends after the expiration, want none", got-n)
	}
}
