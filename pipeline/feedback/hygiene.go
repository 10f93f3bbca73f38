package feedback

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pushlane/pushlane/internal/utf8cut"
	"github.com/pushlane/pushlane/schemas"
)

// Deactivation reasons written to devices.deactivation_reason besides the
// provider's own reason (Unregistered, ExpiredToken, UNREGISTERED,
// INVALID_ARGUMENT).
const (
	ReasonSuspectStrikes    = "suspect_strikes"
	ReasonUnregisteredByApp = "unregistered_by_app"
	reasonTokenDead         = "token_dead" // a token_dead result without a reason
)

// Limits of the devices table (schemas/mysql/0001_devices.sql): a value
// outside them cannot name a stored device.
const (
	maxAppLen    = 64
	maxReasonLen = 64
	// rowsPerStatement bounds one statement's rows, well under MySQL's
	// 65535 placeholders even at six per row.
	rowsPerStatement = 1000
)

// Death is the evidence that a device's token is dead.
type Death struct {
	App, Token string
	// At is the time the token was last known valid: APNs' 410 timestamp
	// for Unregistered, the result's time otherwise. The device is
	// deactivated only if it was registered before At.
	At     time.Time
	Reason string
}

// Strike is one suspect result against a device.
type Strike struct {
	App, Token, ResultID, Reason string
	At                           time.Time
}

// Changes is the MySQL work of one flush.
type Changes struct {
	Registrations []schemas.DeviceRegistration // register or re-register (Unregister false)
	Unregisters   []Death                      // unregister events, At = the event's registered_at
	Deaths        []Death                      // token_dead results, one per device
	Strikes       []Strike                     // token_suspect results
}

// Empty reports whether there is nothing to write.
func (c Changes) Empty() bool {
	return len(c.Registrations) == 0 && len(c.Unregisters) == 0 && len(c.Deaths) == 0 && len(c.Strikes) == 0
}

// Applied counts what Apply changed.
type Applied struct {
	Registered         int64 // registration rows inserted or updated
	Unregistered       int64 // devices deactivated by the app
	DeadDeactivated    int64 // devices deactivated by a token_dead result
	SuspectDeactivated int64 // devices deactivated after suspect strikes
	NewStrikes         int64 // strikes recorded for the first time
	Unknown            int64 // devices named by a death, strike or unregister that are not in devices
}

// Store applies token hygiene to the device store.
type Store interface {
	Apply(ctx context.Context, c Changes) (Applied, error)
}

