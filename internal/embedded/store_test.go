package embedded

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestStoreAppliesMigrations(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := StartStore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if len(s.Migrations) < 4 || s.Migrations[0] != "0001_devices" {
		t.Fatalf("applied %v, want every migration from 0001_devices", s.Migrations)
	}
	if len(s.DroppedIndexes) != 0 {
		t.Fatalf("dropped %v by default, want the real schema", s.DroppedIndexes)
	}
	// Every migrated table is there, on the real DDL.
	for _, table := range []string{"devices", "campaigns", "device_strikes", "schema_migrations"} {
		var n int
		if err := s.DB.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
			t.Fatalf("table %s: %v", table, err)
		}
	}
	var n int
	if err := s.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM devices`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("devices has %d rows, want 0", n)
	}
	// The real schema's unique key holds.
	const ins = `INSERT INTO devices (app, platform, token) VALUES ('a', 'ios', 'tok')`
	if _, err := s.DB.ExecContext(ctx, ins); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB.ExecContext(ctx, ins); err == nil {
		t.Fatal("a duplicate (app, token) was accepted")
	}
}

func TestStoreWithoutDeviceIndexes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := StartStore(ctx, WithoutDeviceIndexes())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if strings.Join(s.DroppedIndexes, ",") != "uq_app_token,ix_audience,ix_app_user" {
		t.Fatalf("dropped %v", s.DroppedIndexes)
	}
	var n int
	if err := s.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.statistics
		WHERE table_schema = 'pushlane' AND table_name = 'devices' AND index_name <> 'PRIMARY'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d secondary index columns left on devices", n)
	}
}

func TestSeedIsIdempotentAndMatchesPopulation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := StartStore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	spec := SeedSpec{Devices: 1000}
	start := time.Now()
	p, err := Seed(ctx, s.DB, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("seeded %d devices in %s", len(p.Devices), time.Since(start))
	dead, suspects := p.Count(KindDead, ""), p.Count(KindSuspect, "")
	if dead != 1000/67 || suspects != 3 {
		t.Fatalf("dead %d suspects %d, want %d and 3", dead, suspects, 1000/67)
	}
	for _, tok := range p.Tokens(KindDead) {
		if tok[:4] != "dead" {
			t.Fatalf("dead token %q does not start with dead", tok)
		}
	}
	// Leave state behind as a demo would (deactivations, a strike, an
	// extra device, a device of another app), then re-seed: the demo app is
	// back to the population, the other app untouched.
	for _, q := range []string{
		`UPDATE devices SET active = 0, deactivation_reason = 'Unregistered' WHERE token LIKE 'dead%'`,
		`INSERT INTO device_strikes (app, token, result_id, reason, at) VALUES ('demo', 'x', 'r1', 'BadDeviceToken', NOW())`,
		`INSERT INTO devices (app, platform, token) VALUES ('demo', 'ios', 'extra'), ('other', 'ios', 'keep')`,
	} {
		if _, err := s.DB.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := Deactivated(ctx, s.DB, "demo"); err != nil || len(got) != dead {
		t.Fatalf("deactivated %d (%v), want %d", len(got), err, dead)
	}
	if _, err := Seed(ctx, s.DB, spec); err != nil {
		t.Fatal(err)
	}
	var total, active, ios, locales, zones int
	if err := s.DB.QueryRowContext(ctx, `SELECT COUNT(*), SUM(active), SUM(platform = 'ios'), COUNT(DISTINCT locale), COUNT(DISTINCT timezone) FROM devices WHERE app = 'demo'`).
		Scan(&total, &active, &ios, &locales, &zones); err != nil {
		t.Fatal(err)
	}
	if total != 1000 || active != 1000 || ios != p.Count(KindLive, "ios")+p.Count(KindDead, "ios")+suspects || locales != len(demoLocales) || zones != len(demoTimezones) {
		t.Fatalf("total %d active %d ios %d locales %d zones %d", total, active, ios, locales, zones)
	}
	var strikes, others int
	if err := s.DB.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM device_strikes WHERE app = 'demo'), (SELECT COUNT(*) FROM devices WHERE app = 'other')`).
		Scan(&strikes, &others); err != nil {
		t.Fatal(err)
	}
	if strikes != 0 || others != 1 {
		t.Fatalf("demo strikes %d (want 0), other app devices %d (want 1)", strikes, others)
	}
	seen := map[string]bool{}
	for _, d := range p.Devices {
		if seen[d.Token] {
			t.Fatalf("duplicate token %s", d.Token)
		}
		seen[d.Token] = true
		if d.Kind == KindLive && (d.Token[0] == '0' || d.Token[0] == 'd') {
			t.Fatalf("live token %s starts like a simulator rule", d.Token)
		}
	}
}

// TestStoreParsesThePipelinesIndexHints: go-mysql-server rejects a hint
// naming PRIMARY, which MySQL accepts and the planner uses; the store's
// connections drop it, in plain and prepared statements, and keep others.
func TestStoreParsesThePipelinesIndexHints(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := StartStore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := Seed(ctx, s.DB, SeedSpec{Devices: 50}); err != nil {
		t.Fatal(err)
	}
	const q = "SELECT COUNT(*) FROM devices FORCE INDEX (PRIMARY) WHERE id >= ? AND id <= ? AND app = ? AND active = 1"
	var n int
	if err := s.DB.QueryRowContext(ctx, q, 1, 10, "demo").Scan(&n); err != nil || n != 10 {
		t.Fatalf("query: %d, %v", n, err)
	}
	st, err := s.DB.PrepareContext(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.QueryRowContext(ctx, 11, 50, "demo").Scan(&n); err != nil || n != 40 {
		t.Fatalf("prepared: %d, %v", n, err)
	}
	for in, want := range map[string]string{
		"SELECT a FROM t FORCE INDEX (PRIMARY) WHERE x":     "SELECT a FROM t WHERE x",
		"SELECT a FROM t use key for order by ( primary )":  "SELECT a FROM t",
		"SELECT a FROM t FORCE INDEX (ix_audience) WHERE x": "SELECT a FROM t FORCE INDEX (ix_audience) WHERE x",
	} {
		if got := compatSQL(in); got != want {
			t.Errorf("compatSQL(%q) = %q, want %q", in, got, want)
		}
	}
}
