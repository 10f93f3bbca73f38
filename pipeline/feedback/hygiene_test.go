package feedback

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pushlane/pushlane/schemas"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func result(id, app, token, outcome, reason string, at time.Time) *schemas.Result {
	return &schemas.Result{SchemaVersion: 1, ID: id, CampaignID: "c1", CampaignVersion: 1, BatchID: "b1", App: app,
		Token: token, Platform: "ios", Provider: "apns", Outcome: outcome, Reason: reason, Attempt: 1, At: at}
}

func TestCollectDeathsUseThe410TimestampOnlyForUnregistered(t *testing.T) {
	unreg := result("r1", "a", "t1", schemas.OutcomeTokenDead, "Unregistered", t0)
	unreg.ProviderTimestamp = t0.Add(-48 * time.Hour)
	expired := result("r2", "a", "t2", schemas.OutcomeTokenDead, "ExpiredToken", t0)
	expired.ProviderTimestamp = t0.Add(-48 * time.Hour) // ignored: not an Unregistered
	fcm := result("r3", "a", "t3", schemas.OutcomeTokenDead, "UNREGISTERED", t0.Add(time.Minute))
	noReason := result("r4", "a", "t4", schemas.OutcomeTokenDead, "", t0)
	delivered := result("r5", "a", "t5", schemas.OutcomeDelivered, "", t0)

	c := Collect([]*schemas.Result{unreg, expired, fcm, noReason, delivered}, nil)
	want := []Death{
		{App: "a", Token: "t1", At: t0.Add(-48 * time.Hour), Reason: "Unregistered"},
		{App: "a", Token: "t2", At: t0, Reason: "ExpiredToken"},
		{App: "a", Token: "t3", At: t0.Add(time.Minute), Reason: "UNREGISTERED"},
		{App: "a", Token: "t4", At: t0, Reason: "token_dead"},
	}
	if len(c.Deaths) != len(want) {
		t.Fatalf("deaths = %+v, want %+v", c.Deaths, want)
	}
	for i := range want {
		if c.Deaths[i] != want[i] {
			t.Errorf("death %d = %+v, want %+v", i, c.Deaths[i], want[i])
		}
	}
	if len(c.Strikes) != 0 || len(c.Registrations) != 0 || len(c.Unregisters) != 0 {
		t.Errorf("unexpected changes: %+v", c)
	}
}

func TestCollectKeepsOneDeathPerDeviceTheLatest(t *testing.T) {
	a := result("r1", "a", "t1", schemas.OutcomeTokenDead, "ExpiredToken", t0)
	b := result("r2", "a", "t1", schemas.OutcomeTokenDead, "ExpiredToken", t0.Add(time.Hour))
	other := result("r3", "b", "t1", schemas.OutcomeTokenDead, "UNREGISTERED", t0) // same token, other app
	c := Collect([]*schemas.Result{a, b, a, other}, nil)
	if len(c.Deaths) != 2 {
		t.Fatalf("deaths = %+v, want 2", c.Deaths)
	}
	if c.Deaths[0].At != t0.Add(time.Hour) || c.Deaths[1].App != "b" {
		t.Errorf("deaths = %+v", c.Deaths)
	}
}

func TestCollectStrikesAndRegistrations(t *testing.T) {
	s1 := result("r1", "a", "t1", schemas.OutcomeTokenSuspect, "BadDeviceToken", t0)
	s2 := result("r2", "a", "t1", schemas.OutcomeTokenSuspect, "DeviceTokenNotForTopic", t0.Add(time.Second))
	reg := &schemas.DeviceRegistration{App: "a", Token: "t9", Platform: "ios", RegisteredAt: t0}
	unreg := &schemas.DeviceRegistration{App: "a", Token: "t8", Platform: "ios", RegisteredAt: t0.Add(time.Hour), Unregister: true}
	c := Collect([]*schemas.Result{s1, s2}, []*schemas.DeviceRegistration{reg, unreg})
	if len(c.Strikes) != 2 || c.Strikes[0].ResultID != "r1" || c.Strikes[1].Reason != "DeviceTokenNotForTopic" {
		t.Errorf("strikes = %+v", c.Strikes)
	}
	if len(c.Registrations) != 1 || c.Registrations[0].Token != "t9" {
		t.Errorf("registrations = %+v", c.Registrations)
	}
	if len(c.Unregisters) != 1 || c.Unregisters[0] != (Death{App: "a", Token: "t8", At: t0.Add(time.Hour), Reason: ReasonUnregisteredByApp}) {
		t.Errorf("unregisters = %+v", c.Unregisters)
	}
	if g := groupTokensByApp(c.Strikes, Strike.appToken); len(g) != 1 || len(g[0].tokens) != 1 {
		t.Errorf("grouped strikes = %+v, want one app with one token", g)
	}
}

