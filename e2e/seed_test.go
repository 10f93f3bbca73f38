package e2e

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/pushlane/pushlane/schemas"
)

// Device kinds: what the simulators' default token rules (and the planner's
// token check) do with a device, and so what the pipeline must end with.
const (
	kindLive    = "live"    // accepted by the simulator: delivered exactly once
	kindDead    = "dead"    // APNs 410 Unregistered / ExpiredToken, FCM UNREGISTERED: deactivated
	kindSuspect = "suspect" // APNs 400 BadDeviceToken: one strike, stays active
	kindInvalid = "invalid" // not a valid APNs token: the planner reports invalid_token, nothing is sent
)

// fleetApp is one app's seeded devices. Tests use different apps, so they
// share one seeded devices table without seeing each other's changes.
type fleetApp struct {
	Name     string
	Devices  int
	Suspects int // iOS BadDeviceToken devices
	Invalid  int // iOS devices with a token that is not hex
}

// deadEvery makes every deadEvery-th device a dead token: 1%.
const deadEvery = 100

var (
	seedLocales   = []string{"en", "en-GB", "de-DE", "fr", "es", "ja", "pt-BR", "it"}
	seedTimezones = []string{"America/Los_Angeles", "America/New_York", "America/Sao_Paulo", "Europe/London", "Europe/Berlin",
		"Africa/Lagos", "Asia/Kolkata", "Asia/Kathmandu", "Asia/Tokyo", "Australia/Sydney", "Pacific/Auckland", "UTC"}
)

// seededDevice is one row of the devices table as the test seeded it.
type seededDevice struct {
	Token, Platform, Kind, Locale, Timezone, UserID string
}

// population is one app's seeded devices, in id order.
type population struct {
	App     string
	Devices []seededDevice
}

func (p *population) count(kind string) int {
	n := 0
	for _, d := range p.Devices {
		if d.Kind == kind {
			n++
		}
	}
	return n
}

func (p *population) tokens(kind string) []string {
	var out []string
	for _, d := range p.Devices {
		if d.Kind == kind {
			out = append(out, d.Token)
		}
	}
	return out
}

// hexOf is 64 hex digits derived from s: deterministic token material.
func hexOf(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// buildPopulation makes spec's devices deterministically: 56% iOS, 1% dead
// (iOS alternating Unregistered and ExpiredToken), the suspects and invalid
// tokens spread through the id range, live tokens chosen so that no
// simulator rule matches them (APNs "a…", FCM "f…").
func buildPopulation(spec fleetApp) *population {
	p := &population{App: spec.Name, Devices: make([]seededDevice, spec.Devices)}
	// Suspects and invalid tokens are iOS devices spread evenly through the
	// id range, never on a dead device's index.
	suspect, invalid := map[int]bool{}, map[int]bool{}
	for k := range spec.Suspects {
		suspect[k*(spec.Devices/spec.Suspects)+1] = true
	}
	for k := range spec.Invalid {
		invalid[k*(spec.Devices/spec.Invalid)+3] = true
	}
	for i := range spec.Devices {
		material := hexOf(spec.Name + "/" + strconv.Itoa(i))
		d := seededDevice{
			UserID:   fmt.Sprintf("u%07d", i),
			Locale:   seedLocales[(i*7+i/5)%len(seedLocales)],
			Timezone: seedTimezones[(i*5+i/11)%len(seedTimezones)],
			Kind:     kindLive,
		}
		// iOS for 9 of 16 values of a hash digit: 56%, independent of the
		// index patterns that pick dead, suspect and invalid devices.
		ios := strings.IndexByte("012345678", material[63]) >= 0
		switch {
		case i%deadEvery == deadEvery-1:
			d.Kind = kindDead
		case suspect[i]:
			d.Kind, ios = kindSuspect, true
		case invalid[i]:
			d.Kind, ios = kindInvalid, true
		}
		if ios {
			d.Platform = schemas.PlatformIOS
			switch d.Kind {
			case kindLive:
				d.Token = "a" + material[1:]
			case kindDead:
				if (i/deadEvery)%2 == 0 {
					d.Token = "dead" + material[4:]
				} else {
					d.Token = "deaf" + material[4:]
				}
			case kindSuspect:
				d.Token = "0bad" + material[4:]
			case kindInvalid:
				d.Token = "not-an-apns-token-" + material[:16]
			}
		} else {
			d.Platform = schemas.PlatformAndroid
			switch d.Kind {
			case kindLive:
				d.Token = "f" + material[:31] + ":APA91b" + hexOf(material)
			case kindDead:
				d.Token = "dead" + material[:28] + ":APA91b" + hexOf(material)
			}
		}
		p.Devices[i] = d
	}
	return p
}

// seedRows inserts pop into the devices table with multi-row INSERTs of
// 1000 rows over a few connections, registered 30 days ago (feedback only
// deactivates a token registered before the provider's evidence).
func seedRows(ctx context.Context, db *sql.DB, pop *population) error {
	const rowsPerInsert = 1000
	registered := time.Now().UTC().Add(-30 * 24 * time.Hour).Truncate(time.Second)
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for lo := 0; lo < len(pop.Devices); lo += rowsPerInsert {
		hi := min(lo+rowsPerInsert, len(pop.Devices))
		g.Go(func() error {
			var b strings.Builder
			args := make([]any, 0, (hi-lo)*7)
			b.WriteString("INSERT INTO devices (app, user_id, platform, token, locale, timezone, registered_at) VALUES ")
			for i := lo; i < hi; i++ {
				if i > lo {
					b.WriteByte(',')
				}
				b.WriteString("(?,?,?,?,?,?,?)")
				d := pop.Devices[i]
				args = append(args, pop.App, d.UserID, d.Platform, d.Token, d.Locale, d.Timezone, registered)
			}
			if _, err := db.ExecContext(ctx, b.String(), args...); err != nil {
				return fmt.Errorf("seed %s rows %d-%d: %w", pop.App, lo, hi, err)
			}
			return nil
		})
	}
	return g.Wait()
}
