package planner

import (
	"testing"
	"time"

	"github.com/pushlane/pushlane/schemas"
)

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// TestLocalInstant pins 09:00 (and the DST edge cases) in the zones the
// issue names, on ordinary days and on DST-change days.
func TestLocalInstant(t *testing.T) {
	cases := []struct {
		zone, date, clock string
		want              string
	}{
		{"Asia/Kolkata", "2026-03-29", "09:00", "2026-03-29T03:30:00Z"}, // +05:30, no DST
		{"Asia/Kolkata", "2026-07-01", "09:00", "2026-07-01T03:30:00Z"},
		{"America/St_Johns", "2026-01-15", "09:00", "2026-01-15T12:30:00Z"}, // NST -03:30
		{"America/St_Johns", "2026-07-01", "09:00", "2026-07-01T11:30:00Z"}, // NDT -02:30
		{"America/St_Johns", "2026-03-08", "09:00", "2026-03-08T11:30:00Z"}, // DST starts 02:00 that day
		{"America/St_Johns", "2026-11-01", "09:00", "2026-11-01T12:30:00Z"}, // DST ends 02:00 that day
		{"Europe/Berlin", "2026-03-28", "09:00", "2026-03-28T08:00:00Z"},    // CET
		{"Europe/Berlin", "2026-03-29", "09:00", "2026-03-29T07:00:00Z"},    // DST-change day: CEST
		{"Europe/Berlin", "2026-10-25", "09:00", "2026-10-25T08:00:00Z"},    // back to CET
		// Spring-forward gap: 02:30 does not exist; moved forward by the
		// hour to 03:30 CEST, in both hemispheres' conventions.
		{"Europe/Berlin", "2026-03-29", "02:30", "2026-03-29T01:30:00Z"},
		{"America/St_Johns", "2026-03-08", "02:30", "2026-03-08T06:00:00Z"}, // 03:30 NDT
		// Fall-back overlap: 02:30 happens twice; the first (summer) one.
		{"Europe/Berlin", "2026-10-25", "02:30", "2026-10-25T00:30:00Z"},
		{"America/St_Johns", "2026-11-01", "01:30", "2026-11-01T04:00:00Z"}, // 01:30 NDT
		{"UTC", "2026-03-29", "09:00", "2026-03-29T09:00:00Z"},
		{"Pacific/Kiritimati", "2026-03-29", "09:00", "2026-03-28T19:00:00Z"}, // +14
		{"Asia/Kathmandu", "2026-03-29", "09:00", "2026-03-29T03:15:00Z"},     // +05:45
	}
	for _, c := range cases {
		wall, err := parseWall(c.date, c.clock)
		if err != nil {
			t.Fatal(err)
		}
		got := localInstant(wall, mustZone(t, c.zone))
		if !got.Equal(utc(c.want)) {
			t.Errorf("%s %s %s: got %s, want %s", c.zone, c.date, c.clock, got.UTC().Format(time.RFC3339), c.want)
		}
		// Whatever the case, the instant read back in the zone is the
		// wall clock, or later by at most the gap.
		back := got.In(mustZone(t, c.zone))
		if d := time.Date(back.Year(), back.Month(), back.Day(), back.Hour(), back.Minute(), 0, 0, time.UTC).Sub(wall); d < 0 || d > time.Hour {
			t.Errorf("%s %s %s: reads back as %s", c.zone, c.date, c.clock, back)
		}
	}
}

func localCampaign(date, clock, def string) *schemas.Campaign {
	return &schemas.Campaign{ID: "c", Version: 1, App: "app", Schedule: schemas.Schedule{
		Mode: schemas.DeliverLocalTime, LocalDate: date, LocalTime: clock, DefaultTimezone: def}}
}

