package apns_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/providers/apns"
)

// Invalid content is refused before anything is sent: the simulator must see
// no request at all.
func TestValidationRejectsWithoutCallingApple(t *testing.T) {
	e := setup(t)
	long := strings.Repeat("x", 4097)
	cases := []struct {
		name    string
		m       providers.Message
		outcome providers.Outcome
		reason  string
		errText string
	}{
		{"payload too large", providers.Message{Title: "t", Body: long}, providers.PayloadRejected, "PayloadTooLarge", "limit for push type alert is 4096"},
		{"voip too large", providers.Message{PushType: "voip", Body: strings.Repeat("x", 5100)}, providers.PayloadRejected, "PayloadTooLarge", "limit for push type voip is 5120"},
		{"background with priority high", providers.Message{ContentAvailable: true, Priority: "high"}, providers.PayloadRejected, "BadPriority", "background pushes must use priority 5"},
		{"background with priority low", providers.Message{PushType: "background", ContentAvailable: true, Priority: "low"}, providers.PayloadRejected, "BadPriority", "background pushes must use priority 5"},
		{"background with a title", providers.Message{PushType: "background", Title: "x", ContentAvailable: true}, providers.PayloadRejected, "InvalidPushType", "background push carries no title"},
		{"priority 10 with nothing to show", providers.Message{PushType: "alert", ContentAvailable: true, Priority: "high"}, providers.PayloadRejected, "BadPriority", "priority 10 needs"},
		{"unknown priority", providers.Message{Title: "x", Priority: "urgent"}, providers.PayloadRejected, "BadPriority", `got "urgent"`},
		{"unknown push type", providers.Message{Title: "x", PushType: "fax"}, providers.PayloadRejected, "InvalidPushType", `unknown push type "fax"`},
		{"voip topic without suffix", providers.Message{Title: "x", PushType: "voip", Topic: topic}, providers.PayloadRejected, "BadTopic", `does not fit push type voip`},
		{"alert on a voip topic", providers.Message{Title: "x", Topic: topic + ".voip"}, providers.PayloadRejected, "BadTopic", `does not fit push type alert`},
		{"liveactivity topic wrong", providers.Message{Title: "x", PushType: "liveactivity", Topic: topic + ".voip"}, providers.PayloadRejected, "BadTopic", "liveactivity"},
		{"collapse id 65 bytes", providers.Message{Title: "x", CollapseID: strings.Repeat("c", 65)}, providers.PayloadRejected, "BadCollapseId", "65 bytes, limit 64"},
		{"interruption level", providers.Message{Title: "x", InterruptionLevel: "loud"}, providers.PayloadRejected, "BadInterruptionLevel", `got "loud"`},
		{"aps in custom data", providers.Message{Title: "x", Data: map[string]string{"aps": "1"}}, providers.PayloadRejected, "BadPayload", `"aps"`},
		{"expired", providers.Message{Title: "x", Expiration: time.Now().Add(-time.Minute)}, providers.PayloadRejected, "BadExpirationDate", "has passed"},
		{"empty token", providers.Message{Title: "x", Token: "-"}, providers.TokenSuspect, "MissingDeviceToken", "empty device token"},
		{"token not hex", providers.Message{Title: "x", Token: "zz" + strings.Repeat("0", 62)}, providers.TokenSuspect, "BadDeviceToken", "not hexadecimal"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := c.m
			switch m.Token {
			case "":
				m.Token = tok("a", 1)
			case "-":
				m.Token = ""
			}
			r := e.sender.Send(context.Background(), &m, 1)
			if r.Outcome != c.outcome || r.Reason != c.reason || r.Status != 0 {
				t.Fatalf("got %s %q status %d, want %s %q", r.Outcome, r.Reason, r.Status, c.outcome, c.reason)
			}
			if r.Err == nil || !strings.Contains(r.Err.Error(), c.errText) {
				t.Fatalf("error %v, want it to contain %q", r.Err, c.errText)
			}
			if c.outcome == providers.PayloadRejected {
				var re *providers.RejectError
				if !errors.As(r.Err, &re) || re.Provider != "apns" {
					t.Errorf("error %T is not a *providers.RejectError", r.Err)
				}
			}
		})
	}
	if n := e.sim.Counts().Requests; n != 0 {
		t.Fatalf("simulator saw %d requests, want 0", n)
	}
}

func TestValidPushTypesReachTheSimulator(t *testing.T) {
	e := setup(t)
	for i, m := range []providers.Message{
		{ContentAvailable: true},                            // background, priority 5 chosen
		{PushType: "voip", Body: strings.Repeat("v", 4500)}, // voip may be 5120 bytes
		{PushType: "liveactivity", Title: "score", Priority: "high"},
		{PushType: "complication", Data: map[string]string{"x": "1"}, Priority: "normal"},
		{Title: "x", Priority: "low", TTL: time.Hour},
	} {
		m.Token = tok("a", i)
		if r := e.sender.Send(context.Background(), &m, 1); r.Outcome != providers.Delivered {
			t.Errorf("message %d: %+v", i, r)
		}
	}
	rec, _ := e.sim.Last(tok("a", 0))
	if rec.Header.Get("apns-push-type") != "background" || rec.Header.Get("apns-priority") != "5" {
		t.Errorf("background headers: %v", rec.Header)
	}
	rec, _ = e.sim.Last(tok("a", 2))
	if rec.Header.Get("apns-topic") != topic+".push-type.liveactivity" {
		t.Errorf("liveactivity topic: %v", rec.Header.Get("apns-topic"))
	}
	rec, _ = e.sim.Last(tok("a", 4))
	if rec.Header.Get("apns-priority") != "1" || rec.Header.Get("apns-expiration") == "" {
		t.Errorf("low priority / ttl headers: %v", rec.Header)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	base := apns.Config{App: "a", Environment: apns.Production, Topic: "t", KeyPEM: []byte("x"), KeyID: "ABCDEFGHIJ", TeamID: "ABCDEFGHIJ"}
	cases := []struct {
		mutate func(*apns.Config)
		want   string
	}{
		{func(c *apns.Config) { c.App = "" }, "config App"},
		{func(c *apns.Config) { c.Environment = "prod" }, "config Environment"},
		{func(c *apns.Config) { c.Topic = "" }, "config Topic"},
		{func(c *apns.Config) { c.KeyPEM = nil }, "config KeyFile/KeyPEM or CertFile/CertPEM"},
		{func(c *apns.Config) { c.CertFile = "x.p12" }, "choose token or certificate auth"},
		{func(c *apns.Config) { c.KeyID = "short" }, "config KeyID"},
		{func(c *apns.Config) { c.TeamID = "" }, "config TeamID"},
		{func(c *apns.Config) { c.TokenRefresh = 10 * time.Minute }, "config TokenRefresh"},
		{func(c *apns.Config) { c.TokenRefresh = time.Hour }, "config TokenRefresh"},
		{func(c *apns.Config) { c.Connections = -1 }, "config Connections"},
		{func(c *apns.Config) { c.KeyPEM = []byte("not a key") }, "config KeyPEM"},
		{func(c *apns.Config) { c.KeyPEM = nil; c.KeyFile = "/nonexistent/AuthKey.p8" }, "config KeyFile"},
		{func(c *apns.Config) { c.KeyPEM, c.KeyID, c.TeamID = nil, "", ""; c.CertFile = "/nonexistent.p12" }, "config CertFile"},
	}
	for _, c := range cases {
		cfg := base
		c.mutate(&cfg)
		_, err := apns.New(cfg, nil, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v, want it to name %q", err, c.want)
		}
	}
}
