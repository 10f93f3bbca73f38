package fcm

import (
	"strings"
	"testing"

	"firebase.google.com/go/v4/messaging"
)

// What firebase-admin-go's validation refuses comes back as an error from
// the encoder, and nothing reaches the wire. (Prepare's own checks run
// first; this covers what the SDK knows beyond them.)
func TestSDKEncoderRefusesWhatTheSDKRefuses(t *testing.T) {
	e, err := newSDKEncoder("p")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		m    *messaging.Message
		want string
	}{
		{&messaging.Message{Android: &messaging.AndroidConfig{Priority: "urgent"}}, "priority must be 'normal' or 'high'"},
		{&messaging.Message{Webpush: &messaging.WebpushConfig{Notification: &messaging.WebpushNotification{Title: "t"},
			FCMOptions: &messaging.WebpushFCMOptions{Link: "http://example.com"}}}, "want scheme"},
		{&messaging.Message{APNS: &messaging.APNSConfig{Payload: &messaging.APNSPayload{Aps: &messaging.Aps{Sound: "a",
			CustomData: map[string]any{"sound": "b"}}}}}, `multiple specifications for the key "sound"`},
		{&messaging.Message{Notification: &messaging.Notification{ImageURL: "not a url"}}, "invalid image URL"},
	} {
		_, _, err := e.template(c.m)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("template(%+v) error %v, want %q", c.m, err, c.want)
		}
	}
}

// The token goes where the SDK put the message's token, even when the
// content looks like a token field.
func TestTemplateSplitsAtTheMessageToken(t *testing.T) {
	e, err := newSDKEncoder("p")
	if err != nil {
		t.Fatal(err)
	}
	m := &messaging.Message{Data: map[string]string{"token": "not-this", `"token":"`: `"token":"`}}
	head, tail, err := e.template(m)
	if err != nil {
		t.Fatal(err)
	}
	p := &Prepared{head: head, tail: tail}
	got := string(p.Body("T1"))
	want := `{"message":{"data":{"\"token\":\"":"\"token\":\"","token":"not-this"},"token":"T1"}}`
	if got != want {
		t.Fatalf("body\n got %s\nwant %s", got, want)
	}
	if m.Token != "" {
		t.Fatal("template changed the caller's message")
	}
}
