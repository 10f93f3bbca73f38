package planner

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/pushlane/pushlane/internal/migrate"
	"github.com/pushlane/pushlane/internal/service"
	"github.com/pushlane/pushlane/internal/testenv"
	"github.com/pushlane/pushlane/pipeline/control"
	"github.com/pushlane/pushlane/schemas"
)

// The integration tests run the planner on the real Kafka and MariaDB of
// deploy/local, through internal/testenv: each test has its own topics,
// consumer group and database.

type realEnv struct {
	*harness
	db *sql.DB
}

func newRealEnv(t *testing.T) *realEnv {
	t.Helper()
	brokers := testenv.KafkaBrokers(t)
	cfg := testConfig(brokers, "x")
	logAppend := map[string]*string{"message.timestamp.type": kadm.StringPtr("LogAppendTime")}
	tp := &cfg.Kafka.Topics
	tp.Campaigns.Name = testenv.Topic(t, "planner-campaigns", 2, nil)
	tp.Ready.Name = testenv.Topic(t, "planner-ready", 3, nil)
	tp.Results.Name = testenv.Topic(t, "planner-results", 3, nil)
	tp.DeadLetter.Name = testenv.Topic(t, "planner-dlq", 1, nil)
	for i := range cfg.DelayTiers {
		cfg.DelayTiers[i] = testenv.Topic(t, fmt.Sprintf("planner-delay-t%02d", i), 2, logAppend)
	}
	// The campaigns topic name is unique to the test: so is the group.
	cfg.Kafka.GroupPrefix = tp.Campaigns.Name
	_, db := testenv.MySQL(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := migrate.MySQL(ctx, db); err != nil {
		t.Fatal(err)
	}
	return &realEnv{harness: newHarness(t, cfg, NewMySQLStore(db)), db: db}
}

// insertDevices bulk-inserts rows of app (ids explicit).
func insertDevices(t testing.TB, db *sql.DB, app string, rows []row, inactive ...int64) {
	t.Helper()
	null := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	for start := 0; start < len(rows); start += 500 {
		part := rows[start:min(start+500, len(rows))]
		var q strings.Builder
		q.WriteString("INSERT INTO devices (id, app, user_id, platform, token, locale, timezone, active) VALUES ")
		args := make([]any, 0, 8*len(part))
		for i, r := range part {
			if i > 0 {
				q.WriteString(",")
			}
			q.WriteString("(?,?,?,?,?,?,?,?)")
			args = append(args, r.id, app, null(r.user), r.platform, r.token, null(r.locale), null(r.zone), !slices.Contains(inactive, r.id))
		}
		if _, err := db.Exec(q.String(), args...); err != nil {
			t.Fatalf("insert devices: %v", err)
		}
	}
}

func (e *realEnv) campaignRow(t testing.TB, id string) (status, reason string, devices, batches, invalid, expired int64) {
	t.Helper()
	var r sql.NullString
	err := e.db.QueryRow(`SELECT status, reason, planned_devices, planned_batches, invalid_tokens, expired_devices FROM campaigns WHERE id = ? AND version = 1`, id).
		Scan(&status, &r, &devices, &batches, &invalid, &expired)
	if err != nil {
		t.Fatalf("campaign %s: %v", id, err)
	}
	return status, r.String, devices, batches, invalid, expired
}

// mixedAudience is 2,400 devices of "app" and 100 of "fcmapp": both
// platforms, locales of several shapes, user ids shared by 2 devices each,
// some inactive, some with tokens the dispatcher would refuse.
func mixedAudience() (app, other []row, inactive []int64) {
	locales := []string{"de-DE", "de_AT", "en-US", "fr", "", "DE-ch"}
	zones := []string{"Europe/Berlin", "Asia/Kolkata", "", "America/St_Johns"}
	for i := int64(1); i <= 2400; i++ {
		// Ids 10 apart, then consecutive: pages are read through the
		// index where the app's ids are sparse and along the primary key
		// where they are dense.
		id := i * 10
		if i > 1200 {
			id = 12000 + i
		}
		r := row{id: id, user: fmt.Sprintf("user-%d", i/2), locale: locales[i%6], zone: zones[i%4]}
		if i%3 == 0 {
			r.platform, r.token = "android", fmt.Sprintf("fcm:%d-APA91b_token", i)
		} else {
			r.platform, r.token = "ios", iosToken(i)
		}
		switch i {
		case 17:
			r.token = strings.Repeat("z", 64) // not hex
		case 18:
			r.token = "spaced token"
		}
		app = append(app, r)
		if i%97 == 0 {
			inactive = append(inactive, r.id)
		}
	}
	for i := int64(1); i <= 100; i++ {
		other = append(other, row{id: 100000 + i, token: iosToken(100000 + i), platform: "ios", user: fmt.Sprintf("user-%d", i)})
	}
	return app, other, inactive
}

// expect picks the devices a campaign must reach, by rules written out
// here independently of the SQL.
func expect(rows []row, inactive []int64, keep func(row) bool) (ids []int64, byID map[int64]row) {
	byID = map[int64]row{}
	for _, r := range rows {
		if slices.Contains(inactive, r.id) || r.id == 170 || r.id == 180 || !keep(r) {
			continue
		}
		ids = append(ids, r.id)
		byID[r.id] = r
	}
	slices.Sort(ids)
	return ids, byID
}

func TestIntegrationPlanAudiences(t *testing.T) {
	e := newRealEnv(t)
	appRows, otherRows, inactive := mixedAudience()
	insertDevices(t, e.db, "app", appRows, inactive...)
	insertDevices(t, e.db, "fcmapp", otherRows)

	all := segmentCampaign("all", 100)
	all.Content = schemas.Content{Title: "Hello", Body: "World", Localized: map[string]schemas.LocalizedText{"de": {Title: "Hallo", Body: "Welt"}}, Data: map[string]string{"deep": "link"}}
	all.Options = schemas.Options{BatchSize: 100, Priority: "high", CollapseID: "promo", TTLSeconds: 3600}
	filtered := segmentCampaign("filtered", 50)
	filtered.Audience.Platforms = []string{"android"}
	filtered.Audience.Locales = []string{"de", "fr"}
	var users []string
	for i := 0; i < 700; i++ { // 2 parts of the list
		users = append(users, fmt.Sprintf("user-%d", i*3))
	}
	users = append(users, "user-0", "nobody")
	byUser := segmentCampaign("users", 64)
	byUser.Audience.UserIDs = users
	var tokens []string
	for _, r := range appRows[:1100] { // 3 parts, inactive ones and refused ones included
		tokens = append(tokens, r.token)
	}
	tokens = append(tokens, appRows[5].token, "no-such-token")
	byToken := segmentCampaign("tokens", 1000)
	byToken.Audience = schemas.Audience{Type: schemas.AudienceTokens, Tokens: tokens, Platforms: []string{"ios"}}
	unknownApp := segmentCampaign("unknown-app", 10)
	unknownApp.App = "ghost"
	expired := segmentCampaign("expired", 10)
	expired.Schedule.SendAt = time.Now().Add(-3 * time.Hour)
	expired.Options.TTLSeconds = 3600

	for _, c := range []*schemas.Campaign{all, filtered, byUser, byToken, unknownApp, expired} {
		e.publishCampaign(c)
	}
	e.publish("broken", []byte(`{"schema_version":1,"id":"broken","app":"app"`))
	r := e.start(nil)
	e.waitDone(7)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	o := e.output()
	if len(o.dupBatches) > 0 {
		t.Fatalf("duplicate batches: %v", o.dupBatches)
	}

	lang := func(l string) string {
		return strings.ToLower(strings.FieldsFunc(l, func(r rune) bool { return r == '-' || r == '_' })[0])
	}
	userSet := map[string]bool{}
	for _, u := range users {
		userSet[u] = true
	}
	tokenSet := map[string]bool{}
	for _, tk := range tokens {
		tokenSet[tk] = true
	}
	cases := []struct {
		c    *schemas.Campaign
		keep func(row) bool
	}{
		{all, func(row) bool { return true }},
		{filtered, func(r row) bool {
			return r.platform == "android" && r.locale != "" && (lang(r.locale) == "de" || lang(r.locale) == "fr")
		}},
		{byUser, func(r row) bool { return userSet[r.user] }},
		{byToken, func(r row) bool { return tokenSet[r.token] && r.platform == "ios" }},
	}
	for _, tc := range cases {
		want, byID := expect(appRows, inactive, tc.keep)
		got := o.batchesOf(tc.c.ID)
		b := tc.c.Options.BatchSize
		if wantBatches := (len(want) + b - 1) / b; len(got) != wantBatches {
			t.Errorf("%s: %d batches, want %d for %d devices", tc.c.ID, len(got), wantBatches, len(want))
		}
		var ids []int64
		for i, batch := range got {
			if batch.ID != fmt.Sprintf("%s:v1:all:%d", tc.c.ID, i) || i < len(got)-1 && len(batch.Devices) != b {
				t.Errorf("%s batch %d: %s with %d devices", tc.c.ID, i, batch.ID, len(batch.Devices))
			}
			if !equalJSON(t, batch.Content, tc.c.Content) || !equalJSON(t, batch.Options, tc.c.Options) || batch.App != "app" || batch.Attempt != 1 {
				t.Errorf("%s batch %d carries %+v / %+v", tc.c.ID, i, batch.Content, batch.Options)
			}
			for _, d := range batch.Devices {
				w := byID[d.DeviceID]
				if d.Token != w.token || d.Platform != w.platform || d.Locale != w.locale || d.Timezone != w.zone || d.UserID != w.user {
					t.Fatalf("%s: device %+v, stored %+v", tc.c.ID, d, w)
				}
				ids = append(ids, d.DeviceID)
			}
		}
		// A list audience is read part by part: sort to compare.
		slices.Sort(ids)
		equalIDs(t, tc.c.ID, ids, want)
		status, _, devices, batches, _, _ := e.campaignRow(t, tc.c.ID)
		if status != StatusPlanned || devices != int64(len(want)) || batches != int64(len(got)) {
			t.Errorf("%s recorded %s, %d devices, %d batches", tc.c.ID, status, devices, batches)
		}
	}

	// Refused tokens: reported once per campaign that selected them.
	reported := map[string][]int64{}
	for _, res := range o.results {
		if res.Outcome != schemas.OutcomeInvalidToken {
			t.Errorf("result outcome %s", res.Outcome)
		}
		reported[res.CampaignID] = append(reported[res.CampaignID], res.DeviceID)
	}
	// Device 170 is user-8, device 180 user-9 (a listed user); only iOS
	// devices were asked for by token.
	wantReported := map[string][]int64{"all": {170, 180}, "users": {180}, "tokens": {170}}
	for id, want := range wantReported {
		got := reported[id]
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: invalid tokens reported for %v, want %v", id, got, want)
		}
	}
	if _, _, _, _, invalid, _ := e.campaignRow(t, "all"); invalid != 2 {
		t.Errorf("all: %d invalid tokens recorded", invalid)
	}

	// Dead letters and the expired campaign.
	reasons := map[string]string{}
	for _, dl := range o.deadLetters {
		reasons[string(dl.Key)] = dl.Reason
	}
	if got := reasons["unknown-app"]; got != `unknown app "ghost": not in the planner's apps` {
		t.Errorf("unknown app dead-lettered with %q", got)
	}
	if got := reasons["broken"]; !strings.HasPrefix(got, "invalid campaign: not JSON") {
		t.Errorf("broken campaign dead-lettered with %q", got)
	}
	if status, reason, _, _, _, _ := e.campaignRow(t, "unknown-app"); status != StatusFailed || !strings.HasPrefix(reason, "unknown app") {
		t.Errorf("unknown-app recorded %s %q", status, reason)
	}
	if status, reason, devices, _, _, _ := e.campaignRow(t, "expired"); status != StatusExpired || devices != 0 ||
		!strings.HasPrefix(reason, "expired before planning: ttl_seconds 3600") {
		t.Errorf("expired recorded %s %q %d", status, reason, devices)
	}
	if n := len(o.batchesOf("expired")) + len(o.batchesOf("unknown-app")); n != 0 {
		t.Errorf("%d batches of campaigns not planned", n)
	}
}

