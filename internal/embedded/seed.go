package embedded

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pushlane/pushlane/schemas"
)

// Demo device population. The locales match the demo campaign's localized
// content; the timezones span the world so local-time scheduling has waves.
var (
	demoLocales   = []string{"en", "en-GB", "de", "fr", "es", "ja", "pt-BR"}
	demoTimezones = []string{
		"America/Los_Angeles", "America/New_York", "America/Sao_Paulo", "Europe/London", "Europe/Berlin",
		"Europe/Paris", "Europe/Madrid", "Africa/Lagos", "Asia/Kolkata", "Asia/Tokyo", "Australia/Sydney", "Pacific/Auckland",
	}
)

// Token kinds, decided by the simulators' default token rules.
const (
	KindLive    = "live"    // accepted
	KindDead    = "dead"    // APNs 410 Unregistered / FCM UNREGISTERED: deactivated by feedback
	KindSuspect = "suspect" // APNs 400 BadDeviceToken: quarantined, not deactivated on one strike
)

// SeedSpec says how many demo devices to create.
type SeedSpec struct {
	App     string // default "demo"
	Devices int    // default 10000
	// DeadEvery makes every DeadEvery-th device a dead token; default 67
	// (about 1.5%). Negative means none.
	DeadEvery int
	// Suspects is the number of iOS devices with a BadDeviceToken token;
	// default 3. Negative means none.
	Suspects int
	// RegisteredAt is when the devices registered; default 30 days ago.
	// It must be well before the demo's sends: feedback only deactivates a
	// token the provider declared dead after its registration, and APNs'
	// 410 timestamp has whole-second precision.
	RegisteredAt time.Time
}

func (s SeedSpec) withDefaults() SeedSpec {
	if s.App == "" {
		s.App = "demo"
	}
	if s.Devices <= 0 {
		s.Devices = 10000
	}
	if s.DeadEvery == 0 {
		s.DeadEvery = 67
	}
	if s.Suspects == 0 {
		s.Suspects = 3
	}
	if s.RegisteredAt.IsZero() {
		s.RegisteredAt = time.Now().Add(-30 * 24 * time.Hour)
	}
	s.RegisteredAt = s.RegisteredAt.UTC().Truncate(time.Second)
	return s
}

// Device is one seeded device.
type Device struct {
	UserID, Platform, Token, Locale, Timezone, Kind string
}

// Population is what a seed created, so the demo can check the outcome
// against it.
type Population struct {
	App     string
	Devices []Device
}

// Count returns how many devices are of kind on platform ("" = any).
func (p *Population) Count(kind, platform string) int {
	n := 0
	for _, d := range p.Devices {
		if d.Kind == kind && (platform == "" || d.Platform == platform) {
			n++
		}
	}
	return n
}

// Tokens returns the tokens of kind, in seed order.
func (p *Population) Tokens(kind string) []string {
	var out []string
	for _, d := range p.Devices {
		if d.Kind == kind {
			out = append(out, d.Token)
		}
	}
	return out
}

// Population builds the spec's devices deterministically: the same spec
// yields the same tokens, so seeding a real database twice is idempotent.
func (s SeedSpec) Population() *Population {
	s = s.withDefaults()
	p := &Population{App: s.App, Devices: make([]Device, 0, s.Devices)}
	suspects := 0
	for i := range s.Devices {
		d := Device{
			UserID:   fmt.Sprintf("user-%06d", i),
			Locale:   demoLocales[(i*7+i/3)%len(demoLocales)],
			Timezone: demoTimezones[(i*5+i/len(demoTimezones))%len(demoTimezones)],
			Kind:     KindLive,
			Platform: schemas.PlatformAndroid,
		}
		if i%20 < 11 { // 55% iOS
			d.Platform = schemas.PlatformIOS
		}
		switch {
		case s.DeadEvery > 0 && i%s.DeadEvery == s.DeadEvery-1:
			d.Kind = KindDead
		case d.Platform == schemas.PlatformIOS && suspects < s.Suspects && i >= (suspects+1)*s.Devices/(s.Suspects+1):
			d.Kind = KindSuspect
			suspects++
		}
		d.Token = demoToken(s.App, i, d.Platform, d.Kind)
		p.Devices = append(p.Devices, d)
	}
	return p
}