func TestDeactivateSQLIsOneConditionalStatement(t *testing.T) {
	ds := []Death{{App: "a", Token: "t1", At: t0, Reason: "Unregistered"}, {App: "b", Token: "t2", At: t0, Reason: "UNREGISTERED"}}
	q, args := DeactivateSQL(ds, false)
	want := "UPDATE devices d JOIN (SELECT ? AS app, ? AS token, ? AS ts, ? AS reason UNION ALL SELECT ?, ?, ?, ?) x " +
		"ON d.app = x.app AND d.token = x.token SET d.active = 0, d.deactivated_at = x.ts, d.deactivation_reason = x.reason " +
		"WHERE d.active = 1 AND d.registered_at < x.ts"
	if q != want {
		t.Errorf("query =\n%s\nwant\n%s", q, want)
	}
	if len(args) != 8 || args[4] != "b" || args[6] != t0 || args[7] != "UNREGISTERED" {
		t.Errorf("args = %v", args)
	}
	q, _ = DeactivateSQL(ds[:1], true)
	if !strings.HasSuffix(q, "d.registered_at <= x.ts") {
		t.Errorf("inclusive query = %s", q)
	}
}

func TestSuspectAndStrikeSQL(t *testing.T) {
	q, args := SuspectDeactivateSQL("a", []string{"t1", "t2", "t3"}, 3)
	if !strings.Contains(q, "d.token IN (?, ?, ?)") || !strings.Contains(q, "s.at > d.registered_at) >= ?") {
		t.Errorf("query = %s", q)
	}
	if len(args) != 5 || args[0] != "a" || args[4] != 3 {
		t.Errorf("args = %v", args)
	}
	q, args = StrikesSQL([]Strike{{App: "a", Token: "t", ResultID: "r", Reason: "BadDeviceToken", At: t0}, {App: "a", Token: "t", ResultID: "r2", Reason: "x", At: t0}})
	if !strings.HasPrefix(q, "INSERT INTO device_strikes (app, token, result_id, reason, at) VALUES (?, ?, ?, ?, ?), (?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE") || len(args) != 10 {
		t.Errorf("query = %s args = %v", q, args)
	}
}

func TestRegisterSQLArgs(t *testing.T) {
	q, args := RegisterSQL([]schemas.DeviceRegistration{
		{App: "a", Token: "t", Platform: "android", UserID: "u", RegisteredAt: t0.In(time.FixedZone("x", 3600))},
		{App: "a", Token: "t2", Platform: "ios", RegisteredAt: t0},
	})
	if strings.Count(q, "(?, ?, ?, ?, ?, ?, ?, 1)") != 2 || !strings.HasSuffix(q, "registered_at = GREATEST(registered_at, VALUES(registered_at))") {
		t.Errorf("query = %s", q)
	}
	if len(args) != 14 || args[3] != "u" || args[4] != nil || args[6] != t0 || args[10] != nil {
		t.Errorf("args = %#v", args)
	}
	if got := args[6].(time.Time).Location(); got != time.UTC {
		t.Errorf("registered_at location = %v, want UTC", got)
	}
}

// The newest registration's profile is taken as it is given: a field it
// leaves out is NULL and replaces the stored one, which COALESCE kept, so a
// device registered again without a user kept the previous user. Only the
// registered_at guard keeps an older registration from writing.
func TestRegisterSQLTakesTheNewestProfileAsGiven(t *testing.T) {
	q, args := RegisterSQL([]schemas.DeviceRegistration{{App: "a", Token: "t", Platform: "ios", RegisteredAt: t0}})
	if args[3] != nil || args[4] != nil || args[5] != nil {
		t.Errorf("user_id, locale, timezone of a registration without them: %#v, want NULLs", args[3:6])
	}
	_, update, ok := strings.Cut(q, " ON DUPLICATE KEY UPDATE ")
	if !ok {
		t.Fatalf("no ON DUPLICATE KEY UPDATE in %s", q)
	}
	// The assignments, split at the commas outside parentheses.
	set := map[string]string{}
	depth, start := 0, 0
	for i := 0; i <= len(update); i++ {
		if i < len(update) {
			switch update[i] {
			case '(':
				depth++
			case ')':
				depth--
			}
			if update[i] != ',' || depth > 0 {
				continue
			}
		}
		col, expr, ok := strings.Cut(strings.TrimSpace(update[start:i]), " = ")
		if !ok {
			t.Fatalf("assignment %q", update[start:i])
		}
		set[col] = expr
		start = i + 1
	}
	for _, col := range []string{"platform", "user_id", "locale", "timezone"} {
		if want := "IF(VALUES(registered_at) >= registered_at, VALUES(" + col + "), " + col + ")"; set[col] != want {
			t.Errorf("%s = %s, want %s", col, set[col], want)
		}
	}
	if len(set) != 5 || set["registered_at"] != "GREATEST(registered_at, VALUES(registered_at))" {
		t.Errorf("assignments %v", set)
	}
}

