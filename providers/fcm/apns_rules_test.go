package fcm_test

import (
	"strings"
	"testing"

	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/providers/apns"
	"github.com/pushlane/pushlane/providers/apnssim"
	"github.com/pushlane/pushlane/schemas"
)

// The push-type and priority rules FCM's sender applies to an iOS device
// are the APNs sender's (schemas/apnspush, which the campaign check applies
// too), but for the one FCM adds: a push that shows nothing is refused at
// priority high whatever its push type (Google: "When sending data
// messages to Apple devices, the priority must be set to 5, or normal
// priority. Messages sent with high priority are rejected by the FCM
// backend with the error INVALID_ARGUMENT"), and goes at 5 when it names
// no priority (APNs's default, 10, would be refused), where the APNs
// sender sends 10 (and refuses an alert that shows nothing at it).
// Every push type, priority and content-available setting is tried with
// content that shows something or nothing.
func TestIOSPushRulesAreTheAPNsSendersPlusFCMs(t *testing.T) {
	sim, acct := startSim(t, nil)
	fs := newSender(t, sim, acct, nil)
	key, err := apnssim.NewTestKey()
	if err != nil {
		t.Fatal(err)
	}
	as, err := apns.New(apns.Config{App: "demo", Environment: apns.Development, Topic: "com.example.app",
		KeyPEM: key.PEM, KeyID: key.KeyID, TeamID: key.TeamID}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = as.Close() })
	badge := 1
	contents := []providers.Message{
		{Data: map[string]string{"k": "v"}},
		{Title: "t"},
		{Body: "b", Data: map[string]string{"k": "v"}},
		{Sound: "default"},
		{Badge: &badge},
	}
	fcmOnly, same := 0, 0
	for _, pushType := range append([]string{""}, schemas.PushTypes...) {
		for _, priority := range []string{"", providers.PriorityHigh, providers.PriorityNormal, providers.PriorityLow} {
			for _, contentAvailable := range []bool{false, true} {
				for _, c := range contents {
					m := c
					m.Platform, m.PushType, m.Priority, m.ContentAvailable = providers.PlatformIOS, pushType, priority, contentAvailable
					name := "push_type " + pushType + ", priority " + priority + ", shows " + shown(&m)
					if contentAvailable {
						name += ", content-available"
					}
					_, aerr := as.PrepareAPNs(&m)
					p, ferr := fs.PrepareFCM(&m)
					switch {
					case !m.Visible() && priority == providers.PriorityHigh && aerr != nil:
						same++
						if ferr == nil {
							t.Errorf("%s: FCM's Prepare accepts it; the APNs sender's: %v", name, aerr)
						}
					case !m.Visible() && priority == providers.PriorityHigh:
						// FCM's own refusal, of what Apple takes.
						fcmOnly++
						if ferr == nil || !strings.Contains(ferr.Error(), "FCM refuses data messages to Apple devices at apns-priority 10") {
							t.Errorf("%s: FCM's Prepare: %v, want its refusal of a push that shows nothing at 10", name, ferr)
						}
					case !m.Visible() && priority == "":
						// Sent at 5, as the APNs sender judges it.
						n := m
						n.Priority = providers.PriorityNormal
						if _, aerr := as.PrepareAPNs(&n); (aerr == nil) != (ferr == nil) {
							t.Errorf("%s: FCM's Prepare: %v; the APNs sender's at priority normal: %v", name, ferr, aerr)
						} else if ferr == nil && p.Message.APNS.Headers["apns-priority"] != "5" {
							t.Errorf("%s: apns-priority %q, want 5", name, p.Message.APNS.Headers["apns-priority"])
						}
					default:
						same++
						if (aerr == nil) != (ferr == nil) {
							t.Errorf("%s: FCM's Prepare: %v; the APNs sender's: %v", name, ferr, aerr)
						}
					}
				}
			}
		}
	}
	if fcmOnly == 0 || same < 100 {
		t.Errorf("%d cases of FCM's own rule and %d of the APNs sender's: the table no longer covers both", fcmOnly, same)
	}
}

func shown(m *providers.Message) string {
	var s []string
	if m.Title != "" {
		s = append(s, "title")
	}
	if m.Body != "" {
		s = append(s, "body")
	}
	if m.Sound != "" {
		s = append(s, "sound")
	}
	if m.Badge != nil {
		s = append(s, "badge")
	}
	if len(s) == 0 {
		return "nothing"
	}
	return strings.Join(s, "+")
}
