package schemas

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// Every date-time the schemas accept must decode into a time.Time: an
// event that passes Validate and then fails json.Unmarshal is dead-lettered
// with a parser's message instead of one naming the rule. The candidates
// combine what RFC 3339 and Go disagree on (case, leap seconds, offsets,
// fractions) with what both refuse.
func TestEveryValidDateTimeDecodes(t *testing.T) {
	dates := []string{"2026-03-29", "2024-02-29", "2023-02-29", "0000-01-01", "9999-12-31", "2026-13-01", "2026-3-29"}
	seps := []string{"T", "t", " "}
	clocks := []string{"10:00:00", "23:59:59", "23:59:60", "00:59:60", "24:00:00", "00:60:00", "1:00:00"}
	fracs := []string{"", ".5", ".123456789", ".123456789123", ",5", "."}
	zones := []string{"Z", "z", "+00:00", "-00:00", "+01:00", "+23:59", "+24:00", "-12:60", "+0100", "+01", ""}
	accepted := 0
	for _, d := range dates {
		for _, s := range seps {
			for _, c := range clocks {
				for _, f := range fracs {
					for _, z := range zones {
						v := d + s + c + f + z
						event := `{"schema_version":1,"campaign_id":"c","action":"cancel","at":"` + v + `"}`
						if Validate(KindCampaignControl, []byte(event)) != nil {
							continue
						}
						accepted++
						var at time.Time
						if err := json.Unmarshal([]byte(`"`+v+`"`), &at); err != nil {
							t.Errorf("%q passes the schema but Go cannot read it: %v", v, err)
						}
					}
				}
			}
		}
	}
	// The candidates Go reads must still pass: 2026-03-29, 2024-02-29,
	// 0000-01-01 and 9999-12-31, with T, 10:00:00 and 23:59:59, any of
	// four fractions and five offsets.
	if want := 4 * 2 * 4 * 5; accepted != want {
		t.Errorf("%d date-times accepted, want %d", accepted, want)
	}
}

// A campaign's send_at and expires_at must be instants MySQL and
// ClickHouse can store, in UTC: [1970-01-01T00:00:00Z, 2106-01-01T00:00:00Z).
func TestCampaignTimesTheStoresHold(t *testing.T) {
	campaign := func(schedule string) []byte {
		return []byte(`{"schema_version":1,"id":"c1","app":"shop","audience":{"type":"segment"},"content":{"title":"t"},"schedule":` + schedule + `}`)
	}
	for _, c := range []struct {
		schedule string
		problem  string // "" when it decodes
	}{
		{`{"mode":"at","send_at":"1970-01-01T00:00:00Z"}`, ""},
		{`{"mode":"at","send_at":"1970-01-01T01:00:00+01:00"}`, ""},
		{`{"mode":"at","expires_at":"2105-12-31T23:59:59.999999999Z"}`, ""},
		{`{"mode":"at","expires_at":"2106-01-01T00:59:59+01:00"}`, ""},
		{`{"mode":"local_time","local_time":"09:00","local_date":"2105-12-31","expires_at":"2105-12-31T23:00:00Z"}`, ""},
		{`{"mode":"at","send_at":"1970-01-01T00:59:59+01:00"}`, "/schedule/send_at: 1970-01-01T00:59:59+01:00 is out of range"},
		{`{"mode":"at","send_at":"2106-01-01T00:00:00.000000001Z"}`, "/schedule/send_at: 2106-01-01T00:00:00.000000001Z is out of range"},
		{`{"mode":"at","expires_at":"2105-12-31T23:00:00-01:00"}`, "/schedule/expires_at: 2105-12-31T23:00:00-01:00 is out of range"},
		// 0001-01-01T00:00:00Z itself is time.Time's zero, which reads as
		// no expiry at all; the second after it is refused.
		{`{"mode":"local_time","local_time":"09:00","local_date":"2026-03-29","expires_at":"0001-01-01T00:00:01Z"}`,
			"/schedule/expires_at: 0001-01-01T00:00:01Z is out of range"},
		{`{"mode":"local_time","local_time":"09:00","local_date":"2106-01-01"}`, `/schedule/local_date: "2106-01-01" is after 2105`},
	} {
		_, err := DecodeCampaign(campaign(c.schedule))
		var ie *InvalidError
		switch {
		case c.problem == "" && err != nil:
			t.Errorf("%s: %v", c.schedule, err)
		case c.problem == "":
		case !errors.As(err, &ie):
			t.Errorf("%s: %v, want an *InvalidError", c.schedule, err)
		case len(ie.Problems) != 1 || !strings.HasPrefix(ie.Problems[0], c.problem):
			t.Errorf("%s: %q, want one problem starting %q", c.schedule, ie.Problems, c.problem)
		}
	}
}

// Campaign versions are stored as 32-bit unsigned integers (campaigns
// .version, ClickHouse results.campaign_version); the largest fits the
// Go types on the way.
func TestLargestCampaignVersion(t *testing.T) {
	c, err := DecodeCampaign([]byte(`{"schema_version":1,"id":"c1","version":4294967295,"app":"shop","audience":{"type":"segment"},"content":{"title":"t"},"schedule":{"mode":"at"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Version != 4294967295 {
		t.Errorf("Version = %d", c.Version)
	}
	b := []byte(`{"schema_version":1,"id":"b","campaign_id":"c1","campaign_version":4294967295,"app":"shop","seq":0,"attempt":1,` +
		`"send_at":"2026-03-29T10:00:00Z","content":{"title":"t"},"options":{},"devices":[{"token":"x","platform":"android"}]}`)
	if got, err := DecodeBatch(b); err != nil || got.CampaignVersion != 4294967295 {
		t.Errorf("batch: %v %v", got, err)
	}
	r := []byte(`{"schema_version":1,"id":"r","campaign_id":"c1","campaign_version":4294967295,"batch_id":"b","app":"shop",` +
		`"token":"x","platform":"android","outcome":"delivered","attempt":1,"at":"2026-03-29T10:00:00Z"}`)
	if got, err := DecodeResult(r); err != nil || got.CampaignVersion != 4294967295 {
		t.Errorf("result: %v %v", got, err)
	}
}

// A registration the schema accepts fits the devices table: a token of
// 512 printable ASCII bytes, an app name like a campaign's.
func TestRegistrationAtTheDeviceLimits(t *testing.T) {
	reg := func(app, token string) []byte {
		return []byte(`{"schema_version":1,"app":"` + app + `","token":"` + token + `","platform":"android","registered_at":"2026-03-18T07:45:00Z"}`)
	}
	if _, err := DecodeDeviceRegistration(reg(strings.Repeat("a", 64), strings.Repeat("~", 511)+"!")); err != nil {
		t.Errorf("at the limits: %v", err)
	}
	for _, bad := range [][2]string{{"shop", strings.Repeat("x", 513)}, {"shop", "tok\\u007f"}, {"shop", "tok\\ten"}, {"shop", "tök"}, {"_shop", "tok"}, {"sh op", "tok"}} {
		if _, err := DecodeDeviceRegistration(reg(bad[0], bad[1])); err == nil {
			t.Errorf("app %q token %q: accepted", bad[0], bad[1])
		}
	}
}
