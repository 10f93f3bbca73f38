package planner

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pushlane/pushlane/schemas"
)

type row struct {
	id                                  int64
	user, token, platform, locale, zone string
}

func iosToken(i int64) string { return fmt.Sprintf("%064x", i) }

func pageOf(part int, rows []row) *Page {
	p := &Page{}
	for _, r := range rows {
		p.Add(part, r.id, []byte(r.user), []byte(r.token), []byte(r.platform), []byte(r.locale), []byte(r.zone))
	}
	return p
}

type run struct {
	batches []*schemas.Batch
	records map[string]*outBatch
	invalid []string // "id:reason"
}

func newRun() *run { return &run{records: map[string]*outBatch{}} }

func (r *run) attach(t *testing.T, e *engine) {
	e.emit = func(b *outBatch) error {
		got, err := schemas.DecodeBatch(b.Value)
		if err != nil {
			t.Fatalf("batch %s does not decode: %v\n%s", b.ID, err, b.Value)
		}
		if got.ID != b.ID || got.Seq != b.Seq || got.Wave != b.Wave || len(got.Devices) != b.Devices ||
			!got.SendAt.Equal(b.SendAt) || !got.ExpiresAt.Equal(b.ExpiresAt) {
			t.Fatalf("batch %s: value disagrees with its record: %+v", b.ID, got)
		}
		if _, dup := r.records[b.ID]; dup {
			t.Fatalf("batch %s emitted twice", b.ID)
		}
		r.records[b.ID] = b
		r.batches = append(r.batches, got)
		return nil
	}
	e.invalid = func(d *Device, reason string) error {
		r.invalid = append(r.invalid, fmt.Sprintf("%d:%s", d.ID, reason))
		return nil
	}
}

func testCampaign() *schemas.Campaign {
	badge := 3
	return &schemas.Campaign{
		SchemaVersion: 1, ID: "camp-1", Version: 2, App: "app",
		Audience: schemas.Audience{Type: schemas.AudienceSegment},
		Content: schemas.Content{Title: "Hi \"there\"", Body: "Line\nbreak é", Badge: &badge, Data: map[string]string{"k": "v"},
			Localized: map[string]schemas.LocalizedText{"de": {Title: "Hallo"}}, FallbackLocale: "de"},
		Schedule: schemas.Schedule{Mode: schemas.DeliverAt},
		Options:  schemas.Options{Priority: "high", TTLSeconds: 3600, BatchSize: 1000, CollapseID: "c1"},
	}
}