// storable reports whether app and token can be a row of devices (ASCII,
// within the column lengths); anything else is an unknown device.
func storable(app, token string) bool {
	return app != "" && token != "" && len(app) <= maxAppLen && isASCII(app) && schemas.StoredToken(token)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// MaxRegistrationAhead is how far ahead of the feedback instance's clock a
// registration's registered_at may be; a later one is dead-lettered.
const MaxRegistrationAhead = 24 * time.Hour

// CheckRegistration reports why a registration cannot be stored in the
// devices table, or nil. Such an event is dead-lettered, not retried.
func CheckRegistration(r *schemas.DeviceRegistration, now time.Time) error {
	switch {
	case len(r.App) > maxAppLen || !isASCII(r.App):
		return fmt.Errorf("app: must be ASCII of at most %d bytes", maxAppLen)
	case !schemas.StoredToken(r.Token):
		return fmt.Errorf("token: must be ASCII of at most %d bytes", schemas.MaxStoredTokenBytes)
	// The year in UTC, as stored: 9999-12-31T23:30:00-01:00 is year 10000
	// there, which the driver cannot write, and the flush would be retried
	// forever.
	case r.RegisteredAt.UTC().Year() < 1970 || r.RegisteredAt.UTC().Year() > 9999:
		return fmt.Errorf("registered_at: %s is out of range", r.RegisteredAt.Format(time.RFC3339))
	// A device registered far in the future could never be deactivated:
	// every death and strike is older than its registration.
	case r.RegisteredAt.After(now.Add(MaxRegistrationAhead)):
		return fmt.Errorf("registered_at: %s is more than %s ahead of this instance's clock (%s)",
			r.RegisteredAt.Format(time.RFC3339), MaxRegistrationAhead, now.UTC().Format(time.RFC3339))
	}
	return nil
}

// Collect turns a flush's results and registrations into MySQL work. Deaths
// keep one per device: the one with the latest At (the one most likely to
// pass the registered_at guard), ties broken by reason. Strikes keep every
// result; their primary key makes a replayed strike count once.
func Collect(results []*schemas.Result, regs []*schemas.DeviceRegistration) Changes {
	var c Changes
	deaths := map[[2]string]int{}
	for _, r := range results {
		switch r.Outcome {
		case schemas.OutcomeTokenDead:
			d := Death{App: r.App, Token: r.Token, At: r.At.UTC(), Reason: utf8cut.Prefix(cmp.Or(r.Reason, reasonTokenDead), maxReasonLen)}
			if r.Reason == "Unregistered" && !r.ProviderTimestamp.IsZero() {
				d.At = r.ProviderTimestamp.UTC()
			}
			key := [2]string{r.App, r.Token}
			if i, ok := deaths[key]; ok {
				if p := c.Deaths[i]; d.At.After(p.At) || (d.At.Equal(p.At) && d.Reason > p.Reason) {
					c.Deaths[i] = d
				}
				continue
			}
			deaths[key] = len(c.Deaths)
			c.Deaths = append(c.Deaths, d)
		case schemas.OutcomeTokenSuspect:
			c.Strikes = append(c.Strikes, Strike{App: r.App, Token: r.Token, ResultID: r.ID,
				Reason: utf8cut.Prefix(cmp.Or(r.Reason, schemas.OutcomeTokenSuspect), maxReasonLen), At: r.At.UTC()})
		}
	}
	for _, g := range regs {
		if g.Unregister {
			c.Unregisters = append(c.Unregisters, Death{App: g.App, Token: g.Token, At: g.RegisteredAt.UTC(), Reason: ReasonUnregisteredByApp})
		} else {
			c.Registrations = append(c.Registrations, *g)
		}
	}
	return c
}

// MySQLStore is the Store on database/sql. It uses only syntax that
// MariaDB, MySQL 8 and go-mysql-server share: multi-table UPDATE with a
// derived table of UNION ALL rows, INSERT … ON DUPLICATE KEY UPDATE with
// VALUES(), GREATEST, IF.
type MySQLStore struct {
	db *sql.DB
	// SuspectStrikes deactivates a device after this many suspect results
	// since its last registration; 0 records strikes but never deactivates.
	suspectStrikes int
}

// NewMySQLStore returns a store on db (migrations 0001 and 0004 applied).
func NewMySQLStore(db *sql.DB, suspectStrikes int) *MySQLStore {
	return &MySQLStore{db: db, suspectStrikes: suspectStrikes}
}

// Apply runs the flush's statements in this order: registrations (and the
// strike count of the devices they name), unregisters, deaths, strikes,
// strike deactivations, then the unknown device count. Each statement is
// idempotent on its own, so a failure part-way is repaired by applying the
// same Changes again; no transaction is needed and none is held across
// statements.
func (s *MySQLStore) Apply(ctx context.Context, c Changes) (Applied, error) {
	var a Applied
	exec := func(what string, q string, args []any) (int64, error) {
		res, err := s.db.ExecContext(ctx, q, args...)
		if err != nil {
			return 0, fmt.Errorf("feedback: mysql %s: %w", what, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return 0, fmt.Errorf("feedback: mysql %s: %w", what, err)
		}
		return n, nil
	}
	for chunk := range slices.Chunk(c.Registrations, rowsPerStatement) {
		q, args := RegisterSQL(chunk)
		n, err := exec("register devices", q, args)
		if err != nil {
			return a, err
		}
		a.Registered += n
	}
	// perAppTokens runs rule on each app's tokens among groups. With
	// suspect_strikes 0 strikes never deactivate, and it is not called.
	perAppTokens := func(what string, groups []appTokens, rule func(app string, tokens []string, n int) (string, []any)) (int64, error) {
		var total int64
		for _, g := range groups {
			for chunk := range slices.Chunk(g.tokens, rowsPerStatement) {
				q, args := rule(g.app, chunk, s.suspectStrikes)
				n, err := exec(what, q, args)
				if err != nil {
					return total, err
				}
				total += n
			}
		}
		return total, nil
	}
	if s.suspectStrikes > 0 {
		registered := groupTokensByApp(c.Registrations, func(g schemas.DeviceRegistration) (string, string) { return g.App, g.Token })
		if _, err := perAppTokens("re-count strikes after registrations", registered, SuspectReactivateSQL); err != nil {
			return a, err
		}
	}
	deactivate := func(what string, ds []Death, inclusive bool) (int64, error) {
		var total int64
		for chunk := range slices.Chunk(ds, rowsPerStatement) {
			q, args := DeactivateSQL(chunk, inclusive)
			n, err := exec(what, q, args)
			if err != nil {
				return total, err
			}
			total += n
			q, args = LaterEvidenceSQL(chunk, inclusive)
			if _, err := exec(what+" (later evidence)", q, args); err != nil {
				return total, err
			}
		}
		return total, nil
	}
	n, err := deactivate("unregister devices", storableDeaths(c.Unregisters), true)
	a.Unregistered += n
	if err != nil {
		return a, err
	}
	n, err = deactivate("deactivate dead tokens", storableDeaths(c.Deaths), false)
	a.DeadDeactivated += n
	if err != nil {
		return a, err
	}
	var strikes []Strike
	for _, st := range c.Strikes {
		if storable(st.App, st.Token) {
			strikes = append(strikes, st)
		}
	}
	for chunk := range slices.Chunk(strikes, rowsPerStatement) {
		q, args := StrikesSQL(chunk)
		n, err := exec("record strikes", q, args)
		if err != nil {
			return a, err
		}
		a.NewStrikes += n // 1 per new row; 0 for a duplicate whose update changes nothing
	}
	if s.suspectStrikes > 0 {
		n, err = perAppTokens("deactivate suspect tokens", groupTokensByApp(strikes, Strike.appToken), SuspectDeactivateSQL)
		a.SuspectDeactivated += n
		if err != nil {
			return a, err
		}
	}
	unknown, err := s.countUnknown(ctx, c)
	if err != nil {
		return a, err
	}
	a.Unknown = unknown
	return a, nil
}

// countUnknown counts the devices named by deaths, strikes and unregisters
// that the devices table does not hold (not storable ones included). It is
// a read for the metric only: no write depends on it.
func (s *MySQLStore) countUnknown(ctx context.Context, c Changes) (int64, error) {
	names := map[[2]string]struct{}{}
	var unknown int64
	add := func(app, token string) {
		k := [2]string{app, token}
		if _, ok := names[k]; ok {
			return
		}
		names[k] = struct{}{}
		if !storable(app, token) {
			unknown++
		}
	}
	for _, d := range c.Deaths {
		add(d.App, d.Token)
	}
	for _, d := range c.Unregisters {
		add(d.App, d.Token)
	}
	for _, st := range c.Strikes {
		add(st.App, st.Token)
	}
	var keys [][2]string
	for k := range names {
		if storable(k[0], k[1]) {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b [2]string) int { return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1])) })
	for chunk := range slices.Chunk(keys, rowsPerStatement) {
		q, args := UnknownSQL(chunk)
		var n int64
		if err := s.db.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
			return 0, fmt.Errorf("feedback: mysql count unknown devices: %w", err)
		}
		unknown += n
	}
	return unknown, nil
}