func TestWaves(t *testing.T) {
	start := utc("2026-03-28T00:00:00Z")
	s, err := newSchedule(localCampaign("2026-03-29", "09:00", "America/New_York"), start)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		zone     string // "" = unknown: the default zone
		wave     string
		sendAt   string
		nullZone bool
	}{
		{zone: "Asia/Kolkata", wave: "UTC+05:30", sendAt: "2026-03-29T03:30:00Z"},
		{zone: "Europe/Berlin", wave: "UTC+02:00", sendAt: "2026-03-29T07:00:00Z"},
		{zone: "Europe/Paris", wave: "UTC+02:00", sendAt: "2026-03-29T07:00:00Z"},
		{zone: "Europe/London", wave: "UTC+01:00", sendAt: "2026-03-29T08:00:00Z"}, // BST from 01:00 UTC that day
		{zone: "America/St_Johns", wave: "UTC-02:30", sendAt: "2026-03-29T11:30:00Z"},
		{nullZone: true, wave: "UTC-04:00", sendAt: "2026-03-29T13:00:00Z"}, // New York, EDT
	}
	for _, c := range cases {
		var loc *time.Location
		if !c.nullZone {
			loc = mustZone(t, c.zone)
		}
		k := s.waveFor(loc)
		if got := s.waveName(k); got != c.wave {
			t.Errorf("%s: wave %s, want %s", c.zone, got, c.wave)
		}
		if got := s.waveStart(k); !got.Equal(utc(c.sendAt)) {
			t.Errorf("%s: send-at %s, want %s", c.zone, got.Format(time.RFC3339), c.sendAt)
		}
	}

	// Without a default zone an unknown zone is UTC.
	s2, _ := newSchedule(localCampaign("2026-03-29", "09:00", ""), start)
	if got := s2.waveName(s2.waveFor(nil)); got != "UTC+00:00" {
		t.Errorf("no default zone: wave %s, want UTC+00:00", got)
	}
	// A device zone that is not IANA, or "Local", is unknown; so are the
	// host's own names beside the zones (Debian's localtime is the host's
	// zone), which load on one host and not on another.
	for _, z := range []string{"", "Local", "Mars/Olympus", "../etc", "localtime", "posixrules", "right/Europe/Berlin", "posix/Europe/Berlin"} {
		if _, ok := schemas.LoadZone(z); ok {
			t.Errorf("schemas.LoadZone(%q) accepted", z)
		}
	}
}

func TestWavePastIsDueNow(t *testing.T) {
	// At 05:00Z, 09:00 in Kolkata (03:30Z) has passed: due now. Berlin's
	// (07:00Z) has not.
	start := utc("2026-03-29T05:00:00Z")
	s, _ := newSchedule(localCampaign("2026-03-29", "09:00", ""), start)
	kol := s.waveFor(mustZone(t, "Asia/Kolkata"))
	if got := s.waveStart(kol); !got.Equal(start) {
		t.Errorf("past wave starts %s, want now %s", got, start)
	}
	if s.waveExpired(kol) {
		t.Error("past wave without expiry is expired")
	}
	ber := s.waveFor(mustZone(t, "Europe/Berlin"))
	if got := s.waveStart(ber); !got.Equal(utc("2026-03-29T07:00:00Z")) {
		t.Errorf("future wave starts %s", got)
	}
}