// The store upserts each device once, with the registration that applying
// them in order would leave.
func TestNewestPerDevice(t *testing.T) {
	reg := func(app, token string, at time.Time, user string) schemas.DeviceRegistration {
		return schemas.DeviceRegistration{App: app, Token: token, Platform: "ios", UserID: user, RegisteredAt: at}
	}
	got := newestPerDevice([]schemas.DeviceRegistration{
		reg("a", "t1", t0.Add(time.Hour), "new"), reg("a", "t2", t0, "only"), reg("a", "t1", t0, "old"),
		reg("b", "t1", t0, "other app"), reg("a", "t3", t0, "first"), reg("a", "t3", t0.In(time.FixedZone("x", 3600)), "second, same time"),
	})
	var users []string
	for _, g := range got {
		users = append(users, g.App+"/"+g.Token+"="+g.UserID)
	}
	if want := "[a/t1=new a/t2=only b/t1=other app a/t3=second, same time]"; fmt.Sprint(users) != want {
		t.Errorf("newestPerDevice = %v, want %s", users, want)
	}
}

func TestCheckRegistration(t *testing.T) {
	ok := schemas.DeviceRegistration{App: "a", Token: "t", Platform: "ios", RegisteredAt: t0}
	now := t0.Add(time.Minute)
	if err := CheckRegistration(&ok, now); err != nil {
		t.Fatalf("valid registration: %v", err)
	}
	// Up to MaxRegistrationAhead ahead of the clock is a skewed clock, not
	// bad data.
	ahead := ok
	ahead.RegisteredAt = now.Add(MaxRegistrationAhead)
	if err := CheckRegistration(&ahead, now); err != nil {
		t.Fatalf("registration %s ahead: %v", MaxRegistrationAhead, err)
	}
	for name, tc := range map[string]struct {
		mut  func(*schemas.DeviceRegistration)
		want string
	}{
		"long token":    {func(r *schemas.DeviceRegistration) { r.Token = strings.Repeat("x", 513) }, "token: must be ASCII of at most 512 bytes"},
		"unicode token": {func(r *schemas.DeviceRegistration) { r.Token = "tøken" }, "token: must be ASCII"},
		"long app":      {func(r *schemas.DeviceRegistration) { r.App = strings.Repeat("a", 65) }, "app: must be ASCII of at most 64 bytes"},
		"ancient":       {func(r *schemas.DeviceRegistration) { r.RegisteredAt = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC) }, "registered_at:"},
		// Year 9999 where it was written, 10000 in UTC: the driver cannot
		// write it, so it would stall every flush.
		"year 10000 in UTC": {func(r *schemas.DeviceRegistration) {
			r.RegisteredAt = time.Date(9999, 12, 31, 23, 30, 0, 0, time.FixedZone("", -3600))
		}, "registered_at: 9999-12-31T23:30:00-01:00 is out of range"},
		"far future": {func(r *schemas.DeviceRegistration) { r.RegisteredAt = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC) },
			"registered_at: 2100-01-01T00:00:00Z is more than 24h0m0s ahead of this instance's clock"},
		"a second too far ahead": {func(r *schemas.DeviceRegistration) { r.RegisteredAt = now.Add(MaxRegistrationAhead + time.Second) },
			"is more than 24h0m0s ahead"},
	} {
		r := ok
		tc.mut(&r)
		err := CheckRegistration(&r, now)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
}