func storableDeaths(ds []Death) []Death {
	out := make([]Death, 0, len(ds))
	for _, d := range ds {
		if storable(d.App, d.Token) {
			out = append(out, d)
		}
	}
	return out
}

func (st Strike) appToken() (app, token string) { return st.App, st.Token }

type appTokens struct {
	app    string
	tokens []string
}

// groupTokensByApp returns each app's distinct storable tokens among
// items (key names an item's app and token), apps and tokens in first-seen
// order.
func groupTokensByApp[T any](items []T, key func(T) (app, token string)) []appTokens {
	var out []appTokens
	idx := map[string]int{}
	seen := map[[2]string]bool{}
	for _, it := range items {
		app, token := key(it)
		if !storable(app, token) || seen[[2]string{app, token}] {
			continue
		}
		seen[[2]string{app, token}] = true
		i, ok := idx[app]
		if !ok {
			i = len(out)
			idx[app] = i
			out = append(out, appTokens{app: app})
		}
		out[i].tokens = append(out[i].tokens, token)
	}
	return out
}

// derivedRows writes "SELECT ? AS c1, ? AS c2 … UNION ALL SELECT ?, ? …":
// a table of parameter rows that one statement can join, so a whole flush
// is one round-trip while each row keeps its own values.
func derivedRows(b *strings.Builder, cols []string, n int) {
	for i := range n {
		if i == 0 {
			b.WriteString("SELECT ")
			for j, c := range cols {
				if j > 0 {
					b.WriteString(", ")
				}
				b.WriteString("? AS " + c)
			}
			continue
		}
		b.WriteString(" UNION ALL SELECT ")
		b.WriteString(strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", "))
	}
}

