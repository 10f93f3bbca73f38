package apns_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/schemas"
)

// A campaign that schemas.DecodeCampaign accepts is one whose every
// message PrepareAPNs accepts, and one it refuses for APNs' push type and
// priority rules has a message PrepareAPNs refuses: otherwise every iOS
// device of it would be payload_rejected, or a campaign Apple would take
// dead-lettered. Every push type, priority and content-available setting
// is tried with content that shows something, nothing, or something in
// some locales only.
func TestCampaignCheckMatchesPrepare(t *testing.T) {
	e := setup(t)
	contents := []string{
		`{}`,
		`{"data":{"refresh":"1"}}`,
		`{"title":"Hi"}`,
		`{"body":"there","data":{"refresh":"1"}}`,
		`{"badge":0}`,
		`{"sound":"default"}`,
		`{"localized":{"de":{"title":"Hallo"}}}`,
		`{"localized":{"de":{"title":"Hallo"}},"fallback_locale":"de"}`,
		`{"title":"Hi","localized":{"ja":{}}}`,
		`{"localized":{"de":{"body":"Hallo"},"ja":{}},"fallback_locale":"ja"}`,
	}
	accepted, refused := 0, 0
	for _, pushType := range append([]string{""}, schemas.PushTypes...) {
		for _, priority := range []string{"", schemas.PriorityHigh, schemas.PriorityNormal, schemas.PriorityLow} {
			for _, contentAvailable := range []bool{false, true} {
				for _, content := range contents {
					opts := []string{}
					if pushType != "" {
						opts = append(opts, `"push_type":"`+pushType+`"`)
					}
					if priority != "" {
						opts = append(opts, `"priority":"`+priority+`"`)
					}
					if contentAvailable {
						opts = append(opts, `"content_available":true`)
					}
					raw := `{"schema_version":1,"id":"c1","app":"shop","audience":{"type":"segment"},"content":` + content +
						`,"schedule":{"mode":"at"},"options":{` + strings.Join(opts, ",") + `}}`
					c, err := schemas.DecodeCampaign([]byte(raw))
					if err != nil { // its messages are still what Apple would judge

						c = &schemas.Campaign{}
						if ierr := json.Unmarshal([]byte(raw), c); ierr != nil {
							t.Fatal(ierr)
						}
					}
					var prepErrs []string
					for _, m := range campaignMessages(c) {
						if _, perr := e.sender.PrepareAPNs(m); perr != nil {
							prepErrs = append(prepErrs, perr.Error())
						}
					}
					switch {
					case err == nil:
						accepted++
						if len(prepErrs) > 0 {
							t.Errorf("%s: DecodeCampaign accepts it, PrepareAPNs refuses: %s", raw, strings.Join(prepErrs, "; "))
						}
					case onlyContentRule(err):
						// An alert that shows nothing and is not silent:
						// refused by Pushlane alone (schemas/json/README.md).
					default:
						refused++
						if len(prepErrs) == 0 {
							t.Errorf("%s: DecodeCampaign refuses it (%v), PrepareAPNs accepts every message", raw, err)
						}
					}
				}
			}
		}
	}
	if accepted < 100 || refused < 20 {
		t.Errorf("%d accepted and %d refused: the table no longer covers both", accepted, refused)
	}
}

func onlyContentRule(err error) bool {
	ie, ok := err.(*schemas.InvalidError)
	if !ok {
		return false
	}
	for _, p := range ie.Problems {
		if !strings.Contains(p, ": an alert needs a title, body, badge or sound") {
			return false
		}
	}
	return true
}

// campaignMessages are the messages an iOS device of c can be sent, built
// as the dispatcher builds them (pipeline/dispatcher: LocalizedText and
// message): one per locale variant, and one for a locale with none.
func campaignMessages(c *schemas.Campaign) []*providers.Message {
	locales := []string{"zz"}
	for l := range c.Content.Localized {
		locales = append(locales, l)
	}
	var out []*providers.Message
	for _, l := range locales {
		title, body := c.Content.Title, c.Content.Body
		if v, ok := c.Content.Localized[l]; ok {
			title, body = v.Title, v.Body
		} else if v, ok := c.Content.Localized[c.Content.FallbackLocale]; ok && c.Content.FallbackLocale != "" {
			title, body = v.Title, v.Body
		}
		o := c.Options
		out = append(out, &providers.Message{
			Platform: providers.PlatformIOS, Title: title, Body: body, Badge: c.Content.Badge, Sound: c.Content.Sound,
			Data: c.Content.Data, PushType: o.PushType, Priority: o.Priority, CollapseID: o.CollapseID, ThreadID: o.ThreadID,
			Category: o.Category, MutableContent: o.MutableContent, ContentAvailable: o.ContentAvailable,
			InterruptionLevel: o.InterruptionLevel,
		})
	}
	return out
}