// A reason cut to the column's 64 bytes stays valid UTF-8: half a
// character is refused by a strict MariaDB, which would stall the flush.
func TestCollectCutsReasonsAtACharacter(t *testing.T) {
	reason := strings.Repeat("x", 63) + "é" + "tail" // é is 2 bytes: bytes 63 and 64
	res := []*schemas.Result{
		{ID: "r1", App: "a", Token: "t1", Outcome: schemas.OutcomeTokenSuspect, Reason: reason, At: t0},
		{ID: "r2", App: "a", Token: "t2", Outcome: schemas.OutcomeTokenDead, Reason: reason, At: t0},
	}
	c := Collect(res, nil)
	if len(c.Strikes) != 1 || len(c.Deaths) != 1 {
		t.Fatalf("strikes %d, deaths %d; want 1 and 1", len(c.Strikes), len(c.Deaths))
	}
	want := strings.Repeat("x", 63)
	for _, got := range []string{c.Strikes[0].Reason, c.Deaths[0].Reason} {
		if got != want || !utf8.ValidString(got) {
			t.Errorf("reason = %q (valid UTF-8: %v), want %q", got, utf8.ValidString(got), want)
		}
	}
}

// DeactivateSQL joins one row per device: with several, a multi-table
// UPDATE uses whichever the server meets first.
func TestLatestPerDeviceKeepsTheLatestOfEachDevice(t *testing.T) {
	ds := []Death{
		{App: "a", Token: "t", At: t0.Add(time.Hour), Reason: ReasonUnregisteredByApp},
		{App: "a", Token: "t", At: t0.Add(3 * time.Hour), Reason: "B"},
		{App: "b", Token: "t", At: t0, Reason: "x"},
		{App: "a", Token: "t", At: t0.Add(3 * time.Hour), Reason: "C"}, // a tie goes to the greater reason
		{App: "a", Token: "t", At: t0.Add(2 * time.Hour), Reason: "D"},
		{App: "a", Token: strings.Repeat("x", 513), At: t0, Reason: "x"}, // not storable
	}
	got := latestPerDevice(ds)
	want := []Death{{App: "a", Token: "t", At: t0.Add(3 * time.Hour), Reason: "C"}, {App: "b", Token: "t", At: t0, Reason: "x"}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("latestPerDevice = %+v, want %+v", got, want)
	}
}

// Servers assign a multi-table UPDATE's columns in no promised order, so
// no assignment may read a column its statement assigns.
func TestReconcileSQLReadsNoColumnItAssigns(t *testing.T) {
	for _, n := range []int{0, 3} {
		qs, args := ReconcileSQL("a", []string{"t1", "t2"}, n)
		if len(args) != 3 || args[0] != "a" || args[2] != "t2" {
			t.Errorf("args = %v", args)
		}
		for i, assigned := range [][]string{{"d.deactivated_at", "d.active"}, {"d.deactivation_reason"}} {
			set := qs[i][strings.Index(qs[i], " SET ")+len(" SET "):]
			set = set[:strings.Index(set, " WHERE d.app = ? ")]
			for _, col := range assigned {
				if strings.Count(set, col) != 1 || !strings.HasPrefix(set[strings.Index(set, col)+len(col):], " = ") {
					t.Errorf("n=%d statement %d reads %s, which it assigns:\n%s", n, i+1, col, qs[i])
				}
			}
		}
		if strings.Contains(qs[0], "COUNT(*)") != (n > 0) {
			t.Errorf("n=%d: the strike count must be in the first statement exactly when n > 0:\n%s", n, qs[0])
		}
	}
}

// The package doc gives app backends the statements to run themselves; they
// must be the ones the store runs.
func TestDocSQLIsWhatTheStoreRuns(t *testing.T) {
	raw, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	var cur []string
	for _, line := range append(strings.Split(string(raw), "\n"), "") {
		if code, ok := strings.CutPrefix(line, "//\t"); ok {
			cur = append(cur, code)
			continue
		}
		if cur != nil {
			blocks = append(blocks, strings.Join(cur, " "))
			cur = nil
		}
	}
	norm := func(s string) string {
		s = strings.Join(strings.Fields(s), " ")
		return strings.NewReplacer("( ", "(", " )", ")").Replace(s)
	}
	var got []string
	for _, b := range blocks {
		for _, stmt := range strings.Split(b, ";") {
			if stmt = norm(stmt); stmt != "" {
				got = append(got, stmt)
			}
		}
	}
	reg, _ := RegisterSQL([]schemas.DeviceRegistration{{}})
	unreg, _ := EvidenceSQL([]Death{{}}, true)
	rec, _ := ReconcileSQL("a", []string{"t"}, 3)
	// The doc writes the latest evidence once, and L in its place.
	l := latestEvidence(3)
	want := []string{reg, unreg, l, strings.ReplaceAll(rec[0], l, "L"), strings.ReplaceAll(rec[1], l, "L")}
	if len(got) != len(want) {
		t.Fatalf("doc.go has %d statements, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("doc statement %d =\n%s\nthe store runs\n%s", i+1, got[i], want[i])
		}
	}
}