func equalJSON(t testing.TB, a, b any) bool {
	t.Helper()
	ja, _ := jsonMarshal(a)
	jb, _ := jsonMarshal(b)
	return ja == jb
}

// lastSunday returns the last Sunday of month in year.
func lastSunday(year int, month time.Month) time.Time {
	d := time.Date(year, month+1, 0, 0, 0, 0, 0, time.UTC)
	for d.Weekday() != time.Sunday {
		d = d.AddDate(0, 0, -1)
	}
	return d
}

func TestIntegrationLocalTime(t *testing.T) {
	e := newRealEnv(t)
	zones := []string{"Asia/Kolkata", "America/St_Johns", "Europe/Berlin", "Europe/Paris", "", "Not/AZone"}
	var rows []row
	for i := int64(1); i <= 600; i++ {
		rows = append(rows, row{id: i, token: iosToken(i), platform: "ios", zone: zones[i%6]})
	}
	insertDevices(t, e.db, "app", rows)
	// Next year's EU DST-change days: the last Sundays of March and
	// October, and a plain day between.
	year := time.Now().Year() + 1
	spring, autumn := lastSunday(year, time.March), lastSunday(year, time.October)
	type want struct{ wave, at string }
	days := []struct {
		date  time.Time
		waves map[string]want // by device zone
	}{
		{spring, map[string]want{
			"Asia/Kolkata":     {"UTC+05:30", "03:30"},
			"America/St_Johns": {"UTC-02:30", "11:30"}, // NDT since the second Sunday of March
			"Europe/Berlin":    {"UTC+02:00", "07:00"}, // CEST from 01:00Z that morning
			"Europe/Paris":     {"UTC+02:00", "07:00"},
			"":                 {"UTC-04:00", "13:00"}, // default zone New York, EDT
			"Not/AZone":        {"UTC-04:00", "13:00"},
		}},
		{autumn, map[string]want{
			"Asia/Kolkata":     {"UTC+05:30", "03:30"},
			"America/St_Johns": {"UTC-02:30", "11:30"}, // NDT until the first Sunday of November
			"Europe/Berlin":    {"UTC+01:00", "08:00"}, // CET from 01:00Z that morning
			"Europe/Paris":     {"UTC+01:00", "08:00"},
			"":                 {"UTC-04:00", "13:00"},
			"Not/AZone":        {"UTC-04:00", "13:00"},
		}},
	}
	for i, day := range days {
		c := segmentCampaign(fmt.Sprintf("local-%d", i), 40)
		c.Schedule = schemas.Schedule{Mode: schemas.DeliverLocalTime, LocalDate: day.date.Format(time.DateOnly), LocalTime: "09:00", DefaultTimezone: "America/New_York"}
		e.publishCampaign(c)
	}
	r := e.start(nil)
	e.waitDone(2)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	o := e.output()
	for i, day := range days {
		id := fmt.Sprintf("local-%d", i)
		perWave := map[string]int{}
		for _, b := range o.batchesOf(id) {
			for _, d := range b.Devices {
				w := day.waves[d.Timezone]
				at, _ := time.Parse(time.RFC3339, day.date.Format(time.DateOnly)+"T"+w.at+":00Z")
				if b.Wave != w.wave || !b.SendAt.Equal(at) {
					t.Fatalf("%s: device in %q in wave %s due %s, want %s at %s", id, d.Timezone, b.Wave, b.SendAt, w.wave, at)
				}
			}
			if want := fmt.Sprintf("%s:v1:%s:%d", id, b.Wave, perWave[b.Wave]/40); b.ID != want {
				t.Errorf("%s: batch %s, want %s", id, b.ID, want)
			}
			perWave[b.Wave] += len(b.Devices)
			if !strings.HasPrefix(o.batchTopics[b.ID], e.cfg.DelayTiers[len(e.cfg.DelayTiers)-1]) {
				t.Errorf("%s: a batch months ahead went to %s", id, o.batchTopics[b.ID])
			}
		}
		// 100 devices per zone; zones sharing an offset share a wave.
		wantPer := map[string]int{}
		for _, w := range day.waves {
			wantPer[w.wave] += 100
		}
		if fmt.Sprint(perWave) != fmt.Sprint(wantPer) {
			t.Errorf("%s: devices per wave %v, want %v", id, perWave, wantPer)
		}
		equalIDs(t, id, o.devicesOf(id), wantIDs(1, 600))
	}
}

