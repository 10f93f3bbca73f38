package fcm_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/messaging"
	"google.golang.org/api/option"

	"github.com/pushlane/pushlane/providers"
)

// sdkWire is an independent firebase-admin-go client whose transport keeps
// the last request instead of sending it.
type sdkWire struct {
	mu     sync.Mutex
	body   []byte
	header http.Header
}

func (w *sdkWire) RoundTrip(r *http.Request) (*http.Response, error) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	w.body, w.header = b, r.Header.Clone()
	w.mu.Unlock()
	return &http.Response{StatusCode: 200, Header: http.Header{}, Request: r,
		Body: io.NopCloser(strings.NewReader(`{"name":"projects/p/messages/1"}`))}, nil
}

func sdkClient(t *testing.T) (*messaging.Client, *sdkWire) {
	t.Helper()
	w := &sdkWire{}
	app, err := firebase.NewApp(context.Background(), &firebase.Config{ProjectID: project},
		option.WithHTTPClient(&http.Client{Transport: w}), option.WithEndpoint("https://example.invalid/v1"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := app.Messaging(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return c, w
}

// The body a prepared message sends is byte for byte the one
// firebase-admin-go's Client.Send encodes for the same message and token,
// tokens that need JSON escaping included.
func TestPreparedBodyIsTheSDKEncoding(t *testing.T) {
	sim, acct := startSim(t, nil)
	s := newSender(t, sim, acct, nil)
	sdk, wire := sdkClient(t)
	badge := 3
	msgs := []*providers.Message{
		note(),
		{Platform: providers.PlatformAndroid, Title: `Say "hi" <b>&</b>`, Body: "naïve ☃ \u2028 line\nbreak",
			Data: map[string]string{"z": "1", "a": `{"json":"inside"}`, "m": "</script>"}, Priority: providers.PriorityHigh,
			CollapseID: "c", TTL: 90 * time.Minute, AndroidChannel: "promo", Sound: "chime"},
		{Platform: providers.PlatformIOS, Title: "t", Badge: &badge, Sound: "s", ThreadID: "th", Category: "cat",
			MutableContent: true, InterruptionLevel: "passive", Priority: providers.PriorityNormal, CollapseID: "c",
			PushType: "alert", Data: map[string]string{"k": "v"}},
		{Platform: providers.PlatformWeb, Title: "t", Body: "b", TTL: time.Minute, Priority: providers.PriorityLow, CollapseID: "tag"},
		{Platform: providers.PlatformAndroid, Data: map[string]string{"only": "data"}},
	}
	tokens := []string{
		"fcm-token_0:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx",
		`quote"token`,
		`back\slash`,
		"ctl\x00\x01\x1f\ttab",
		"<html>&amp;",
		"unicode-é-☃-\u2028\u2029",
		"invalid-utf8-\xff\xfe",
		"",
	}
	for i, m := range msgs {
		p, err := s.PrepareFCM(m)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		for _, tok := range tokens {
			sm := *p.Message
			sm.Token = tok
			if tok == "" {
				sm.Token = "x" // the SDK needs a target; compare the empty token by hand below
			}
			if _, err := sdk.Send(context.Background(), &sm); err != nil {
				t.Fatal(err)
			}
			want := string(wire.body)
			if tok == "" {
				want = strings.Replace(want, `"token":"x"`, `"token":""`, 1)
			}
			if got := string(p.Body(tok)); got != want {
				t.Errorf("message %d, token %q:\n got %s\nwant %s", i, tok, got, want)
			}
		}
	}
	// And the headers the SDK sends (but its client identification) go
	// out with every request.
	m := note()
	m.Token = "hdr-1"
	if r := s.Send(context.Background(), m, 1); r.Outcome != providers.Delivered {
		t.Fatal(r)
	}
	rec, _ := sim.Last("hdr-1")
	for _, k := range []string{"Content-Type", "X-Goog-Api-Format-Version"} {
		if got, want := rec.Header.Get(k), wire.header.Get(k); got != want || got == "" {
			t.Errorf("header %s = %q, the SDK sends %q", k, got, want)
		}
	}
}
