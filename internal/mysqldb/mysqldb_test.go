package mysqldb

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/internal/testenv"
)

func TestOpenHidesThePasswordOfABadDSN(t *testing.T) {
	_, err := Open(config.MySQL{DSN: "user:s3cret@tcp(127.0.0.1:3306"}, 1)
	if err == nil || err.Error() != "mysql.dsn: not a valid DSN" {
		t.Fatalf("err = %v, want the DSN error without details", err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatal("the password leaked into the error")
	}
}

func TestOpenNamesTheTLSKey(t *testing.T) {
	_, err := Open(config.MySQL{DSN: "u:p@tcp(127.0.0.1:3306)/db", TLS: config.TLS{Enabled: true, CAFile: "/nonexistent/ca.pem"}}, 1)
	if err == nil || !strings.HasPrefix(err.Error(), "mysql.tls: ca_file: ") {
		t.Fatalf("err = %v, want it to name mysql.tls", err)
	}
}

func TestOpenParsesTimesAsUTC(t *testing.T) {
	dsn, _ := testenv.MySQL(t)
	db, err := Open(config.MySQL{DSN: dsn, MaxOpenConns: 3}, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got := db.Stats().MaxOpenConnections; got != 3 {
		t.Errorf("max open connections = %d, want 3", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var at time.Time
	if err := db.QueryRowContext(ctx, "SELECT CAST('2026-03-29 01:30:00' AS DATETIME)").Scan(&at); err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC); !at.Equal(want) || at.Location() != time.UTC {
		t.Errorf("scanned %v, want %v in UTC", at, want)
	}
}
