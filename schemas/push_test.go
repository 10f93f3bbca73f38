package schemas

import (
	"strings"
	"testing"
)

// The campaign check refuses what the APNs sender would refuse for a text
// variant, deriving the push type and priority as the sender does
// (apnspush), and leaves alone the push types that are not alerts: they
// need nothing shown. providers/apns's TestCampaignCheckMatchesPrepare
// holds the two to each other over every combination.
func TestCampaignPushTypeRules(t *testing.T) {
	campaign := func(content, options string) []byte {
		return []byte(`{"schema_version":1,"id":"c1","app":"shop","audience":{"type":"segment"},"content":` + content +
			`,"schedule":{"mode":"at"},"options":` + options + `}`)
	}
	const data = `{"data":{"refresh":"1"}}`
	for _, c := range []struct {
		name, content, options string
		problems               []string // nil when accepted
	}{
		// A content-available push that shows nothing is a background
		// push, whether or not push_type says so.
		{"implicit background, priority high", data, `{"priority":"high","content_available":true}`, []string{
			`/options/priority: /content is sent as a background push (content_available, and no title, body, badge or sound), which APNs takes only at priority 5, not "high": use "normal" or leave priority out`}},
		{"implicit background, priority low", data, `{"priority":"low","content_available":true}`, []string{
			`/options/priority: /content is sent as a background push (content_available, and no title, body, badge or sound), which APNs takes only at priority 5, not "low": use "normal" or leave priority out`}},
		{"implicit background, priority normal", data, `{"priority":"normal","content_available":true}`, nil},
		{"implicit background, no priority", data, `{"content_available":true}`, nil},
		// An alert that shows nothing goes at 5 or 1, never 10.
		{"silent alert, default priority", data, `{"push_type":"alert","content_available":true}`, []string{
			`/options/priority: /content shows nothing (no title, body, badge or sound), and APNs refuses an alert that shows nothing at priority 10, the default for push_type "alert": use "normal" or "low"`}},
		{"silent alert, priority high", data, `{"push_type":"alert","content_available":true,"priority":"high"}`, []string{
			`/options/priority: /content shows nothing (no title, body, badge or sound), and APNs refuses an alert that shows nothing at priority "high": use "normal" or "low"`}},
		{"silent alert, priority low", data, `{"push_type":"alert","content_available":true,"priority":"low"}`, nil},
		// A background push shows nothing.
		{"background with a title", `{"title":"Hi"}`, `{"push_type":"background","content_available":true}`, []string{
			`/content/title: push_type "background" shows nothing (APNs refuses a title, body, badge or sound with it): remove it, or set /options/push_type to "alert"`}},
		{"background with a badge and a localized body", `{"badge":1,"localized":{"de":{"body":"Hallo"},"fr":{}},"fallback_locale":"fr"}`, `{"push_type":"background","content_available":true}`, []string{
			`/content/badge: push_type "background" shows nothing (APNs refuses a title, body, badge or sound with it): remove it, or set /options/push_type to "alert"`,
			`/content/localized/de/body: push_type "background" shows nothing (APNs refuses a title, body, badge or sound with it): remove it, or set /options/push_type to "alert"`}},
		// Push types other than alert need nothing shown.
		{"voip with data only", data, `{"push_type":"voip"}`, nil},
		{"location with nothing", `{}`, `{"push_type":"location"}`, nil},
		{"fileprovider with data only", data, `{"push_type":"fileprovider","priority":"high"}`, nil},
		{"liveactivity with data only", data, `{"push_type":"liveactivity"}`, nil},
		{"complication with data only", data, `{"push_type":"complication"}`, nil},
		{"mdm with data only", data, `{"push_type":"mdm"}`, nil},
		{"pushtotalk with data only", data, `{"push_type":"pushtotalk"}`, nil},
		// An alert, explicit or derived, still needs something to show.
		{"alert with data only", data, `{"push_type":"alert"}`, []string{
			"/content: an alert needs a title, body, badge or sound (or content_available for a silent push)"}},
		{"derived alert with nothing", `{}`, `{}`, []string{
			"/content: an alert needs a title, body, badge or sound (or content_available for a silent push)"}},
		// Each text a device can get is judged: the content's own, unless
		// a fallback variant stands in for it, and every variant.
		{"localized, no fallback, nothing of its own", `{"localized":{"de":{"title":"Hallo"}}}`, `{}`, []string{
			"/content: an alert needs a title, body, badge or sound (or content_available for a silent push); devices whose locale has no variant in /content/localized get /content's own title and body: give it one, or set /content/fallback_locale"}},
		{"localized with a fallback, nothing of its own", `{"localized":{"de":{"title":"Hallo"}},"fallback_locale":"de"}`, `{}`, nil},
		{"an empty variant", `{"title":"Hi","localized":{"de":{"title":"Hallo"},"ja":{}}}`, `{}`, []string{
			"/content/localized/ja: an alert needs a title, body, badge or sound (or content_available for a silent push)"}},
		{"an empty variant, content-available at priority high", `{"title":"Hi","localized":{"ja":{}}}`, `{"content_available":true,"priority":"high"}`, []string{
			`/options/priority: /content/localized/ja is sent as a background push (content_available, and no title, body, badge or sound), which APNs takes only at priority 5, not "high": use "normal" or leave priority out`}},
		{"a badge shows something", `{"badge":0,"localized":{"ja":{}}}`, `{"content_available":true,"priority":"high"}`, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeCampaign(campaign(c.content, c.options))
			want := ""
			if c.problems != nil {
				want = "invalid campaign: " + strings.Join(c.problems, "; ")
			}
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != want {
				t.Errorf("\n got: %s\nwant: %s", got, want)
			}
		})
	}
}
