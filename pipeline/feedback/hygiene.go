package feedback

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
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

// Apply runs the flush's statements in this order: registrations,
// unregisters and deaths (each deactivating, then recording its evidence),
// strikes, strike deactivations, the reconcile of every device the flush
// names, then the unknown device count. Each statement is idempotent on its
// own and the reconcile derives the state from everything recorded, so a
// failure part-way is repaired by applying the same Changes again; no
// transaction is needed and none is held across statements.
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
	for chunk := range slices.Chunk(newestPerDevice(c.Registrations), rowsPerStatement) {
		q, args := RegisterSQL(chunk)
		n, err := exec("register devices", q, args)
		if err != nil {
			return a, err
		}
		a.Registered += n
	}
	// DeactivateSQL and SuspectDeactivateSQL only count the devices each
	// kind deactivates (the metrics); ReconcileSQL, last, sets the state.
	// An unregister beats a registration at its own time: inclusive.
	deactivate := func(what string, ds []Death, unregister bool) (int64, error) {
		var total int64
		for chunk := range slices.Chunk(ds, rowsPerStatement) {
			q, args := DeactivateSQL(chunk, unregister)
			n, err := exec(what, q, args)
			if err != nil {
				return total, err
			}
			total += n
			q, args = EvidenceSQL(chunk, unregister)
			if _, err := exec(what+" (record evidence)", q, args); err != nil {
				return total, err
			}
		}
		return total, nil
	}
	n, err := deactivate("unregister devices", latestPerDevice(c.Unregisters), true)
	a.Unregistered += n
	if err != nil {
		return a, err
	}
	n, err = deactivate("deactivate dead tokens", latestPerDevice(c.Deaths), false)
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
	// perAppTokens runs rule on each app's tokens among groups.
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
		n, err = perAppTokens("deactivate suspect tokens", groupTokensByApp(strikes, Strike.appToken), SuspectDeactivateSQL)
		a.SuspectDeactivated += n
		if err != nil {
			return a, err
		}
	}
	for _, g := range groupTokensByApp(c.named(), func(k [2]string) (string, string) { return k[0], k[1] }) {
		for chunk := range slices.Chunk(g.tokens, rowsPerStatement) {
			qs, args := ReconcileSQL(g.app, chunk, s.suspectStrikes)
			for _, q := range qs {
				if _, err := exec("reconcile device state", q, args); err != nil {
					return a, err
				}
			}
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

// newestPerDevice keeps, of regs, one per device: the one that applying
// them in order would leave, the newest (a tie to the later). RegisterSQL
// gets each device once: go-mysql-server (the demo's store), given two
// rows of one device in one statement, inserted the second as a device of
// its own and kept the older profile.
func newestPerDevice(regs []schemas.DeviceRegistration) []schemas.DeviceRegistration {
	out := make([]schemas.DeviceRegistration, 0, len(regs))
	idx := map[[2]string]int{}
	for _, g := range regs {
		k := [2]string{g.App, g.Token}
		i, ok := idx[k]
		if !ok {
			idx[k] = len(out)
			out = append(out, g)
			continue
		}
		if !g.RegisteredAt.Before(out[i].RegisteredAt) {
			out[i] = g
		}
	}
	return out
}

// latestPerDevice keeps, of ds's storable deaths, one per device: the latest
// (ties to the greater reason, as Collect and EvidenceSQL break them).
// DeactivateSQL joins one row per device: a multi-table UPDATE changes a
// row once, with whichever joined row the server meets first, so with
// several the deactivation time would depend on row order.
func latestPerDevice(ds []Death) []Death {
	out := make([]Death, 0, len(ds))
	idx := map[[2]string]int{}
	for _, d := range ds {
		if !storable(d.App, d.Token) {
			continue
		}
		d.At = d.At.UTC()
		k := [2]string{d.App, d.Token}
		i, ok := idx[k]
		if !ok {
			idx[k] = len(out)
			out = append(out, d)
			continue
		}
		if p := out[i]; d.At.After(p.At) || (d.At.Equal(p.At) && d.Reason > p.Reason) {
			out[i] = d
		}
	}
	return out
}

// named lists the (app, token) of every device c names, for the reconcile;
// groupTokensByApp drops repeats and the unstorable.
func (c Changes) named() [][2]string {
	out := make([][2]string, 0, len(c.Registrations)+len(c.Unregisters)+len(c.Deaths)+len(c.Strikes))
	for _, g := range c.Registrations {
		out = append(out, [2]string{g.App, g.Token})
	}
	for _, ds := range [][]Death{c.Unregisters, c.Deaths} {
		for _, d := range ds {
			out = append(out, [2]string{d.App, d.Token})
		}
	}
	for _, st := range c.Strikes {
		out = append(out, [2]string{st.App, st.Token})
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
// active devices of ds (one row per device) whose registration the
// evidence beats: registered before it (strictly before for a death; at or
// before for the app's own unregister; the tie rule of ReconcileSQL). Its
// count of rows is the metric of devices each kind deactivated. It never
// deactivates a device the reconcile would leave active (the evidence it
// acts on is recorded too); which evidence is the latest, and so
// deactivated_at and the reason, the reconcile settles.
func DeactivateSQL(ds []Death, inclusive bool) (string, []any) {
	var b strings.Builder
	b.WriteString("UPDATE devices d JOIN (")
	derivedRows(&b, []string{"app", "token", "ts", "reason"}, len(ds))
	b.WriteString(") x ON d.app = x.app AND d.token = x.token SET d.active = 0, d.deactivated_at = x.ts, d.deactivation_reason = x.reason WHERE d.active = 1 AND d.registered_at ")
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

// EvidenceSQL records ds in device_deaths: the latest provider death (time,
// reason; ties to the greater reason) or, for unregisters, the latest
// unregister, whether or not the device exists or is active. The state is
// derived from this record (ReconcileSQL), so evidence that lost to a later
// one, or arrived while the device was inactive for another reason, still
// counts when a registration moves registered_at past the later one. Keeping
// the maximum per column makes it order-free and replay-safe; several rows
// for one device in one statement are applied one after the other.
func EvidenceSQL(ds []Death, unregister bool) (string, []any) {
	cols, width := "app, token, died_at, death_reason", 4
	// death_reason reads died_at before died_at is assigned, on servers
	// that assign left to right and on those that assign simultaneously.
	update := " death_reason = IF(died_at IS NULL OR VALUES(died_at) > died_at OR (VALUES(died_at) = died_at AND VALUES(death_reason) > death_reason), VALUES(death_reason), death_reason)," +
		" died_at = IF(died_at IS NULL OR VALUES(died_at) > died_at, VALUES(died_at), died_at)"
	if unregister {
		cols, width = "app, token, unregistered_at", 3
		update = " unregistered_at = IF(unregistered_at IS NULL OR VALUES(unregistered_at) > unregistered_at, VALUES(unregistered_at), unregistered_at)"
	}
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", width), ", ") + ")"
	var b strings.Builder
	b.WriteString("INSERT INTO device_deaths (" + cols + ") VALUES ")
	args := make([]any, 0, width*len(ds))
	for i, d := range ds {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(row)
		args = append(args, d.App, d.Token, d.At.UTC())
		if !unregister {
			args = append(args, d.Reason)
		}
	}
	b.WriteString(" ON DUPLICATE KEY UPDATE" + update)
	return b.String(), args
}

// ReconcileSQL derives active, deactivated_at and deactivation_reason of
// app's devices among tokens from their evidence alone, so that the events
// of a device applied in any order, split across flushes or replayed end in
// the same state. A device is inactive when any of these is newer than its
// registered_at (the latest registration):
//
//   - its latest provider death (device_deaths.died_at), strictly newer;
//   - its latest unregister (device_deaths.unregistered_at), at or newer;
//   - n of its strikes, strictly newer (n > 0; 0 never deactivates); the
//     evidence time is then its latest strike.
//
// Ties at one millisecond: a registration beats a provider's death and a
// strike at its own time (the token was valid when the app registered it,
// as DeactivateSQL's registered_at < guard always held), and loses to the
// app's own unregister at its time (the app said so last). deactivated_at
// and the reason are those of the latest evidence that applies (at one
// time: death, then unregister, then strikes), NULL when active.
//
// Deriving the state rather than updating it step by step is what makes it
// order-free: each input is a maximum or a set, which any order builds
// alike. The strike rule follows the current feedback.suspect_strikes: a
// device struck out under another setting is re-judged the next time an
// event names it.
//
// It is two statements, run in order with the same args: the first sets
// deactivated_at to the latest evidence that applies and active from it,
// the second the reason. One statement would repeat the strike count in
// every branch of the reason, since a multi-table UPDATE may not read a
// column it assigns (MySQL does not promise an order). Each writer of evidence runs both
// after its write, so the last pair to run sees every write; a failure
// between them is repaired by applying the same Changes again.
func ReconcileSQL(app string, tokens []string, n int) ([2]string, []any) {
	const from = "UPDATE devices d LEFT JOIN device_deaths e ON e.app = d.app AND e.token = d.token SET "
	latest := latestEvidence(n)
	where, args := devicesIn(app, tokens)
	// Only a state feedback's evidence explains is derived: an inactive
	// device whose deactivation no recorded evidence reaches (an
	// operator's, the app backend's own UPDATE, an older feedback's that
	// kept none) stays as it is until a registration newer than its
	// deactivation; a strike or a registration older than that would
	// otherwise find no evidence against it and revive it. Deaths and
	// unregisters are kept as maxima, so one that deactivated the device
	// stays at or after its deactivated_at whatever came later (the reason
	// is not compared: a later death of another reason replaces it). A
	// strike deactivation is at the time of a strike, which is never
	// deleted: recognised by that, not by its reason, which the second
	// statement writes (a reconcile interrupted between the two, or
	// another instance's in between, left a strike time under a death's
	// reason), and whether or not a registration has since made the
	// strikes too old to count, which is exactly when it must be re-judged.
	ours := " AND (d.active = 1 OR d.registered_at > d.deactivated_at" +
		" OR e.died_at >= d.deactivated_at OR e.unregistered_at >= d.deactivated_at" +
		" OR EXISTS (SELECT 1 " + strikesOfDevice + " AND s.at = d.deactivated_at))"
	return [2]string{
		// active with deactivated_at, in the statement that decides which
		// rows are derived: a later statement could not tell a time this
		// one cleared from one that was NULL before (set from outside).
		from + "d.deactivated_at = " + latest + ", d.active = IF(" + latest + " IS NULL, 1, 0)" + where + ours,
		// The reason, of the rows the first statement derived: active
		// ones that still carry one, and inactive ones whose time is the
		// evidence's.
		from + "d.deactivation_reason = CASE WHEN d.deactivated_at IS NULL THEN NULL" +
			" WHEN " + death + " = d.deactivated_at THEN e.death_reason" +
			" WHEN " + unreg + " = d.deactivated_at THEN '" + ReasonUnregisteredByApp + "'" +
			" ELSE '" + ReasonSuspectStrikes + "' END" + where +
			" AND ((d.active = 1 AND d.deactivation_reason IS NOT NULL) OR d.deactivated_at = " + latest + ")",
	}, args
}

// The death and the unregister of a device that apply (newer than its
// registration, the unregister at its time too), or NULL.
const (
	death = "IF(e.died_at > d.registered_at, e.died_at, NULL)"
	unreg = "IF(e.unregistered_at >= d.registered_at, e.unregistered_at, NULL)"
)

// latestEvidence is ReconcileSQL's expression of the latest evidence that
// applies to a device (joined as d, its device_deaths row as e), NULL if
// none does.
func latestEvidence(n int) string {
	// The later of the death and the unregister, NULL if both are:
	// GREATEST is NULL as soon as one argument is.
	deathOrUnreg := "GREATEST(COALESCE(" + death + ", " + unreg + "), COALESCE(" + unreg + ", " + death + "))"
	if n <= 0 {
		return deathOrUnreg
	}
	// Any strike newer than registered_at makes the latest strike newer.
	strikes := "(SELECT IF(COUNT(*) >= " + strconv.Itoa(n) + ", MAX(s.at), NULL) " + strikesOfDevice + " AND s.at > d.registered_at)"
	return "COALESCE(GREATEST(" + strikes + ", COALESCE(" + deathOrUnreg + ", " + strikes + ")), " + deathOrUnreg + ")"
}

// strikesOfDevice selects the strikes of the device joined as d.
const strikesOfDevice = "FROM device_strikes s WHERE s.app = d.app AND s.token = d.token"

// devicesIn is the WHERE clause of app's devices among tokens, and its
// arguments.
func devicesIn(app string, tokens []string) (string, []any) {
	args := make([]any, 0, len(tokens)+1)
	args = append(args, app)
	for _, t := range tokens {
		args = append(args, t)
	}
	return " WHERE d.app = ? AND d.token IN (" + strings.TrimSuffix(strings.Repeat("?, ", len(tokens)), ", ") + ")", args
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
// app re-registered starts again from zero without deleting any strike. As
// DeactivateSQL, it counts; ReconcileSQL agrees with the state it writes.
func SuspectDeactivateSQL(app string, tokens []string, n int) (string, []any) {
	where, args := devicesIn(app, tokens)
	return "UPDATE devices d SET d.active = 0, d.deactivation_reason = '" + ReasonSuspectStrikes + "'," +
		" d.deactivated_at = (SELECT MAX(s.at) " + strikesOfDevice + ")" + where +
		" AND d.active = 1 AND (SELECT COUNT(*) " + strikesOfDevice + " AND s.at > d.registered_at) >= ?", append(args, n)
}

// RegisterSQL upserts registrations in one statement. For an existing
// device: registered_at becomes the later of the stored and the event's,
// and profile fields (platform, user, locale, timezone) follow the newest
// registration, as it gives them: one it leaves out or empty is cleared.
// Kept instead, the user of an install that logged out and registered
// again anonymously stayed on the device, and that user's campaigns went
// to it. It leaves active and the deactivation alone: ReconcileSQL,
// which must follow it, judges the new registered_at against all the
// device's evidence (a new row is inserted active, and evidence recorded
// before it existed may deactivate it).
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
	const latest = "VALUES(registered_at) >= registered_at"
	b.WriteString(" ON DUPLICATE KEY UPDATE" +
		" platform = IF(" + latest + ", VALUES(platform), platform)," +
		" user_id = IF(" + latest + ", VALUES(user_id), user_id)," +
		" locale = IF(" + latest + ", VALUES(locale), locale)," +
		" timezone = IF(" + latest + ", VALUES(timezone), timezone)," +
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
