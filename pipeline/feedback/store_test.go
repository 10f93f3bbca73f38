package feedback

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/pushlane/pushlane/internal/migrate"
	"github.com/pushlane/pushlane/schemas"
)

// storeCase is one hygiene scenario run against every MySQL the project
// supports (go-mysql-server here, MariaDB in the integration tests).
type storeCase struct {
	name string
	run  func(t *testing.T, db *sql.DB)
}

// seedDevice inserts an active device registered at at.
func seedDevice(t *testing.T, db *sql.DB, app, token string, at time.Time) {
	t.Helper()
	if _, err := db.Exec(`INSERT INTO devices (app, platform, token, registered_at, active) VALUES (?, 'ios', ?, ?, 1)`, app, token, at); err != nil {
		t.Fatalf("seed %s/%s: %v", app, token, err)
	}
}

type deviceState struct {
	Active        bool
	RegisteredAt  time.Time
	DeactivatedAt time.Time
	Reason        string
	Platform      string
	UserID        string
}

func (d deviceState) String() string {
	return fmt.Sprintf("active=%v registered=%s deactivated=%s reason=%q platform=%s user=%q", d.Active,
		d.RegisteredAt.Format(time.RFC3339Nano), d.DeactivatedAt.Format(time.RFC3339Nano), d.Reason, d.Platform, d.UserID)
}

func device(t *testing.T, db *sql.DB, app, token string) deviceState {
	t.Helper()
	var d deviceState
	var deact sql.NullTime
	var reason, user sql.NullString
	err := db.QueryRow(`SELECT active, registered_at, deactivated_at, deactivation_reason, platform, user_id FROM devices WHERE app = ? AND token = ?`, app, token).
		Scan(&d.Active, &d.RegisteredAt, &deact, &reason, &d.Platform, &user)
	if err != nil {
		t.Fatalf("device %s/%s: %v", app, token, err)
	}
	d.RegisteredAt = d.RegisteredAt.UTC()
	d.DeactivatedAt, d.Reason, d.UserID = deact.Time.UTC(), reason.String, user.String
	return d
}

// snapshot is the whole devices and strikes state, for replay comparisons.
func snapshot(t *testing.T, db *sql.DB) string {
	t.Helper()
	var b strings.Builder
	rows, err := db.Query(`SELECT app, token FROM devices ORDER BY app, token`)
	if err != nil {
		t.Fatal(err)
	}
	var keys [][2]string
	for rows.Next() {
		var k [2]string
		if err := rows.Scan(&k[0], &k[1]); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	rows.Close()
	for _, k := range keys {
		fmt.Fprintf(&b, "%s/%s %s\n", k[0], k[1], device(t, db, k[0], k[1]))
	}
	var strikes int
	if err := db.QueryRow(`SELECT COUNT(*) FROM device_strikes`).Scan(&strikes); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "strikes %d\n", strikes)
	return b.String()
}

func apply(t *testing.T, s Store, c Changes) Applied {
	t.Helper()
	a, err := s.Apply(context.Background(), c)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return a
}

func dead(id, token, reason string, at, providerTS time.Time) *schemas.Result {
	r := result(id, "app", token, schemas.OutcomeTokenDead, reason, at)
	r.ProviderTimestamp = providerTS
	return r
}

// permutations returns every order of 0..n-1.
func permutations(n int) [][]int {
	if n == 0 {
		return [][]int{{}}
	}
	var out [][]int
	for _, p := range permutations(n - 1) {
		for i := 0; i <= len(p); i++ {
			q := append(append(append([]int{}, p[:i]...), n-1), p[i:]...)
			out = append(out, q)
		}
	}
	return out
}

// profile is a device's user_id, locale and timezone, "NULL" for NULL.
func profile(t *testing.T, db *sql.DB, app, token string) string {
	t.Helper()
	var user, locale, tz sql.NullString
	if err := db.QueryRow(`SELECT user_id, locale, timezone FROM devices WHERE app = ? AND token = ?`, app, token).Scan(&user, &locale, &tz); err != nil {
		t.Fatalf("profile of %s/%s: %v", app, token, err)
	}
	var out []string
	for _, v := range []sql.NullString{user, locale, tz} {
		if !v.Valid {
			out = append(out, "NULL")
			continue
		}
		out = append(out, fmt.Sprintf("%q", v.String))
	}
	return strings.Join(out, " ")
}

