package schemas

import "testing"

// registered_at is stored by feedback only for years 1970 to 9999 in UTC
// (pipeline/feedback.CheckRegistration); the decode refuses the rest with
// its path, so pushctl and producers learn the rule before feedback
// dead-letters the event. The refusals' exact messages are in
// examples/invalid/device-registration.
func TestRegisteredAtRange(t *testing.T) {
	reg := func(at string) []byte {
		return []byte(`{"schema_version":1,"app":"shop","token":"abc","platform":"ios","registered_at":"` + at + `"}`)
	}
	for _, c := range []struct {
		at   string
		want string // "" when accepted
	}{
		{"1970-01-01T00:00:00Z", ""},
		{"1970-01-01T00:30:00+01:00", "invalid device-registration: /registered_at: 1970-01-01T00:30:00+01:00 is out of range: its year in UTC must be from 1970 to 9999"},
		{"9999-12-31T23:59:59.999Z", ""},
		{"9999-12-31T23:30:00+01:00", ""},
		{"9999-12-31T23:30:00-01:00", "invalid device-registration: /registered_at: 9999-12-31T23:30:00-01:00 is out of range: its year in UTC must be from 1970 to 9999"},
		{"0001-01-01T00:00:00Z", "invalid device-registration: /registered_at: 0001-01-01T00:00:00Z is out of range: its year in UTC must be from 1970 to 9999"},
	} {
		_, err := DecodeDeviceRegistration(reg(c.at))
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.at, got, c.want)
		}
	}
}