// planThrottled plans campaign "throttled" over 2000 iOS devices in
// batches of 20 at 25 devices a second (a batch every 0.8 s), due in an
// hour, after edit, and returns what the planner wrote.
func planThrottled(t *testing.T, edit func(*schemas.Campaign)) (*realEnv, *schemas.Campaign, *output) {
	t.Helper()
	e := newRealEnv(t)
	var rows []row
	for i := int64(1); i <= 2000; i++ {
		rows = append(rows, row{id: i, token: iosToken(i), platform: "ios"})
	}
	insertDevices(t, e.db, "app", rows)
	c := segmentCampaign("throttled", 20)
	c.Options.ThrottlePerSecond = 25
	c.Schedule.SendAt = time.Now().Add(time.Hour).Truncate(time.Millisecond)
	if edit != nil {
		edit(c)
	}
	e.publishCampaign(c)
	r := e.start(nil)
	e.waitDone(1)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	return e, c, e.output()
}

func TestIntegrationThrottle(t *testing.T) {
	_, c, o := planThrottled(t, nil) // 100 batches over 79.2 s
	got := o.batchesOf("throttled")
	if len(got) != 100 {
		t.Fatalf("%d batches", len(got))
	}
	for i, b := range got {
		if want := c.Schedule.SendAt.Add(time.Duration(i) * 800 * time.Millisecond); !b.SendAt.Equal(want) {
			t.Errorf("batch %d due %s, want send_at + %d·20/25 s = %s", i, b.SendAt, i, want)
		}
	}
	// At most R per second over every minute that starts at a send-at.
	for i, b := range got {
		n := 0
		for _, o := range got[i:] {
			if o.SendAt.Before(b.SendAt.Add(time.Minute)) {
				n += len(o.Devices)
			}
		}
		if n > 25*60 {
			t.Errorf("the minute from batch %d holds %d devices, more than 25/s", i, n)
		}
	}
}