func mustEngine(t *testing.T, c *schemas.Campaign, start time.Time, maxBytes int) *engine {
	t.Helper()
	s, err := newSchedule(c, start)
	if err != nil {
		t.Fatal(err)
	}
	e, err := newEngine(c, s, maxBytes, true)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func feedAll(t *testing.T, e *engine, p *Page, after Position) {
	t.Helper()
	for i := range p.Devices {
		if !after.Less(p.Devices[i].pos()) {
			continue
		}
		if err := e.add(&p.Devices[i]); err != nil {
			t.Fatal(err)
		}
	}
}

func TestEngineBatchesAt(t *testing.T) {
	c := testCampaign()
	start := utc("2026-03-29T10:00:00Z")
	var rows []row
	for i := int64(1); i <= 2500; i++ {
		r := row{id: i * 3, token: iosToken(i), platform: "ios"}
		if i%2 == 0 {
			r = row{id: i * 3, user: fmt.Sprintf("u%d", i), token: fmt.Sprintf("fcm-%d", i), platform: "android", locale: "de-DE", zone: "Europe/Berlin"}
		}
		rows = append(rows, r)
	}
	// Two invalid tokens in the middle: reported, not batched.
	rows = append(rows[:1200], append([]row{{id: 3601, token: "nothex", platform: "ios"}, {id: 3602, token: "", platform: "android"}}, rows[1200:]...)...)
	e := mustEngine(t, c, start, 900<<10)
	r := newRun()
	r.attach(t, e)
	feedAll(t, e, pageOf(0, rows), Position{})
	if err := e.flush(); err != nil {
		t.Fatal(err)
	}
	if len(r.batches) != 3 {
		t.Fatalf("%d batches, want 3", len(r.batches))
	}
	wantSizes := []int{1000, 1000, 500}
	next := 0
	for i, b := range r.batches {
		if want := fmt.Sprintf("camp-1:v2:all:%d", i); b.ID != want {
			t.Errorf("batch %d id %s, want %s", i, b.ID, want)
		}
		if b.Seq != i || b.Wave != "" || b.Attempt != 1 || b.CampaignID != "camp-1" || b.CampaignVersion != 2 || b.App != "app" {
			t.Errorf("batch %d header %+v", i, b)
		}
		if !b.SendAt.Equal(start) || !b.ExpiresAt.Equal(start.Add(time.Hour)) {
			t.Errorf("batch %d send %s expires %s", i, b.SendAt, b.ExpiresAt)
		}
		if !reflect.DeepEqual(b.Content, c.Content) || !reflect.DeepEqual(b.Options, c.Options) {
			t.Errorf("batch %d content/options differ: %+v %+v", i, b.Content, b.Options)
		}
		if len(b.Devices) != wantSizes[i] {
			t.Errorf("batch %d has %d devices, want %d", i, len(b.Devices), wantSizes[i])
		}
		for _, d := range b.Devices {
			for rows[next].id == 3601 || rows[next].id == 3602 {
				next++
			}
			w := rows[next]
			next++
			want := schemas.BatchDevice{DeviceID: w.id, UserID: w.user, Token: w.token, Platform: w.platform, Locale: w.locale, Timezone: w.zone}
			if d != want {
				t.Fatalf("device %+v, want %+v", d, want)
			}
		}
	}
	if want := []string{"3601:apns token must be 64 to 200 hex digits, even length", "3602:empty token"}; !reflect.DeepEqual(r.invalid, want) {
		t.Errorf("invalid %v, want %v", r.invalid, want)
	}
	if e.totals.Devices != 2500 || e.totals.Batches != 3 || e.totals.Invalid != 2 {
		t.Errorf("totals %+v", e.totals)
	}
}

func TestEngineThrottle(t *testing.T) {
	c := testCampaign()
	c.Options.BatchSize = 100
	c.Options.ThrottlePerSecond = 250 // a batch every 0.4 s
	c.Options.TTLSeconds = 60
	start := utc("2026-03-29T10:00:00Z")
	e := mustEngine(t, c, start, 900<<10)
	r := newRun()
	r.attach(t, e)
	var rows []row
	for i := int64(1); i <= 1050; i++ {
		rows = append(rows, row{id: i, token: iosToken(i), platform: "ios"})
	}
	feedAll(t, e, pageOf(0, rows), Position{})
	_ = e.flush()
	if len(r.batches) != 11 {
		t.Fatalf("%d batches", len(r.batches))
	}
	for i, b := range r.batches {
		want := start.Add(time.Duration(i) * 400 * time.Millisecond)
		if !b.SendAt.Equal(want) {
			t.Errorf("batch %d due %s, want %s", i, b.SendAt.Format(time.RFC3339Nano), want.Format(time.RFC3339Nano))
		}
		if !b.ExpiresAt.Equal(want.Add(time.Minute)) {
			t.Errorf("batch %d expires %s", i, b.ExpiresAt)
		}
	}
	// Rate check the way: within any 1 s window starting at a
	// send-at, at most R devices are due.
	for i, b := range r.batches {
		n := 0
		for _, o := range r.batches[i:] {
			if o.SendAt.Before(b.SendAt.Add(time.Second)) {
				n += len(o.Devices)
			}
		}
		if n > 300 { // 3 batches of 100 in [t, t+1s): 0, 0.4, 0.8
			t.Errorf("window at batch %d holds %d devices", i, n)
		}
	}
}

// maxDueInASecond is the most devices due in a one-second window that
// starts at a send-at, the worst window.
func maxDueInASecond(batches []*schemas.Batch) (most int, at time.Time) {
	for _, b := range batches {
		n := 0
		for _, o := range batches {
			if !o.SendAt.Before(b.SendAt) && o.SendAt.Before(b.SendAt.Add(time.Second)) {
				n += len(o.Devices)
			}
		}
		if n > most {
			most, at = n, b.SendAt
		}
	}
	return most, at
}

// The throttle caps the campaign, not each wave: planned at 12:00Z, a
// 09:00 local-time campaign has six waves (UTC, Berlin, Moscow, Dubai,
// Kolkata, Tokyo) whose 09:00 has passed, all due at the planning start.
// Each throttled on its own, they made 60 devices due in the first second
// at 10 a second.
func TestEngineThrottleSharedByPastWaves(t *testing.T) {
	for _, tc := range []struct {
		batch, rate int
		perSecond   int // R rounded up to whole batches
	}{
		{10, 10, 10},
		{4, 10, 12},
		{25, 10, 25}, // a batch is due at once: one a second, over R
	} {
		t.Run(fmt.Sprintf("B=%d R=%d", tc.batch, tc.rate), func(t *testing.T) {
			c := testCampaign()
			c.Schedule = schemas.Schedule{Mode: schemas.DeliverLocalTime, LocalDate: "2026-03-29", LocalTime: "09:00"}
			c.Options.BatchSize = tc.batch
			c.Options.ThrottlePerSecond = tc.rate
			c.Options.TTLSeconds = 0
			start := utc("2026-03-29T12:00:00Z")
			e := mustEngine(t, c, start, 900<<10)
			r := newRun()
			r.attach(t, e)
			zones := []string{"UTC", "Europe/Berlin", "Europe/Moscow", "Asia/Dubai", "Asia/Kolkata", "Asia/Tokyo"}
			var rows []row
			for i := int64(1); i <= 600; i++ {
				rows = append(rows, row{id: i, token: iosToken(i), platform: "ios", zone: zones[i%int64(len(zones))]})
			}
			feedAll(t, e, pageOf(0, rows), Position{})
			if err := e.flush(); err != nil {
				t.Fatal(err)
			}
			waves := map[string]bool{}
			devices := 0
			var last time.Time
			for _, b := range r.batches {
				waves[b.Wave] = true
				devices += len(b.Devices)
				if b.SendAt.Before(start) {
					t.Errorf("batch %s due %s, before the planning start", b.ID, b.SendAt)
				}
				if b.SendAt.After(last) {
					last = b.SendAt
				}
			}
			if len(waves) != 6 || devices != 600 {
				t.Fatalf("%d waves, %d devices; want 6 and 600", len(waves), devices)
			}
			if most, at := maxDueInASecond(r.batches); most > tc.perSecond {
				t.Errorf("%d devices due in the second from %s at %d a second (batches of %d); want at most %d",
					most, at.Format(time.RFC3339Nano), tc.rate, tc.batch, tc.perSecond)
			}
			// No slower than R either: the last batch is due once the
			// devices before it had their time.
			if want := start.Add(time.Duration(600-len(r.batches[len(r.batches)-1].Devices)) * time.Second / time.Duration(tc.rate)); !last.Equal(want) {
				t.Errorf("last batch due %s, want %s", last, want)
			}
		})
	}
}

func localRows() []row {
	zones := []string{"Asia/Kolkata", "America/St_Johns", "Europe/Berlin", "Europe/Paris", "", "Mars/Olympus", "UTC", "Asia/Kathmandu"}
	var rows []row
	for i := int64(1); i <= 400; i++ {
		rows = append(rows, row{id: i * 2, token: iosToken(i), platform: "ios", zone: zones[i%int64(len(zones))], locale: "en"})
	}
	rows[10].token = "bad" // an invalid token somewhere
	return rows
}

func TestEngineLocalTime(t *testing.T) {
	c := testCampaign()
	c.Schedule = schemas.Schedule{Mode: schemas.DeliverLocalTime, LocalDate: "2026-03-29", LocalTime: "09:00", DefaultTimezone: "Europe/Berlin"}
	c.Options.BatchSize = 20
	c.Options.TTLSeconds = 0
	start := utc("2026-03-28T00:00:00Z")
	e := mustEngine(t, c, start, 900<<10)
	r := newRun()
	r.attach(t, e)
	rows := localRows()
	feedAll(t, e, pageOf(0, rows), Position{})
	_ = e.flush()
	wantWave := map[string]string{
		"Asia/Kolkata": "UTC+05:30", "America/St_Johns": "UTC-02:30", "Europe/Berlin": "UTC+02:00", "Europe/Paris": "UTC+02:00",
		"": "UTC+02:00", "Mars/Olympus": "UTC+02:00", "UTC": "UTC+00:00", "Asia/Kathmandu": "UTC+05:45",
	}
	wantSend := map[string]string{
		"UTC+05:30": "2026-03-29T03:30:00Z", "UTC-02:30": "2026-03-29T11:30:00Z", "UTC+02:00": "2026-03-29T07:00:00Z",
		"UTC+00:00": "2026-03-29T09:00:00Z", "UTC+05:45": "2026-03-29T03:15:00Z",
	}
	perWave := map[string]int{}
	seqs := map[string][]int{}
	for _, b := range r.batches {
		if !b.SendAt.Equal(utc(wantSend[b.Wave])) {
			t.Errorf("batch %s due %s, want %s", b.ID, b.SendAt, wantSend[b.Wave])
		}
		if want := fmt.Sprintf("camp-1:v2:%s:%d", b.Wave, b.Seq); b.ID != want {
			t.Errorf("id %s, want %s", b.ID, want)
		}
		seqs[b.Wave] = append(seqs[b.Wave], b.Seq)
		last := int64(0)
		for _, d := range b.Devices {
			if got := wantWave[d.Timezone]; got != b.Wave {
				t.Errorf("device in %q put in wave %s, want %s", d.Timezone, b.Wave, got)
			}
			if d.DeviceID <= last {
				t.Errorf("batch %s not in id order", b.ID)
			}
			last = d.DeviceID
			perWave[b.Wave]++
		}
	}
	// 400 devices, 50 per zone; one invalid (rows[10]: id 22, zone index 3 = Paris).
	want := map[string]int{"UTC+05:30": 50, "UTC-02:30": 50, "UTC+02:00": 199, "UTC+00:00": 50, "UTC+05:45": 50}
	if !reflect.DeepEqual(perWave, want) {
		t.Errorf("devices per wave %v, want %v", perWave, want)
	}
	for w, s := range seqs {
		for i, q := range s {
			if q != i {
				t.Errorf("wave %s seqs %v", w, s)
				break
			}
		}
	}
	if len(r.invalid) != 1 || e.totals.Devices != 399 {
		t.Errorf("invalid %v, devices %d", r.invalid, e.totals.Devices)
	}
}

func TestEngineExpiredWaves(t *testing.T) {
	c := testCampaign()
	c.Schedule = schemas.Schedule{Mode: schemas.DeliverLocalTime, LocalDate: "2026-03-29", LocalTime: "09:00", ExpiresAt: utc("2026-03-29T08:00:00Z")}
	c.Options.BatchSize = 20
	e := mustEngine(t, c, utc("2026-03-28T00:00:00Z"), 900<<10)
	r := newRun()
	r.attach(t, e)
	feedAll(t, e, pageOf(0, localRows()), Position{})
	_ = e.flush()
	for _, b := range r.batches {
		if b.Wave != "UTC+05:30" && b.Wave != "UTC+02:00" && b.Wave != "UTC+05:45" {
			t.Errorf("batch of wave %s, which starts after expiry", b.Wave)
		}
		if !b.ExpiresAt.Equal(utc("2026-03-29T08:00:00Z")) {
			t.Errorf("expires %s", b.ExpiresAt)
		}
	}
	// St John's (11:30Z) and UTC (09:00Z; also the unknown zones, as no
	// default is set) are expired: 4 zones of 50 devices.
	if e.totals.Expired != 200 || e.totals.Devices != 199 {
		t.Errorf("totals %+v", e.totals)
	}
}

func TestEngineByteLimit(t *testing.T) {
	c := testCampaign()
	c.Options.BatchSize = schemas.MaxBatchDevices
	e := mustEngine(t, c, utc("2026-03-29T10:00:00Z"), 20000)
	r := newRun()
	r.attach(t, e)
	var rows []row
	for i := int64(1); i <= 1000; i++ {
		rows = append(rows, row{id: i, token: strings.Repeat("t", 150) + fmt.Sprint(i), platform: "android"})
	}
	feedAll(t, e, pageOf(0, rows), Position{})
	_ = e.flush()
	if len(r.batches) < 8 {
		t.Fatalf("%d batches; the byte limit did not split", len(r.batches))
	}
	n := 0
	for _, b := range r.batches {
		if v := r.records[b.ID].Value; len(v) > 20000 {
			t.Errorf("batch %s is %d bytes", b.ID, len(v))
		}
		n += len(b.Devices)
	}
	if n != 1000 {
		t.Errorf("%d devices batched", n)
	}
	// Content too big for any batch is refused up front.
	c.Content.Body = strings.Repeat("x", 4000)
	s, _ := newSchedule(c, utc("2026-03-29T10:00:00Z"))
	if _, err := newEngine(c, s, 4000, true); err == nil || !strings.Contains(err.Error(), "more than a batch may hold") {
		t.Errorf("err %v", err)
	}
}

// lateLocalTime is a resume fixture mode: local time, planned after 09:00
// had passed in Kolkata, Kathmandu and Berlin/Paris, whose waves then
// share the planning start and one throttle lane.
const lateLocalTime = "local_time, planned late"

// atLapsing and lateLocalLapsing are resume fixture modes whose
// throttled send-ats reach expires_at partway: mode "at", and
// lateLocalTime with the shared lane lapsing while its other waves hold
// open batches.
const (
	atLapsing        = "at, throttled past expires_at"
	lateLocalLapsing = "local_time, planned late, throttled past expires_at"
)

// resumeModes are the modes the resume tests cut.
var resumeModes = []string{schemas.DeliverAt, schemas.DeliverLocalTime, lateLocalTime, atLapsing, lateLocalLapsing}

// resumeFixture is the plan the resume tests cut: 150 devices in batches of
// 7 at 10 a second, two invalid tokens, in mode; full holds its batches
// when planned without a stop, and wantTotals its totals.
func resumeFixture(t *testing.T, mode string) (c *schemas.Campaign, start time.Time, rows []row, page *Page, full *run, wantTotals totals) {
	t.Helper()
	c = testCampaign()
	c.Options.BatchSize = 7
	c.Options.ThrottlePerSecond = 10
	start = utc("2026-03-28T00:00:00Z")
	switch mode {
	case schemas.DeliverLocalTime, lateLocalTime:
		c.Schedule = schemas.Schedule{Mode: schemas.DeliverLocalTime, LocalDate: "2026-03-29", LocalTime: "09:00", ExpiresAt: utc("2026-03-29T10:00:00Z")}
	case atLapsing:
		// 8 batches of 7 due before it, from start to start+4.9 s.
		c.Schedule.ExpiresAt = start.Add(5 * time.Second)
	case lateLocalLapsing:
		// Two lanes lapse: the planning start's (Kolkata, Kathmandu,
		// Berlin and Paris) 6 s before expires_at, the 09:00Z wave's (UTC)
		// 4 s before, so each lapses while the other holds open batches.
		c.Schedule = schemas.Schedule{Mode: schemas.DeliverLocalTime, LocalDate: "2026-03-29", LocalTime: "09:00", ExpiresAt: utc("2026-03-29T09:00:04Z")}
		start = utc("2026-03-29T08:59:58Z")
	}
	if mode == lateLocalTime {
		start = utc("2026-03-29T08:00:00Z")
	}
	rows = localRows()[:150]
	rows[40].token = "" // a second invalid token
	page = pageOf(0, rows)
	full = newRun()
	e := mustEngine(t, c, start, 900<<10)
	full.attach(t, e)
	feedAll(t, e, page, Position{})
	_ = e.flush()
	return c, start, rows, page, full, e.totals
}

// TestEngineResume is the checkpoint's contract: stop after any device,
// keep only the batches emitted so far (the committed chunks), restore a
// new engine from the encoded checkpoint and read again from its resume
// position: the union is exactly the uninterrupted plan, every batch once,
// byte for byte, and every invalid token reported once.
func TestEngineResume(t *testing.T) {
	for _, mode := range resumeModes {
		c, start, rows, page, full, wantTotals := resumeFixture(t, mode)

		for cut := 0; cut <= len(rows); cut++ {
			first := newRun()
			e1 := mustEngine(t, c, start, 900<<10)
			first.attach(t, e1)
			for i := 0; i < cut; i++ {
				if err := e1.add(&page.Devices[i]); err != nil {
					t.Fatal(err)
				}
			}
			ck := newCheckpoint(c.ID, c.Version, 42, start, 1, e1)
			meta, err := ck.encode()
			if err != nil {
				t.Fatal(err)
			}
			back, ok := decodeCheckpoint(meta)
			if !ok {
				t.Fatalf("checkpoint %q does not decode", meta)
			}

			second := newRun()
			e2 := mustEngine(t, c, back.start(), 900<<10)
			second.attach(t, e2)
			e2.restore(arrPos(back.After), arrPos(back.Scanned), back.waveStates(), back.totals())
			feedAll(t, e2, page, arrPos(back.After))
			_ = e2.flush()

			got := map[string]string{}
			for _, rr := range []*run{first, second} {
				for id, b := range rr.records {
					if _, dup := got[id]; dup {
						t.Fatalf("%s cut %d: batch %s emitted before and after the checkpoint", mode, cut, id)
					}
					got[id] = string(b.Value)
				}
			}
			if len(got) != len(full.records) {
				t.Fatalf("%s cut %d: %d batches, want %d", mode, cut, len(got), len(full.records))
			}
			for id, b := range full.records {
				if got[id] != string(b.Value) {
					t.Fatalf("%s cut %d: batch %s differs:\n%s\nwant\n%s", mode, cut, id, got[id], b.Value)
				}
			}
			if inv := append(first.invalid, second.invalid...); !reflect.DeepEqual(inv, full.invalid) {
				t.Fatalf("%s cut %d: invalid %v, want %v", mode, cut, inv, full.invalid)
			}
			if e2.totals != wantTotals {
				t.Fatalf("%s cut %d: totals %+v, want %+v", mode, cut, e2.totals, wantTotals)
			}
		}
	}
}

func TestCheckpointDecode(t *testing.T) {
	for _, meta := range []string{"", "member-id-123", checkpointPrefix + "{not json", "pushlane-planner/2 {}"} {
		if _, ok := decodeCheckpoint(meta); ok {
			t.Errorf("%q decoded as a checkpoint", meta)
		}
	}
	// Many waves would not fit Kafka's metadata limit: refused, not sent.
	c := checkpoint{Campaign: strings.Repeat("c", 128)}
	for i := 0; i < 200; i++ {
		c.Waves = append(c.Waves, [5]int64{int64(i * 900), 1000, 1e9, 0, 1e9})
	}
	if _, err := c.encode(); err == nil || !strings.Contains(err.Error(), "exceeds 4000") {
		t.Errorf("err %v", err)
	}
}

func TestBatchID(t *testing.T) {
	if got := batchID("camp:x", 3, "UTC+05:30", 12); got != "camp:x:v3:UTC+05:30:12" {
		t.Error(got)
	}
}

// TestReadSegmentInOrder: pages fetched in parallel reach the planner in
// id order, complete, and a failed page ends the stream with its error.
func TestReadSegmentInOrder(t *testing.T) {
	for _, fail := range []int64{0, 1201} {
		for _, par := range []int{1, 2, 4} {
			s := &segStore{n: 5000, failRows: fail}
			p := &Planner{cfg: Config{PageSize: 100, ReadParallelism: par}, store: s}
			free := make(chan *Page, 8)
			for range 8 {
				free <- &Page{}
			}
			out := make(chan pageMsg, 8)
			go p.readAudience(context.Background(), []AudienceQuery{{App: "app"}}, Position{ID: 300}, free, out)
			next := int64(301)
			var err error
			for msg := range out {
				if msg.err != nil {
					err = msg.err
					break
				}
				if msg.done {
					break
				}
				for _, d := range msg.page.Devices {
					if d.ID != next {
						t.Fatalf("parallel %d: device %d, want %d", par, d.ID, next)
					}
					next++
				}
				free <- msg.page
			}
			switch {
			case fail == 0 && (err != nil || next != 5001):
				t.Errorf("parallel %d: stopped at %d: %v", par, next, err)
			case fail != 0 && (err == nil || next != fail || !strings.Contains(err.Error(), "connection reset by peer")):
				t.Errorf("parallel %d: failing page gave %v at %d", par, err, next)
			}
		}
	}
}

// A resumed attempt stopped again, before or after reading a few devices,
// checkpoints what the first checkpoint still owed: the devices of the
// batches that were open at the first stop are read again from its After,
// not skipped. Before, the second checkpoint began at the first one's
// Scanned, and a third attempt never sent those devices.
func TestEngineResumeStoppedAgain(t *testing.T) {
	for _, mode := range resumeModes {
		c, start, rows, page, full, wantTotals := resumeFixture(t, mode)

		// checkpointed runs the engine of one attempt: restored from ck
		// (nil: the first attempt), fed the devices after ck's After up to
		// n of them, then checkpointed as a stop does.
		type attempt struct {
			r  *run
			ck checkpoint
			e  *engine
		}
		runAttempt := func(ck *checkpoint, n int, finish bool) attempt {
			r := newRun()
			e := mustEngine(t, c, start, 900<<10)
			r.attach(t, e)
			from := Position{}
			if ck != nil {
				e.restore(arrPos(ck.After), arrPos(ck.Scanned), ck.waveStates(), ck.totals())
				from = arrPos(ck.After)
			}
			fed := 0
			for i := range page.Devices {
				d := &page.Devices[i]
				if !from.Less(d.pos()) {
					continue
				}
				if !finish && fed == n {
					break
				}
				if err := e.add(d); err != nil {
					t.Fatal(err)
				}
				fed++
			}
			if finish {
				_ = e.flush()
			}
			return attempt{r: r, ck: newCheckpoint(c.ID, c.Version, 42, start, 1, e), e: e}
		}
		for cut := 0; cut <= len(rows); cut += 5 {
			for _, again := range []int{0, 1, 3, 10, 40} {
				a1 := runAttempt(nil, cut, false)
				a2 := runAttempt(&a1.ck, again, false)
				a3 := runAttempt(&a2.ck, 0, true)
				got := map[string]string{}
				var inv []string
				for _, a := range []attempt{a1, a2, a3} {
					for id, b := range a.r.records {
						if _, dup := got[id]; dup {
							t.Fatalf("%s cut %d+%d: batch %s emitted twice", mode, cut, again, id)
						}
						got[id] = string(b.Value)
					}
					inv = append(inv, a.r.invalid...)
				}
				if len(got) != len(full.records) {
					t.Fatalf("%s cut %d+%d: %d batches, want %d", mode, cut, again, len(got), len(full.records))
				}
				for id, b := range full.records {
					if got[id] != string(b.Value) {
						t.Fatalf("%s cut %d+%d: batch %s differs:\n%s\nwant\n%s", mode, cut, again, id, got[id], b.Value)
					}
				}
				if !reflect.DeepEqual(inv, full.invalid) {
					t.Fatalf("%s cut %d+%d: invalid %v, want %v", mode, cut, again, inv, full.invalid)
				}
				if a3.e.totals != wantTotals {
					t.Fatalf("%s cut %d+%d: totals %+v, want %+v", mode, cut, again, a3.e.totals, wantTotals)
				}
			}
		}
	}
}

// A batch whose throttled send-at is at or after expires_at is not
// emitted: routed onto the delay ladder by its send-at, it was found
// expired only when due, its devices counted as planned. Its devices are
// counted as expired, as an expired wave's are. The campaign, a
// hundredth of it: send now, expires_at in 10 minutes, a batch every 10 s.
func TestEngineThrottlePastExpiry(t *testing.T) {
	c := testCampaign()
	c.Options.BatchSize = 10
	c.Options.ThrottlePerSecond = 1
	start := utc("2026-03-29T10:00:00Z")
	c.Schedule.ExpiresAt = start.Add(10 * time.Minute)
	e := mustEngine(t, c, start, 900<<10)
	r := newRun()
	r.attach(t, e)
	var rows []row
	for i := int64(1); i <= 10_000; i++ {
		rows = append(rows, row{id: i, token: iosToken(i), platform: "ios"})
	}
	feedAll(t, e, pageOf(0, rows), Position{})
	if err := e.flush(); err != nil {
		t.Fatal(err)
	}
	if len(r.batches) != 60 {
		t.Fatalf("%d batches, want 60 (due from +0 to +590 s)", len(r.batches))
	}
	for i, b := range r.batches {
		if b.ID != fmt.Sprintf("camp-1:v2:all:%d", i) || !b.SendAt.Equal(start.Add(time.Duration(i)*10*time.Second)) ||
			len(b.Devices) != 10 || b.Devices[0].DeviceID != int64(10*i+1) {
			t.Fatalf("batch %d: %s due %s with %d devices from %d", i, b.ID, b.SendAt, len(b.Devices), b.Devices[0].DeviceID)
		}
	}
	want := totals{Devices: 600, Batches: 60, Expired: 9400, FirstSendAt: start.UnixMilli(), LastSendAt: start.Add(590 * time.Second).UnixMilli()}
	if e.totals != want {
		t.Errorf("totals %+v, want %+v", e.totals, want)
	}
}

// With expires_at, a plan is the plan without it, less the batches due at
// or after expires_at (and the waves starting then), whose devices are
// counted as expired; in a lane the waves share, the other waves' open
// batches are dropped with the one that reached expires_at.
func TestEngineLapsedLanes(t *testing.T) {
	for _, tc := range []struct {
		mode                               string
		devices, batches, invalid, expired int64
	}{
		{atLapsing, 56, 8, 2, 92},
		{lateLocalLapsing, 105, 15, 2, 43},
	} {
		c, start, _, page, full, got := resumeFixture(t, tc.mode)
		expiresAt := c.Schedule.ExpiresAt
		open := *c
		open.Schedule.ExpiresAt = time.Time{}
		open.Options.TTLSeconds = 0 // a TTL alone expires the late waves
		unexpired := newRun()
		e := mustEngine(t, &open, start, 900<<10)
		unexpired.attach(t, e)
		feedAll(t, e, page, Position{})
		if err := e.flush(); err != nil {
			t.Fatal(err)
		}
		want := map[string]*schemas.Batch{}
		for _, b := range unexpired.batches {
			w := e.waves[e.waveOf([]byte(b.Devices[0].Timezone)).key]
			if b.SendAt.Before(expiresAt) && w.start.Before(expiresAt) {
				want[b.ID] = b
			}
		}
		if len(full.batches) != len(want) {
			t.Errorf("%s: %d batches, want %d", tc.mode, len(full.batches), len(want))
		}
		for _, b := range full.batches {
			w := want[b.ID]
			if w == nil {
				t.Errorf("%s: batch %s due %s emitted; expires_at is %s", tc.mode, b.ID, b.SendAt, expiresAt)
				continue
			}
			if !b.SendAt.Equal(w.SendAt) || !reflect.DeepEqual(b.Devices, w.Devices) {
				t.Errorf("%s: batch %s due %s with %v, want due %s with %v", tc.mode, b.ID, b.SendAt, b.Devices, w.SendAt, w.Devices)
			}
		}
		if got.Devices != tc.devices || got.Batches != tc.batches || got.Invalid != tc.invalid || got.Expired != tc.expired {
			t.Errorf("%s: totals %+v, want %d devices in %d batches, %d invalid, %d expired", tc.mode, got, tc.devices, tc.batches, tc.invalid, tc.expired)
		}
	}
}
