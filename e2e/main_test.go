package e2e

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/pushlane/pushlane/internal/migrate"
	"github.com/pushlane/pushlane/internal/testenv"
)

// stageCommands are the stage binaries the tests run as processes.
// cmd/dispatcher also runs the delay ladder's forwarder (its default -mode all).
var stageCommands = []string{"planner", "dispatcher", "feedback"}

// The fleet: one app per test (or per campaign of a test), seeded once per
// test binary into one database.
var fleet = []fleetApp{
	{Name: "happy", Devices: 100_000, Suspects: 5, Invalid: 3},
	{Name: "faults", Devices: 100_000, Suspects: 5},
	{Name: "scale", Devices: 100_000, Suspects: 5},
	{Name: "cancel", Devices: 40_000},
	{Name: "sched-now", Devices: 2_000},
	{Name: "sched-5s", Devices: 2_000},
	{Name: "sched-90s", Devices: 2_000},
	{Name: "valid-after-bad", Devices: 2_000, Suspects: 2},
	{Name: "scale-late", Devices: 2_000, Suspects: 2},
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error

	fixtureOnce sync.Once
	fixture     *sharedDevices
	fixtureErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if fixture != nil {
		fixture.drop()
	}
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binaries builds the stage commands once per test binary (in one go build,
// which links them in parallel) and returns the directory holding them.
func binaries(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pushlane-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binDir = dir
		start := time.Now()
		args := []string{"build", "-o", dir + string(filepath.Separator)}
		for _, c := range stageCommands {
			args = append(args, "./cmd/"+c)
		}
		cmd := exec.Command("go", args...)
		cmd.Dir = ".." // the module root: e2e/ is one level down
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
			return
		}
		fmt.Fprintf(os.Stderr, "e2e: built %s in %s\n", strings.Join(stageCommands, ", "), time.Since(start).Round(time.Millisecond))
	})
	if buildErr != nil {
		t.Fatalf("e2e: build the stage commands: %v", buildErr)
	}
	return binDir
}

// sharedDevices is the database every test's stages read devices from.
type sharedDevices struct {
	dsn   string // with the database
	db    *sql.DB
	admin *sql.DB
	name  string

	mu   sync.Mutex
	apps map[string]*population
}

// devices returns the shared device database, creating and migrating it on
// first use. Apps are seeded when a test first asks for them (app).
func devices(t testing.TB) *sharedDevices {
	t.Helper()
	base := testenv.MySQLDSN(t) // skips or fails, as testenv does, without a MySQL
	fixtureOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		fixture, fixtureErr = createDatabase(ctx, base)
		if fixtureErr == nil {
			if _, err := migrate.MySQL(ctx, fixture.db); err != nil {
				fixture.drop()
				fixture, fixtureErr = nil, fmt.Errorf("migrate %s: %w", fixture.name, err)
			}
		}
	})
	if fixtureErr != nil {
		t.Fatalf("e2e: the shared device database: %v", fixtureErr)
	}
	return fixture
}

// app returns the seeded population of the fleet app named name, seeding it
// on first use.
func (s *sharedDevices) app(t testing.TB, name string) *population {
	t.Helper()
	for _, a := range fleet {
		if a.Name == name {
			return s.seed(t, a)
		}
	}
	t.Fatalf("e2e: app %q is not in the fleet", name)
	return nil
}

// seed inserts spec's devices, or, when an earlier test (-count=N) used
// them, makes them as seeded again: all active, no strikes.
func (s *sharedDevices) seed(t testing.TB, spec fleetApp) *population {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if p, ok := s.apps[spec.Name]; ok {
		if _, err := s.db.ExecContext(ctx, `UPDATE devices SET active = 1, deactivated_at = NULL, deactivation_reason = NULL WHERE app = ? AND active = 0`, spec.Name); err != nil {
			t.Fatalf("e2e: reset devices of %s: %v", spec.Name, err)
		}
		if _, err := s.db.ExecContext(ctx, `DELETE FROM device_strikes WHERE app = ?`, spec.Name); err != nil {
			t.Fatalf("e2e: reset strikes of %s: %v", spec.Name, err)
		}
		return p
	}
	start := time.Now()
	pop := buildPopulation(spec)
	if err := seedRows(ctx, s.db, pop); err != nil {
		t.Fatalf("e2e: %v", err)
	}
	s.apps[spec.Name] = pop
	t.Logf("e2e: seeded %d devices of app %s into %s in %s", spec.Devices, spec.Name, s.name, time.Since(start).Round(time.Millisecond))
	return pop
}

// createDatabase makes a fresh e2e_<random> database on the server of baseDSN.
func createDatabase(ctx context.Context, baseDSN string) (*sharedDevices, error) {
	cfg, err := mysql.ParseDSN(baseDSN)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", testenv.EnvMySQLDSN, err)
	}
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return nil, err
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	name := "e2e_" + hex.EncodeToString(rnd[:])
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE `"+name+"` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"); err != nil {
		admin.Close()
		return nil, fmt.Errorf("create database %s: %w", name, err)
	}
	cfg.DBName = name
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	cfg.MultiStatements = true
	dsn := cfg.FormatDSN()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		admin.Close()
		return nil, err
	}
	db.SetMaxOpenConns(8)
	return &sharedDevices{dsn: dsn, db: db, admin: admin, name: name, apps: map[string]*population{}}, nil
}

func (s *sharedDevices) drop() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s.db.Close()
	if _, err := s.admin.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+s.name+"`"); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: drop database %s: %v\n", s.name, err)
	}
	s.admin.Close()
}
