package fcm

import (
	"strconv"
	"testing"
	"time"

	"firebase.google.com/go/v4/messaging"
)

// The lifetime goes where the SDK put the message's own, even when the
// content looks like a ttl field; the body of any lifetime is the SDK's
// encoding of the message with that lifetime.
func TestTemplateTTLWritesWhereTheSDKPutTheTTL(t *testing.T) {
	e, err := newSDKEncoder("p")
	if err != nil {
		t.Fatal(err)
	}
	data := map[string]string{"ttl": "123s", `"ttl":"`: `"ttl":"5s"`, "TTL": "60", `"TTL":"`: `"TTL":"7"`}
	hour := time.Hour
	for _, c := range []struct {
		f   ttlField
		m   *messaging.Message
		set func(m *messaging.Message, secs int64)
	}{
		{androidTTL, &messaging.Message{Data: data, Android: &messaging.AndroidConfig{TTL: &hour, CollapseKey: "ttl"}},
			func(m *messaging.Message, secs int64) {
				a := *m.Android
				d := time.Duration(secs) * time.Second
				a.TTL = &d
				m.Android = &a
			}},
		{webpushTTL, &messaging.Message{Data: data, Webpush: &messaging.WebpushConfig{Headers: map[string]string{"TTL": "3600", "Urgency": "high"}}},
			func(m *messaging.Message, secs int64) {
				w := *m.Webpush
				w.Headers = map[string]string{"TTL": strconv.FormatInt(secs, 10), "Urgency": "high"}
				m.Webpush = &w
			}},
	} {
		tmpl, err := e.templateTTL(c.m, c.f)
		if err != nil {
			t.Fatal(err)
		}
		if tmpl.ttlIn != inHead {
			t.Fatalf("field %d: the lifetime is in part %d, want the head (the SDK writes android and webpush before the token)", c.f, tmpl.ttlIn)
		}
		p := &Prepared{head: tmpl.head, tail: tmpl.tail, ttlIn: tmpl.ttlIn, ttlAt: tmpl.ttlAt}
		for _, secs := range []int64{0, 7, 3500, 2419200} {
			m := *c.m
			c.set(&m, secs)
			m.Token = "T1"
			want, err := e.request(&m)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.appendBody(nil, "T1", secs); string(got) != string(want.body) {
				t.Errorf("field %d, %d s:\n got %s\nwant %s", c.f, secs, got, want.body)
			}
		}
		if c.m.Token != "" || c.m.Android != nil && *c.m.Android.TTL != hour || c.m.Webpush != nil && c.m.Webpush.Headers["TTL"] != "3600" {
			t.Fatal("templateTTL changed the caller's message")
		}
	}
}

// A lifetime after the token (not where the SDK writes it today) is
// written there all the same.
func TestAppendBodyWritesTheLifetimeInTheTail(t *testing.T) {
	p := &Prepared{head: []byte(`{"a":`), tail: []byte(`,"ttl":"s"}`), ttlIn: inTail, ttlAt: len(`,"ttl":"`)}
	if got, want := string(p.appendBody(nil, "T", 42)), `{"a":"T","ttl":"42s"}`; got != want {
		t.Fatalf("body %s, want %s", got, want)
	}
}