// DeactivateSQL builds the one conditional UPDATE that deactivates the
// devices of ds. A device is deactivated only if it is active and was
// registered before its evidence time (strictly before for a death; at or
// before for the app's own unregister), so a token the app re-registered
// after the evidence stays active, and a replay changes nothing (the row
// is no longer active). deactivated_at records the evidence time, which is
// what a later registration must beat to reactivate the device.
func DeactivateSQL(ds []Death, inclusive bool) (string, []any) {
	return deathUpdate(ds, inclusive, "d.active = 0, d.deactivated_at = x.ts, d.deactivation_reason = x.reason", "d.active = 1")
}

// LaterEvidenceSQL records, on devices ds already deactivated, evidence
// newer than the one they were deactivated on (time and reason), under the
// same registered_at guard as DeactivateSQL. A registration must beat the
// latest evidence to reactivate a device, whatever order the registration
// and the evidence arrive in: an unregister at 1h, Apple's 410 at 3h and a
// registration at 2h end inactive either way. Devices are not counted
// again: they were inactive already.
func LaterEvidenceSQL(ds []Death, inclusive bool) (string, []any) {
	return deathUpdate(ds, inclusive, "d.deactivated_at = x.ts, d.deactivation_reason = x.reason", "d.active = 0 AND d.deactivated_at < x.ts")
}

// deathUpdate is the UPDATE of DeactivateSQL and LaterEvidenceSQL: devices
// joined to ds's (app, token, time, reason) rows, set where cond holds and
// the device was registered before the evidence (at or before: inclusive).
func deathUpdate(ds []Death, inclusive bool, set, cond string) (string, []any) {
	var b strings.Builder
	b.WriteString("UPDATE devices d JOIN (")
	derivedRows(&b, []string{"app", "token", "ts", "reason"}, len(ds))
	b.WriteString(") x ON d.app = x.app AND d.token = x.token SET " + set + " WHERE " + cond + " AND d.registered_at ")
	if inclusive {
		b.WriteString("<=")
	} else {
		b.WriteString("<")
	}
	b.WriteString(" x.ts")
	args := make([]any, 0, 4*len(ds))
	for _, d := range ds {
		args = append(args, d.App, d.Token, d.At, d.Reason)
	}
	return b.String(), args
}

// SuspectReactivateSQL reactivates the devices of app among tokens that
// strikes deactivated but that no longer have n strikes newer than their
// registration, after a registration older than the last strike moved
// registered_at. In the other order (the registration first) those strikes
// would not have deactivated the device; the rule depends on the
// registration time, not on arrival order.
func SuspectReactivateSQL(app string, tokens []string, n int) (string, []any) {
	return strikeRule("d.active = 1, d.deactivated_at = NULL, d.deactivation_reason = NULL",
		"d.active = 0 AND d.deactivation_reason = '"+ReasonSuspectStrikes+"'", "<", app, tokens, n)
}

// newerStrikes counts a device's strikes newer than its registration.
const newerStrikes = "(SELECT COUNT(*) FROM device_strikes s WHERE s.app = d.app AND s.token = d.token AND s.at > d.registered_at)"

