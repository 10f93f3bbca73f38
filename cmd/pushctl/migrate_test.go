package main

import (
	"io"
	"io/fs"
	"net"
	"strings"
	"testing"
	"time"

	sqle "github.com/dolthub/go-mysql-server"
	"github.com/dolthub/go-mysql-server/memory"
	"github.com/dolthub/go-mysql-server/server"
	gmssql "github.com/dolthub/go-mysql-server/sql"
	"github.com/sirupsen/logrus"

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
		!strings.HasPrefix(r.stderr, "pushctl migrate: migrate mysql: connect: ") || strings.Contains(r.stderr, "secret-pw") {
		t.Errorf("%+v", r)
	}
}

// bareMySQL starts an empty, unmigrated go-mysql-server on a loopback port
// and returns a DSN for it.
func bareMySQL(t *testing.T) string {
	t.Helper()
	logrus.SetLevel(logrus.ErrorLevel) // it logs every query at info
	logrus.SetOutput(io.Discard)
	pro := memory.NewDBProvider(memory.NewDatabase("pushlane"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.NewServer(server.Config{Protocol: "tcp", Listener: ln, Address: ln.Addr().String()},
		sqle.NewDefault(pro), gmssql.NewContext, memory.NewSessionBuilder(pro), nil)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	go func() { _ = srv.Start() }()
	t.Cleanup(func() { _ = srv.Close() })
	return "root@tcp(" + ln.Addr().String() + ")/pushlane"
}

// setFor sets *v to x until the test ends.
func setFor[T any](t *testing.T, v *T, x T) {
	old := *v
	*v = x
	t.Cleanup(func() { *v = old })
}

// A migration can run for minutes (0005 rebuilds an index of devices):
// without -timeout, migrate is given no deadline. The default here is
// shortened to one that has passed before the first statement.
func TestMigrateHasNoDefaultDeadline(t *testing.T) {
	setFor(t, &defaultTimeout, time.Nanosecond)
	env := []string{"PUSHLANE_MYSQL__DSN=" + bareMySQL(t)}
	var want strings.Builder
	for _, m := range migrations(t, schemas.MySQLMigrations()) {
		want.WriteString("mysql: applied " + m + "\n")
	}
	expect(t, pushctl(t, "", env, "migrate"), exitOK, want.String(), "")
	// Given, -timeout bounds it.
	expect(t, pushctl(t, "", env, "-timeout", "1ns", "migrate"), exitFailed, "", "pushctl migrate: migrate mysql: connect: context deadline exceeded\n")
	expect(t, pushctl(t, "", env, "-timeout", "0", "migrate"), exitOK, "mysql: up to date\n", "")
	// Other commands keep the default.
	r := pushctl(t, "", fakeStack(t).env, "topics", "-check")
	if r.code != exitFailed || !strings.HasSuffix(r.stderr, "context deadline exceeded\n") {
		t.Errorf("topics with the default timeout passed: %+v", r)
	}
}

// Without a deadline, a server that accepts connections and never answers
// must still fail migrate, after connectTimeout.
func TestMigrateConnectTimeout(t *testing.T) {
	setFor(t, &connectTimeout, 300*time.Millisecond)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 16)
	go func() {
		defer close(accepted)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	defer func() {
		ln.Close()
		for c := range accepted {
			c.Close()
		}
	}()
	start := time.Now()
	r := pushctl(t, "", []string{"PUSHLANE_MYSQL__DSN=pushlane:secret-pw@tcp(" + ln.Addr().String() + ")/pushlane"}, "migrate")
	expect(t, r, exitFailed, "", "pushctl migrate: migrate mysql: connect: no answer within 300ms: context deadline exceeded\n")
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("migrate gave up after %s, want about 300ms", took)
	}
}
