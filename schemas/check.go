package schemas

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/pushlane/pushlane/schemas/apnspush"
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
	problems = append(problems, c.checkPush()...)
	if len(problems) > 0 {
		return &InvalidError{Kind: KindCampaign, Problems: problems}
	}
	return nil
}

// textVariant is one title and body a device can be sent, and the JSON
// path it comes from.
type textVariant struct {
	path        string
	title, body string
}

// variants lists the texts a campaign's devices can be sent, as the
// dispatcher picks them (dispatcher.LocalizedText): each localized
// variant, and the content's own title and body unless a fallback variant
// always stands in for them.
func (c Content) variants() []textVariant {
	var out []textVariant
	if _, ok := c.Localized[c.FallbackLocale]; !ok || c.FallbackLocale == "" {
		out = append(out, textVariant{"/content", c.Title, c.Body})
	}
	locales := make([]string, 0, len(c.Localized))
	for l := range c.Localized {
		locales = append(locales, l)
	}
	sort.Strings(locales)
	for _, l := range locales {
		out = append(out, textVariant{"/content/localized/" + l, c.Localized[l].Title, c.Localized[l].Body})
	}
	return out
}

// checkPush refuses what the APNs sender would refuse for every iOS device
// of some text variant: it derives the push type and priority of each
// variant by the sender's own rules (apnspush), as the variants may differ
// in whether they show anything. It also refuses an alert that shows
// nothing and is not a silent push, which APNs would take but no one
// would see.
func (c *Campaign) checkPush() []string {
	o, ct := c.Options, c.Content
	var problems []string
	seen := map[string]bool{}
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			problems = append(problems, p)
		}
	}
	for _, v := range ct.variants() {
		visible := apnspush.Visible(v.title, v.body, ct.Sound, ct.Badge)
		pushType := apnspush.Type(o.PushType, o.ContentAvailable, visible)
		prio, ok := apnspush.Priority(o.Priority, pushType)
		if !ok {
			continue // the schema's enum refuses it
		}
		if pushType == apnspush.Alert && !visible && !o.ContentAvailable {
			p := v.path + ": an alert needs a title, body, badge or sound (or content_available for a silent push)"
			if v.path == "/content" && len(ct.Localized) > 0 {
				p += "; devices whose locale has no variant in /content/localized get /content's own title and body: give it one, or set /content/fallback_locale"
			}
			add(p)
			continue
		}
		switch apnspush.Check(pushType, prio, visible) {
		case apnspush.VisibleBackground:
			for _, f := range []struct {
				path  string
				shown bool
			}{{"/content/badge", ct.Badge != nil}, {"/content/sound", ct.Sound != ""}, {v.path + "/title", v.title != ""}, {v.path + "/body", v.body != ""}} {
				if f.shown {
					add(f.path + `: push_type "background" shows nothing (APNs refuses a title, body, badge or sound with it): remove it, or set /options/push_type to "alert"`)
				}
			}
		case apnspush.BackgroundPriority:
			if o.PushType == "" { // an explicit one is Options.check's
				add(fmt.Sprintf(`/options/priority: %s is sent as a background push (content_available, and no title, body, badge or sound), which APNs takes only at priority 5, not %q: use "normal" or leave priority out`,
					v.path, o.Priority))
			}
		case apnspush.SilentAlertPriority:
			asked := fmt.Sprintf("%q", o.Priority)
			if o.Priority == "" {
				asked = `10, the default for push_type "alert"`
			}
			add(fmt.Sprintf(`/options/priority: %s shows nothing (no title, body, badge or sound), and APNs refuses an alert that shows nothing at priority %s: use "normal" or "low"`,
				v.path, asked))
		}
	}
	return problems
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

// check refuses a registered_at whose year in UTC is outside 1970..9999,
// the range feedback stores (pipeline/feedback.CheckRegistration):
// devices.registered_at is a DATETIME, which go-sql-driver writes only up
// to year 9999, and in UTC (9999-12-31T23:30:00-01:00 is year 10000
// there). Refused here, the event is dead-lettered like any invalid one,
// and producers and pushctl see the rule with the schema's.
func (r *DeviceRegistration) check() error {
	if y := r.RegisteredAt.UTC().Year(); y < 1970 || y > 9999 {
		return &InvalidError{Kind: KindDeviceRegistration, Problems: []string{fmt.Sprintf(
			"/registered_at: %s is out of range: its year in UTC must be from 1970 to 9999", r.RegisteredAt.Format(time.RFC3339Nano))}}
	}
	return nil
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
// device has. So are the names a host's zoneinfo directory holds beside
// the zones (Debian's "localtime" links to the host's zone, "posixrules"
// to whatever it was set to; "right/..." counts leap seconds, "posix/..."
// repeats the zones): they load on one host and not on another (the
// container image carries Go's own copy of the database, without them),
// so two planners would place the same device differently.
func LoadZone(name string) (*time.Location, bool) {
	if name == "" || name == "Local" || name == "localtime" || name == "posixrules" ||
		strings.HasPrefix(name, "right/") || strings.HasPrefix(name, "posix/") {
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
	// (empty means the same to the senders): "low" is 1, not 5. Options
	// alone settle only an explicit push type; a derived one depends on
	// the content, which the campaign's checkPush judges.
	if o.PushType == apnspush.Background {
		if prio, ok := apnspush.Priority(o.Priority, o.PushType); ok && apnspush.Check(o.PushType, prio, false) == apnspush.BackgroundPriority {
			problems = append(problems, fmt.Sprintf(`/options/priority: push_type "background" must not use priority %q (APNs requires 5)`, o.Priority))
		}
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