// TestIntegrationThrottlePastExpiry: a throttled campaign's batches due at
// or after expires_at are not written to the delay ladder; their devices
// are in the campaign row's expired_devices, not its planned_devices.
func TestIntegrationThrottlePastExpiry(t *testing.T) {
	e, c, o := planThrottled(t, func(c *schemas.Campaign) {
		c.Schedule.ExpiresAt = c.Schedule.SendAt.Add(20 * time.Second) // 25 batches due before it
	})
	got := o.batchesOf("throttled")
	if len(got) != 25 {
		t.Fatalf("%d batches, want 25", len(got))
	}
	for i, b := range got {
		if want := c.Schedule.SendAt.Add(time.Duration(i) * 800 * time.Millisecond); !b.SendAt.Equal(want) || !b.SendAt.Before(c.Schedule.ExpiresAt) {
			t.Errorf("batch %d due %s, want %s", i, b.SendAt, want)
		}
	}
	equalIDs(t, "throttled", o.devicesOf("throttled"), wantIDs(1, 500))
	if len(o.results) != 0 {
		t.Errorf("%d results, want none", len(o.results))
	}
	status, _, devices, batches, invalid, expired := e.campaignRow(t, "throttled")
	if status != StatusPlanned || devices != 500 || batches != 25 || invalid != 0 || expired != 1500 {
		t.Errorf("recorded %s, %d devices in %d batches, %d invalid, %d expired; want planned, 500 in 25, 0, 1500", status, devices, batches, invalid, expired)
	}
}