func storeCases() []storeCase {
	return []storeCase{
		{"two registrations of a device in one flush leave one device, with the newer's profile, in either order", func(t *testing.T, db *sql.DB) {
			s := NewMySQLStore(db, 3)
			reg := func(token string, at time.Time, user string) *schemas.DeviceRegistration {
				return &schemas.DeviceRegistration{App: "app", Token: token, Platform: "ios", UserID: user, Locale: user + "-locale", RegisteredAt: at}
			}
			for _, token := range []string{"newer-first", "newer-second"} {
				apply(t, s, Collect(nil, []*schemas.DeviceRegistration{reg(token, t0, "u0")}))
			}
			apply(t, s, Collect(nil, []*schemas.DeviceRegistration{
				reg("newer-first", t0.Add(2*time.Hour), "new"), reg("newer-first", t0.Add(time.Hour), "old"),
				reg("newer-second", t0.Add(time.Hour), "old"), reg("newer-second", t0.Add(2*time.Hour), "new"),
				// A tie goes to the later, as applied one by one.
				reg("tie", t0, "first"), reg("tie", t0, "second"),
			}))
			for _, token := range []string{"newer-first", "newer-second", "tie"} {
				var n int
				if err := db.QueryRow(`SELECT COUNT(*) FROM devices WHERE app = 'app' AND token = ?`, token).Scan(&n); err != nil {
					t.Fatal(err)
				}
				want := `"new" "new-locale" NULL`
				if token == "tie" {
					want = `"second" "second-locale" NULL`
				}
				if got := profile(t, db, "app", token); n != 1 || got != want {
					t.Errorf("%s: %d devices, profile %s; want one, %s", token, n, got, want)
				}
			}
			// And the device still follows its newer registrations.
			apply(t, s, Collect(nil, []*schemas.DeviceRegistration{reg("newer-second", t0.Add(3*time.Hour), "")}))
			if got := profile(t, db, "app", "newer-second"); got != `NULL "-locale" NULL` {
				t.Errorf("after a newer registration: profile %s", got)
			}
		}},
		{"the newest registration's profile replaces the stored one, absent fields too; an older one changes nothing", func(t *testing.T, db *sql.DB) {
			s := NewMySQLStore(db, 3)
			reg := func(at time.Time, user, locale, tz string) *schemas.DeviceRegistration {
				return &schemas.DeviceRegistration{App: "app", Token: "shared", Platform: "ios", UserID: user, Locale: locale, Timezone: tz, RegisteredAt: at}
			}
			apply(t, s, Collect(nil, []*schemas.DeviceRegistration{reg(t0, "user-a", "de-DE", "Europe/Berlin")}))
			if got := profile(t, db, "app", "shared"); got != `"user-a" "de-DE" "Europe/Berlin"` {
				t.Fatalf("registered profile %s", got)
			}
			// User A logs out: the backend unregisters the token; the
			// same install registers again, anonymously.
			logout := reg(t0.Add(time.Hour), "", "", "")
			logout.Unregister = true
			apply(t, s, Collect(nil, []*schemas.DeviceRegistration{logout}))
			apply(t, s, Collect(nil, []*schemas.DeviceRegistration{reg(t0.Add(2*time.Hour), "", "", "")}))
			if d, got := device(t, db, "app", "shared"), profile(t, db, "app", "shared"); !d.Active || got != "NULL NULL NULL" {
				t.Fatalf("after the anonymous registration: %s, profile %s; want active with no user, locale or timezone (A's campaigns would reach it)", d, got)
			}
			// A's registration from before the logout, arriving late,
			// changes nothing.
			apply(t, s, Collect(nil, []*schemas.DeviceRegistration{reg(t0.Add(90*time.Minute), "user-a", "de-DE", "Europe/Berlin")}))
			if got := profile(t, db, "app", "shared"); got != "NULL NULL NULL" {
				t.Errorf("an older registration set the profile to %s", got)
			}
			// In one statement, the newer wins whatever the order.
			apply(t, s, Collect(nil, []*schemas.DeviceRegistration{reg(t0.Add(4*time.Hour), "user-b", "fr-FR", ""), reg(t0.Add(3*time.Hour), "user-a", "de-DE", "Europe/Berlin")}))
			if got := profile(t, db, "app", "shared"); got != `"user-b" "fr-FR" NULL` {
				t.Errorf("after a newer and an older registration in one flush: profile %s, want the newer's", got)
			}
			// A registration at the same time (a replay) is the same one.
			apply(t, s, Collect(nil, []*schemas.DeviceRegistration{reg(t0.Add(4*time.Hour), "user-b", "fr-FR", "")}))
			if got := profile(t, db, "app", "shared"); got != `"user-b" "fr-FR" NULL` {
				t.Errorf("after a replay: profile %s", got)
			}
			apply(t, s, Collect(nil, []*schemas.DeviceRegistration{reg(t0.Add(5*time.Hour), "", "pt-BR", "America/Sao_Paulo")}))
			if d, got := device(t, db, "app", "shared"), profile(t, db, "app", "shared"); got != `NULL "pt-BR" "America/Sao_Paulo"` || !d.RegisteredAt.Equal(t0.Add(5*time.Hour)) {
				t.Errorf("after a newer registration without a user: %s, profile %s", d, got)
			}
		}},
		{"a device deactivated outside feedback stays so until a newer registration", func(t *testing.T, db *sql.DB) {
			s := NewMySQLStore(db, 3)
			seedDevice(t, db, "app", "x", t0)
			off := t0.Add(2 * time.Hour)
			if _, err := db.Exec("UPDATE devices SET active = 0, deactivated_at = ?, deactivation_reason = 'logout' WHERE app = 'app' AND token = 'x'", off); err != nil {
				t.Fatal(err)
			}
			// A strike (one of three) and a registration older than the
			// deactivation: no evidence explains it, none undoes it.
			apply(t, s, Collect([]*schemas.Result{result("x1", "app", "x", schemas.OutcomeTokenSuspect, "BadDeviceToken", t0.Add(3*time.Hour))},
				[]*schemas.DeviceRegistration{{SchemaVersion: 1, App: "app", Token: "x", Platform: "ios", RegisteredAt: t0.Add(time.Hour)}}))
			if d := device(t, db, "app", "x"); d.Active || d.Reason != "logout" || !d.DeactivatedAt.Equal(off) {
				t.Fatalf("device = %s, want inactive by logout at %s", d, off)
			}
			apply(t, s, Collect(nil, []*schemas.DeviceRegistration{{SchemaVersion: 1, App: "app", Token: "x", Platform: "ios", RegisteredAt: t0.Add(4 * time.Hour)}}))
			if d := device(t, db, "app", "x"); !d.Active || d.Reason != "" {
				t.Errorf("after a registration newer than the deactivation: device = %s, want active", d)
			}
		}},
		{"a deactivation that left no evidence is not undone by older events", func(t *testing.T, db *sql.DB) {
			s := NewMySQLStore(db, 3)
			// A backend unregistering with its own UPDATE (as the doc
			// said before device_deaths), and one that only cleared
			// active: neither left evidence.
			seedDevice(t, db, "app", "u", t0)
			seedDevice(t, db, "app", "z", t0)
			off := t0.Add(time.Hour)
			if _, err := db.Exec("UPDATE devices SET active = 0, deactivated_at = ?, deactivation_reason = 'unregistered_by_app' WHERE app = 'app' AND token = 'u'", off); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec("UPDATE devices SET active = 0 WHERE app = 'app' AND token = 'z'"); err != nil {
				t.Fatal(err)
			}
			apply(t, s, Collect([]*schemas.Result{
				result("z1", "app", "z", schemas.OutcomeTokenSuspect, "BadDeviceToken", t0.Add(2*time.Hour)),
				dead("u1", "u", "Unregistered", t0.Add(2*time.Hour), t0.Add(-time.Hour)), // Apple's timestamp before the registration
			}, []*schemas.DeviceRegistration{{SchemaVersion: 1, App: "app", Token: "u", Platform: "ios", RegisteredAt: t0}})) // a replayed registration
			if d := device(t, db, "app", "u"); d.Active || d.Reason != ReasonUnregisteredByApp || !d.DeactivatedAt.Equal(off) {
				t.Errorf("unregistered by the backend: device = %s, want inactive, unregistered_by_app at %s", d, off)
			}
			if d := device(t, db, "app", "z"); d.Active {
				t.Errorf("set inactive by the backend: device = %s, want inactive", d)
			}
		}},
		{"outside deactivations with a reason but no time, or a time but no reason", func(t *testing.T, db *sql.DB) {
			s := NewMySQLStore(db, 3)
			seedDevice(t, db, "app", "l", t0)
			seedDevice(t, db, "app", "q", t0)
			if _, err := db.Exec("UPDATE devices SET active = 0, deactivation_reason = 'logout' WHERE app = 'app' AND token = 'l'"); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec("UPDATE devices SET active = 0, deactivated_at = ? WHERE app = 'app' AND token = 'q'", t0.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			apply(t, s, Collect([]*schemas.Result{result("l1", "app", "l", schemas.OutcomeTokenSuspect, "BadDeviceToken", t0.Add(2*time.Hour))},
				[]*schemas.DeviceRegistration{{SchemaVersion: 1, App: "app", Token: "q", Platform: "ios", RegisteredAt: t0.Add(2 * time.Hour)}}))
			if d := device(t, db, "app", "l"); d.Active || d.Reason != "logout" {
				t.Errorf("inactive for logout, then one strike: device = %s, want inactive, logout", d)
			}
			if d := device(t, db, "app", "q"); !d.Active || d.Reason != "" || !d.DeactivatedAt.IsZero() {
				t.Errorf("inactive at +1h, then registered at +2h: device = %s, want active", d)
			}
		}},
		{"a reconcile cut between its statements is finished when the flush is applied again", func(t *testing.T, db *sql.DB) {
			s := NewMySQLStore(db, 3)
			seedDevice(t, db, "app", "k", t0)
			apply(t, s, Collect([]*schemas.Result{dead("k0", "k", "ExpiredToken", t0.Add(time.Hour), time.Time{})}, nil))
			var strikes []*schemas.Result
			for i, h := range []time.Duration{2 * time.Hour, 3 * time.Hour, 4 * time.Hour} {
				strikes = append(strikes, result(fmt.Sprint("k", i+1), "app", "k", schemas.OutcomeTokenSuspect, "BadDeviceToken", t0.Add(h)))
			}
			// The flush's strikes and the reconcile's first statement run;
			// the process dies before the second. Its replay holds a
			// registration read after the restart.
			c := Collect(strikes, nil)
			q, args := StrikesSQL(c.Strikes)
			first, rargs := ReconcileSQL("app", []string{"k"}, 3)
			for _, st := range []struct {
				q    string
				args []any
			}{{q, args}, {first[0], rargs}} {
				if _, err := db.Exec(st.q, st.args...); err != nil {
					t.Fatal(err)
				}
			}
			apply(t, s, Collect(strikes, []*schemas.DeviceRegistration{{SchemaVersion: 1, App: "app", Token: "k", Platform: "ios", RegisteredAt: t0.Add(3*time.Hour + 30*time.Minute)}}))
			// One strike after the registration, the death before it.
			if d := device(t, db, "app", "k"); !d.Active || d.Reason != "" || !d.DeactivatedAt.IsZero() {
				t.Errorf("device = %s, want active", d)
			}
		}},
		{"two deaths of different reasons end alike in either order", func(t *testing.T, db *sql.DB) {
			var states []deviceState
			for i, order := range [][2]int{{0, 1}, {1, 0}} {
				s := NewMySQLStore(db, 3)
				tok := fmt.Sprint("dd", i)
				seedDevice(t, db, "app", tok, t0)
				deaths := []*schemas.Result{
					dead(tok+"a", tok, "ExpiredToken", t0.Add(time.Hour), time.Time{}),
					dead(tok+"b", tok, "Unregistered", t0.Add(3*time.Hour), t0.Add(2*time.Hour)),
				}
				for _, k := range order {
					apply(t, s, Collect([]*schemas.Result{deaths[k]}, nil))
				}
				states = append(states, device(t, db, "app", tok))
			}
			if states[0].String() != states[1].String() || states[0].Active || states[0].Reason != "Unregistered" {
				t.Errorf("in order: %s; reversed: %s; want both inactive, Unregistered at +2h", states[0], states[1])
			}
		}},
		{"410 timestamp guard both ways", func(t *testing.T, db *sql.DB) {
			s := NewMySQLStore(db, 3)
			seedDevice(t, db, "app", "old", t0)                  // registered before Apple's timestamp
			seedDevice(t, db, "app", "new", t0.Add(2*time.Hour)) // re-registered after it
			ts := t0.Add(time.Hour)
			a := apply(t, s, Collect([]*schemas.Result{
				dead("r1", "old", "Unregistered", t0.Add(3*time.Hour), ts),
				dead("r2", "new", "Unregistered", t0.Add(3*time.Hour), ts),
			}, nil))
			if a.DeadDeactivated != 1 || a.Unknown != 0 {
				t.Errorf("applied = %+v, want 1 deactivated, 0 unknown", a)
			}
			if d := device(t, db, "app", "old"); d.Active || d.Reason != "Unregistered" || !d.DeactivatedAt.Equal(ts) {
				t.Errorf("old token = %s, want inactive, Unregistered at %s", d, ts)
			}
			if d := device(t, db, "app", "new"); !d.Active || d.Reason != "" {
				t.Errorf("re-registered token = %s, want active", d)
			}
		}},
		{"other dead reasons use the result time with the same guard", func(t *testing.T, db *sql.DB) {
			s := NewMySQLStore(db, 3)
			at := t0.Add(time.Hour)
			for i, reason := range []string{"ExpiredToken", "UNREGISTERED", "SENDER_ID_MISMATCH", "INVALID_ARGUMENT"} {
				seedDevice(t, db, "app", "d"+reason, t0)
				seedDevice(t, db, "app", "late"+reason, at.Add(time.Minute)) // registered after the result
				apply(t, s, Collect([]*schemas.Result{
					dead(fmt.Sprint("a", i), "d"+reason, reason, at, time.Time{}),
					dead(fmt.Sprint("b", i), "late"+reason, reason, at, time.Time{}),
				}, nil))
				if d := device(t, db, "app", "d"+reason); d.Active || d.Reason != reason || !d.DeactivatedAt.Equal(at) {
					t.Errorf("%s: device = %s, want inactive at %s", reason, d, at)
				}
				if d := device(t, db, "app", "late"+reason); !d.Active {
					t.Errorf("%s: device registered after the result = %s, want active", reason, d)
				}
			}
		}},
		{"suspect strikes deactivate at N, once per result, from the last registration", func(t *testing.T, db *sql.DB) {
			s := NewMySQLStore(db, 3)
			seedDevice(t, db, "app", "s", t0)
			strike := func(id string, at time.Time) *schemas.Result {
				return result(id, "app", "s", schemas.OutcomeTokenSuspect, "BadDeviceToken", at)
			}
			a := apply(t, s, Collect([]*schemas.Result{strike("s1", t0.Add(time.Minute)), strike("s2", t0.Add(2*time.Minute))}, nil))
			if a.NewStrikes != 2 {
				t.Errorf("new strikes = %d, want 2", a.NewStrikes)
			}
			// Replays of the same two results add nothing.
			a = apply(t, s, Collect([]*schemas.Result{strike("s1", t0.Add(time.Minute)), strike("s2", t0.Add(2*time.Minute))}, nil))
			if a.NewStrikes != 0 || a.SuspectDeactivated != 0 {
				t.Errorf("replayed strikes applied %+v, want nothing", a)
			}
			if d := device(t, db, "app", "s"); !d.Active {
				t.Fatalf("two strikes deactivated the device: %s", d)
			}
			third := t0.Add(3 * time.Minute)
			a = apply(t, s, Collect([]*schemas.Result{strike("s3", third)}, nil))
			if d := device(t, db, "app", "s"); d.Active || d.Reason != ReasonSuspectStrikes || !d.DeactivatedAt.Equal(third) || a.SuspectDeactivated != 1 {
				t.Fatalf("after 3 strikes: device = %s, applied %+v; want inactive by suspect_strikes at %s", d, a, third)
			}
			// The app re-registers: active again, and old strikes no longer count.
			apply(t, s, Collect(nil, []*schemas.DeviceRegistration{{App: "app", Token: "s", Platform: "ios", RegisteredAt: t0.Add(time.Hour)}}))
			apply(t, s, Collect([]*schemas.Result{strike("s4", t0.Add(2*time.Hour))}, nil))
			if d := device(t, db, "app", "s"); !d.Active {
				t.Errorf("one strike after re-registration deactivated the device: %s", d)
			}
		}},
		{"suspect strikes 0 records but never deactivates", func(t *testing.T, db *sql.DB) {
			s := NewMySQLStore(db, 0)
			seedDevice(t, db, "app", "q", t0)
			var rs []*schemas.Result
			for i := range 5 {
				rs = append(rs, result(fmt.Sprint("q", i), "app", "q", schemas.OutcomeTokenSuspect, "DeviceTokenNotForTopic", t0.Add(time.Duration(i+1)*time.Minute)))
			}
			if a := apply(t, s, Collect(rs, nil)); a.NewStrikes != 5 || a.SuspectDeactivated != 0 {
				t.Errorf("applied %+v, want 5 strikes, no deactivation", a)
			}
			if d := device(t, db, "app", "q"); !d.Active {
				t.Errorf("device = %s, want active", d)
			}
		}},
		{"registrations insert, refresh, reactivate only when newer than the evidence, unregister", func(t *testing.T, db *sql.DB) {
			s := NewMySQLStore(db, 3)
			reg := func(token string, at time.Time, user string) *schemas.DeviceRegistration {
				return &schemas.DeviceRegistration{App: "app", Token: token, Platform: "android", UserID: user, RegisteredAt: at}
			}
			apply(t, s, Collect(nil, []*schemas.DeviceRegistration{reg("n", t0, "u1")}))
			if d := device(t, db, "app", "n"); !d.Active || !d.RegisteredAt.Equal(t0) || d.Platform != "android" || d.UserID != "u1" {
				t.Fatalf("new registration = %s", d)
			}
			// An older registration arriving late keeps the later time and profile.
			apply(t, s, Collect(nil, []*schemas.DeviceRegistration{reg("n", t0.Add(-time.Hour), "u0")}))
			if d := device(t, db, "app", "n"); !d.RegisteredAt.Equal(t0) || d.UserID != "u1" {
				t.Errorf("older registration changed the device: %s", d)
			}
			// FCM says dead at t0+1h.
			apply(t, s, Collect([]*schemas.Result{dead("x1", "n", "UNREGISTERED", t0.Add(time.Hour), time.Time{})}, nil))
			// Replaying the original registration does not revive it.
			apply(t, s, Collect(nil, []*schemas.DeviceRegistration{reg("n", t0, "u1")}))
			if d := device(t, db, "app", "n"); d.Active {
				t.Fatalf("replayed old registration revived a dead token: %s", d)
			}
			// A registration newer than the evidence does.
			apply(t, s, Collect(nil, []*schemas.DeviceRegistration{reg("n", t0.Add(2*time.Hour), "u2")}))
			if d := device(t, db, "app", "n"); !d.Active || d.Reason != "" || !d.DeactivatedAt.IsZero() || d.UserID != "u2" || !d.RegisteredAt.Equal(t0.Add(2*time.Hour)) {
				t.Fatalf("newer registration = %s, want active, u2, cleared deactivation", d)
			}
			// The app unregisters: deactivated with its reason; an
			// unregister older than the registration is ignored.
			un := reg("n", t0.Add(time.Hour), "")
			un.Unregister = true
			if a := apply(t, s, Collect(nil, []*schemas.DeviceRegistration{un})); a.Unregistered != 0 {
				t.Errorf("stale unregister applied %+v", a)
			}
			un.RegisteredAt = t0.Add(3 * time.Hour)
			if a := apply(t, s, Collect(nil, []*schemas.DeviceRegistration{un})); a.Unregistered != 1 {
				t.Errorf("unregister applied %+v, want 1", a)
			}
			if d := device(t, db, "app", "n"); d.Active || d.Reason != ReasonUnregisteredByApp || !d.DeactivatedAt.Equal(t0.Add(3*time.Hour)) {
				t.Errorf("unregistered device = %s", d)
			}
		}},
		{"registrations and evidence end in the same state in either order", func(t *testing.T, db *sql.DB) {
			s := NewMySQLStore(db, 3)
			reg := func(token string, at time.Time) Changes {
				return Collect(nil, []*schemas.DeviceRegistration{{App: "app", Token: token, Platform: "ios", RegisteredAt: at}})
			}
			unreg := func(token string, at time.Time) Changes {
				return Collect(nil, []*schemas.DeviceRegistration{{App: "app", Token: token, Platform: "ios", RegisteredAt: at, Unregister: true}})
			}
			strike := func(token, id string, at time.Time) Changes {
				return Collect([]*schemas.Result{result(id, "app", token, schemas.OutcomeTokenSuspect, "BadDeviceToken", at)}, nil)
			}
			// Unregistered at 1h, dead by Apple at 3h, registered at 2h:
			// the 410 came after the registration, so the token is dead.
			deathSteps := func(token string) []Changes {
				return []Changes{
					unreg(token, t0.Add(time.Hour)),
					Collect([]*schemas.Result{dead("d-"+token, token, "Unregistered", t0.Add(4*time.Hour), t0.Add(3*time.Hour))}, nil),
				}
			}
			// Strikes at 1, 2 and 3 min, registered again at 2.5 min: one
			// strike is newer than the registration, so the device stays.
			strikeSteps := func(token string) []Changes {
				return []Changes{strike(token, token+"1", t0.Add(time.Minute)), strike(token, token+"2", t0.Add(2*time.Minute)), strike(token, token+"3", t0.Add(3*time.Minute))}
			}
			for _, c := range []struct {
				name   string
				steps  func(string) []Changes
				reg    time.Time
				active bool
			}{
				{"death", deathSteps, t0.Add(2 * time.Hour), false},
				{"strikes", strikeSteps, t0.Add(150 * time.Second), true},
			} {
				first, last := c.name+"-reg-first", c.name+"-reg-last"
				seedDevice(t, db, "app", first, t0)
				seedDevice(t, db, "app", last, t0)
				apply(t, s, reg(first, c.reg))
				for _, ch := range c.steps(first) {
					apply(t, s, ch)
				}
				for _, ch := range c.steps(last) {
					apply(t, s, ch)
				}
				apply(t, s, reg(last, c.reg))
				a, b := device(t, db, "app", first), device(t, db, "app", last)
				if a.Active != c.active || b.Active != c.active || !a.DeactivatedAt.Equal(b.DeactivatedAt) || a.Reason != b.Reason {
					t.Errorf("%s: registration first %s\nregistration last %s\nwant both active=%v, the same evidence", c.name, a, b, c.active)
				}
			}
		}},
		{"every order of a device's events ends in the same state", func(t *testing.T, db *sql.DB) {
			s := NewMySQLStore(db, 3)
			h := func(n float64) time.Time { return t0.Add(time.Duration(n * float64(time.Hour))) }
			reg := func(token string, at time.Time) Changes {
				return Collect(nil, []*schemas.DeviceRegistration{{App: "app", Token: token, Platform: "ios", RegisteredAt: at}})
			}
			unreg := func(token string, at ...time.Time) Changes {
				var gs []*schemas.DeviceRegistration
				for _, a := range at {
					gs = append(gs, &schemas.DeviceRegistration{App: "app", Token: token, Platform: "ios", RegisteredAt: a, Unregister: true})
				}
				return Collect(nil, gs)
			}
			strikes := func(token string, at ...time.Time) Changes {
				var rs []*schemas.Result
				for i, a := range at {
					rs = append(rs, result(fmt.Sprintf("%s-s%d", token, i), "app", token, schemas.OutcomeTokenSuspect, "BadDeviceToken", a))
				}
				return Collect(rs, nil)
			}
			apple410 := func(token string, appleTS time.Time) Changes {
				return Collect([]*schemas.Result{dead("d-"+token, token, "Unregistered", appleTS.Add(2*time.Hour), appleTS)}, nil)
			}
			for _, c := range []struct {
				name     string
				seeded   bool // the device exists (registered t0) before any event
				evidence func(token string) []Changes
				reg      time.Time
				// The state every order must end in.
				active bool
				reason string
				at     time.Time
			}{
				// A death newer than the registration kills whatever the
				// strikes say: strikes at 3h and 5h are two, not three, newer
				// than the 2h registration, but Apple's 4h 410 is newer too.
				{"410 under a strike deactivation", true, func(tok string) []Changes {
					return []Changes{strikes(tok, h(1), h(3), h(5)), apple410(tok, h(4))}
				}, h(2), false, "Unregistered", h(4)},
				// Strikes newer than the registration deactivate a device an
				// older unregister had deactivated first.
				{"strikes under an unregister", true, func(tok string) []Changes {
					return []Changes{unreg(tok, h(1)), strikes(tok, h(3), h(4), h(5))}
				}, h(2), false, ReasonSuspectStrikes, h(5)},
				// Several unregisters of one device in one flush: the latest
				// is the one a registration must beat.
				{"three unregisters in one flush", true, func(tok string) []Changes {
					return []Changes{unreg(tok, h(1), h(2), h(3))}
				}, h(2.5), false, ReasonUnregisteredByApp, h(3)},
				// Ties at the same millisecond: a registration beats a
				// provider's death (the token was valid when registered) ...
				{"410 at the registration's millisecond", true, func(tok string) []Changes {
					return []Changes{apple410(tok, h(1))}
				}, h(1), true, "", time.Time{}},
				// ... and a strike ...
				{"strikes from the registration's millisecond", true, func(tok string) []Changes {
					return []Changes{strikes(tok, h(1), h(2), h(3))}
				}, h(1), true, "", time.Time{}},
				// ... but the app's own unregister beats its registration.
				{"unregister at the registration's millisecond", true, func(tok string) []Changes {
					return []Changes{unreg(tok, h(1))}
				}, h(1), false, ReasonUnregisteredByApp, h(1)},
				// Evidence about a device its registration has not created
				// yet is kept, as strikes are.
				{"death before the device exists", false, func(tok string) []Changes {
					return []Changes{Collect([]*schemas.Result{dead("d-"+tok, tok, "UNREGISTERED", h(3), time.Time{})}, nil)}
				}, h(2), false, "UNREGISTERED", h(3)},
			} {
				first, last := c.name+"/reg-first", c.name+"/reg-last"
				if c.seeded {
					seedDevice(t, db, "app", first, t0)
					seedDevice(t, db, "app", last, t0)
				}
				apply(t, s, reg(first, c.reg))
				for _, ch := range c.evidence(first) {
					apply(t, s, ch)
				}
				for _, ch := range c.evidence(last) {
					apply(t, s, ch)
				}
				apply(t, s, reg(last, c.reg))
				for _, tok := range []string{first, last} {
					if d := device(t, db, "app", tok); d.Active != c.active || d.Reason != c.reason || !d.DeactivatedAt.Equal(c.at.UTC()) {
						t.Errorf("%s: %s, want active=%v reason=%q deactivated=%s", tok, d, c.active, c.reason, c.at.Format(time.RFC3339))
					}
				}
			}
		}},
		{"orders of five events end in the same state", func(t *testing.T, db *sql.DB) {
			s := NewMySQLStore(db, 3)
			h := func(n float64) time.Time { return t0.Add(time.Duration(n * float64(time.Hour))) }
			for _, c := range []struct {
				name                 string
				reg, unreg, apple410 time.Time
				strikes              [3]time.Time // the first two in one flush
				active               bool
				reason               string
				at                   time.Time
			}{
				// Only the 410 is newer than the registration (two strikes are).
				{"death", h(2), h(1), h(4), [3]time.Time{h(1.5), h(3), h(5)}, false, "Unregistered", h(4)},
				// Three strikes are; the unregister and the 410 are older.
				{"strikes", h(2), h(1), h(1.5), [3]time.Time{h(3), h(4), h(5)}, false, ReasonSuspectStrikes, h(5)},
				// Nothing is: the 410 ties the registration, which wins.
				{"alive", h(4), h(1), h(4), [3]time.Time{h(3), h(4), h(5)}, true, "", time.Time{}},
			} {
				events := func(tok string) []Changes {
					st := func(i int) *schemas.Result {
						return result(fmt.Sprintf("%s-s%d", tok, i), "app", tok, schemas.OutcomeTokenSuspect, "BadDeviceToken", c.strikes[i])
					}
					return []Changes{
						Collect(nil, []*schemas.DeviceRegistration{{App: "app", Token: tok, Platform: "ios", RegisteredAt: c.reg}}),
						Collect(nil, []*schemas.DeviceRegistration{{App: "app", Token: tok, Platform: "ios", RegisteredAt: c.unreg, Unregister: true}}),
						Collect([]*schemas.Result{st(0), st(1)}, nil),
						Collect([]*schemas.Result{st(2)}, nil),
						Collect([]*schemas.Result{dead("d-"+tok, tok, "Unregistered", c.apple410.Add(time.Hour), c.apple410)}, nil),
					}
				}
				// Every 7th of the 120 orders (all of them take a minute on
				// go-mysql-server): each event still comes at every position.
				for i, order := range permutations(5) {
					if i%7 != 0 {
						continue
					}
					tok := fmt.Sprintf("%s-%03d", c.name, i)
					seedDevice(t, db, "app", tok, t0)
					ev := events(tok)
					for _, e := range order {
						apply(t, s, ev[e])
					}
					if d := device(t, db, "app", tok); d.Active != c.active || d.Reason != c.reason || !d.DeactivatedAt.Equal(c.at) || !d.RegisteredAt.Equal(c.reg) {
						t.Errorf("%s in order %v: %s, want active=%v reason=%q deactivated=%s", c.name, order, d, c.active, c.reason, c.at.Format(time.RFC3339))
					}
				}
			}
		}},
		{"several unregisters of a device in one flush keep the latest", func(t *testing.T, db *sql.DB) {
			s := NewMySQLStore(db, 3)
			seedDevice(t, db, "app", "u", t0)
			var gs []*schemas.DeviceRegistration
			for _, n := range []int{1, 2, 3} {
				gs = append(gs, &schemas.DeviceRegistration{App: "app", Token: "u", Platform: "ios", RegisteredAt: t0.Add(time.Duration(n) * time.Hour), Unregister: true})
			}
			if a := apply(t, s, Collect(nil, gs)); a.Unregistered != 1 {
				t.Errorf("applied %+v, want 1 unregistered", a)
			}
			if d := device(t, db, "app", "u"); d.Active || d.Reason != ReasonUnregisteredByApp || !d.DeactivatedAt.Equal(t0.Add(3*time.Hour)) {
				t.Errorf("device = %s, want inactive, unregistered_by_app at %s", d, t0.Add(3*time.Hour))
			}
		}},
		{"devices deactivated before migration 0006 stay deactivated", func(t *testing.T, db *sql.DB) {
			s := NewMySQLStore(db, 3)
			at := t0.Add(time.Hour)
			for _, d := range []struct{ token, reason string }{{"gone", "Unregistered"}, {"left", ReasonUnregisteredByApp}} {
				seedDevice(t, db, "app", d.token, t0)
				if _, err := db.Exec(`UPDATE devices SET active = 0, deactivated_at = ?, deactivation_reason = ? WHERE app = 'app' AND token = ?`, at, d.reason, d.token); err != nil {
					t.Fatal(err)
				}
			}
			// What 0006 finds on an upgrade: the rows, no evidence. Its
			// statements run again as they would after a crash before the
			// version was recorded.
			raw, err := fs.ReadFile(schemas.MySQLMigrations(), "0006_device_deaths.sql")
			if err != nil {
				t.Fatal(err)
			}
			for range 2 {
				for _, stmt := range migrate.Split(string(raw)) {
					if _, err := db.Exec(stmt); err != nil {
						t.Fatalf("0006: %v\n%s", err, stmt)
					}
				}
			}
			// A replayed registration older than the deactivation names
			// both devices, so the reconcile judges them.
			for _, tok := range []string{"gone", "left"} {
				apply(t, s, Collect(nil, []*schemas.DeviceRegistration{{App: "app", Token: tok, Platform: "ios", RegisteredAt: t0.Add(time.Minute)}}))
			}
			if d := device(t, db, "app", "gone"); d.Active || d.Reason != "Unregistered" || !d.DeactivatedAt.Equal(at) {
				t.Errorf("dead device = %s, want inactive, Unregistered at %s", d, at)
			}
			if d := device(t, db, "app", "left"); d.Active || d.Reason != ReasonUnregisteredByApp || !d.DeactivatedAt.Equal(at) {
				t.Errorf("unregistered device = %s, want inactive, unregistered_by_app at %s", d, at)
			}
		}},
		{"a death or strike of a token no device can have is only unknown", func(t *testing.T, db *sql.DB) {
			s := NewMySQLStore(db, 1)
			long, unicode := strings.Repeat("x", schemas.MaxStoredTokenBytes+1), "tøken"
			a := apply(t, s, Collect([]*schemas.Result{
				dead("l", long, "UNREGISTERED", t0, time.Time{}),
				result("u", "app", unicode, schemas.OutcomeTokenSuspect, "BadDeviceToken", t0),
			}, []*schemas.DeviceRegistration{{App: "app", Token: unicode, Platform: "ios", RegisteredAt: t0, Unregister: true}}))
			if a != (Applied{Unknown: 2}) {
				t.Errorf("applied %+v, want 2 unknown and nothing else", a)
			}
		}},
		{"replaying everything changes nothing", func(t *testing.T, db *sql.DB) {
			s := NewMySQLStore(db, 2)
			seedDevice(t, db, "app", "a", t0)
			seedDevice(t, db, "app", "b", t0)
			seedDevice(t, db, "app", "c", t0.Add(5*time.Hour))
			results := []*schemas.Result{
				dead("1", "a", "Unregistered", t0.Add(2*time.Hour), t0.Add(time.Hour)),
				dead("2", "c", "Unregistered", t0.Add(2*time.Hour), t0.Add(time.Hour)),
				result("3", "app", "b", schemas.OutcomeTokenSuspect, "BadDeviceToken", t0.Add(time.Minute)),
				result("4", "app", "b", schemas.OutcomeTokenSuspect, "BadDeviceToken", t0.Add(2*time.Minute)),
				result("5", "app", "zz", schemas.OutcomeTokenDead, "ExpiredToken", t0),
				result("6", "app", "c", schemas.OutcomeDelivered, "", t0),
			}
			regs := []*schemas.DeviceRegistration{{App: "app", Token: "d", Platform: "ios", RegisteredAt: t0}}
			first := apply(t, s, Collect(results, regs))
			if first.Unknown != 1 || first.DeadDeactivated != 1 || first.SuspectDeactivated != 1 {
				t.Errorf("first apply = %+v, want 1 unknown, 1 dead, 1 suspect deactivated", first)
			}
			before := snapshot(t, db)
			again := apply(t, s, Collect(results, regs))
			if again.DeadDeactivated != 0 || again.SuspectDeactivated != 0 || again.NewStrikes != 0 || again.Unregistered != 0 {
				t.Errorf("replay applied %+v, want no change", again)
			}
			if after := snapshot(t, db); after != before {
				t.Errorf("replay changed the state:\nbefore\n%s\nafter\n%s", before, after)
			}
		}},
	}
}

// TestStoreOnGoMySQLServer runs the hygiene rules on the embedded
// go-mysql-server the demo uses, which proves the SQL is portable beyond
// MariaDB; the integration test runs the same cases on MariaDB.
func TestStoreOnGoMySQLServer(t *testing.T) {
	for _, c := range storeCases() {
		t.Run(c.name, func(t *testing.T) {
			c.run(t, embeddedDB(t))
		})
	}
}

func TestAddPlannedReadsTheLatestVersion(t *testing.T) {
	db := embeddedDB(t)
	s := CampaignSummary{CampaignID: "c1", Planned: 7, PlannedSource: "results"}
	if err := s.AddPlanned(context.Background(), db); err != nil || s.Planned != 7 || s.PlannedSource != "results" {
		t.Fatalf("without a campaigns row: %+v, %v; want unchanged", s, err)
	}
	for _, v := range []struct{ version, planned, expired int }{{1, 900, 5}, {2, 1000, 40}} {
		if _, err := db.Exec(`INSERT INTO campaigns (id, version, app, status, planned_devices, expired_devices, started_at, finished_at) VALUES ('c1', ?, 'app', 'planned', ?, ?, ?, ?)`,
			v.version, v.planned, v.expired, t0, t0); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddPlanned(context.Background(), db); err != nil || s.Planned != 1000 || s.PlannedSource != "mysql" || s.ExpiredAtPlanning != 40 {
		t.Fatalf("with campaigns rows: %+v, %v; want 1000 from mysql, 40 expired at planning", s, err)
	}
	// The devices the planner left out have no result: stats names them.
	var out strings.Builder
	if err := WriteSummary(&out, s); err != nil {
		t.Fatal(err)
	}
	if want := "expired at planning              40  (not planned: due at or after expires_at; no result)\n"; !strings.Contains(out.String(), want) {
		t.Errorf("summary lacks %q:\n%s", want, out.String())
	}
}
