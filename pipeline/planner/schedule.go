package planner

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pushlane/pushlane/schemas"
)

// schedule is a campaign's timing, resolved once per planning attempt: when
// each wave starts, how batches are spaced, and when they expire.
type schedule struct {
	mode string
	// start is the instant planning began; a send-at before it is due at
	// start. It is checkpointed, so a resumed campaign computes the very
	// same send-ats as the attempt it continues.
	start time.Time
	// sendAt is the nominal instant of mode "at" (start when unset).
	sendAt time.Time
	// wall is the local date and time of mode "local_time", held as a UTC
	// time whose fields are the wall clock.
	wall       time.Time
	defaultLoc *time.Location
	expiresAt  time.Time
	ttl        time.Duration
	rate       int // devices per second; 0 = unthrottled
}

func newSchedule(c *schemas.Campaign, start time.Time) (schedule, error) {
	s := schedule{
		mode:      c.Schedule.Mode,
		start:     start.UTC(),
		sendAt:    c.Schedule.SendAt.UTC(),
		expiresAt: c.Schedule.ExpiresAt.UTC(),
		ttl:       time.Duration(c.Options.TTLSeconds) * time.Second,
		rate:      c.Options.ThrottlePerSecond,
	}
	if s.sendAt.IsZero() {
		s.sendAt = s.start
	}
	if s.mode == schemas.DeliverLocalTime {
		wall, err := parseWall(c.Schedule.LocalDate, c.Schedule.LocalTime)
		if err != nil {
			return s, err
		}
		s.wall = wall
		s.defaultLoc = time.UTC
		if name := c.Schedule.DefaultTimezone; name != "" {
			loc, ok := schemas.LoadZone(name)
			if !ok {
				return s, fmt.Errorf("/schedule/default_timezone: %q is not an IANA time zone", name)
			}
			s.defaultLoc = loc
		}
	}
	return s, nil
}

// parseWall reads "2026-03-29" and "09:00" into a UTC time carrying that
// wall clock.
func parseWall(date, clock string) (time.Time, error) {
	d, err := schemas.LocalDate(date)
	if err != nil {
		return time.Time{}, err
	}
	hh, mm, ok := strings.Cut(clock, ":")
	h, errH := strconv.Atoi(hh)
	m, errM := strconv.Atoi(mm)
	if !ok || errH != nil || errM != nil || h < 0 || h > 23 || m < 0 || m > 59 {
		return time.Time{}, fmt.Errorf("/schedule/local_time: %q is not HH:MM", clock)
	}
	return d.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute), nil
}

// localInstant returns the instant at which the wall clock (a UTC time
// carrying local fields) reads in loc. time.Date leaves the DST edge cases
// unspecified and in practice differs between zones, so the rule is
// explicit: a wall time skipped by a spring-forward transition is moved
// forward by the gap (02:30 in Berlin on the last Sunday of March is 03:30
// CEST); a wall time that happens twice in a fall-back transition is its
// first occurrence (the summer-time one).
func localInstant(wall time.Time, loc *time.Location) time.Time {
	offsetAt := func(t time.Time) time.Duration {
		_, off := t.In(loc).Zone()
		return time.Duration(off) * time.Second
	}
	// The offsets in force a day either side of the wall time bound the
	// candidates: zones change offset at most once in such a window.
	before := offsetAt(wall.Add(-26 * time.Hour))
	after := offsetAt(wall.Add(26 * time.Hour))
	var best time.Time
	for _, off := range []time.Duration{before, after} {
		t := wall.Add(-off)
		if offsetAt(t) != off {
			continue // this offset is not in force at that instant
		}
		if best.IsZero() || t.Before(best) {
			best = t
		}
	}
	if best.IsZero() {
		// In the gap: read the wall clock with the offset in force before
		// the transition, which lands the gap's length after it.
		best = wall.Add(-before)
	}
	return best
}

// wave identifies a group of devices due at the same instant. For mode
// "at" there is one wave; for "local_time" devices are grouped by the UTC
// offset their zone has at the campaign's local time, which is exactly
// grouping by send-at: Europe/Berlin and Europe/Paris share a wave, and so
// they share the batches and the throttle.
type waveKey struct {
	offset int32 // seconds east of UTC; 0 for mode "at"
}

// waveName is the wave's name in batch ids and events: "all" for mode
// "at", the offset ("UTC+05:30", "UTC-02:30") for local time.
func (s schedule) waveName(k waveKey) string {
	if s.mode != schemas.DeliverLocalTime {
		return ""
	}
	return formatOffset(k.offset)
}