// TestIntegrationKillAndRestart kills a planner mid-chunk (batches produced
// and flushed, transaction open) and starts another: the same instance
// restarted, which fences the open transaction at once, or another
// replica, which gets the partition after the session timeout while the
// dead one's transaction waits for its timeout. Either way every batch is
// committed exactly once.
func TestIntegrationKillAndRestart(t *testing.T) {
	for _, takeover := range []bool{false, true} {
		name := "same instance restarts"
		if takeover {
			name = "another replica takes over"
		}
		t.Run(name, func(t *testing.T) {
			e := newRealEnv(t)
			var rows []row
			for i := int64(1); i <= 3000; i++ {
				rows = append(rows, row{id: i, token: iosToken(i), platform: "ios"})
			}
			rows[99].token = "bad" // id 100: one invalid-token result, not two
			insertDevices(t, e.db, "app", rows)
			e.cfg.BatchesPerTransaction = 5
			e.cfg.PageSize = 120
			e.cfg.SessionTimeout = 6 * time.Second
			e.cfg.TransactionTimeout = 10 * time.Second
			e.publishCampaign(segmentCampaign("killed", 10))

			killed := e.start(func(ev hookEvent) error {
				if ev.chunks == 20 && ev.batches == 3 {
					ev.flush() // the doomed batches are in the log
					return errCrash
				}
				return nil
			})
			killed.waitCrash(t)
			if takeover {
				// The dead process stops heartbeating; its transaction
				// stays open until the broker times it out.
				killed.p.crashed.Client().Close()
				killed.p.crashed = nil
				e.cfg.Instance = "i2"
			}
			restarted := e.start(nil)
			e.waitDone(1)
			if err := restarted.stop(t); err != nil {
				t.Fatal(err)
			}
			o := e.output()
			if len(o.dupBatches) > 0 {
				t.Fatalf("committed duplicates: %v", o.dupBatches)
			}
			got := o.batchesOf("killed")
			if len(got) != 300 {
				t.Fatalf("%d batches, want 300", len(got))
			}
			for i, b := range got {
				if b.ID != fmt.Sprintf("killed:v1:all:%d", i) {
					t.Fatalf("batch %d is %s", i, b.ID)
				}
			}
			equalIDs(t, "killed", o.devicesOf("killed"), wantIDs(1, 3000, 100))
			if len(o.results) != 1 || o.results[0].DeviceID != 100 {
				t.Errorf("invalid-token results %d", len(o.results))
			}
			all := countAll(t, e.brokers, e.cfg.Kafka.Topics.Ready.Name)
			if all < 300+3 {
				t.Errorf("ready holds %d records: the crash left no aborted batches to hide", all)
			}
			if status, _, devices, batches, invalid, _ := e.campaignRow(t, "killed"); status != StatusPlanned || devices != 2999 || batches != 300 || invalid != 1 {
				t.Errorf("recorded %s %d %d %d", status, devices, batches, invalid)
			}
		})
	}
}

