package main

import (
	"io/fs"
	"strings"
	"testing"

	"github.com/pushlane/pushlane/internal/testenv"
	"github.com/pushlane/pushlane/schemas"
)

func migrations(t *testing.T, fsys fs.FS) []string {
	t.Helper()
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil || len(names) == 0 {
		t.Fatalf("embedded migrations: %v %v", names, err)
	}
	for i, n := range names {
		names[i] = strings.TrimSuffix(n, ".sql")
	}
	return names
}

func TestMigrateCommand(t *testing.T) {
	dsn, _ := testenv.MySQL(t)
	chAddr, chDB, _ := testenv.ClickHouse(t)
	env := []string{"PUSHLANE_MYSQL__DSN=" + dsn, "PUSHLANE_CLICKHOUSE__ADDR=" + chAddr, "PUSHLANE_CLICKHOUSE__DATABASE=" + chDB}

	var want strings.Builder
	for _, m := range migrations(t, schemas.MySQLMigrations()) {
		want.WriteString("mysql: applied " + m + "\n")
	}
	for _, m := range migrations(t, schemas.ClickHouseMigrations()) {
		want.WriteString("clickhouse: applied " + m + "\n")
	}
	expect(t, pushctl(t, "", env, "migrate"), exitOK, want.String(), "")
	expect(t, pushctl(t, "", env, "migrate"), exitOK, "mysql: up to date\nclickhouse: up to date\n", "")
	expect(t, pushctl(t, "", env, "migrate", "-mysql"), exitOK, "mysql: up to date\n", "")
	expect(t, pushctl(t, "", env, "migrate", "-clickhouse"), exitOK, "clickhouse: up to date\n", "")
}

func TestMigrateCommandFails(t *testing.T) {
	// Nothing listens on port 1: the failure names the step and exits 1.
	r := pushctl(t, "", []string{"PUSHLANE_MYSQL__DSN=pushlane:secret-pw@tcp(127.0.0.1:1)/pushlane"}, "-timeout", "10s", "migrate")
	if r.code != exitFailed || r.stdout != "" ||
		!strings.HasPrefix(r.stderr, "pushctl migrate: migrate mysql: create schema_migrations: ") || strings.Contains(r.stderr, "secret-pw") {
		t.Errorf("%+v", r)
	}
}