// strikeRule is the UPDATE of SuspectDeactivateSQL and
// SuspectReactivateSQL: set on app's devices among tokens where cond holds
// and newerStrikes compares (cmp) to n.
func strikeRule(set, cond, cmp, app string, tokens []string, n int) (string, []any) {
	var b strings.Builder
	b.WriteString("UPDATE devices d SET " + set + " WHERE d.app = ? AND d.token IN (")
	b.WriteString(strings.TrimSuffix(strings.Repeat("?, ", len(tokens)), ", "))
	b.WriteString(") AND " + cond + " AND " + newerStrikes + " " + cmp + " ?")
	args := make([]any, 0, len(tokens)+2)
	args = append(args, app)
	for _, t := range tokens {
		args = append(args, t)
	}
	args = append(args, n)
	return b.String(), args
}

// StrikesSQL records suspect strikes keyed (app, token, result_id): a
// replayed result hits the key and changes nothing, so strikes are counted
// once per result.
func StrikesSQL(ss []Strike) (string, []any) {
	var b strings.Builder
	b.WriteString("INSERT INTO device_strikes (app, token, result_id, reason, at) VALUES ")
	args := make([]any, 0, 5*len(ss))
	for i, st := range ss {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?, ?, ?, ?)")
		args = append(args, st.App, st.Token, st.ResultID, st.Reason, st.At)
	}
	b.WriteString(" ON DUPLICATE KEY UPDATE result_id = result_id")
	return b.String(), args
}

// SuspectDeactivateSQL deactivates the active devices of app among tokens
// that have at least n strikes newer than their registration: a token the
// app re-registered starts again from zero without deleting any strike.
func SuspectDeactivateSQL(app string, tokens []string, n int) (string, []any) {
	return strikeRule("d.active = 0, d.deactivation_reason = '"+ReasonSuspectStrikes+"', "+
		"d.deactivated_at = (SELECT MAX(s.at) FROM device_strikes s WHERE s.app = d.app AND s.token = d.token)",
		"d.active = 1", ">=", app, tokens, n)
}

// RegisterSQL upserts registrations in one statement. For an existing
// device: registered_at becomes the later of the stored and the event's;
// the device is reactivated only by a registration newer than both its
// stored registration and its deactivation evidence, so replaying an old
// registration never revives a token found dead after it. Profile fields
// (platform, user, locale, timezone) follow the newest registration.
//
// Every assignment reads only columns assigned after it or itself, so the
// result is the same whether the server assigns left to right (MySQL,
// MariaDB) or simultaneously.
func RegisterSQL(regs []schemas.DeviceRegistration) (string, []any) {
	var b strings.Builder
	b.WriteString("INSERT INTO devices (app, token, platform, user_id, locale, timezone, registered_at, active) VALUES ")
	args := make([]any, 0, 7*len(regs))
	for i, g := range regs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?, ?, ?, ?, ?, ?, 1)")
		args = append(args, g.App, g.Token, g.Platform, nullable(g.UserID), nullable(g.Locale), nullable(g.Timezone), g.RegisteredAt.UTC())
	}
	const newer = "VALUES(registered_at) > registered_at AND (deactivated_at IS NULL OR VALUES(registered_at) > deactivated_at)"
	const latest = "VALUES(registered_at) >= registered_at"
	b.WriteString(" ON DUPLICATE KEY UPDATE" +
		" active = IF(" + newer + ", 1, active)," +
		" deactivation_reason = IF(" + newer + ", NULL, deactivation_reason)," +
		" deactivated_at = IF(" + newer + ", NULL, deactivated_at)," +
		" platform = IF(" + latest + ", VALUES(platform), platform)," +
		" user_id = IF(" + latest + ", COALESCE(VALUES(user_id), user_id), user_id)," +
		" locale = IF(" + latest + ", COALESCE(VALUES(locale), locale), locale)," +
		" timezone = IF(" + latest + ", COALESCE(VALUES(timezone), timezone), timezone)," +
		" registered_at = GREATEST(registered_at, VALUES(registered_at))")
	return b.String(), args
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// UnknownSQL counts the (app, token) pairs of keys without a device row.
func UnknownSQL(keys [][2]string) (string, []any) {
	var b strings.Builder
	b.WriteString("SELECT COUNT(*) FROM (")
	derivedRows(&b, []string{"app", "token"}, len(keys))
	b.WriteString(") x LEFT JOIN devices d ON d.app = x.app AND d.token = x.token WHERE d.id IS NULL")
	args := make([]any, 0, 2*len(keys))
	for _, k := range keys {
		args = append(args, k[0], k[1])
	}
	return b.String(), args
}