func TestExpiry(t *testing.T) {
	now := utc("2026-03-29T10:00:00Z")
	at := func(sendAt, expiresAt string, ttl int) *schemas.Campaign {
		c := &schemas.Campaign{ID: "c", Version: 1, Schedule: schemas.Schedule{Mode: schemas.DeliverAt}, Options: schemas.Options{TTLSeconds: ttl}}
		if sendAt != "" {
			c.Schedule.SendAt = utc(sendAt)
		}
		if expiresAt != "" {
			c.Schedule.ExpiresAt = utc(expiresAt)
		}
		return c
	}
	cases := []struct {
		name    string
		c       *schemas.Campaign
		expired bool
		batchAt string // send-at of batch 0
		expires string // its expires-at, "" = never
	}{
		{"now, no expiry", at("", "", 0), false, "2026-03-29T10:00:00Z", ""},
		{"past send-at is due now", at("2026-03-29T09:00:00Z", "", 0), false, "2026-03-29T10:00:00Z", ""},
		{"future send-at", at("2026-03-29T12:00:00Z", "", 0), false, "2026-03-29T12:00:00Z", ""},
		{"expires later", at("", "2026-03-29T11:00:00Z", 0), false, "2026-03-29T10:00:00Z", "2026-03-29T11:00:00Z"},
		{"expired", at("2026-03-29T08:00:00Z", "2026-03-29T09:59:59Z", 0), true, "", ""},
		{"expires exactly now", at("", "2026-03-29T10:00:00Z", 0), true, "", ""},
		{"ttl from send-at", at("2026-03-29T12:00:00Z", "", 600), false, "2026-03-29T12:00:00Z", "2026-03-29T12:10:00Z"},
		{"ttl still running", at("2026-03-29T09:55:00Z", "", 600), false, "2026-03-29T10:00:00Z", "2026-03-29T10:10:00Z"},
		{"ttl ran out", at("2026-03-29T09:50:00Z", "", 600), true, "", ""},
	}
	for _, c := range cases {
		s, err := newSchedule(c.c, now)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.campaignExpired(); got != c.expired {
			t.Errorf("%s: expired %v, want %v", c.name, got, c.expired)
			continue
		}
		if c.expired {
			continue
		}
		send := s.batchSendAt(s.waveStart(waveKey{}), 0)
		if !send.Equal(utc(c.batchAt)) {
			t.Errorf("%s: send-at %s, want %s", c.name, send, c.batchAt)
		}
		exp := s.batchExpiresAt(send)
		if (c.expires == "") != exp.IsZero() || c.expires != "" && !exp.Equal(utc(c.expires)) {
			t.Errorf("%s: expires-at %s, want %q", c.name, exp, c.expires)
		}
	}
}

func TestLocalExpiry(t *testing.T) {
	// 09:00 local on 2026-03-29, expires at 10:00Z: the Americas' waves
	// (09:00 is after 10:00Z) are expired; Europe's are not.
	c := localCampaign("2026-03-29", "09:00", "")
	c.Schedule.ExpiresAt = utc("2026-03-29T10:00:00Z")
	s, _ := newSchedule(c, utc("2026-03-28T00:00:00Z"))
	if s.campaignExpired() {
		t.Fatal("campaign expired")
	}
	if s.waveExpired(s.waveFor(mustZone(t, "Europe/Berlin"))) {
		t.Error("Berlin expired")
	}
	if !s.waveExpired(s.waveFor(mustZone(t, "America/St_Johns"))) {
		t.Error("St John's (11:30Z) not expired")
	}
	// Planned after expires_at: the whole campaign is expired.
	s2, _ := newSchedule(c, utc("2026-03-29T10:00:00Z"))
	if !s2.campaignExpired() {
		t.Error("campaign planned at its expiry is not expired")
	}
	// TTL only: 1h after 09:00 in UTC-12 (21:00Z) is the last chance.
	c3 := localCampaign("2026-03-29", "09:00", "")
	c3.Options.TTLSeconds = 3600
	if s3, _ := newSchedule(c3, utc("2026-03-29T22:00:00Z")); !s3.campaignExpired() {
		t.Error("ttl campaign after every wave's ttl is not expired")
	}
	if s4, _ := newSchedule(c3, utc("2026-03-29T20:00:00Z")); s4.campaignExpired() {
		t.Error("ttl campaign with waves to come is expired")
	}
}

