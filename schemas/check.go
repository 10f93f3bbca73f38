package schemas

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"
)

// check enforces what JSON Schema cannot: cross-field rules that need real
// time zones and dates.
func (c *Campaign) check() error {
	var problems []string
	s := c.Schedule
	if s.Mode == DeliverLocalTime {
		// The planner plans with LocalDate and LoadZone too, so what
		// passes here is never dead-lettered there.
		if _, err := LocalDate(s.LocalDate); err != nil {
			problems = append(problems, err.Error())
		}
		if s.DefaultTimezone != "" {
			if _, ok := LoadZone(s.DefaultTimezone); !ok {
				problems = append(problems, fmt.Sprintf("/schedule/default_timezone: %q is not an IANA time zone", s.DefaultTimezone))
			}
		}
		if !s.SendAt.IsZero() {
			problems = append(problems, "/schedule/send_at: not allowed with mode local_time")
		}
	} else if s.LocalTime != "" || s.LocalDate != "" {
		problems = append(problems, "/schedule: local_time and local_date need mode local_time")
	}
	for _, f := range []struct {
		name string
		at   time.Time
	}{{"send_at", s.SendAt}, {"expires_at", s.ExpiresAt}} {
		if !f.at.IsZero() && !storable(f.at) {
			problems = append(problems, fmt.Sprintf("/schedule/%s: %s is out of range: must be from %s to before %s in UTC",
				f.name, f.at.Format(time.RFC3339Nano), time.Unix(minStoredUnix, 0).UTC().Format(time.RFC3339), time.Unix(endStoredUnix, 0).UTC().Format(time.RFC3339)))
		}
	}
	if !s.ExpiresAt.IsZero() && s.Mode == DeliverAt && !s.SendAt.IsZero() && !s.ExpiresAt.After(s.SendAt) {
		problems = append(problems, "/schedule/expires_at: must be after send_at")
	}
	problems = append(problems, c.Options.check()...)
	if fl := c.Content.FallbackLocale; fl != "" {
		if _, ok := c.Content.Localized[fl]; !ok {
			problems = append(problems, fmt.Sprintf("/content/fallback_locale: %q has no variant in /content/localized", fl))
		}
	}
	problems = append(problems, c.Content.checkSize(c.Options.PushType)...)
	if c.Options.PushType != "background" && c.Content.Title == "" && c.Content.Body == "" && len(c.Content.Localized) == 0 &&
		c.Content.Badge == nil && c.Content.Sound == "" && !c.Options.ContentAvailable {
		problems = append(problems, "/content: an alert needs a title, body, badge or sound (or content_available for a silent push)")
	}
	if len(problems) > 0 {
		return &InvalidError{Kind: KindCampaign, Problems: problems}
	}
	return nil
}

// The instants a campaign may name. The planner records send and expiry
// times in MySQL (go-sql-driver refuses years outside 0..9999, and the
// bound is the year in UTC: 9999-12-31T23:30:00-01:00 is year 10000
// there), and batches carry them to results, which ClickHouse stores as
// DateTime (1970 to 2105). A campaign naming a time outside both would
// fail the planner's bookkeeping on every retry and hold its partition;
// refused here, it is dead-lettered like any invalid campaign.
const (
	minStoredUnix = 0          // 1970-01-01T00:00:00Z
	endStoredUnix = 4291747200 // 2106-01-01T00:00:00Z, excluded
)

// storable reports whether t is in [1970-01-01, 2106-01-01) UTC.
func storable(t time.Time) bool {
	u := t.Unix()
	return u >= minStoredUnix && u < endStoredUnix
}