func TestIntegrationMySQLOutage(t *testing.T) {
	e := newRealEnv(t)
	var rows []row
	for i := int64(1); i <= 4000; i++ {
		rows = append(rows, row{id: i, token: iosToken(i), platform: "ios"})
	}
	insertDevices(t, e.db, "app", rows)
	e.cfg.BatchesPerTransaction = 4
	e.cfg.PageSize = 100
	e.cfg.RetryMax = time.Second
	e.publishCampaign(segmentCampaign("outage", 20))

	chunk2 := make(chan struct{})
	down := make(chan struct{})
	r := e.start(func(ev hookEvent) error {
		if ev.chunks == 2 && ev.batches == 0 {
			// Between transactions (nothing produced yet, so no broker
			// timer runs): wait here while MariaDB goes down.
			close(chunk2)
			<-down
		}
		return nil
	})
	<-chunk2
	testenv.StackCtl(t, "stop", "mariadb")
	close(down)
	time.Sleep(3 * time.Second) // the planner fails and retries meanwhile
	testenv.StackCtl(t, "start", "mariadb")
	e.waitDone(1)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	o := e.output()
	if len(o.dupBatches) > 0 || len(o.batchesOf("outage")) != 200 {
		t.Fatalf("%d batches, duplicates %v", len(o.batchesOf("outage")), o.dupBatches)
	}
	equalIDs(t, "outage", o.devicesOf("outage"), wantIDs(1, 4000))
	if n := counterValue(t, r.p.m.retries.WithLabelValues("mysql")); n < 1 {
		t.Errorf("mysql retries %v", n)
	}
}