// demoToken derives a token from (app, index). Live tokens never start with
// "0" or "d", the first characters of every simulator rule prefix (dead,
// deaf, 0bad, 0429, ...), so only the tokens meant to fail fail.
func demoToken(app string, i int, platform, kind string) string {
	sum := sha256.Sum256([]byte(app + "/" + strconv.Itoa(i)))
	if platform == schemas.PlatformIOS {
		h := hex.EncodeToString(sum[:]) // 64 hex digits, like a real APNs token
		switch kind {
		case KindDead:
			return "dead" + h[4:]
		case KindSuspect:
			return "0bad" + h[4:]
		}
		return string("123456789abcef"[int(sum[0])%14]) + h[1:]
	}
	// FCM registration tokens look like "<instance id>:APA91b<~134 chars>".
	more := sha256.Sum256(sum[:])
	body := base64.RawURLEncoding.EncodeToString(append(append(sum[:], more[:]...), sum[:]...)) // 128 chars
	tok := body[:22] + ":APA91b" + body[22:]
	switch kind {
	case KindDead:
		return "dead" + tok[4:]
	}
	if c := tok[0]; c == 'd' || c == 'D' || c == '0' {
		tok = "f" + tok[1:]
	}
	return tok
}

// seedRowsPerInsert bounds one multi-row INSERT (well under MySQL's default
// max_allowed_packet of 64 MiB).
const seedRowsPerInsert = 1000

// Seed resets app's devices to the spec's population: it deletes the app's
// devices and suspect strikes, then inserts the population with multi-row
// INSERTs. The result is the same whatever was there before (a previous
// demo's deactivations, strikes or a bigger seed), so a demo against a real
// database can be repeated. Rows of other apps are never touched.
func Seed(ctx context.Context, db *sql.DB, spec SeedSpec) (*Population, error) {
	spec = spec.withDefaults()
	p := spec.Population()
	for _, table := range []string{"devices", "device_strikes"} {
		if _, err := db.ExecContext(ctx, "DELETE FROM "+table+" WHERE app = ?", p.App); err != nil {
			return nil, fmt.Errorf("seed %s: clear %s: %w", p.App, table, err)
		}
	}
	const cols = 7
	for start := 0; start < len(p.Devices); start += seedRowsPerInsert {
		end := min(start+seedRowsPerInsert, len(p.Devices))
		var q strings.Builder
		q.WriteString("INSERT INTO devices (app, user_id, platform, token, locale, timezone, active, registered_at) VALUES ")
		args := make([]any, 0, (end-start)*cols)
		for i, d := range p.Devices[start:end] {
			if i > 0 {
				q.WriteString(",")
			}
			q.WriteString("(?,?,?,?,?,?,1,?)")
			args = append(args, p.App, d.UserID, d.Platform, d.Token, d.Locale, d.Timezone, spec.RegisteredAt)
		}
		if _, err := db.ExecContext(ctx, q.String(), args...); err != nil {
			return nil, fmt.Errorf("seed %s devices %d-%d: %w", p.App, start, end-1, err)
		}
	}
	return p, nil
}

// DeactivatedToken is a device feedback turned off.
type DeactivatedToken struct {
	Token, Platform, Reason string
	At                      time.Time
}

// Deactivated lists app's inactive devices, by token.
func Deactivated(ctx context.Context, db *sql.DB, app string) ([]DeactivatedToken, error) {
	rows, err := db.QueryContext(ctx, `SELECT token, platform, COALESCE(deactivation_reason, ''), deactivated_at
		FROM devices WHERE app = ? AND active = 0 ORDER BY token`, app)
	if err != nil {
		return nil, fmt.Errorf("list deactivated devices of %s: %w", app, err)
	}
	defer rows.Close()
	var out []DeactivatedToken
	for rows.Next() {
		var d DeactivatedToken
		var at sql.NullTime
		if err := rows.Scan(&d.Token, &d.Platform, &d.Reason, &at); err != nil {
			return nil, fmt.Errorf("list deactivated devices of %s: %w", app, err)
		}
		d.At = at.Time
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list deactivated devices of %s: %w", app, err)
	}
	return out, nil
}

// Strikes counts app's suspect strikes per token (feedback's
// device_strikes, migration 0004).
func Strikes(ctx context.Context, db *sql.DB, app string) (map[string]int, error) {
	rows, err := db.QueryContext(ctx, `SELECT token, COUNT(*) FROM device_strikes WHERE app = ? GROUP BY token`, app)
	if err != nil {
		return nil, fmt.Errorf("count strikes of %s: %w", app, err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var token string
		var n int
		if err := rows.Scan(&token, &n); err != nil {
			return nil, fmt.Errorf("count strikes of %s: %w", app, err)
		}
		out[token] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count strikes of %s: %w", app, err)
	}
	return out, nil
}