// LocalDate parses a campaign's local_date: a date (YYYY-MM-DD) from 1970
// on. Before 1970 most zones ran on local mean time, each with its own
// offset; a local_time campaign would then have one wave (and one
// checkpointed wave state) per zone instead of a few dozen.
func LocalDate(s string) (time.Time, error) {
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("/schedule/local_date: %q is not a date (YYYY-MM-DD)", s)
	}
	if d.Year() < 1970 {
		return time.Time{}, fmt.Errorf("/schedule/local_date: %q is before 1970", s)
	}
	// Its waves are due in UTC up to a day either side of it: a later
	// year could be due past what the stores hold (see storable), and
	// year 9999 in a zone west of UTC is year 10000 there.
	if d.Year() > 2105 {
		return time.Time{}, fmt.Errorf("/schedule/local_date: %q is after 2105", s)
	}
	return d, nil
}

// LoadZone resolves the IANA zone name of a campaign or a device. "Local"
// is refused: it would be the zone of whatever host reads it, which no
// device has.
func LoadZone(name string) (*time.Location, bool) {
	if name == "" || name == "Local" {
		return nil, false
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, false
	}
	return loc, true
}

// Provider payload limits: APNs takes at most 4096 bytes (5120 for VoIP),
// FCM 4096 bytes of notification and data.
const (
	MaxNotificationBytes     = 4096
	MaxVoIPNotificationBytes = 5120
)

// checkSize rejects content no provider would take, at the door: such a
// campaign would otherwise be planned into batches that every send
// rejects (and a big enough one into batches over Kafka's record limit).
// The measure is the JSON of what one device receives (title, body,
// badge, sound, data) for each locale variant; the providers' own
// envelopes add a few dozen bytes, which their senders check exactly.
func (c Content) checkSize(pushType string) []string {
	limit := MaxNotificationBytes
	if pushType == "voip" {
		limit = MaxVoIPNotificationBytes
	}
	type visible struct {
		Title string            `json:"title,omitempty"`
		Body  string            `json:"body,omitempty"`
		Badge *int              `json:"badge,omitempty"`
		Sound string            `json:"sound,omitempty"`
		Data  map[string]string `json:"data,omitempty"`
	}
	size := func(title, body string) int {
		raw, err := json.Marshal(visible{Title: title, Body: body, Badge: c.Badge, Sound: c.Sound, Data: c.Data})
		if err != nil {
			return 0
		}
		return len(raw)
	}
	largest, where := size(c.Title, c.Body), ""
	locales := make([]string, 0, len(c.Localized))
	for l := range c.Localized {
		locales = append(locales, l)
	}
	sort.Strings(locales)
	for _, l := range locales {
		if n := size(c.Localized[l].Title, c.Localized[l].Body); n > largest {
			largest, where = n, fmt.Sprintf(" (locale %q)", l)
		}
	}
	if largest > limit {
		return []string{fmt.Sprintf("/content: the notification is %d bytes%s, over the %d-byte limit of APNs and FCM", largest, where, limit)}
	}
	return nil
}

// MaxCollapseIDBytes is APNs' limit on apns-collapse-id. JSON Schema's
// maxLength counts characters, so the byte limit is checked here.
const MaxCollapseIDBytes = 64

// check enforces the option rules a schema cannot express; batches carry
// the campaign's options, so both events apply it.
func (o Options) check() []string {
	var problems []string
	// APNs refuses a background push of any priority but 5, "normal"
	// (empty means the same to the senders): "low" is 1, not 5.
	if o.PushType == "background" && o.Priority != "" && o.Priority != PriorityNormal {
		problems = append(problems, fmt.Sprintf(`/options/priority: push_type "background" must not use priority %q (APNs requires 5)`, o.Priority))
	}
	if n := len(o.CollapseID); n > MaxCollapseIDBytes {
		problems = append(problems, fmt.Sprintf("/options/collapse_id: %d bytes, APNs allows at most %d", n, MaxCollapseIDBytes))
	}
	return problems
}

// check enforces the batch rules a schema cannot express.
func (b *Batch) check() error {
	if problems := b.Options.check(); len(problems) > 0 {
		return &InvalidError{Kind: KindBatch, Problems: problems}
	}
	return nil
}

// BatchSizeOrDefault returns the campaign's batch size or the default.
func (o Options) BatchSizeOrDefault() int {
	if o.BatchSize > 0 {
		return o.BatchSize
	}
	return DefaultBatchSize
}