// TestIntegrationCancel cancels one campaign before it is planned and one
// while it is planned, through the real control topic and view.
func TestIntegrationCancel(t *testing.T) {
	e := newRealEnv(t)
	var rows []row
	for i := int64(1); i <= 3000; i++ {
		rows = append(rows, row{id: i, token: iosToken(i), platform: "ios"})
	}
	insertDevices(t, e.db, "app", rows)
	e.cfg.BatchesPerTransaction = 5
	e.cfg.PageSize = 100
	topic := testenv.Topic(t, "planner-control", 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")})
	view, err := control.New(control.Config{Kafka: e.cfg.Kafka, Topic: topic, RefreshInterval: 50 * time.Millisecond}, control.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	vctx, stopView := context.WithCancel(context.Background())
	viewDone := make(chan struct{})
	go func() { defer close(viewDone); _ = view.Run(vctx) }()
	t.Cleanup(func() { stopView(); <-viewDone })
	e.controls = view
	cancel := func(id string) {
		t.Helper()
		if err := control.Publish(context.Background(), e.producer, topic, schemas.CampaignControl{CampaignID: id, Action: schemas.ControlCancel, Reason: "test"}); err != nil {
			t.Fatal(err)
		}
	}

	cancel("early")
	e.publishCampaign(segmentCampaign("early", 10))
	e.publishCampaign(segmentCampaign("late", 10))
	r := e.start(func(ev hookEvent) error {
		if ev.campaign == "late" && ev.chunks == 3 && ev.batches == 0 {
			cancel("late")
			if err := view.WaitCaughtUp(context.Background()); err != nil {
				return err
			}
		}
		return nil
	})
	e.waitDone(2)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	o := e.output()
	if n := len(o.batchesOf("early")); n != 0 {
		t.Errorf("campaign cancelled before planning: %d batches", n)
	}
	// Three chunks of 5 batches were committed before the cancel; the
	// chunk open when it was seen was aborted.
	late := o.batchesOf("late")
	if len(late) != 15 {
		t.Errorf("campaign cancelled while planned: %d batches, want 15", len(late))
	}
	for i, b := range late {
		if b.ID != fmt.Sprintf("late:v1:all:%d", i) {
			t.Errorf("batch %d is %s", i, b.ID)
		}
	}
	for id, batches := range map[string]int64{"early": 0, "late": 15} {
		status, reason, devices, got, _, _ := e.campaignRow(t, id)
		if status != StatusCancelled || reason != "cancelled by a control event" || got != batches || devices != 10*batches {
			t.Errorf("%s recorded %s %q, %d devices, %d batches", id, status, reason, devices, got)
		}
	}
}

// The planner is ready once it has joined its group, before any campaign
// arrives; a campaigns topic deleted under it makes every poll fail at
// once, and it backs off instead of spinning.
func TestIntegrationReadyWhenJoinedAndBacksOffOnFetchErrors(t *testing.T) {
	e := newRealEnv(t)
	log, warnings := testenv.CountingLogger("planner: fetch error")
	ready := service.NewReadiness("planner")
	cfg := e.cfg
	cfg.RetryMin, cfg.RetryMax = 200*time.Millisecond, 30*time.Second // the defaults
	p, err := New(cfg, Deps{Store: e.store, Logger: log,
		Metrics: prometheus.NewRegistry(), Ready: ready})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for ready.Err() != nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if err := ready.Err(); err != nil {
		t.Fatalf("not ready 30 s after start on an idle campaigns topic: %v", err)
	}

	if _, err := e.adm.DeleteTopics(context.Background(), e.cfg.Kafka.Topics.Campaigns.Name); err != nil {
		t.Fatal(err)
	}
	// 200+400+800+1600 ms of backoff: a handful of failing polls in 3 s,
	// one line per partition each; without the backoff, hundreds.
	if n := testenv.CountAfterFirst(t, warnings, 45*time.Second, 3*time.Second); n > 12 {
		t.Errorf("%d fetch errors logged in 3 s after the first: the planner does not back off", n)
	}
}

// A replayed campaign record on the real Kafka and MariaDB: once its
// version is planned, the replay commits past it and nothing else, though
// the audience grew; a plan whose process died right after its last
// batches were committed is finished by the restart, and the replay queued
// behind it is skipped.
func TestIntegrationReplay(t *testing.T) {
	e := newRealEnv(t)
	var rows []row
	for i := int64(1); i <= 595; i++ {
		rows = append(rows, row{id: i, token: iosToken(i), platform: "ios"})
	}
	insertDevices(t, e.db, "app", rows[:95])
	e.cfg.BatchesPerTransaction = 3
	c := segmentCampaign("replayed", 10)
	c.Schedule.SendAt = time.Now().Add(-time.Hour) // due now; no TTL, no expires_at
	e.publishCampaign(c)
	r := e.start(nil)
	e.waitDone(1)
	rowOf := func(id string) string {
		t.Helper()
		var status string
		var devices, batches int64
		var first, last, started, finished time.Time
		if err := e.db.QueryRow(`SELECT status, planned_devices, planned_batches, first_send_at, last_send_at, started_at, finished_at
			FROM campaigns WHERE id = ? AND version = 1`, id).Scan(&status, &devices, &batches, &first, &last, &started, &finished); err != nil {
			t.Fatalf("campaign %s: %v", id, err)
		}
		return fmt.Sprintf("%s %d devices %d batches send %s..%s started %s finished %s", status, devices, batches,
			first.Format(time.RFC3339Nano), last.Format(time.RFC3339Nano), started.Format(time.RFC3339Nano), finished.Format(time.RFC3339Nano))
	}
	before := rowOf("replayed")
	if !strings.HasPrefix(before, "planned 95 devices 10 batches") {
		t.Fatalf("first plan recorded %s", before)
	}
	insertDevices(t, e.db, "app", rows[95:])
	e.publishCampaign(c)
	e.waitDone(2)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if got := readyRecords(e.output(), "replayed"); len(got) != 10 {
		t.Errorf("after the replay: %d batch ids, want the 10 of the plan", len(got))
	} else {
		for id, n := range got {
			if n != 1 {
				t.Errorf("batch %s committed %d times", id, n)
			}
		}
	}
	if after := rowOf("replayed"); after != before {
		t.Errorf("the replay rewrote the row: %s, was %s", after, before)
	}

	d := segmentCampaign("died", 10)
	d.Schedule.SendAt = time.Now().Add(-time.Hour)
	e.publishCampaign(d)
	e.publishCampaign(d)
	killed := e.start(func(ev hookEvent) error {
		if ev.campaign == "died" && ev.final {
			return errCrash
		}
		return nil
	})
	killed.waitCrash(t)
	restarted := e.start(nil)
	e.waitDone(4)
	if err := restarted.stop(t); err != nil {
		t.Fatal(err)
	}
	o := e.output()
	if len(o.dupBatches) > 0 {
		t.Fatalf("committed duplicates: %v", o.dupBatches)
	}
	if n := len(o.batchesOf("died")); n != 60 {
		t.Errorf("%d batches, want 60", n)
	}
	equalIDs(t, "died", o.devicesOf("died"), wantIDs(1, 595))
	if got := rowOf("died"); !strings.HasPrefix(got, "planned 595 devices 60 batches") {
		t.Errorf("recorded %s", got)
	}
	if n := counterValue(t, restarted.p.m.replays.WithLabelValues(replayFinished)); n != 1 {
		t.Errorf("skipped replays %v, want 1", n)
	}
}