func TestThrottleSpacing(t *testing.T) {
	// R = 500/s, B = 1000: batch i is due at start + 2i seconds.
	c := &schemas.Campaign{ID: "c", Version: 1, Schedule: schemas.Schedule{Mode: schemas.DeliverAt}, Options: schemas.Options{ThrottlePerSecond: 500}}
	start := utc("2026-03-29T10:00:00Z")
	s, _ := newSchedule(c, start)
	for i := int64(0); i < 5; i++ {
		got := s.batchSendAt(start, i*1000)
		if want := start.Add(time.Duration(2*i) * time.Second); !got.Equal(want) {
			t.Errorf("batch %d: %s, want %s", i, got, want)
		}
	}
	// 3 devices/s: sub-second spacing keeps its precision.
	c.Options.ThrottlePerSecond = 3
	s, _ = newSchedule(c, start)
	if got := s.batchSendAt(start, 1); !got.Equal(start.Add(333333333 * time.Nanosecond)) {
		t.Errorf("1 device at 3/s: %s", got.Sub(start))
	}
	// Unthrottled: everything at start.
	c.Options.ThrottlePerSecond = 0
	s, _ = newSchedule(c, start)
	if got := s.batchSendAt(start, 1e6); !got.Equal(start) {
		t.Errorf("unthrottled: %s", got)
	}
}

func TestScheduleErrors(t *testing.T) {
	for _, c := range []struct {
		camp *schemas.Campaign
		want string
	}{
		{localCampaign("1969-12-31", "09:00", ""), `/schedule/local_date: "1969-12-31" is before 1970`},
		{localCampaign("2026-03-29", "09:00", "Mars/Olympus"), `/schedule/default_timezone: "Mars/Olympus" is not an IANA time zone`},
		{localCampaign("2026-02-30", "09:00", ""), `/schedule/local_date: "2026-02-30" is not a date (YYYY-MM-DD)`},
	} {
		_, err := newSchedule(c.camp, utc("2026-01-01T00:00:00Z"))
		if err == nil || err.Error() != c.want {
			t.Errorf("got %v, want %s", err, c.want)
		}
	}
}

func TestFormatOffset(t *testing.T) {
	for off, want := range map[int32]string{0: "UTC+00:00", 19800: "UTC+05:30", -9000: "UTC-02:30", 50400: "UTC+14:00", -43200: "UTC-12:00", 20700: "UTC+05:45", -2670: "UTC-00:44:30"} {
		if got := formatOffset(off); got != want {
			t.Errorf("%d: %s, want %s", off, got, want)
		}
	}
}

// A local-time campaign whose expires_at comes before its first possible
// wave (09:00 at UTC+14) is expired, and the reason says what expires_at
// was compared with: it said "not after" the planning start, which it
// was.
func TestExpiredBeforeTheFirstWaveSaysSo(t *testing.T) {
	c := localCampaign("2026-03-29", "09:00", "")
	c.Schedule.ExpiresAt = utc("2026-03-28T18:00:00Z")
	s, err := newSchedule(c, utc("2026-03-28T10:00:00Z"))
	if err != nil {
		t.Fatal(err)
	}
	if !s.campaignExpired() {
		t.Fatal("not expired: 09:00 on 2026-03-29 is after 18:00Z on the 28th in every zone")
	}
	want := "expired before planning: expires_at 2026-03-28T18:00:00Z is not after the first possible wave, 2026-03-28T19:00:00Z (09:00 at UTC+14)"
	if got := expiredReason(c, s); got != want {
		t.Errorf("reason %q\nwant   %q", got, want)
	}
	// Planned after that first wave, the start is what it is compared with.
	c.Schedule.ExpiresAt = utc("2026-03-28T20:00:00Z")
	s, _ = newSchedule(c, utc("2026-03-28T21:00:00Z"))
	if got, want := expiredReason(c, s), "expired before planning: expires_at 2026-03-28T20:00:00Z is not after 2026-03-28T21:00:00Z"; got != want {
		t.Errorf("reason %q\nwant   %q", got, want)
	}
}