func formatOffset(off int32) string {
	sign := byte('+')
	if off < 0 {
		sign = '-'
		off = -off
	}
	b := []byte("UTC")
	b = append(b, sign)
	b = appendTwo(b, int(off/3600))
	b = append(b, ':')
	b = appendTwo(b, int(off%3600/60))
	if sec := off % 60; sec != 0 {
		b = append(b, ':')
		b = appendTwo(b, int(sec))
	}
	return string(b)
}

func appendTwo(b []byte, v int) []byte {
	return append(b, byte('0'+v/10), byte('0'+v%10))
}

// waveFor returns the wave of a device in zone loc (nil: unknown zone).
func (s schedule) waveFor(loc *time.Location) waveKey {
	if s.mode != schemas.DeliverLocalTime {
		return waveKey{}
	}
	if loc == nil {
		loc = s.defaultLoc
	}
	at := localInstant(s.wall, loc)
	return waveKey{offset: int32(s.wall.Sub(at) / time.Second)}
}

// nominal is when the wave is meant to go out.
func (s schedule) nominal(k waveKey) time.Time {
	if s.mode != schemas.DeliverLocalTime {
		return s.sendAt
	}
	return s.wall.Add(-time.Duration(k.offset) * time.Second)
}

// waveStart is the instant the wave's throttle lane starts: its nominal
// time, or the planning start if that has passed ("a send time already
// past is due now"). Waves with the same start share the lane, so a wave's
// first batch may be due later, behind the others' batches.
func (s schedule) waveStart(k waveKey) time.Time {
	n := s.nominal(k)
	if n.Before(s.start) {
		return s.start
	}
	return n
}

// waveExpired says whether nothing of wave k may be sent: expires_at is at
// or before the wave's start, or, with only a TTL, the TTL after the
// nominal time ran out before planning started.
func (s schedule) waveExpired(k waveKey) bool {
	if !s.expiresAt.IsZero() {
		return !s.expiresAt.After(s.waveStart(k))
	}
	if s.ttl > 0 {
		return !s.nominal(k).Add(s.ttl).After(s.start)
	}
	return false
}

// Offsets in use range from UTC-12 to UTC+14.
const (
	minOffset = -12 * time.Hour
	maxOffset = 14 * time.Hour
)

// campaignExpired says whether every wave the campaign could have is
// expired, so it is reported and not planned at all.
func (s schedule) campaignExpired() bool {
	if s.mode != schemas.DeliverLocalTime {
		return s.waveExpired(waveKey{})
	}
	earliest := s.wall.Add(-maxOffset)
	latest := s.wall.Add(-minOffset)
	if !s.expiresAt.IsZero() {
		first := earliest
		if first.Before(s.start) {
			first = s.start
		}
		return !s.expiresAt.After(first)
	}
	if s.ttl > 0 {
		return !latest.Add(s.ttl).After(s.start)
	}
	return false
}

// batchSendAt spaces the batches of the waves starting at start (a lane)
// for the throttle: a batch cut after `before` devices of the lane is due
// before/R seconds after start, so full batches are B/R apart. That holds
// the lane to R sends per second on average, not within every second: a
// whole batch is due at once, so any T seconds hold fewer than R·T + B
// devices (⌈R/B⌉ full batches a second; one batch, more than R, when
// B > R).
func (s schedule) batchSendAt(start time.Time, before int64) time.Time {
	if s.rate <= 0 || before == 0 {
		return start
	}
	return start.Add(time.Duration(before * int64(time.Second) / int64(s.rate)))
}

// laneLapsed says whether the next batch of the lane starting at start,
// after `sent` devices of it, would be due at or after expires_at: that
// batch, and every later one of the lane (send-ats only grow), would
// expire before it is sent, so none is cut. A lane's own start at or
// after expires_at is waveExpired's case, with sent 0.
func (s schedule) laneLapsed(start time.Time, sent int64) bool {
	return !s.expiresAt.IsZero() && !s.expiresAt.After(s.batchSendAt(start, sent))
}

// batchExpiresAt is the campaign's expires_at, or the TTL after the
// batch's send-at, or zero (never).
func (s schedule) batchExpiresAt(sendAt time.Time) time.Time {
	if !s.expiresAt.IsZero() {
		return s.expiresAt
	}
	if s.ttl > 0 {
		return sendAt.Add(s.ttl)
	}
	return time.Time{}
}
